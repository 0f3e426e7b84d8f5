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
"""

from __future__ import annotations

import json
import logging
import queue
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import IO, TYPE_CHECKING, Any

from edge_agent.config import Config
from edge_agent.errors import EdgeAgentError
from edge_agent.publish import schema
from edge_agent.store import EventStore, cleared_why, model_id
from edge_agent.summary import TREND_FIELDS, Summarizer

if TYPE_CHECKING:
    from edge_agent.publish.mqtt import MqttPublisher
    from edge_agent.publish.outbox import Outbox
    from edge_agent.scoring import Scorer

log = logging.getLogger("edge_agent.sink")

# Retention runs at start and then this often (wall time) while running.
PRUNE_EVERY_S = 6 * 3600.0


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
        self._next_prune = 0.0
        if publish and not config.mqtt.url:
            raise ValueError("publish=True needs config.mqtt.url")
        if publish or store:
            path = config.store.resolved_path
            self.store = EventStore(path)
            self.store.register_asset(self.site, self.asset, config.motor.model_dump(mode="json"))
            self._prune()
        if publish:
            from edge_agent.publish.mqtt import MqttPublisher
            from edge_agent.publish.outbox import Outbox

            s = config.store
            self.outbox = Outbox(
                s.resolved_path, max_summaries=s.max_summaries, max_alerts=s.max_alerts
            )
            self.publisher = MqttPublisher(
                config.mqtt,
                site=self.site,
                asset=self.asset,
                outbox=self.outbox,
                on_command=self._on_command,
                status_extra=self._counters,
                presence=presence,
            )
        self.set_model(scorer)
        # Alerts the last run left open, one per fault, for the pipeline to carry on.
        self.left_open: list[dict[str, Any]] = []
        if resume and self.store is not None:
            self._resume_left_open()

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
        try:
            self.write((), final=True)
        finally:
            left = 0
            if self.publisher is not None:
                if drain_timeout > 0:
                    self.publisher.wait_drained(drain_timeout)
                self.publisher.stop()
            if self.outbox is not None:
                left = sum(self.outbox.depth().values())
                self.outbox.close()
            if self.store is not None:
                self.store.close()
            if self.out is not None:
                self.out.flush()
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
        queued = False
        for r in records:
            kind = r["type"]
            if kind == "alert":
                self._alert(r)
                self.stats.alerts += 1
                queued = True
            elif kind == "summary":
                self._summary(r)
                self.stats.summaries += 1
                queued = True
            else:
                self.stats.records += 1
        if records and self.out is not None:
            self.out.write("\n".join(map(dumps, records)) + "\n")
            self.out.flush()
        if queued and self.publisher is not None:
            self.publisher.notify()

    def _alert(self, record: dict[str, Any]) -> None:
        if self.log_alerts:
            log_alert(record)
        common = {"site": self.site, "asset": self.asset, "t0": self.ts_offset}
        if self.store is not None:
            self.store.record_alert(record, model_id=self.model_id, **common)
        if self.outbox is not None:
            payload = schema.alert_payload(record, model=self.model_id, **common)
            self.outbox.put("alert", "alert", payload)  # None at the cap: counted there

    def _summary(self, record: dict[str, Any]) -> None:
        if self.store is not None:
            counters = {
                k: record[k]
                for k in ("windows", "flagged_windows", "anomalous_windows", "alerts_raised",
                          "alerts_cleared", "lost_samples")
            }  # fmt: skip
            ts = self.ts_offset + record["t_end"]
            self.store.add_counters(self.site, self.asset, ts, counters)
            trend = {k: record[k] for k in TREND_FIELDS if k in record}
            self.store.add_trend(self.site, self.asset, self.ts_offset + record["t_start"], trend)
        if self.outbox is not None:
            payload = schema.summary_payload(
                record, site=self.site, asset=self.asset, t0=self.ts_offset
            )
            self.outbox.put("summary", "summary", payload)

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
                records.append({
                    "type": "alert", "id": a["alert_id"], "state": "cleared",
                    "t": now - self.ts_offset, "fault": a["fault"], "severity": a["severity"],
                    "score": None, "evidence": {"reason": "agent restarted"},
                })  # fmt: skip
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

    def set_model(self, scorer: Scorer | None) -> None:
        """Name ``scorer``'s model in later alerts (and register it in the store)."""
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
        if self.store is not None and time.monotonic() >= self._next_prune:
            self._prune()

    def _label(self, command: Any) -> dict[str, Any]:
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

    def _event(self, event: str, **fields: Any) -> None:
        if self.outbox is None:
            return
        payload = schema.event_payload(
            event, site=self.site, asset=self.asset, ts=time.time(), **fields
        )
        self.outbox.put("event", "event", payload)
        if self.publisher is not None:
            self.publisher.notify()

    # --- upkeep --------------------------------------------------------------------------

    def _prune(self) -> None:
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        if self.store is not None:
            s = self.config.store
            deleted = self.store.prune(retention_days=s.retention_days, max_mb=s.max_mb)
            counts = {k: v for k, v in deleted.items() if k.endswith(("_by_age", "_by_size"))}
            if any(counts.values()):
                log.info("event store retention: deleted %s", counts)

    def _counters(self) -> dict[str, Any]:
        counters: dict[str, Any] = {f"sink_{k}": v for k, v in asdict(self.stats).items()}
        if self._status_extra is not None:
            counters.update(self._status_extra())
        return counters
