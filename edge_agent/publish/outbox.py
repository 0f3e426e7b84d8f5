"""The outbox: every alert, summary and event, on disk before it is published.

The processing thread :meth:`Outbox.put` s a record; the publisher thread reads
:meth:`Outbox.pending` in ``seq`` order, publishes, and :meth:`Outbox.ack` s (deletes) a
record only after the broker's PUBACK. A broker outage, a crash or a reboot therefore
loses nothing that ``put`` returned for (within the durability below); the price is that a
record may be published twice (the PUBACK was lost), which subscribers de-duplicate by the
payload's ``id``.

Storage: SQLite in WAL mode, tables ``outbox`` and ``outbox_counters``. The file is shared:
the event store keeps its own tables in the same database with its own connection, so
nothing here assumes it owns the file (no VACUUM, no changes to other tables).

Durability:

- an **alert** is on disk when ``put`` returns: its commit runs with ``synchronous=FULL``,
  which fsyncs the write-ahead log (and everything written before it);
- **summaries and events** commit with ``synchronous=NORMAL``: they survive a crash or a
  ``kill -9`` of the process (the data is in the OS's cache), but the last ones before a
  power loss may be lost. Acks are NORMAL too: a lost ack only means a duplicate.

Size bound: the outbox only grows while the broker is away, and it is bounded then:

- summaries and events are each kept to ``max_summaries`` records; beyond that the oldest
  of that kind are dropped (counted in ``dropped_summaries`` / ``dropped_events``, logged);
- alerts are never dropped: beyond ``max_alerts`` queued alerts a new alert is **refused**
  (``put`` returns None, ``refused_alerts`` counts it, logged at ERROR).

The counters (``queued``, ``acked``, the drops and refusals) live in ``outbox_counters`` and
survive restarts, as does the queue itself.

Threads: any thread may call any method; each thread gets its own SQLite connection (so a
reader never waits for a writer's fsync), and writers take SQLite's write lock with
``BEGIN IMMEDIATE`` and a busy timeout. Lifecycle: :meth:`close` is called after the
threads that use the outbox have stopped.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.errors import (
    AccessDeniedError,
    EdgeAgentError,
    InputDataError,
    InputMissingError,
    sqlite_error,
)

log = logging.getLogger(__name__)

KINDS = ("alert", "summary", "event")
_COUNTERS = ("dropped_summaries", "dropped_events", "refused_alerts", "queued", "acked")
_DROP_COUNTER = {"summary": "dropped_summaries", "event": "dropped_events"}
_COLUMNS = {"seq", "kind", "topic", "payload", "queued"}
_LOG_EVERY = 1000  # a long streak of drops or refusals is logged again every this many

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    queued REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_kind_seq ON outbox (kind, seq);
CREATE TABLE IF NOT EXISTS outbox_counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
-- The queue depth per kind is kept by triggers, so checking a cap costs no COUNT(*).
CREATE TRIGGER IF NOT EXISTS outbox_depth_insert AFTER INSERT ON outbox BEGIN
    INSERT INTO outbox_counters (name, value) VALUES ('depth.' || NEW.kind, 1)
    ON CONFLICT (name) DO UPDATE SET value = value + 1;
END;
CREATE TRIGGER IF NOT EXISTS outbox_depth_delete AFTER DELETE ON outbox BEGIN
    UPDATE outbox_counters SET value = value - 1 WHERE name = 'depth.' || OLD.kind;
END;
"""


@dataclass(frozen=True)
class Message:
    """One queued record."""

    seq: int  # outbox order (INTEGER PRIMARY KEY AUTOINCREMENT: never reused)
    kind: str  # "alert" | "summary" | "event"
    topic: str  # suffix under the asset's root, e.g. "alert", "summary", "event"
    payload: dict  # the JSON object as put (the publisher adds "historical")
    queued: float  # time.time() when put


@dataclass(frozen=True)
class OutboxStats:
    """Cumulative counters, persisted with the queue (they survive restarts)."""

    dropped_summaries: int = 0
    dropped_events: int = 0
    refused_alerts: int = 0
    queued: int = 0  # records accepted by put
    acked: int = 0  # records deleted after their PUBACK


class Outbox:
    """A durable FIFO of records waiting for the broker's PUBACK, in an SQLite file.

    ``path``: the database file (created, with its folder, if missing; may be shared with
    other tables). ``max_summaries``: summaries (and, separately, events) kept while the
    broker is away, oldest dropped beyond. ``max_alerts``: alerts kept, new ones refused
    beyond. ``busy_timeout_s``: how long a write waits for another connection's lock before
    it fails.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_summaries: int = 10000,
        max_alerts: int = 100000,
        busy_timeout_s: float = 10.0,
    ) -> None:
        if max_summaries < 1:
            raise ValueError(f"{max_summaries=} must be at least 1")
        if max_alerts < 1:
            raise ValueError(f"{max_alerts=} must be at least 1")
        self.path = Path(path)
        self.max_summaries = int(max_summaries)
        self.max_alerts = int(max_alerts)
        self.busy_timeout_s = float(busy_timeout_s)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self._closed = False
        self._drops_logged: dict[str, int] = {}
        self._refusals = 0
        self._make_folder()
        self._init_schema()

    def __repr__(self) -> str:
        return f"Outbox({str(self.path)!r})"

    # --- public API ------------------------------------------------------------------

    def put(self, kind: str, topic: str, payload: dict) -> int | None:
        """Queue ``payload`` for ``{root}/{topic}``; the ``seq`` it got, or None if refused.

        An alert is refused (None) when ``max_alerts`` alerts are already queued. Raises
        ``ValueError`` for an unknown kind, a bad topic or a payload that is not a JSON
        object (NaN and infinity are not JSON: send null).
        """
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r}: expected one of {', '.join(KINDS)}")
        if not topic or topic.startswith("/") or any(c in topic for c in "+#\0"):
            raise ValueError(f"topic={topic!r}: expected a topic suffix such as 'alert'")
        if not isinstance(payload, dict):
            raise ValueError(f"payload: expected a dict (a JSON object), got {type(payload)}")
        try:
            text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False)  # fmt: skip
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{kind} payload is not valid JSON: {exc}") from None
        full = kind == "alert"
        dropped = 0
        with self._write("put", full_sync=full) as db:
            if kind == "alert" and self._depth_of(db, "alert") >= self.max_alerts:
                self._bump(db, "refused_alerts")
                seq = None
            else:
                cur = db.execute(
                    "INSERT INTO outbox (kind, topic, payload, queued) VALUES (?, ?, ?, ?)",
                    (kind, topic, text, time.time()),
                )
                seq = int(cur.lastrowid)
                self._bump(db, "queued")
                if kind != "alert":
                    excess = self._depth_of(db, kind) - self.max_summaries
                    if excess > 0:
                        db.execute(
                            "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox "
                            "WHERE kind = ? ORDER BY seq LIMIT ?)",
                            (kind, excess),
                        )
                        self._bump(db, _DROP_COUNTER[kind], excess)
                        dropped = excess
        if seq is None:
            self._refusals += 1
            if self._refusals % _LOG_EVERY == 1:
                log.error(
                    "%s: outbox holds max_alerts=%d alerts (the broker has been away too "
                    "long): alert refused (%d refused since start)",
                    self.path, self.max_alerts, self._refusals,
                )  # fmt: skip
        else:
            self._refusals = 0
        if dropped:
            n = self._drops_logged.get(kind, 0)
            self._drops_logged[kind] = n + dropped
            if n == 0 or (n + dropped) // _LOG_EVERY > n // _LOG_EVERY:
                log.warning(
                    "%s: outbox holds max_summaries=%d records of kind %r: dropping the "
                    "oldest (%d dropped since start)",
                    self.path, self.max_summaries, kind, n + dropped,
                )  # fmt: skip
        return seq

    def pending(self, after: int = 0, limit: int = 100) -> list[Message]:
        """Up to ``limit`` queued records with ``seq > after``, oldest first."""
        rows = self._read(
            "SELECT seq, kind, topic, payload, queued FROM outbox WHERE seq > ? "
            "ORDER BY seq LIMIT ?",
            (int(after), int(limit)),
        )
        return [Message(s, k, t, json.loads(p), q) for s, k, t, p, q in rows]

    def ack(self, seq: int) -> None:
        """Delete record ``seq`` (its PUBACK came). Acking an unknown seq does nothing."""
        self.ack_many((seq,))

    def ack_many(self, seqs: Iterable[int]) -> None:
        """:meth:`ack` for several records in one transaction."""
        seqs = [int(s) for s in seqs]
        if not seqs:
            return
        with self._write("ack") as db:
            done = 0
            for s in seqs:
                done += db.execute("DELETE FROM outbox WHERE seq = ?", (s,)).rowcount
            if done:
                self._bump(db, "acked", done)

    def depth(self) -> dict[str, int]:
        """Records queued now, per kind (every kind present, 0 if none)."""
        rows = self._read("SELECT name, value FROM outbox_counters WHERE name LIKE 'depth.%'")
        out = dict.fromkeys(KINDS, 0)
        for name, value in rows:
            out[name[len("depth.") :]] = int(value)
        return out

    def last_seq(self) -> int:
        """The highest ``seq`` ever given (0 if none): a later put gets a larger one."""
        rows = self._read("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")
        return int(rows[0][0]) if rows else 0

    @property
    def stats(self) -> OutboxStats:
        rows = self._read("SELECT name, value FROM outbox_counters WHERE name NOT LIKE 'depth.%'")
        values = {n: int(v) for n, v in rows if n in _COUNTERS}
        return OutboxStats(**values)

    def close(self) -> None:
        """Close every thread's connection. The outbox cannot be used afterwards."""
        with self._lock:
            self._closed = True
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:  # closing never loses data: every commit is complete
                pass

    # --- internals -------------------------------------------------------------------

    def _make_folder(self) -> None:
        folder = self.path.parent
        if folder.is_dir():
            return
        if folder.exists():
            raise InputMissingError(
                f"{folder}: not a folder; expected the folder of the outbox database "
                f"{self.path.name}"
            )
        try:
            folder.mkdir(mode=0o750, parents=True, exist_ok=True)
        except PermissionError as exc:
            raise AccessDeniedError(
                f"{folder}: cannot create the folder of the outbox database {self.path.name}: "
                f"{exc.strerror}"
            ) from None
        except OSError as exc:
            raise InputMissingError(
                f"{folder}: cannot create the folder of the outbox database {self.path.name}: "
                f"{exc.strerror or exc}"
            ) from None

    def _init_schema(self) -> None:
        db = self._conn()
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise EdgeAgentError(
                    f"{self.path}: SQLite cannot use WAL mode here (journal_mode is {mode}); "
                    "put the database on a local filesystem"
                )
            db.execute("BEGIN IMMEDIATE")
            try:
                cols = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
                if cols and not _COLUMNS <= cols:
                    raise InputDataError(
                        f"{self.path}: has a table 'outbox' that is not edge-agent's (columns "
                        f"{', '.join(sorted(cols))}; expected {', '.join(sorted(_COLUMNS))})"
                    )
                for statement in _split_sql(_SCHEMA):
                    db.execute(statement)
                for name in _COUNTERS:
                    db.execute(
                        "INSERT OR IGNORE INTO outbox_counters (name, value) VALUES (?, 0)",
                        (name,),
                    )
                # Re-derive the depths once: cheap insurance against any drift.
                db.execute("DELETE FROM outbox_counters WHERE name LIKE 'depth.%'")
                db.execute(
                    "INSERT INTO outbox_counters (name, value) "
                    "SELECT 'depth.' || kind, COUNT(*) FROM outbox GROUP BY kind"
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self.close()
            raise self._error(exc, "opening the outbox") from None
        except EdgeAgentError:
            self.close()
            raise

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise EdgeAgentError(f"{self.path}: the outbox is closed")
        db = getattr(self._local, "db", None)
        if db is not None:
            return db
        with self._lock:
            if self._closed:
                raise EdgeAgentError(f"{self.path}: the outbox is closed")
            try:
                db = sqlite3.connect(
                    self.path,
                    timeout=self.busy_timeout_s,
                    isolation_level=None,  # transactions are explicit
                    check_same_thread=False,  # only close() touches it from elsewhere
                )
                db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
                db.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise self._error(exc, "opening the outbox") from None
            self._conns.append(db)
        self._local.db = db
        self._local.full_sync = False
        return db

    def _write(self, doing: str, *, full_sync: bool = False) -> _Transaction:
        return _Transaction(self, doing, full_sync)

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        db = self._conn()
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc, "reading the outbox") from None

    @staticmethod
    def _depth_of(db: sqlite3.Connection, kind: str) -> int:
        row = db.execute(
            "SELECT value FROM outbox_counters WHERE name = ?", ("depth." + kind,)
        ).fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _bump(db: sqlite3.Connection, name: str, by: int = 1) -> None:
        db.execute("UPDATE outbox_counters SET value = value + ? WHERE name = ?", (by, name))

    def _error(self, exc: sqlite3.Error, doing: str) -> EdgeAgentError:
        """A user-facing error for an SQLite failure, naming the file and the cause."""
        return sqlite_error(self.path, "the outbox database", exc, doing, self.busy_timeout_s)


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` on the calling thread's connection, with the
    synchronous level the record needs, and SQLite errors turned into EdgeAgentErrors."""

    def __init__(self, outbox: Outbox, doing: str, full_sync: bool) -> None:
        self.outbox, self.doing, self.full_sync = outbox, doing, full_sync

    def __enter__(self) -> sqlite3.Connection:
        ob = self.outbox
        db = ob._conn()
        try:
            if ob._local.full_sync != self.full_sync:
                db.execute(f"PRAGMA synchronous={'FULL' if self.full_sync else 'NORMAL'}")
                ob._local.full_sync = self.full_sync
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise ob._error(exc, self.doing) from None
        self.db = db
        return db

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        except sqlite3.Error as err:
            if exc_type is None:
                try:
                    self.db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise self.outbox._error(err, self.doing) from None
        if isinstance(exc, sqlite3.Error):
            raise self.outbox._error(exc, self.doing) from None


def _split_sql(script: str) -> list[str]:
    """The statements of ``script`` (triggers kept whole), for execution one by one
    inside a transaction (``executescript`` would commit first)."""
    out: list[str] = []
    buf: list[str] = []
    for line in script.splitlines():
        if line.strip().startswith("--") or not line.strip():
            continue
        buf.append(line)
        text = "\n".join(buf)
        if sqlite3.complete_statement(text):
            out.append(text.strip())
            buf = []
    return out
