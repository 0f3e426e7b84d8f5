"""Where every record goes when it leaves the processing thread.

A :class:`RecordSink` takes the pipeline's window and alert records and

- writes them, and the summaries it makes from them, as JSON Lines (``--out``, stdout);
- keeps the alerts, the motor, the model, the summary counters and the summaries hour by
  hour (the trend) in the event store;
- puts each alert and summary in the outbox, from which the MQTT publisher sends it; and
- carries out the commands the plant sends on ``{root}/cmd/...``, on the processing
  thread, between two chunks of samples.

``run`` and ``replay`` both write through a sink, so a live run and a replay of the same
samples publish the same records the same way. The outbox and the event store share one
SQLite file (``[store] path``); the MQTT thread only reads and deletes from the outbox.

When the disk refuses a write (full, or failing: :class:`~edge_agent.errors.StorageError`)
a daemon's sink (``hold=True``) holds the alerts, summaries and events it could not write
in memory, in order, says so once, and writes them once the disk takes writes again
(tried every :data:`HOLD_RETRY_S`); the analysis goes on. Meanwhile, with a broker, it
sends them from memory (:meth:`MqttPublisher.send_now`), so that the plant is told at
once; one the broker had by then is not put in the outbox. A daemon that cannot open the
event store and the outbox at start (a full disk) runs the same way, and opens them once
the disk lets it. Other commands stop (exit 74).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import queue
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from edge_agent.config import Config
from edge_agent.errors import EdgeAgentError, StorageError
from edge_agent.publish import schema
from edge_agent.store import EventStore, cleared_why, model_id
from edge_agent.summary import TREND_FIELDS, Summarizer

if TYPE_CHECKING:
    from edge_agent.publish.mqtt import Delivery, MqttPublisher
    from edge_agent.publish.outbox import Outbox
    from edge_agent.scoring import Scorer

log = logging.getLogger("edge_agent.sink")

# Retention runs at start and then this often (wall time) while running.
PRUNE_EVERY_S = 6 * 3600.0
# While the disk refuses writes: the records held in memory at most (two days of
# summaries, 4.1 kB each, 6.0 with its payload until the broker has it; past it the
# oldest summary or event goes, never an alert), and
# how often (wall time) to try writing them again.
MAX_HELD = 3000
HOLD_RETRY_S = 10.0
# Once the disk has room, how long to wait for the PUBACKs of held records sent from
# memory before the outbox takes them: one whose PUBACK came late was sent twice.
ACK_WAIT_S = 2.0


class Reserve:
    """Disk space kept free for a stop on a full disk: a file of ``size`` bytes at ``path``
    (``[store] reserve_mb``, beside the database). A daemon stopped while the disk refuses
    writes deletes it and writes the records it holds in memory into the room it leaves
    (a summary took 1.6 kB of the database on this machine, an alert 0.7 kB, so 8 MB holds
    more than MAX_HELD); it is made again once the disk has room for it and as much
    again, never on a disk so full that it would take the last of it."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = int(size)

    def keep(self) -> bool:
        """Make the file if it is not there and the disk has room; whether it is there.
        One of another size (``reserve_mb`` changed; 0: none) is deleted first."""
        try:
            if self.path.stat().st_size == self.size > 0:
                return True
            self.path.unlink()
        except OSError:
            pass
        if self.size <= 0:
            return False
        try:
            st = os.statvfs(self.path.parent)
            if st.f_bavail * st.f_frsize < 2 * self.size:
                return False
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            return False
        try:
            try:
                os.posix_fallocate(fd, 0, self.size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                block = bytes(1 << 16)  # a file system without fallocate: write zeros
                for _ in range(0, self.size, len(block)):
                    os.write(fd, block)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            return False
        os.close(fd)
        return True

    def release(self) -> bool:
        """Delete the file; whether there was one to free."""
        try:
            self.path.unlink()
        except OSError:
            return False
        return True


def dumps(record: dict[str, Any]) -> str:
    """One JSON Lines record (NaN never appears: features are cleaned to null)."""
    return json.dumps(record, separators=(",", ":"), allow_nan=False)


@dataclass
class SinkStats:
    # What went out in this run; the outbox counts what it queued, dropped and refused.
    records: int = 0  # window records
    summaries: int = 0
    alerts: int = 0
    commands: int = 0
    command_errors: int = 0
    storage_errors: int = 0  # writes the disk refused (each try)
    held_dropped: int = 0  # summaries and events let go while held (MAX_HELD)
    out_errors: int = 0  # window records the --out stream could not take (daemon)


@dataclass
class _Pending:
    """An alert, summary or event (its payload) on its way to the store and the outbox,
    with the steps already written: a retry writes only the rest (the trend adds up)."""

    kind: str
    record: dict[str, Any]
    model: str | None = None  # an alert's: the model in use when it came
    done: set[str] = field(default_factory=set)
    delivery: Delivery | None = None  # sent from memory meanwhile (held, with a broker)


# A command handler gets the parsed command and returns the reply's detail; raising
# CommandError (or ValueError) makes the reply an error naming what was wrong.
Handler = Callable[[Any], dict[str, Any]]


def log_alert(record: Mapping[str, Any]) -> None:
    """Log an alert record: raised as a warning with what its evidence says, cleared as
    info with why."""
    from edge_agent.diagnosis import describe_alert

    fault, severity, evidence = record["fault"], record["severity"], record["evidence"]
    if record["state"] == "raised":
        said = describe_alert(fault, evidence)
        log.warning("alert raised: %s %s%s (id %s)", fault, severity, f": {said}" if said else "",
                    record["id"])  # fmt: skip
        return
    log.info("alert cleared: %s %s: %s (id %s)", fault, severity, cleared_why(evidence),
             record["id"])  # fmt: skip


class RecordSink:
    """JSON Lines, event store, outbox and MQTT behind one ``write``.

    Parameters
    ----------
    config : the resolved configuration (``[output]``, ``[mqtt]``, ``[store]``)
    out : JSON Lines stream, or None for none
    ts_offset : added to record times to make the payloads' UNIX ``ts`` (0 when the
        pipeline's times are UNIX already; a replay's start time for a replay)
    scorer : the model in use, registered in the store and named in alert payloads
    publish : send through the outbox to ``config.mqtt.url``
    store : keep the event store (always when publishing)
    handlers : command name (``reload``, ``snapshot``) → handler; ``label`` is built in
    status_extra : counters of the caller (source, pipeline) for the status message
    resume : this is the daemon starting: the alerts it left open when it last stopped
        are kept in :attr:`left_open` for the new run's tracker to carry on (one per fault,
        the newest; any other is cleared, its evidence saying "agent restarted")
    presence : announce the agent on ``/status`` (birth, Last Will) and take commands; a
        replay publishes its records without, so as not to speak for the asset's daemon
    log_alerts : log every alert raised (warning) and cleared (info), with what its
        evidence says: the daemon's journal then tells the story without a broker
    hold : hold what the disk refuses in memory and go on (the daemon; module docstring),
        rather than raise StorageError
    """

    def __init__(
        self,
        config: Config,
        out: IO[str] | None,
        *,
        ts_offset: float = 0.0,
        scorer: Scorer | None = None,
        publish: bool = False,
        store: bool = False,
        handlers: dict[str, Handler] | None = None,
        status_extra: Callable[[], dict[str, Any]] | None = None,
        resume: bool = False,
        presence: bool = True,
        log_alerts: bool = False,
        hold: bool = False,
    ) -> None:
        self.config = config
        self.out = out
        self.ts_offset = float(ts_offset)
        self.site = config.output.site
        self.asset = config.output.asset
        self.summarizer = Summarizer(config.output.summary_interval_s)
        self.stats = SinkStats()
        self._handlers = dict(handlers or {})
        self._status_extra = status_extra
        self._commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.store: EventStore | None = None
        self.outbox: Outbox | None = None
        self.publisher: MqttPublisher | None = None
        self.model_id: str | None = None
        self.log_alerts = log_alerts
        self.hold = hold
        self._held: deque[_Pending] = deque()
        self._retry_at = 0.0
        self._out_failing = False
        self._next_prune = 0.0
        if publish and not config.mqtt.url:
            raise ValueError("publish=True needs config.mqtt.url")
        self._publish = publish
        self._scorer = scorer
        # The event store and the outbox did not open (a full disk at start, hold=True):
        # tried again with the records held.
        self._closed_disk = False
        # Alerts the last run left open, one per fault, for the pipeline to carry on.
        self.left_open: list[dict[str, Any]] = []
        # A daemon's room for a stop on a full disk (Reserve); made once the store opens.
        self._reserve: Reserve | None = None
        if hold and (publish or store):
            db = config.store.resolved_path
            self._reserve = Reserve(
                db.with_name(db.name + ".reserve"), round(config.store.reserve_mb * 2**20)
            )
        if publish or store:
            try:
                self._open_disk()
            except StorageError as exc:
                if not hold:
                    raise
                self._closed_disk = True
                self.stats.storage_errors += 1
                self._retry_at = time.monotonic() + HOLD_RETRY_S
                log.error(  # once: the tries to open them again are counted
                    "%s. Starting without the event store and the outbox: the alerts, "
                    "summaries and events are held in memory (at most %d)%s, and written "
                    "once they open (tried every %g s); the alerts the last run left open "
                    "are not carried on", exc, MAX_HELD,
                    ", sent to the broker from memory meanwhile" if publish else "",
                    HOLD_RETRY_S,
                )  # fmt: skip
        if publish:
            from edge_agent.publish.mqtt import MqttPublisher

            self.publisher = MqttPublisher(
                config.mqtt,
                site=self.site,
                asset=self.asset,
                outbox=self.outbox,
                on_command=self._on_command,
                status_extra=self._counters,
                presence=presence,
            )
        if self.store is None:
            self.set_model(scorer)
        if resume and self.store is not None:
            self._resume_left_open()

    def _open_disk(self) -> None:
        """Open the event store (registering the motor and the model, applying the
        retention) and, to publish, the outbox; all or nothing (StorageError)."""
        from edge_agent.publish.outbox import Outbox

        s = self.config.store
        store = EventStore(s.resolved_path)
        try:
            store.register_asset(self.site, self.asset, self.config.motor.model_dump(mode="json"))
            scorer = self._scorer
            mid = None if scorer is None else store.register_model(scorer.card, str(scorer.path))
            outbox = None
            if self._publish:
                outbox = Outbox(
                    s.resolved_path, max_summaries=s.max_summaries, max_alerts=s.max_alerts
                )
        except BaseException:
            store.close()
            raise
        self.store, self.outbox, self.model_id = store, outbox, mid
        self._prune()
        if self._reserve is not None:
            self._reserve.keep()

    def _opened_late(self) -> bool:
        """Open the event store and the outbox a full disk kept closed at start, if it
        lets them now; the alerts the last run left open are cleared ("agent restarted"):
        this run has judged afresh. Whether they are open."""
        try:
            self._open_disk()
        except StorageError:  # said at start
            self.stats.storage_errors += 1
            self._retry_at = time.monotonic() + HOLD_RETRY_S
            return False
        self._closed_disk = False
        log.info("%s: the event store and the outbox open now", self.config.store.resolved_path)
        if self.publisher is not None:
            self.publisher.attach_outbox(self.outbox)
        now = time.time()
        cleared = [
            self._restart_cleared(a, now)
            for a in self.store.alerts(
                site=self.site, asset=self.asset, open_only=True, limit=None
            )
        ]
        for r in cleared:  # behind what is held: they are the newest
            if self.log_alerts:
                log_alert(r)
            self._held.append(_Pending("alert", r))
            self.stats.alerts += 1
        if cleared and self.out is not None:
            self._write_out(cleared)
        return True

    def attach(
        self,
        *,
        handlers: dict[str, Handler] | None = None,
        status_extra: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        """Add command handlers and the caller's counters once the caller has them."""
        self._handlers.update(handlers or {})
        if status_extra is not None:
            self._status_extra = status_extra

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the MQTT thread (it connects in the background and never blocks us)."""
        if self.publisher is not None:
            self.publisher.start()

    def close(self, drain_timeout: float = 0.0) -> int:
        """Write the last (partial) summary, give the broker ``drain_timeout`` seconds to
        acknowledge what is queued, and close. Returns the number of messages left in the
        outbox: they stay on disk and the next run sends them."""
        held = False
        try:
            self.write((), final=True)
            held = bool(self._held) and not self._write_held(now=True)
            if held and self._reserve is not None and self._reserve.release():
                log.warning(
                    "the disk still refuses writes at the stop: deleted %s, the %g MB kept "
                    "free for this, to write the %d records held in memory",
                    self._reserve.path, self._reserve.size / 2**20, len(self._held),
                )  # fmt: skip
                held = not self._write_held(now=True)
        finally:
            left = 0
            if self.publisher is not None:
                if drain_timeout > 0:
                    self.publisher.wait_drained(drain_timeout)
                self.publisher.stop()
            # Said once the broker has had its chance at what is sent from memory.
            lost = self._held_lost() if held else None
            if self.outbox is not None:
                left = sum(self.outbox.depth().values())
                self.outbox.close()
            if self.store is not None:
                self.store.close()
            if self.out is not None:
                self._write_out(None)
        if lost is not None:
            raise lost
        return left

    # --- records -------------------------------------------------------------------------

    def write(
        self, records: Iterable[dict[str, Any]], lost_samples: int = 0, *, final: bool = False
    ) -> None:
        """Take the records of one pipeline update (and the samples known lost meanwhile)."""
        # In time order: a period's summary goes out just before the record that closed it.
        ordered: list[dict[str, Any]] = []
        for r in records:
            ordered += self.summarizer.update([r], lost_samples)
            lost_samples = 0
            ordered.append(r)
        if lost_samples:
            ordered += self.summarizer.update([], lost_samples)
        if final:
            ordered += self.summarizer.flush()
        self._emit(ordered)

    def _emit(self, records: list[dict[str, Any]]) -> None:
        """Write records to every destination, in order."""
        for r in records:
            kind = r["type"]
            if kind == "alert":
                if self.log_alerts:
                    log_alert(r)
                self._put(_Pending("alert", r, self.model_id))
                self.stats.alerts += 1
            elif kind == "summary":
                self._put(_Pending("summary", r))
                self.stats.summaries += 1
            else:
                self.stats.records += 1
        if records and self.out is not None:
            self._write_out(records)

    def _write_out(self, records: list[dict[str, Any]] | None) -> None:
        """Records to the JSON Lines stream (None: flush it). A daemon counts what a full
        disk refuses and goes on: the summaries and alerts are what it keeps."""
        try:
            if records:
                self.out.write("\n".join(map(dumps, records)) + "\n")
            self.out.flush()
        except OSError as exc:
            name = getattr(self.out, "name", "the records' stream")
            said = f"{name}: cannot write the records: {exc.strerror or exc}"
            if not self.hold:
                raise StorageError(said) from None
            self.stats.out_errors += len(records or ())
            if not self._out_failing:
                log.error("%s; the window records are let go until it can", said)
            self._out_failing = True
        else:
            if self._out_failing:
                log.info("%s takes the window records again", getattr(self.out, "name", "--out"))
            self._out_failing = False

    # --- the store and the outbox, or memory while the disk refuses them -------------------

    @property
    def held(self) -> int:
        """Alerts, summaries and events held in memory, not yet written (disk full)."""
        return len(self._held)

    @property
    def disk_refused(self) -> bool:
        """Records are held in memory, or the event store could not be opened."""
        return bool(self._held) or self._closed_disk

    def _put(self, item: _Pending) -> None:
        """Write ``item`` to the store and the outbox; behind any held, to keep the order."""
        if (not self._held and not self._closed_disk) or self._write_held():
            try:
                self._write(item)
                return
            except StorageError as exc:
                self._refused(exc)
        self._held.append(item)
        if self.publisher is not None and "outbox" not in item.done:
            item.delivery = self.publisher.send_now(*self._outbox_payload(item))
        if len(self._held) > MAX_HELD:
            old = next((p for p in self._held if p.kind != "alert"), None)
            if old is not None:
                self._held.remove(old)
                self.stats.held_dropped += 1
                if old.delivery is not None:
                    self.publisher.withdraw(old.delivery)

    def _refused(self, exc: StorageError) -> None:
        self.stats.storage_errors += 1
        if not self.hold:
            raise exc
        if not self._held:
            sending = "; sending them to the broker from memory meanwhile" if self.publisher else ""
            if self._reserve is not None and self._reserve.path.exists():
                stop = f"a stop first writes them into the room kept free in {self._reserve.path}"
            else:
                stop = "they are lost if the daemon stops first"
            log.error(
                "%s: holding the alerts, summaries and events in memory (at most %d) and "
                "trying again every %g s; %s%s",
                exc, MAX_HELD, HOLD_RETRY_S, stop, sending,
            )  # fmt: skip
        self._retry_at = time.monotonic() + HOLD_RETRY_S

    def _write_held(self, now: bool = False) -> bool:
        """Write what is held, oldest first, if it is time to try; whether all went."""
        if not now and time.monotonic() < self._retry_at:
            return False
        if self._closed_disk and not self._opened_late():
            return False
        n, alerts = len(self._held), sum(p.kind == "alert" for p in self._held)
        if self.publisher is not None:
            # A PUBACK on its way: let it come, rather than queue the record in the
            # outbox as well and send it twice.
            sent = [p.delivery for p in self._held if p.delivery is not None]
            self.publisher.wait_acked(sent, ACK_WAIT_S)
        delivered = self._delivered()
        while self._held:
            try:
                self._write(self._held[0])
            except StorageError as exc:
                self._refused(exc)
                return False
            self._held.popleft()
        extra = []
        if delivered:
            extra.append(f"{delivered} delivered from memory already, not queued again")
        if self.stats.held_dropped:
            extra.append(f"{self.stats.held_dropped} summaries or events let go")
        log.info(
            "the disk takes writes again: wrote the %d records held in memory (%d alerts%s)",
            n, alerts, "".join(f"; {x}" for x in extra),
        )  # fmt: skip
        if self._reserve is not None:
            self._reserve.keep()  # if the disk has room for it again
        return True

    def _delivered(self) -> int:
        """Held records the broker has from memory."""
        return sum(p.delivery is not None and p.delivery.delivered for p in self._held)

    def _held_lost(self) -> StorageError:
        alerts = sum(p.kind == "alert" for p in self._held)
        lost = "lost"
        if self.publisher is not None:
            lost = f"lost to the event store ({self._delivered()} of them reached the broker)"
        said = (
            f"{len(self._held)} records ({alerts} alerts) held in memory could not be written "
            f"before the stop, and are {lost}: the disk still refuses writes"
        )
        log.error("%s", said)
        return StorageError(said)

    def _outbox_payload(self, item: _Pending) -> tuple[str, dict[str, Any]]:
        """The topic (alert, summary, event) and payload that ``item`` is published as."""
        record = item.record
        if item.kind == "alert":
            common = {"site": self.site, "asset": self.asset, "t0": self.ts_offset}
            return "alert", schema.alert_payload(record, model=item.model, **common)
        if item.kind == "summary":
            payload = schema.summary_payload(
                record, site=self.site, asset=self.asset, t0=self.ts_offset
            )
            return "summary", payload
        return "event", record  # its payload already

    def _to_outbox(self, item: _Pending) -> None:
        """The outbox step of ``item``, unless the broker had it from memory already; one
        sent from memory is queued with the same payload (and ``id``)."""
        delivery = item.delivery
        if delivery is None:
            topic, payload = self._outbox_payload(item)
        else:
            topic, payload = delivery.topic, self.publisher.pending_payload(delivery)
        if payload is not None:
            self.outbox.put(topic, topic, payload)  # None at the cap: counted there
            if delivery is not None:
                self.publisher.withdraw(delivery)
        item.done.add("outbox")

    def _write(self, item: _Pending) -> None:
        """The steps of ``item`` not yet done; each is marked done once written."""
        record, done = item.record, item.done
        if item.kind == "alert":
            if self.store is not None and "store" not in done:
                self.store.record_alert(
                    record, model_id=item.model, site=self.site, asset=self.asset,
                    t0=self.ts_offset,
                )  # fmt: skip
                done.add("store")
        elif item.kind == "summary":
            if self.store is not None and "counters" not in done:
                counters = {
                    k: record[k]
                    for k in ("windows", "flagged_windows", "anomalous_windows",
                              "alerts_raised", "alerts_cleared", "lost_samples")
                }  # fmt: skip
                ts = self.ts_offset + record["t_end"]
                self.store.add_counters(self.site, self.asset, ts, counters)
                done.add("counters")
            if self.store is not None and "trend" not in done:
                trend = {k: record[k] for k in TREND_FIELDS if k in record}
                start = self.ts_offset + record["t_start"]
                self.store.add_trend(self.site, self.asset, start, trend)
                done.add("trend")
        if self.outbox is not None and "outbox" not in done:
            self._to_outbox(item)
        if self.publisher is not None:
            self.publisher.notify()

    def _resume_left_open(self) -> None:
        """Keep the newest open alert of each fault in :attr:`left_open` (the summaries
        count it active), and clear any older one of the same fault."""
        now = time.time()
        records = []
        newest_first = self.store.alerts(
            site=self.site, asset=self.asset, open_only=True, limit=None
        )
        for a in newest_first:
            if any(kept["fault"] == a["fault"] for kept in self.left_open):
                records.append(self._restart_cleared(a, now))
                continue
            self.left_open.append(a)
            self.summarizer.resume(a["alert_id"], a["fault"])
            if self.log_alerts:
                log.info(
                    "alert still open from the last run: %s %s, raised %s (id %s); it clears "
                    "once the windows read normal", a["fault"], a["severity"],
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(a["raised_ts"])),
                    a["alert_id"],
                )  # fmt: skip
        self._emit(records)  # logged there, with the other alerts, when log_alerts

    def _restart_cleared(self, alert: Mapping[str, Any], now: float) -> dict[str, Any]:
        """The record that clears ``alert`` (from the store) as the agent restarted."""
        return {
            "type": "alert", "id": alert["alert_id"], "state": "cleared",
            "t": now - self.ts_offset, "fault": alert["fault"], "severity": alert["severity"],
            "score": None, "evidence": {"reason": "agent restarted"},
        }  # fmt: skip

    def set_model(self, scorer: Scorer | None) -> None:
        """Name ``scorer``'s model in later alerts (and register it in the store)."""
        self._scorer = scorer
        if scorer is None:
            self.model_id = None
        elif self.store is not None:
            self.model_id = self.store.register_model(scorer.card, str(scorer.path))
        else:
            self.model_id = model_id(scorer.card)

    # --- commands ------------------------------------------------------------------------

    def _on_command(self, name: str, payload: bytes) -> None:
        """On the MQTT thread: check the command, queue it for the processing thread."""
        self.stats.commands += 1
        try:
            command = schema.parse_command(name, payload)
        except schema.CommandError as exc:
            self._reply(name, exc.request_id, error=str(exc))
            return
        self._commands.put((name, command))

    def poll(self) -> None:
        """Carry out the queued commands; call from the processing thread between chunks."""
        while True:
            try:
                name, command = self._commands.get_nowait()
            except queue.Empty:
                break
            request_id = getattr(command, "id", None)
            try:
                if name == "label":
                    detail = self._label(command)
                else:
                    handler = self._handlers.get(name)
                    if handler is None:
                        raise schema.CommandError(f"{name}: not available in this mode")
                    detail = handler(command)
            except (schema.CommandError, EdgeAgentError, ValueError, OSError) as exc:
                # A refused label, a bad config or model file on reload: the run goes on.
                self._reply(name, request_id, error=str(exc))
            except Exception as exc:  # a bug: say so, and keep analysing
                log.exception("command %s failed", name)
                self._reply(name, request_id, error=f"{type(exc).__name__}: {exc}")
            else:
                self._reply(name, request_id, detail=detail)
        if self._held or self._closed_disk:
            self._write_held()
        if self.store is not None and time.monotonic() >= self._next_prune:
            self._prune()

    def _label(self, command: Any) -> dict[str, Any]:
        if self._closed_disk:
            raise schema.CommandError(
                "label: the event store cannot be opened (the disk is full or failing); "
                "send it again once it has room"
            )
        if self.store is None:
            raise schema.CommandError("label: no event store")
        if not self.store.label(command.alert_id, command.label, by=command.by, note=command.note):
            raise schema.CommandError(f"label: no alert with alert_id {command.alert_id!r}")
        return {"alert_id": command.alert_id, "label": command.label}

    def _reply(
        self,
        command: str,
        request_id: str | None,
        *,
        detail: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        if error is not None:
            self.stats.command_errors += 1
            log.warning("command %s: %s", command, error)
        self._event(
            "command",
            command=command,
            ok=error is None,
            error=error,
            detail=detail or {},
            request_id=request_id,
        )

    def report(self, error: str, detail: Mapping[str, Any]) -> None:
        """Tell the plant of a problem on ``/event`` (``event: "error"``), through the
        outbox like every record: e.g. a miswiring the daemon has just seen."""
        self._event("error", ok=False, error=error, detail=dict(detail))

    def resolved(self, detail: Mapping[str, Any]) -> None:
        """Tell the plant on ``/event`` (``event: "resolved"``) that a problem it was told
        of (``detail`` as then) is gone."""
        self._event("resolved", ok=True, error=None, detail=dict(detail))

    def clock_set(self, step_s: float) -> None:
        """Tell the plant on ``/event`` (``event: "clock"``) that the system clock was set
        by ``step_s`` (positive: forward): the records after carry times that much later
        than the ones before would have."""
        detail = {"source": "clock", "step_s": round(step_s, 3)}
        self._event("clock", ok=True, error=None, detail=detail)

    def _event(self, event: str, **fields: Any) -> None:
        if not self._publish:
            return
        payload = schema.event_payload(
            event, site=self.site, asset=self.asset, ts=time.time(), **fields
        )
        self._put(_Pending("event", payload))

    # --- upkeep --------------------------------------------------------------------------

    def _prune(self) -> None:
        """Apply the retention now and every PRUNE_EVERY_S. It needs room to write too: a
        daemon's sink puts it off to the next time when the disk refuses."""
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        if self.store is not None:
            s = self.config.store
            try:
                deleted = self.store.prune(retention_days=s.retention_days, max_mb=s.max_mb)
            except StorageError as exc:
                self.stats.storage_errors += 1
                if not self.hold:
                    raise
                log.warning("event store retention did not run: %s", exc)
                return
            counts = {k: v for k, v in deleted.items() if k.endswith(("_by_age", "_by_size"))}
            if any(counts.values()):
                log.info("event store retention: deleted %s", counts)

    def _counters(self) -> dict[str, Any]:
        counters: dict[str, Any] = {f"sink_{k}": v for k, v in asdict(self.stats).items()}
        counters["sink_held"] = len(self._held)
        if self._status_extra is not None:
            counters.update(self._status_extra())
        return counters
