"""The event store: assets, models, alerts with their labels, counters and the hourly
trend, in SQLite.

The database file is shared: the MQTT outbox (:mod:`edge_agent.publish.outbox`) keeps its
tables (``outbox``, ``outbox_counters``) in the same file through its own connection. This
module therefore touches only its own tables (``store_meta``, ``assets``, ``models``,
``alerts``, ``counters``, ``trend``), waits for the other writer (``busy_timeout``)
instead of failing, and takes the write lock at the start of each transaction (``BEGIN
IMMEDIATE``) so that two writers never deadlock on a lock upgrade.

The ``trend`` table keeps the summaries hour by hour (sum, count, least and greatest of
each value), so that a year of them takes some 36 MB and ``edge-agent trend`` can show a
fault's lines growing over weeks. It came without a new :data:`STORE_VERSION`: opening
an older file makes it (``CREATE TABLE IF NOT EXISTS``), and an older edge-agent leaves
it alone. So did the ``alerts`` column ``cleared_reason`` (why an alert was cleared):
opening an older file adds it (null for the alerts cleared before), and an older
edge-agent, which names its columns, never reads it.

Times are UNIX seconds. Thread-safety: one connection guarded by a lock; the daemon calls
the store from the processing thread (alerts, counters, trend) and the MQTT thread
(labels); ``edge-agent alerts``, ``trend`` and ``label`` open it from another process.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from edge_agent.errors import (
    AccessDeniedError,
    EdgeAgentError,
    InputDataError,
    StorageError,
    sqlite_error,
)
from edge_agent.publish.schema import finite_json

__all__ = ["LABELS", "STORE_VERSION", "EventStore", "cleared_why", "merge_stats", "model_id"]

log = logging.getLogger(__name__)

# Version of this module's tables, kept in store_meta; a later release migrates from it.
STORE_VERSION = 1
LABELS = ("true_positive", "false_positive")
BUSY_TIMEOUT_MS = 10_000
_DAY_S = 86400.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS assets (
    site       TEXT NOT NULL,
    asset      TEXT NOT NULL,
    nameplate  TEXT NOT NULL,          -- JSON: MotorConfig.model_dump(mode="json")
    first_seen REAL NOT NULL,
    updated_ts REAL NOT NULL,
    PRIMARY KEY (site, asset)
);
CREATE TABLE IF NOT EXISTS models (
    model_id      TEXT PRIMARY KEY,    -- model_id(card)
    path          TEXT NOT NULL,       -- where it was last loaded from
    card          TEXT NOT NULL,       -- JSON: model.json
    registered_ts REAL NOT NULL,
    last_seen_ts  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id     TEXT PRIMARY KEY,
    site         TEXT NOT NULL,
    asset        TEXT NOT NULL,
    fault        TEXT NOT NULL,
    severity     TEXT NOT NULL,
    raised_ts    REAL NOT NULL,
    cleared_ts   REAL,                 -- NULL while the alert is open
    cleared_reason TEXT,               -- cleared_why(evidence), NULL before it was kept
    score        REAL,
    evidence     TEXT NOT NULL,        -- JSON
    model_id     TEXT,
    label        TEXT,                 -- true_positive | false_positive | NULL
    labelled_by  TEXT,
    label_note   TEXT,
    labelled_ts  REAL
);
CREATE INDEX IF NOT EXISTS alerts_raised ON alerts (raised_ts);
CREATE INDEX IF NOT EXISTS alerts_cleared ON alerts (cleared_ts) WHERE cleared_ts IS NOT NULL;
CREATE TABLE IF NOT EXISTS counters (
    id       INTEGER PRIMARY KEY,
    site     TEXT NOT NULL,
    asset    TEXT NOT NULL,
    ts       REAL NOT NULL,
    counters TEXT NOT NULL             -- JSON object: name -> number
);
CREATE INDEX IF NOT EXISTS counters_ts ON counters (ts);
CREATE TABLE IF NOT EXISTS trend (
    site      TEXT NOT NULL,
    asset     TEXT NOT NULL,
    hour      REAL NOT NULL,           -- start of the hour, UNIX s (a multiple of 3600)
    summaries INTEGER NOT NULL,        -- summaries added into the row
    stats     TEXT NOT NULL,           -- JSON: name -> [sum, n, min, max] of their values
    PRIMARY KEY (site, asset, hour)
);
"""


def model_id(card: Mapping[str, Any]) -> str:
    """Id of a model: the first 12 hex digits of the SHA-256 of its card as canonical JSON.

    The card holds the ONNX file's own hash, so a retrained model gets a new id and the
    same bundle loaded from another folder keeps its id. This is also the ``model`` of
    the /alert payload.
    """
    canonical = json.dumps(
        card, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


class EventStore:
    """The SQLite event store at ``path`` (folder created with mode 0o750 when missing).

    Raises :class:`~edge_agent.errors.InputDataError` naming the file when it is not an
    SQLite database or was written by a newer edge-agent, and
    :class:`~edge_agent.errors.AccessDeniedError` when it cannot be created or opened.
    Later write failures raise EdgeAgentError: a full or failing disk StorageError.

    Lifecycle: open once at start-up, share between threads, :meth:`close` last (after
    the threads that use it have stopped). Also a context manager.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            # Every folder made gets 0o750 (mkdir's parents=True would give the others 0o777).
            missing = [p for p in (self.path.parent, *self.path.parent.parents) if not p.exists()]
            for folder in reversed(missing):
                folder.mkdir(mode=0o750, exist_ok=True)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise StorageError(
                    f"{self.path.parent}: disk full while creating the store's folder; free "
                    "space on its disk"
                ) from None
            raise AccessDeniedError(
                f"{self.path.parent}: cannot create the store's folder: {exc.strerror}"
            ) from None
        try:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE), and VACUUM
            # can run outside one.
            self._conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise AccessDeniedError(f"{self.path}: cannot open the event store: {exc}") from None
        try:
            self._setup()
        except sqlite3.Error as exc:
            self._conn.close()
            if "permission" in str(exc):
                raise AccessDeniedError(
                    f"{self.path}: cannot open the event store: {exc}"
                ) from None
            raise sqlite_error(
                self.path, "the event store", exc, "opening it", BUSY_TIMEOUT_MS / 1000
            ) from None
        except EdgeAgentError:
            self._conn.close()
            raise

    def _setup(self) -> None:
        c = self._conn
        c.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if c.execute("PRAGMA page_count").fetchone()[0] == 0:
            # A new file: free pages can then be returned to the file system without a
            # full VACUUM. Has no effect once any table exists (e.g. the outbox's).
            c.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("%s: journal mode is %s, not WAL", self.path, mode)
        # An alert must survive a power cut once written; writes are a few per minute.
        c.execute("PRAGMA synchronous = FULL")
        with self._tx() as c:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)
            columns = {row[1] for row in c.execute("PRAGMA table_info(alerts)")}
            if "cleared_reason" not in columns:  # a file made before the column was
                c.execute("ALTER TABLE alerts ADD COLUMN cleared_reason TEXT")
            row = c.execute("SELECT value FROM store_meta WHERE key = 'version'").fetchone()
            if row is None:
                c.execute(
                    "INSERT INTO store_meta (key, value) VALUES ('version', ?), ('created', ?)",
                    (str(STORE_VERSION), repr(time.time())),
                )
            elif int(row[0]) > STORE_VERSION:
                raise InputDataError(
                    f"{self.path}: the event store has version {row[0]}, written by a newer "
                    f"edge-agent; this one reads version {STORE_VERSION} or older"
                )

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction under the lock, committed on success. An SQLite failure
        becomes an EdgeAgentError naming the file (a full disk: StorageError)."""
        with self._lock:
            c = self._conn
            try:
                c.execute("BEGIN IMMEDIATE")
                try:
                    yield c
                    c.execute("COMMIT")
                except BaseException:
                    if c.in_transaction:
                        c.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise sqlite_error(
                    self.path, "the event store", exc, "writing it", BUSY_TIMEOUT_MS / 1000
                ) from None

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def version(self) -> int:
        """Version of the tables in the file (``store_meta``)."""
        with self._read() as c:
            return int(
                c.execute("SELECT value FROM store_meta WHERE key = 'version'").fetchone()[0]
            )

    # ----------------------------------------------------------------------------------
    # Assets and models

    def register_asset(self, site: str, asset: str, nameplate: Mapping[str, Any]) -> None:
        """Insert or update an asset's nameplate (``MotorConfig.model_dump(mode="json")``)."""
        now = time.time()
        with self._tx() as c:
            c.execute(
                "INSERT INTO assets (site, asset, nameplate, first_seen, updated_ts) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (site, asset) DO UPDATE SET "
                "nameplate = excluded.nameplate, updated_ts = excluded.updated_ts",
                (site, asset, _json(nameplate), now, now),
            )

    def assets(self) -> list[dict[str, Any]]:
        with self._read() as c:
            rows = c.execute(
                "SELECT site, asset, nameplate, first_seen, updated_ts FROM assets "
                "ORDER BY site, asset"
            ).fetchall()
        return [
            {"site": s, "asset": a, "nameplate": json.loads(n), "first_seen": f, "updated_ts": u}
            for s, a, n, f, u in rows
        ]

    def motors(self) -> list[tuple[str, str]]:
        """Every (site, asset) the store holds anything of, sorted: those registered (a
        daemon registers its own as it opens the store), and those of alerts and trend
        rows kept."""
        with self._read() as c:
            return c.execute(
                "SELECT site, asset FROM assets UNION SELECT site, asset FROM alerts "
                "UNION SELECT site, asset FROM trend ORDER BY site, asset"
            ).fetchall()

    def register_model(self, card: Mapping[str, Any], path: str | os.PathLike[str]) -> str:
        """Record a model card (idempotent); returns its :func:`model_id`."""
        mid = model_id(card)
        now = time.time()
        with self._tx() as c:
            c.execute(
                "INSERT INTO models (model_id, path, card, registered_ts, last_seen_ts) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (model_id) DO UPDATE SET "
                "path = excluded.path, last_seen_ts = excluded.last_seen_ts",
                (mid, str(path), _json(card), now, now),
            )
        return mid

    def model(self, model_id: str) -> dict[str, Any] | None:
        with self._read() as c:
            row = c.execute(
                "SELECT model_id, path, card, registered_ts, last_seen_ts FROM models "
                "WHERE model_id = ?",
                (model_id,),
            ).fetchone()
        if row is None:
            return None
        mid, path, card, reg, seen = row
        return {
            "model_id": mid,
            "path": path,
            "card": json.loads(card),
            "registered_ts": reg,
            "last_seen_ts": seen,
        }

    # ----------------------------------------------------------------------------------
    # Alerts and labels

    def record_alert(
        self,
        record: Mapping[str, Any],
        *,
        site: str,
        asset: str,
        t0: float,
        model_id: str | None,
    ) -> None:
        """Store an alert record (pipeline); its time is ``t0 + record["t"]``.

        A raised record inserts the alert (again: ignored); a cleared one sets its
        ``cleared_ts``. A cleared record of an alert the store never saw is logged and
        ignored.
        """
        ts = t0 + float(record["t"])
        alert_id = str(record["id"])
        with self._tx() as c:
            if record["state"] == "raised":
                c.execute(
                    "INSERT OR IGNORE INTO alerts (alert_id, site, asset, fault, severity, "
                    "raised_ts, score, evidence, model_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        alert_id,
                        site,
                        asset,
                        record["fault"],
                        record["severity"],
                        ts,
                        _finite(record.get("score")),
                        _json(record.get("evidence") or {}),
                        model_id,
                    ),
                )
                return
            if record["state"] != "cleared":
                raise ValueError(
                    f"alert record state={record['state']!r}; expected raised or cleared"
                )
            n = c.execute(
                "UPDATE alerts SET cleared_ts = ?, cleared_reason = ? "
                "WHERE alert_id = ? AND cleared_ts IS NULL",
                (ts, cleared_why(record.get("evidence") or {}), alert_id),
            ).rowcount
        if n == 0 and self.alert(alert_id) is None:
            log.warning("%s: cleared alert %s was never raised here; ignored", self.path, alert_id)

    def label(
        self, alert_id: str, label: str, *, by: str | None = None, note: str | None = None
    ) -> bool:
        """Label an alert ``true_positive`` or ``false_positive``; False if there is no such
        alert. A new label replaces the previous one."""
        if label not in LABELS:
            raise ValueError(f"{label=} must be one of {', '.join(LABELS)}")
        with self._tx() as c:
            n = c.execute(
                "UPDATE alerts SET label = ?, labelled_by = ?, label_note = ?, labelled_ts = ? "
                "WHERE alert_id = ?",
                (label, by, note, time.time(), alert_id),
            ).rowcount
        return n > 0

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        """One alert by id, or None."""
        with self._read() as c:
            row = c.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE alert_id = ?", (alert_id,))
            found = row.fetchone()
        return None if found is None else _alert_dict(found)

    def alerts(
        self,
        *,
        site: str | None = None,
        asset: str | None = None,
        since: float | None = None,
        open_only: bool = False,
        fault: str | None = None,
        id_prefix: str | None = None,
        limit: int | None = 100,
    ) -> list[dict[str, Any]]:
        """Alerts raised at or after ``since`` (UNIX s), newest first, at most ``limit``.

        ``open_only`` keeps those not cleared, ``fault`` those of one fault, ``id_prefix``
        those whose id starts so (a person types the first few characters). Each is a dict
        of the columns, with ``evidence`` parsed.
        """
        where, args = _filters(site=site, asset=asset)
        if since is not None:
            where.append("raised_ts >= ?")
            args.append(since)
        if open_only:
            where.append("cleared_ts IS NULL")
        if fault is not None:
            where.append("fault = ?")
            args.append(fault)
        if id_prefix is not None:
            # substr, not LIKE: an id holds no wildcards, but a prefix typed may.
            where.append("substr(alert_id, 1, ?) = ?")
            args += [len(id_prefix), id_prefix]
        sql = f"SELECT {_ALERT_COLUMNS} FROM alerts"
        rows = self._select(sql, where, args, "raised_ts DESC, alert_id", limit)
        return [_alert_dict(r) for r in rows]

    # ----------------------------------------------------------------------------------
    # Counters

    def add_counters(self, site: str, asset: str, ts: float, counters: Mapping[str, float]) -> None:
        """Store a set of counters at time ``ts``, e.g. each summary's ``lost_samples``,
        ``windows``, and the outbox's drops. A value that is not finite is stored as null."""
        values = {}
        for name, v in counters.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                try:
                    v = float(v)  # numpy scalars
                except (TypeError, ValueError):
                    raise ValueError(f"counter {name!r}={v!r} is not a number") from None
            values[str(name)] = v if isinstance(v, int) else _finite(v)
        with self._tx() as c:
            c.execute(
                "INSERT INTO counters (site, asset, ts, counters) VALUES (?, ?, ?, ?)",
                (site, asset, float(ts), _json(values)),
            )

    def _select(
        self, sql: str, where: list[str], args: list[Any], order: str, limit: int | None
    ) -> list[tuple]:
        """Rows of ``sql`` with the ``where`` conditions (all of them), in ``order``."""
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            args = [*args, int(limit)]
        with self._read() as c:
            return c.execute(sql, args).fetchall()

    def counters(
        self,
        *,
        site: str | None = None,
        asset: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Counter sets with ``since <= ts < until``, oldest first: each
        ``{"site", "asset", "ts", "counters": {name: value}}``. With ``limit``, the newest
        ``limit`` of them (still oldest first)."""
        where, args = _filters(site=site, asset=asset)
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if until is not None:
            where.append("ts < ?")
            args.append(until)
        sql = "SELECT id, site, asset, ts, counters FROM counters"
        rows = self._select(sql, where, args, "ts DESC, id DESC", limit)
        return [
            {"site": s, "asset": a, "ts": t, "counters": json.loads(v)}
            for _, s, a, t, v in reversed(rows)
        ]

    # ----------------------------------------------------------------------------------
    # Trend: the summaries hour by hour

    def add_trend(
        self, site: str, asset: str, ts: float, values: Mapping[str, float | None]
    ) -> None:
        """Add one summary's ``values`` (None and non-finite ones are skipped) to the row
        of the hour holding ``ts`` (its period's start)."""
        hour = math.floor(float(ts) / 3600.0) * 3600.0
        with self._tx() as c:
            row = c.execute(
                "SELECT summaries, stats FROM trend WHERE site = ? AND asset = ? AND hour = ?",
                (site, asset, hour),
            ).fetchone()
            count, stats = (0, {}) if row is None else (row[0], json.loads(row[1]))
            for name, v in values.items():
                v = _finite(v)
                if v is not None:
                    stats[name] = merge_stats(stats.get(name), [v, 1, v, v])
            c.execute(
                "INSERT OR REPLACE INTO trend (site, asset, hour, summaries, stats) "
                "VALUES (?, ?, ?, ?, ?)",
                (site, asset, hour, count + 1, _json(stats)),
            )

    def trend(
        self,
        *,
        site: str | None = None,
        asset: str | None = None,
        since: float | None = None,
    ) -> list[dict[str, Any]]:
        """The hourly rows from the hour holding ``since`` on, oldest first: each
        ``{"site", "asset", "hour", "summaries", "stats": {name: [sum, n, min, max]}}``."""
        where, args = _filters(site=site, asset=asset)
        if since is not None:
            where.append("hour > ?")
            args.append(float(since) - 3600.0)
        sql = "SELECT site, asset, hour, summaries, stats FROM trend"
        rows = self._select(sql, where, args, "hour, site, asset", None)
        return [
            {"site": s, "asset": a, "hour": h, "summaries": n, "stats": json.loads(v)}
            for s, a, h, n, v in rows
        ]

    # ----------------------------------------------------------------------------------
    # Retention

    def prune(
        self, *, retention_days: float, max_mb: float, now: float | None = None
    ) -> dict[str, Any]:
        """Apply the retention policy (``store.retention_days``, ``store.max_mb``).

        1. By age: delete counter sets with ``ts`` older than ``retention_days`` before
           ``now``, hours of trend that ended before then, and *closed* alerts cleared
           before then (with their labels).
        2. By size: while the database holds more than ``max_mb`` MiB of live pages,
           delete the oldest counter sets; when none are left, the oldest hours of
           trend; then the closed alerts cleared longest ago. Open alerts are never
           deleted, nor are other modules' tables (the outbox, which counts towards the
           size but is bounded by its own caps): the store may stay above ``max_mb`` when
           only those remain.
        3. Return the freed pages to the file system: ``PRAGMA incremental_vacuum`` when
           the file was created with incremental auto-vacuum (this module does so for a
           new file), else one ``VACUUM`` that also switches the file to incremental
           auto-vacuum for next time. Then the WAL is checkpointed and truncated.

        Returns the counts deleted (``alerts_by_age``, ``counters_by_age``,
        ``trend_by_age``, ``alerts_by_size``, ``counters_by_size``, ``trend_by_size``), the
        ``vacuum`` done (``"incremental"``, ``"full"`` or None) and the resulting
        ``size_mb`` (main file plus WAL).

        Run it from one thread at a time, e.g. hourly from the processing thread; a full
        VACUUM rewrites the file and holds the write lock while it does.
        """
        if not retention_days > 0:
            raise ValueError(f"{retention_days=} must be positive")
        if not max_mb > 0:
            raise ValueError(f"{max_mb=} must be positive")
        now = time.time() if now is None else float(now)
        cutoff = now - retention_days * _DAY_S
        result: dict[str, Any] = {
            "alerts_by_age": 0,
            "counters_by_age": 0,
            "trend_by_age": 0,
            "alerts_by_size": 0,
            "counters_by_size": 0,
            "trend_by_size": 0,
            "vacuum": None,
            "size_mb": 0.0,
        }
        with self._tx() as c:
            result["counters_by_age"] = c.execute(
                "DELETE FROM counters WHERE ts < ?", (cutoff,)
            ).rowcount
            result["trend_by_age"] = c.execute(
                "DELETE FROM trend WHERE hour + 3600 <= ?", (cutoff,)
            ).rowcount
            result["alerts_by_age"] = c.execute(
                "DELETE FROM alerts WHERE cleared_ts IS NOT NULL AND cleared_ts < ?", (cutoff,)
            ).rowcount

        max_bytes = max_mb * 1024 * 1024
        trims = (
            (
                "counters_by_size",
                "DELETE FROM counters WHERE id IN "
                "(SELECT id FROM counters ORDER BY ts, id LIMIT ?)",
            ),
            (
                "trend_by_size",
                "DELETE FROM trend WHERE rowid IN (SELECT rowid FROM trend ORDER BY hour LIMIT ?)",
            ),
            (
                "alerts_by_size",
                "DELETE FROM alerts WHERE alert_id IN (SELECT alert_id FROM "
                "alerts WHERE cleared_ts IS NOT NULL ORDER BY cleared_ts, alert_id LIMIT ?)",
            ),
        )
        live = self._live_bytes()
        for key, sql in trims:
            batch = 64
            while live > max_bytes:
                # Each batch is its own transaction: the outbox's writer waits for one only.
                with self._tx() as c:
                    n = c.execute(sql, (batch,)).rowcount
                if n == 0:
                    break
                result[key] += n
                before, live = live, self._live_bytes()
                # Size the next batch to about half the rows still to go, by the bytes a
                # row freed so far, so that little more than needed is deleted: pages (of
                # the indexes especially) free up unevenly. Grow it while nothing is freed.
                if before > live:
                    batch = math.ceil(0.5 * (live - max_bytes) / ((before - live) / n))
                else:
                    batch *= 2
                batch = min(max(batch, 16), 65536)
        if live > max_bytes:
            log.warning(
                "%s: %.1f MiB of live data is above store.max_mb=%g with only open alerts "
                "and other modules' tables left",
                self.path,
                live / 1048576,
                max_mb,
            )

        result["vacuum"] = self._vacuum(max_bytes)
        result["size_mb"] = self._file_bytes() / 1048576
        return result

    def _live_bytes(self) -> int:
        with self._read() as c:
            pages = c.execute("PRAGMA page_count").fetchone()[0]
            free = c.execute("PRAGMA freelist_count").fetchone()[0]
            size = c.execute("PRAGMA page_size").fetchone()[0]
        return (pages - free) * size

    def _file_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.path.getsize(f"{self.path}{suffix}")
        return total

    def _vacuum(self, max_bytes: float) -> str | None:
        with self._lock:
            c = self._conn
            free = c.execute("PRAGMA freelist_count").fetchone()[0]
            pages = c.execute("PRAGMA page_count").fetchone()[0]
            size = c.execute("PRAGMA page_size").fetchone()[0]
            done = None
            if free:
                if c.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
                    # execute() would step the pragma once, which frees a single page;
                    # executescript() steps it to the end.
                    c.executescript("PRAGMA incremental_vacuum")
                    done = "incremental"
                elif pages * size > max_bytes:
                    # Converts the file to incremental auto-vacuum while rewriting it.
                    c.execute("PRAGMA auto_vacuum = INCREMENTAL")
                    c.execute("VACUUM")
                    done = "full"
            if done:
                # The WAL holds the moved pages; copy them back and give the space back.
                c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return done


def merge_stats(a: list[float] | None, b: list[float]) -> list[float]:
    """Two [sum, n, min, max] of a trend's values taken together (``a`` None: none yet)."""
    if a is None:
        return list(b)
    return [a[0] + b[0], a[1] + b[1], min(a[2], b[2]), max(a[3], b[3])]


_ALERT_COLUMNS = (
    "alert_id, site, asset, fault, severity, raised_ts, cleared_ts, cleared_reason, score, "
    "evidence, model_id, label, labelled_by, label_note, labelled_ts"
)

NORMAL_AGAIN = "the windows read normal again"


def cleared_why(evidence: Mapping[str, Any]) -> str:
    """Why an alert was cleared, from its cleared record's ``evidence``, in words: read
    normal again (the usual end), escalated (``superseded_by``), or its ``reason``."""
    if "superseded_by" in evidence:
        return f"now {evidence['severity_now']}, as alert {evidence['superseded_by']}"
    return str(evidence.get("reason", NORMAL_AGAIN))


def _alert_dict(row: tuple) -> dict[str, Any]:
    names = [n.strip() for n in _ALERT_COLUMNS.split(",")]
    out = dict(zip(names, row, strict=True))
    out["evidence"] = json.loads(out["evidence"])
    return out


def _filters(*, site: str | None, asset: str | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if site is not None:
        where.append("site = ?")
        args.append(site)
    if asset is not None:
        where.append("asset = ?")
        args.append(asset)
    return where, args


def _finite(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _json(value: Any) -> str:
    """Compact JSON with NaN and infinities as null (they are not JSON)."""
    clean = finite_json(value)
    return json.dumps(clean, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
