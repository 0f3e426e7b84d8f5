"""Periodic summaries of the pipeline's records: one per ``output.summary_interval_s`` of signal.

Periods are fixed slots of *signal* time aligned to multiples of ``interval_s``:
``(k·interval_s, (k+1)·interval_s]``, so live summaries (UNIX times) fall on whole minutes
with the default 60 s and a replay's (seconds from the start) on 0, 60, 120 ... A window
belongs to the period its ``t_end`` falls in, an alert to the period its ``t`` falls in:
the window that ends at 60 s is the last of the first minute, and a 40 s replay in 5 s
periods gives eight summaries.
A period is returned once a window or alert of a later period arrives, or by
:meth:`Summarizer.flush` at the end of the stream. Periods with no window or alert (the
source was away) give no summary.

Each value is computed from the whole period at once (exact sums, sorted percentiles), so
the summaries do not depend on how the records were split between :meth:`update` calls.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "COUNT_FIELDS", "MAX_FIELDS", "MEAN_FEATURES", "TREND_FIELDS", "Summarizer", "flagged",
]  # fmt: skip

# Features averaged over a period; each gives the summary field of the same name. The
# first six from the start; then what the diagnosis judges, so that the plant's historian
# (and `edge-agent trend`) can follow a fault growing over weeks: the currents' sequence
# and distortion, the Park's vector 2f line, the broken-bar, eccentricity and bearing
# lines (from the long window: between its analyses, windows repeat its last values), and
# the supply's voltage and unbalance when voltages are wired.
MEAN_FEATURES = (
    "rms_a", "rms_b", "rms_c", "i2_i1", "supply_hz", "slip",
    "i1", "i2", "thd_a", "thd_b", "thd_c", "epva_2f_db",
    "brb_lsb_db", "brb_usb_db", "ecc_lsb_db", "ecc_usb_db",
    "bearing_outer_db", "bearing_inner_db", "bearing_ball_db", "bearing_cage_db",
    "v1", "v2_v1",
)  # fmt: skip
# The numbers of a summary: counts of its period (summed over longer spans), greatest
# values (their greatest), and the rest, means and percentiles (averaged over them). The
# event store keeps them all hour by hour, for `edge-agent trend`.
COUNT_FIELDS = (
    "windows", "flagged_windows", "wiring_windows", "stopped_windows", "starting_windows",
    "outside_baseline_windows", "unsteady_windows", "ramping_windows", "anomalous_windows",
    "alerts_raised", "alerts_cleared", "lost_samples",
)  # fmt: skip
MAX_FIELDS = ("i2_i1_max", "score_max")
TREND_FIELDS = (*COUNT_FIELDS, *MEAN_FEATURES, "i2_i1_max", "score_p50", "score_p95", "score_max")


@dataclass
class _Period:
    k: int  # index of the slot: the period starts at k * interval_s
    windows: int = 0
    flagged: int = 0
    wiring: int = 0
    stopped: int = 0
    starting: int = 0
    outside: int = 0
    unsteady: int = 0
    ramping: int = 0
    anomalous: int = 0
    raised: int = 0
    cleared: int = 0
    lost: int = 0
    last_t: float = -math.inf
    values: dict[str, array] = field(
        default_factory=lambda: {name: array("d") for name in (*MEAN_FEATURES, "score")}
    )


class Summarizer:
    """Aggregates window and alert records into ``{"type": "summary", ...}`` records.

    Lifecycle: :meth:`update` with each batch of records the pipeline returns, in order;
    :meth:`flush` once at the end (replay, shutdown) for the last, partial period.

    Example, with the default 60 s: windows ending at 0.5 ... 59.5 s make the summary
    ``{"t_start": 0.0, "t_end": 60.0, "windows": 119, ...}``, returned by the update that
    brings the window ending at 60.0 s.
    """

    def __init__(self, interval_s: float) -> None:
        interval_s = float(interval_s)
        if not (math.isfinite(interval_s) and interval_s > 0):
            raise ValueError(f"{interval_s=} must be a positive number of seconds")
        self.interval_s = interval_s
        self._period: _Period | None = None
        self._pending_lost = 0
        # Raised and not yet cleared: fault name by alert id. Spans periods.
        self._active: dict[str, str] = {}

    def resume(self, alert_id: str, fault: str) -> None:
        """Count an alert raised before this summarizer (left open by the last run, and
        carried on) as active until its cleared record comes."""
        self._active[alert_id] = fault

    def update(self, records: Iterable[Mapping[str, Any]], lost_samples: int = 0) -> list[dict]:
        """Take the pipeline's records; return the summaries of the periods they complete.

        ``lost_samples`` (samples the source lost since the last call) is counted in the
        period of the first window or alert of ``records``, or of the next one to come
        when there is none: the loss happened before them. Records of other types are
        ignored.
        """
        if lost_samples < 0:
            raise ValueError(f"{lost_samples=} must not be negative")
        self._pending_lost += int(lost_samples)
        out: list[dict] = []
        for rec in records:
            kind = rec.get("type")
            if kind == "window":
                period = self._route(float(rec["t_end"]), out)
                _add_window(period, rec)
            elif kind == "alert":
                period = self._route(float(rec["t"]), out)
                if rec["state"] == "raised":
                    period.raised += 1
                    self._active[rec["id"]] = rec["fault"]
                else:
                    period.cleared += 1
                    self._active.pop(rec["id"], None)
        return out

    def flush(self) -> list[dict]:
        """The summary of the current, partial period (a list of 0 or 1 records).

        Its ``t_end`` is the last record's time rather than the period's end. Call it at
        the end of the stream: records after it start a new summary for the same period.
        """
        period = self._period
        if period is None:
            return []
        period.lost += self._pending_lost
        self._pending_lost = 0
        self._period = None
        return [self._summary(period, partial=True)]

    def _slot(self, t: float) -> int:
        k = math.ceil(t / self.interval_s) - 1
        # Division rounds: make sure k·I < t <= (k+1)·I holds in floating point too.
        if k * self.interval_s >= t:
            k -= 1
        elif (k + 1) * self.interval_s < t:
            k += 1
        return k

    def _route(self, t: float, out: list[dict]) -> _Period:
        """The period a record at time ``t`` counts in; closes the current one if past it."""
        if not math.isfinite(t):
            raise ValueError(f"record time {t} is not finite")
        period = self._period
        k = self._slot(t)
        # Past the current period; or more than one before it: the clock was set back (a
        # window's records are never that late), and the current period would take in
        # every record until the clock came back to it.
        if period is not None and (k > period.k or k < period.k - 1):
            out.append(self._summary(period, partial=k < period.k))
            period = None
        if period is None:
            period = self._period = _Period(k)
        # A record of the period before the current one (out of order) counts in the
        # current one: the older summary is already out.
        if self._pending_lost:
            period.lost += self._pending_lost
            self._pending_lost = 0
        period.last_t = max(period.last_t, t)
        return period

    def _summary(self, p: _Period, *, partial: bool) -> dict[str, Any]:
        t_start = p.k * self.interval_s
        t_end = (p.k + 1) * self.interval_s
        if partial:
            t_end = min(t_end, p.last_t)
        rec: dict[str, Any] = {
            "type": "summary",
            "t_start": t_start,
            "t_end": t_end,
            "windows": p.windows,
            "flagged_windows": p.flagged,
            "wiring_windows": p.wiring,
            "stopped_windows": p.stopped,
            "starting_windows": p.starting,
            "outside_baseline_windows": p.outside,
            "unsteady_windows": p.unsteady,
            "ramping_windows": p.ramping,
            "anomalous_windows": p.anomalous,
            "alerts_raised": p.raised,
            "alerts_cleared": p.cleared,
            "active_alerts": sorted(set(self._active.values())),
            "lost_samples": p.lost,
        }
        for name in MEAN_FEATURES:
            v = p.values[name]
            rec[name] = _mean(v)
        i2 = p.values["i2_i1"]
        rec["i2_i1_max"] = max(i2) if i2 else None
        scores = p.values["score"]
        if scores:
            s = np.frombuffer(scores, dtype=np.float64)
            p50, p95 = np.percentile(s, [50.0, 95.0], method="linear")
            rec["score_p50"], rec["score_p95"] = float(p50), float(p95)
            rec["score_max"] = float(s.max())
        else:
            rec["score_p50"] = rec["score_p95"] = rec["score_max"] = None
        for key in (*MEAN_FEATURES, "i2_i1_max", "score_p50", "score_p95", "score_max"):
            v = rec[key]
            if v is not None and not math.isfinite(v):  # an overflowing mean of huge values
                rec[key] = None
        return rec


def _add_window(p: _Period, rec: Mapping[str, Any]) -> None:
    p.windows += 1
    flags = rec.get("flags") or ()
    p.flagged += flagged(flags)
    p.wiring += "wiring" in flags
    p.stopped += "stopped" in flags
    starting = "starting" in flags
    outside = "outside_baseline" in flags
    p.starting += starting
    p.outside += outside
    p.unsteady += "unsteady" in flags
    ramping = "ramping" in flags
    p.ramping += ramping
    p.anomalous += bool(rec.get("anomalous"))
    features = rec.get("features") or {}
    for name in MEAN_FEATURES:
        _append_finite(p.values[name], features.get(name))
    if not (starting or outside or ramping):  # the scores the model judges the motor by
        _append_finite(p.values["score"], rec.get("score"))


# Flags of the motor's state, not of the data: a motor at standstill, starting, running as
# its model never saw it, with its load or speed changing, or its drive ramping.
_STATE_FLAGS = frozenset({"stopped", "starting", "outside_baseline", "unsteady", "ramping"})


def flagged(flags: Sequence[str]) -> bool:
    """Whether a window counts in ``flagged_windows``: any flag but ``stopped``,
    ``starting``, ``outside_baseline``, ``unsteady`` and ``ramping`` (the motor's state is
    no problem of the data)."""
    return any(f not in _STATE_FLAGS for f in flags)


def _mean(values: array) -> float | None:
    if not values:
        return None
    try:
        return math.fsum(values) / len(values)
    except OverflowError:  # exact sums of values near 1e308
        return None


def _append_finite(values: array, v: Any) -> None:
    if v is None:
        return
    v = float(v)
    if math.isfinite(v):
        values.append(v)
