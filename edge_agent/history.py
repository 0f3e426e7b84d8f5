"""The event store for a person at the machine: ``edge-agent alerts``, ``edge-agent
label`` and ``edge-agent trend``.

The daemon keeps every alert it raises in the event store (:mod:`edge_agent.store`),
with its evidence and, once someone has said so, whether it was right. Over MQTT the
plant sees them and labels them (``/cmd/label``); these commands do the same on the
machine itself, for a site without a broker or an engineer with a terminal in the
cabinet. The store also keeps every summary hour by hour, which ``trend`` shows over
days and weeks, so that a fault's line can be seen growing without a historian.

They read the store while the daemon writes it: SQLite's WAL lets a reader in beside the
writer, and a label waits for the daemon's write lock (``busy_timeout``). Run as root on
the service's store, SQLite gives the files it makes (``-wal``, ``-shm``) to the
database's owner, so the daemon can still open them.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edge_agent.config import Config
from edge_agent.diagnosis import describe_alert
from edge_agent.errors import AccessDeniedError, InputDataError, InputMissingError
from edge_agent.store import NORMAL_AGAIN, EventStore, merge_stats
from edge_agent.summary import COUNT_FIELDS, MAX_FIELDS, TREND_FIELDS

__all__ = [
    "SERVICE_STATE",
    "STORE_NAME",
    "TREND_DEFAULT",
    "Stores",
    "as_json",
    "check_names",
    "default_columns",
    "find_motor",
    "format_alert",
    "format_alerts",
    "format_trend",
    "locate_stores",
    "motor_name",
    "open_store",
    "parse_every",
    "parse_since",
    "service_stores",
    "span_start",
    "trend_rows",
    "when",
]

# What `edge-agent trend` shows when not told: the motor's load and the diagnosis's lines
# (those with data), then the anomaly score; and the windows that were not judged as the
# others (the motor stopped, running outside the model's baseline, its load or speed
# changing, which leaves the rotor and bearing lines unread, or its drive ramping, which
# the model does not judge), when there were any.
TREND_DEFAULT = (
    "i1", "i2_i1", "epva_2f_db", "brb_lsb_db", "ecc_lsb_db", "bearing_outer_db",
    "bearing_inner_db", "v2_v1", "score_p95", "anomalous_windows", "stopped_windows",
    "outside_baseline_windows", "unsteady_windows", "ramping_windows",
)  # fmt: skip
_SHOWN_WHEN_SEEN = frozenset(
    {"stopped_windows", "outside_baseline_windows", "unsteady_windows", "ramping_windows"}
)

# Where the systemd units keep their stores: edge-agent.service in /var/lib/edge-agent
# (StateDirectory=edge-agent), each edge-agent@NAME.service in /var/lib/edge-agent-NAME.
SERVICE_STATE = Path("/var/lib")
STORE_NAME = "edge-agent.db"

_UNITS = {"m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_TIME = "%Y-%m-%d %H:%M:%S"


def service_stores() -> list[Path]:
    """The stores of the units that ran on this computer: edge-agent.service's, then each
    edge-agent@NAME.service's by NAME. Raises AccessDeniedError (77) when this user may not
    see one (they are root's)."""
    try:
        with os.scandir(SERVICE_STATE) as entries:
            names = sorted(e.name for e in entries if e.name.startswith("edge-agent-"))
    except OSError:
        names = []
    paths = [SERVICE_STATE / name / STORE_NAME for name in ["edge-agent", *names]]
    return [path for path in paths if _exists(path)]


def _exists(path: Path) -> bool:
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except PermissionError:
        raise AccessDeniedError(
            f"{path}: cannot read the event store: permission denied (the service's "
            "store is for root to read: run this with sudo, or name another with --store)"
        ) from None
    return True


def locate_stores(config: Config, given: Path | None = None) -> list[Path]:
    """The event stores to read: ``given`` (``--store``), else the config's ``[store]
    path`` or ``$STATE_DIRECTORY``'s, else every service's on this computer
    (:func:`service_stores`: edge-agent.service's and each edge-agent@NAME's) when there
    is one, else this user's (where ``edge-agent run`` keeps it).

    Raises InputMissingError (66) naming the places looked in when there is none, and
    AccessDeniedError (77) when this user may not see it (the service's is root's).
    """
    if given is not None or config.store.path is not None or os.environ.get("STATE_DIRECTORY"):
        looked = [given or config.store.resolved_path]
    else:
        services = service_stores()
        if services:
            return services
        looked = [
            SERVICE_STATE / "edge-agent" / STORE_NAME,
            SERVICE_STATE / "edge-agent-NAME" / STORE_NAME,
            config.store.resolved_path,
        ]
    if _exists(looked[-1]):  # the services' were looked in already
        return [looked[-1]]
    raise InputMissingError(
        f"no event store at {' or '.join(map(str, looked))}: `edge-agent run` makes one "
        "when it starts; name another with --store FILE or [store] path"
    )


def open_store(path: Path) -> EventStore:
    """The store at ``path``, which must exist (an EventStore would make a new one)."""
    if path.is_dir():
        raise InputDataError(f"{path}: is a folder; expected the event store's SQLite file")
    return EventStore(path)


class Stores:
    """The event stores a command reads, as one: a single store, or those of every motor's
    service on this computer. A context manager; :meth:`close` closes them all.
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self.dbs: list[EventStore] = []
        try:
            for path in paths:
                self.dbs.append(open_store(path))
        except BaseException:
            self.close()
            raise
        # How a heading names them.
        self.path = ", ".join(str(db.path) for db in self.dbs)

    def close(self) -> None:
        for db in self.dbs:
            db.close()

    def __enter__(self) -> Stores:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def motors(self) -> list[tuple[str, str]]:
        """Every (site, asset) the stores hold, in name order."""
        return sorted({m for db in self.dbs for m in db.motors()})

    def alerts(self, *, limit: int | None = 100, **filters: Any) -> list[dict[str, Any]]:
        """:meth:`EventStore.alerts` of them all, newest first, at most ``limit``."""
        found = [a for db in self.dbs for a in db.alerts(limit=limit, **filters)]
        found.sort(key=lambda a: (-a["raised_ts"], a["alert_id"]))
        return found[:limit]

    def find_alert(self, prefix: str) -> tuple[EventStore, dict[str, Any]]:
        """The one alert whose id starts with ``prefix`` (at least 4 characters), and the
        store holding it.

        Raises InputDataError (65) when none does, or more than one (naming them)."""
        prefix = prefix.strip().lower()
        if len(prefix) < 4:
            raise InputDataError(f"alert id {prefix!r}: give at least its first 4 characters")
        found = [(db, a) for db in self.dbs for a in db.alerts(id_prefix=prefix, limit=10)]
        if not found:
            raise InputDataError(f"{self.path}: no alert has an id starting {prefix!r}")
        if len({a["alert_id"] for _, a in found}) == 1 < len(found):  # a copied store
            where = ", ".join(str(db.path) for db, _ in found)
            raise InputDataError(
                f"alert {found[0][1]['alert_id']} is in {len(found)} stores ({where}): name "
                "one with --store"
            )
        if len(found) > 1:
            ids = ", ".join(a["alert_id"] for _, a in found)
            raise InputDataError(
                f"alert id {prefix!r} fits {len(found)} alerts ({ids}): give more of it"
            )
        return found[0]


def parse_since(text: str, now: float) -> float:
    """UNIX time from ``--since``: an age (``30m``, ``12h``, ``7d``, ``2w``) or a local
    date and time (``2026-12-01``, ``2026-12-01 08:00``, ``2026-12-01T08:00:00``)."""
    text = text.strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([mhdw])", text)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    for fmt in ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", _TIME, "%Y-%m-%dT%H:%M:%S"):
        try:
            return time.mktime(time.strptime(text, fmt))
        except ValueError:
            continue
    raise ValueError(
        f"--since {text!r}: expected an age such as 30m, 12h, 7d or 2w, or a local date "
        "such as 2026-12-01 or 2026-12-01 08:00"
    )


def motor_name(site: str, asset: str) -> str:
    """How a motor is named to a person: ``site/asset``, as in its MQTT topics."""
    return f"{site}/{asset}"


def find_motor(store: Stores, name: str) -> tuple[str, str]:
    """The (site, asset) that ``--asset`` names: ``SITE/ASSET``, or an asset alone when
    one site has it.

    Raises InputDataError (65) naming the motors the store holds when none fits, or those
    that fit when several do."""
    held = store.motors()
    site, _, asset = name.strip().rpartition("/")
    found = [m for m in held if m[1] == asset and (not site or m[0] == site)]
    if len(found) == 1:
        return found[0]
    names = ", ".join(motor_name(*m) for m in (found or held))
    if found:
        raise InputDataError(f"--asset {name!r} fits {names}: give SITE/ASSET")
    raise InputDataError(
        f"{store.path}: no motor named {name!r}; it holds "
        + (names if held else "none yet")
        + " ([output] site and asset name a motor)"
    )


def when(ts: float | None) -> str:
    """Local date and time of UNIX ``ts`` to the second; empty for None."""
    return time.strftime(_TIME, time.localtime(ts)) if ts is not None else ""


def lasted(seconds: float) -> str:
    """A length of time for a person: '45 s', '12 min', '3.5 h', '3.0 d'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _state(alert: Mapping[str, Any], now: float) -> str:
    if alert["cleared_ts"] is None:
        return f"open for {lasted(max(0.0, now - alert['raised_ts']))}"
    return f"cleared after {lasted(max(0.0, alert['cleared_ts'] - alert['raised_ts']))}"


def _cleared(alert: Mapping[str, Any]) -> str:
    if alert["cleared_ts"] is None:
        return "not yet"
    why = alert.get("cleared_reason")
    return when(alert["cleared_ts"]) + (f": {why}" if why else "")


def format_alerts(
    alerts: Sequence[Mapping[str, Any]], path: str | Path, now: float, *, limited: bool
) -> str:
    """The listing of ``edge-agent alerts``: a line per alert, one of what its evidence
    says, and one of why it was cleared when that was not the windows reading normal
    again (escalated, not judged, a restart)."""
    zone = time.strftime("%Z", time.localtime(now))
    open_ = sum(a["cleared_ts"] is None for a in alerts)
    n = len(alerts)
    newest = " (the newest)" if limited else ""
    motors = sorted({motor_name(a["site"], a["asset"]) for a in alerts})
    of = f" of {motors[0]}" if len(motors) == 1 else ""
    head = f"{path}: {n} alert{'' if n == 1 else 's'}{newest}{of}, {open_} open"
    if not alerts:
        return head + "\n"
    if len(motors) > 1:
        head += f" ({len(motors)} motors)"
    width = max(map(len, motors))
    lines = [f"{head}; times in {zone}, newest first", ""]
    for a in alerts:
        label = a["label"] or "unlabelled"
        motor = f"{motor_name(a['site'], a['asset']):<{width}}  " if len(motors) > 1 else ""
        lines.append(
            f"{when(a['raised_ts'])}  {motor}{a['fault']:<16} {a['severity']:<7}  "
            f"{_state(a, now):<22} {label:<14} {a['alert_id']}"
        )
        said = describe_alert(a["fault"], a["evidence"])
        if said:
            lines.append(f"    {said}")
        why = a.get("cleared_reason")
        if why and why != NORMAL_AGAIN:
            lines.append(f"    cleared: {why}")
    return "\n".join(lines) + "\n"


def format_alert(alert: Mapping[str, Any], now: float) -> str:
    """One alert whole, for ``edge-agent alerts ID``."""
    rows = [
        ("id", alert["alert_id"]),
        ("fault", f"{alert['fault']} {alert['severity']}"),
        ("motor", f"{alert['site']}/{alert['asset']}"),
        ("raised", when(alert["raised_ts"])),
        ("cleared", _cleared(alert)),
        ("state", _state(alert, now)),
        ("score", "none" if alert["score"] is None else f"{alert['score']:.4g}"),
        ("model", alert["model_id"] or "none"),
        ("says", describe_alert(alert["fault"], alert["evidence"]) or "-"),
    ]
    if alert["label"]:
        by = f" by {alert['labelled_by']}" if alert["labelled_by"] else ""
        rows.append(("label", f"{alert['label']}{by} at {when(alert['labelled_ts'])}"))
        if alert["label_note"]:
            rows.append(("note", alert["label_note"]))
    else:
        rows.append(("label", "none (edge-agent label ID true_positive|false_positive)"))
    width = max(len(k) for k, _ in rows)
    text = "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
    evidence = json.dumps(alert["evidence"], indent=2, sort_keys=True, allow_nan=False)
    return f"{text}\nevidence:\n{evidence}\n"


def as_json(alert: Mapping[str, Any]) -> str:
    """One alert as a JSON line (``--json``), times as UNIX seconds."""
    return json.dumps(dict(alert), separators=(",", ":"), allow_nan=False)


def parse_every(text: str) -> float:
    """Seconds of a ``--every`` span: ``Nh`` with N dividing 24, ``1d`` or ``1w``."""
    m = re.fullmatch(r"(\d+)\s*([hdw])", text.strip())
    if m and m.group(2) == "h" and int(m.group(1)) in (1, 2, 3, 4, 6, 8, 12, 24):
        return int(m.group(1)) * 3600.0
    if m and m.group(1) == "1" and m.group(2) in "dw":
        return _UNITS[m.group(2)]
    raise ValueError(f"--every {text!r}: expected 1h, 2h, 3h, 4h, 6h, 8h, 12h, 1d or 1w")


def span_start(hour: float, every: float) -> float:
    """Start of the span of ``every`` s holding ``hour``, on the local clock: spans of
    hours from local midnight, days at local midnight, weeks on Monday."""
    t = time.localtime(hour)
    midnight = time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))
    if every < _UNITS["d"]:
        n = int(every // 3600)
        return time.mktime((t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour // n * n, 0, 0, 0, 0, -1))
    if every == _UNITS["d"]:
        return midnight
    monday = time.localtime(midnight - t.tm_wday * _UNITS["d"] + 43200)  # noon: DST-safe
    return time.mktime((monday.tm_year, monday.tm_mon, monday.tm_mday, 0, 0, 0, 0, 0, -1))


def trend_rows(
    hours: Sequence[Mapping[str, Any]], every: float, names: Sequence[str]
) -> list[dict[str, Any]]:
    """The store's hourly trend rows gathered into spans of ``every`` s: per span its
    ``start`` (UNIX s), ``summaries``, ``windows`` and each name's value (counts summed,
    greatest values their greatest, the rest averaged over the summaries; None without
    data)."""
    spans: dict[float, dict[str, list[float]]] = {}
    counts: dict[float, int] = {}
    for row in hours:
        start = span_start(row["hour"], every)
        acc = spans.setdefault(start, {})
        counts[start] = counts.get(start, 0) + row["summaries"]
        for name, stats in row["stats"].items():
            acc[name] = merge_stats(acc.get(name), stats)
    out = []
    for start in sorted(spans):
        acc = spans[start]
        row: dict[str, Any] = {"start": start, "summaries": counts[start]}
        for name in ("windows", *names):
            a = acc.get(name)
            if a is None or a[1] == 0:
                row[name] = None
            elif name in COUNT_FIELDS:
                row[name] = int(a[0])
            elif name in MAX_FIELDS:
                row[name] = a[3]
            else:
                row[name] = a[0] / a[1]
        out.append(row)
    return out


def default_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The :data:`TREND_DEFAULT` columns ``rows`` (:func:`trend_rows` of them) have data
    for; the counts of windows not judged only when some span has one."""

    def shown(name: str) -> bool:
        if name in _SHOWN_WHEN_SEEN:
            return any(r[name] for r in rows)
        return any(r[name] is not None for r in rows)

    return [n for n in TREND_DEFAULT if shown(n)]


def _number(name: str, v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return str(v)
    if name.endswith("_db"):
        return f"{v:.1f}"
    return f"{v:.4g}"


def _cells(cells: Sequence[str], widths: Sequence[int]) -> str:
    """A table line: the first cell left-aligned, the others right-aligned."""
    out = [c.rjust(w) for c, w in zip(cells, widths, strict=True)]
    out[0] = cells[0].ljust(widths[0])
    return "  ".join(out)


def format_trend(
    rows: Sequence[Mapping[str, Any]],
    names: Sequence[str],
    every: float,
    path: str | Path,
    motor: str | None = None,
) -> str:
    """The table of ``edge-agent trend``: a line per span, a column per name; ``motor``
    (:func:`motor_name`) is whose summaries they are."""
    zone = time.strftime("%Z", time.localtime(rows[0]["start"] if rows else None))
    head = f"{path}: {len(rows)} span{'' if len(rows) == 1 else 's'} of summaries"
    if motor is not None:
        head += f" of {motor}"
    if not rows:
        return head + "\n"
    fmt = "%Y-%m-%d %H:%M" if every < _UNITS["d"] else "%Y-%m-%d"
    columns = ["from", "windows", *names]
    table = [
        [time.strftime(fmt, time.localtime(r["start"]))]
        + [_number(n, r[n]) for n in ("windows", *names)]
        for r in rows
    ]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(columns)]
    lines = [
        f"{head}, oldest first; times in {zone}; means over each span's summaries "
        "(counts summed, *_max their greatest)",
        "",
        _cells(columns, widths),
        *(_cells(t, widths) for t in table),
    ]
    return "\n".join(lines) + "\n"


def check_names(names: Sequence[str]) -> None:
    """Raise ValueError naming any name that is not a summary's field."""
    unknown = [n for n in names if n not in TREND_FIELDS]
    if unknown:
        raise ValueError(
            f"{', '.join(unknown)}: not kept in the trend; it keeps {', '.join(TREND_FIELDS)}"
        )
