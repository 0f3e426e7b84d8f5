"""The MQTT publisher: the outbox to the plant's broker, with our own reconnects.

Lifecycle: :meth:`MqttPublisher.start` returns at once; a thread named ``edge-mqtt``
connects, publishes and reconnects until :meth:`MqttPublisher.stop`, which publishes the
retained ``offline`` status (reason ``stopped``) and disconnects cleanly. The outbox is not
closed here: its owner closes it after ``stop``.

Why not paho's own machinery (ARCHITECTURE, pitfalls): paho keeps unacknowledged QoS 1
messages in memory only, and its automatic reconnect replays that memory. Here every
message comes from the :class:`~edge_agent.publish.outbox.Outbox` and is deleted there only
after its PUBACK. Each connection is a fresh paho client driven by the ``edge-mqtt`` thread
through paho's external-loop API (``loop_read``/``loop_write``/``loop_misc`` around our own
``select``), so every paho callback runs in that thread. On any disconnect the client is
dropped; the thread reconnects with a doubling backoff from ``reconnect_min_s`` capped at
``reconnect_max_s`` (±20 % jitter; back to the minimum after a connection that lasted) and
sends everything still in the outbox again, in ``seq`` order. At most ``max_inflight``
(and no more than the broker's Receive Maximum) outbox messages await their PUBACK.

A record the broker will not take must not block the others behind it forever: one
refused in its PUBACK (an MQTT 5 failure reason, e.g. Not authorized), or one the broker
closes the connection for (Mosquitto 2.0 does after an ACL denial, or for a packet over
its size limit; found by sending one record at a time after two connections in a row
were lost soon after publishing), is held back for ``HOLD_S``: it stays in the outbox,
is reported once at ERROR and counted (``refused``, ``held_back``), and is tried again
on a later connection.

Topics under ``root = {prefix}/{site}/{asset}`` (QoS 1): ``alert``, ``summary``,
``event`` from the outbox; ``status``, retained, not from the outbox: an ``online`` birth
after each CONNACK and every ``status_interval_s``, ``offline`` as the Last Will (reason
``lost``; its ``ts`` is the time of connecting, as a will cannot be updated) and on
``stop`` (reason ``stopped``); status payloads carry ``schema``, ``id``, ``ts``,
``historical`` (false), ``site``, ``asset``, ``state``, and who speaks: ``host``, ``pid``
and this run's ``instance`` (docs/schemas/status.schema.json). ``status`` is subscribed
too: another instance's status there is another agent configured as this asset
(:class:`Conflict`: logged, counted, and :attr:`MqttPublisher.conflict` for the daemon).
``cmd/<name>`` is subscribed; each message is passed to
``on_command(name, payload)`` in the publisher's thread (it must return quickly; what it
raises is logged and counted). A retained command is ignored: it would run again at every
reconnect. Sessions are clean: commands sent while the edge is offline are not queued.

When the disk refuses the outbox (full, or failing), the sink hands the records it holds in
memory to :meth:`MqttPublisher.send_now`: they are sent from memory, after the outbox's,
within the same in-flight limit, and again on every connection until their PUBACK. The
sink writes each to the outbox once the disk has room unless the broker had it by then
(:meth:`MqttPublisher.withdraw`); a PUBACK that comes after that leaves a second copy,
which the payload's ``id`` tells apart. One the broker refuses (in its PUBACK, or by
closing the connection, found as below) is sent from memory no more: the sink puts it in
the outbox once it can, where it is held back as below.

Payloads: the stored object plus ``"historical"``: true when the record was queued
before the current connection was established (during an outage, or by an earlier
process). The boundary is the outbox's last ``seq`` at CONNACK, not a clock, so a clock
step (NTP after boot) cannot mislabel records; a record sent from memory is historical
when it was made before the connection, by the monotonic clock, which no step moves.

Errors are reported once, clearly (logger ``edge_agent.mqtt``, and :attr:`last_error`;
the wording, the URL, the TLS context and the password are in ``connect.py``),
repeats only at DEBUG with a reminder every 20 attempts, and always retried. The password
(``mqtt.password`` or the first line of ``mqtt.password_file``, read at every connect so a
fixed file is picked up) never appears in logs, errors or reprs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from edge_agent.config import MqttConfig
from edge_agent.errors import ConfigError, StorageError
from edge_agent.publish import schema
from edge_agent.publish.connect import (
    CONNECT_TIMEOUT_S,
    ConnectError,
    client_cert_problem,
    describe,
    parse_url,
    read_password,
    ssl_context,
)
from edge_agent.publish.outbox import Outbox

log = logging.getLogger("edge_agent.mqtt")
paho_log = logging.getLogger("edge_agent.mqtt.paho")

CONNACK_TIMEOUT_S = 10.0
POLL_S = 1.0  # the outbox is re-read this often even without notify()
STABLE_S = 10.0  # a connection this long resets the backoff (and ends careful mode)
HOLD_S = 600.0  # a record the broker keeps dropping the connection for waits this long
ACK_RETRY_S = 10.0  # delivered records a full disk kept in the outbox: deleted again then
SUSPECT_S = 5.0  # a connection lost this soon after sending a record may be its doing
REMIND_EVERY = 20  # a repeated connection error is logged above DEBUG every this many
CONFLICT_CLEAR_S = 600.0  # connected this long with no other agent's status: it is gone
CONFLICT_LOG_S = 60.0  # another agent is named at ERROR at most once in this
JITTER = 0.2

@dataclass
class PublisherStats:
    """Counters of this process's publisher, cumulative."""

    connects: int = 0  # successful CONNACKs
    connect_failures: int = 0  # attempts that did not end in a successful CONNACK
    disconnects: int = 0  # established connections that were lost
    published: int = 0  # outbox messages sent (a resend counts again)
    acked: int = 0  # outbox messages deleted after their PUBACK
    historical: int = 0  # of published, those marked historical
    refused: int = 0  # PUBACKs with a failure reason code (the message stays queued)
    held_back: int = 0  # records set aside because the broker drops us when it gets them
    ack_errors: int = 0  # acks the outbox could not write (a full disk): kept in memory
    from_memory: int = 0  # records the outbox could not take, delivered from memory
    commands: int = 0  # commands passed to on_command
    callback_errors: int = 0  # exceptions caught in callbacks and in on_command
    conflicts: int = 0  # statuses another agent published as this asset (Conflict)


@dataclass(frozen=True)
class Conflict:
    """Another agent publishes as this asset: a status on its ``/status`` that is not
    ours (another ``instance``), seen live, or retained after ours had been there.

    Two agents configured with one ``[output] site`` and ``asset`` also have one client
    id: each connection takes the other's, and the broker closes it without saying why
    (Mosquitto 2.0 sends no DISCONNECT), which looks like a network drop. What gives them
    away is the retained status: the other's birth or Last Will where ours was."""

    who: str  # for a person: "edge-agent 0.1.0 on host pi-b (pid 812)"
    key: str  # its instance id (or, from a client that gives none, its payload)
    host: str | None  # the computer it says it runs on


@dataclass(eq=False)
class Delivery:
    """A record sent from memory (:meth:`MqttPublisher.send_now`) until its PUBACK."""

    topic: str  # under the root: alert, summary or event
    payload: dict[str, Any]
    made: float = field(default_factory=time.monotonic)
    delivered: bool = False  # its PUBACK came (set in the edge-mqtt thread)
    sent_on: int = -1  # the connection it was last sent on
    sent_at: float = 0.0  # monotonic time it was last sent


def _version() -> str | None:
    try:
        from edge_agent import __version__
    except ImportError:  # pragma: no cover - a broken install
        return None
    return __version__


class MqttPublisher:
    """Publishes the outbox to ``cfg.url`` under ``root = {prefix}/{site}/{asset}``.

    Configuration problems (no url, a missing TLS or password file, a key that does not
    match its certificate) raise :class:`~edge_agent.errors.ConfigError` here, at
    construction; everything after is retried. ``status_extra`` adds counters to the
    ``online`` status (called in the publisher's thread). ``outbox`` is None when a full
    disk kept it from opening: records are then sent from memory only, until
    :meth:`attach_outbox`.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        *,
        site: str,
        asset: str,
        outbox: Outbox | None,
        on_command: Callable[[str, bytes], None] | None = None,
        status_extra: Callable[[], dict] | None = None,
        status_interval_s: float = 60.0,
        presence: bool = True,
    ) -> None:
        for name, value in (("site", site), ("asset", asset)):
            if not value or any(c in value for c in "/+#\0"):
                raise ConfigError(
                    f"{name}={value!r}: expected one MQTT topic level (no '/', '+' or '#')"
                )
        if status_interval_s <= 0:
            raise ValueError(f"{status_interval_s=} must be positive")
        self.cfg = cfg
        self.site, self.asset = site, asset
        self.root = f"{cfg.prefix}/{site}/{asset}"
        # Without presence (a replay) the client neither announces itself on /status nor
        # takes commands, and has an id of its own: the asset's daemon keeps both.
        self.presence = presence
        suffix = "" if presence else f"-replay-{uuid.uuid4().hex[:8]}"
        self.client_id = (cfg.client_id or f"edge-agent-{site}-{asset}") + suffix
        self.use_tls, self.host, self.port = parse_url(cfg.url)
        self.hostport = (
            f"[{self.host}]:{self.port}" if ":" in self.host else (f"{self.host}:{self.port}")
        )
        if self.use_tls:
            ssl_context(self.cfg)  # a bad file is a config error now, not a retry loop
        elif cfg.tls is not None:
            raise ConfigError(f"mqtt.tls is set but mqtt.url is {cfg.url}: use mqtts:// for TLS")
        if cfg.password is not None or cfg.password_file is not None:
            if not cfg.username:
                raise ConfigError("mqtt.password / mqtt.password_file need mqtt.username")
        if cfg.password_file is not None:
            try:
                read_password(self.cfg)
            except ConnectError as exc:
                raise ConfigError(str(exc)) from None
        self._outbox = outbox
        self._on_command = on_command
        self._status_extra = status_extra
        self.status_interval_s = float(status_interval_s)
        self._protocol = (
            MQTTProtocolVersion.MQTTv311 if cfg.protocol == "3.1.1" else MQTTProtocolVersion.MQTTv5
        )

        self.connected = False
        self.last_error: str | None = None
        self.stats = PublisherStats()
        # Who speaks for the asset, on /status: another instance there is another agent.
        self.hostname = socket.gethostname()  # ours (self.host is the broker's)
        self.instance = str(uuid.uuid4())
        self.conflict: Conflict | None = None  # read by the daemon (service.py)
        self._conflict_seen = 0.0  # monotonic time of the last status of another agent
        self._own_status_seen = False  # the broker has relayed a status of ours
        self._conflict_logged = -math.inf  # monotonic time another agent was last named

        self._stop = threading.Event()
        self._stop_deadlines = (0.0, 0.0)
        self._kick = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._drained = threading.Condition()
        self._thread: threading.Thread | None = None
        # error reporting
        self._last_logged: str | None = None
        self._repeats = 0
        self._failures_in_row = 0
        self._down_since: float | None = None
        self._refusals_logged: set[str] = set()
        self._cert_diagnosis: str | None = None  # the broker refused our client certificate
        # A record the broker answers by closing the connection would block the outbox
        # forever (it is resent first at every connect): after two short connections lost
        # with records in flight, records go one at a time, and the one in flight when the
        # next is lost is held back (it stays in the outbox; retried after HOLD_S).
        self._short_losses = 0
        self._careful = False
        self._held: dict[int, float] = {}  # seq -> monotonic time until which it waits
        # Delivered (PUBACKed) records the outbox could not delete yet (a full disk): not
        # sent again, and deleted once it takes writes (tried every ACK_RETRY_S).
        self._unacked: set[int] = set()
        self._ack_retry_at = 0.0
        # Records the outbox could not take (send_now), oldest first, until their PUBACK.
        self._memory: list[Delivery] = []
        self._memory_lock = threading.Lock()
        self._connection = 0
        self._attached = False  # an outbox was attached (attach_outbox): a new boundary
        self._new_connection()

    def __repr__(self) -> str:
        return (
            f"MqttPublisher({'mqtts' if self.use_tls else 'mqtt'}://{self.hostport}, "
            f"root={self.root!r}, connected={self.connected})"
        )

    # --- public API --------------------------------------------------------------------

    def start(self) -> None:
        """Start the ``edge-mqtt`` thread; returns at once (connecting happens there)."""
        if self._thread is not None:
            raise RuntimeError("MqttPublisher.start() called twice")
        self._thread = threading.Thread(target=self._run, name="edge-mqtt", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """The ``edge-mqtt`` thread is running (it is built never to end before stop())."""
        return self._thread is not None and self._thread.is_alive()

    def notify(self) -> None:
        """New records were put in the outbox: publish them now rather than at the next
        poll. Cheap; callable from any thread."""
        if not self._kick.is_set():
            self._kick.set()
            self._wake()

    def send_now(self, topic: str, payload: dict[str, Any]) -> Delivery:
        """Send a record the outbox cannot take (a full disk) from memory: after the
        outbox's, on every connection until its PUBACK. Callable from any thread."""
        delivery = Delivery(topic, payload)
        with self._memory_lock:
            self._memory.append(delivery)
        self.notify()
        return delivery

    def pending_payload(self, delivery: Delivery) -> dict[str, Any] | None:
        """``delivery``'s payload while the broker does not have it; None once it does
        (its payload is let go then)."""
        with self._memory_lock:
            return None if delivery.delivered else delivery.payload

    def wait_acked(self, deliveries: list[Delivery], timeout: float) -> bool:
        """Wait until none of ``deliveries`` is in flight (sent on this connection, its
        PUBACK not come yet); False after ``timeout``. Before the outbox takes records
        sent from memory, so that one whose PUBACK is on its way is not queued and sent
        again."""
        deadline = time.monotonic() + timeout
        with self._drained:
            while True:
                with self._memory_lock:
                    live = set(self._memory)  # not yet PUBACKed, nor refused
                    busy = any(d in live and d.sent_on == self._connection for d in deliveries)
                left = deadline - time.monotonic()
                if not busy or left <= 0:
                    return not busy
                self._drained.wait(min(left, 0.1))

    def withdraw(self, delivery: Delivery) -> bool:
        """Send ``delivery`` from memory no more (the outbox has it now, or it is let go);
        whether the broker has it already."""
        with self._memory_lock:
            if delivery in self._memory:
                self._memory.remove(delivery)
        return delivery.delivered

    def attach_outbox(self, outbox: Outbox) -> None:
        """The outbox, once a full disk lets it open: what it holds (an earlier run's, and
        what was held meanwhile) is sent from now on, as made before this connection."""
        self._attached = True  # first: the edge-mqtt thread then takes its boundary
        self._outbox = outbox
        self.notify()

    @property
    def in_memory(self) -> int:
        """Records being sent from memory, not yet PUBACKed."""
        return len(self._memory)

    def wait_drained(self, timeout: float) -> bool:
        """Wait until the outbox is empty and nothing is left to send from memory
        (everything PUBACKed); False after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._drained:
            while True:
                outbox = self._outbox
                if not self._memory and (outbox is None or not any(outbox.depth().values())):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._drained.wait(min(left, 0.5))

    def stop(self, timeout: float = 5.0) -> None:
        """Publish the retained ``offline`` status if connected, disconnect cleanly and end
        the thread (waiting at most ``timeout`` s). Records not yet acknowledged stay in the
        outbox for the next run."""
        now, timeout = time.monotonic(), max(timeout, 0.0)
        # For the offline status's PUBACK, then for the DISCONNECT to be written.
        self._stop_deadlines = (now + 0.6 * timeout, now + 0.8 * timeout)
        self._stop.set()
        self._wake()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
            if t.is_alive():
                log.warning("%s: the MQTT thread did not end within %g s", self.hostport, timeout)
                return
        self.connected = False
        for s in (self._wake_r, self._wake_w):
            s.close()

    # --- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        delay = self.cfg.reconnect_min_s
        while not self._stop.is_set():
            try:
                up_s = self._session()
            except Exception as exc:  # a bug, or the outbox failing: never end the thread
                up_s = None
                message = f"{self.hostport}: unexpected error: {type(exc).__name__}: {exc}"
                self._fail(message, logging.ERROR, exc_info=True)
            finally:
                self._close_client()
            if self._stop.is_set():
                break
            if up_s is not None and up_s >= STABLE_S:
                delay = self.cfg.reconnect_min_s
            wait = min(delay, self.cfg.reconnect_max_s) * random.uniform(1 - JITTER, 1 + JITTER)
            self._stop.wait(wait)
            delay = min(2 * delay, self.cfg.reconnect_max_s)

    def _session(self) -> float | None:
        """One connection, from connect() to its end: seconds it was established, or None
        if it never was."""
        self._new_connection()
        try:
            client = self._make_client()
        except ConnectError as exc:
            self._fail(str(exc), exc.level)
            return None
        self._client = client
        try:
            if self._protocol == MQTTProtocolVersion.MQTTv5:
                client.connect(self.host, self.port, self.cfg.keepalive_s, clean_start=True)
            else:
                client.connect(self.host, self.port, self.cfg.keepalive_s)
        except Exception as exc:  # DNS, TCP, TLS: described, counted and retried
            message, level = describe(self.cfg, self.hostport, exc)
            self._fail(message, level)
            return None
        connack_deadline = time.monotonic() + CONNACK_TIMEOUT_S
        while True:
            self._handle_pubacks()
            if self._stop.is_set():
                self._goodbye(client)
                break
            if self._connack is not None and self._connected_at is None:
                if self._connack.is_failure:
                    break  # the broker closes the connection; reported below
                self._established(client)
            if self.connected:
                self._fill(client)
                if self._memory:
                    self._fill_from_memory(client)
                if self.presence and time.monotonic() >= self._next_status:
                    self._publish_status(client, "online")
                if self.conflict is not None:
                    self._conflict_gone()
            elif time.monotonic() > connack_deadline:
                self._fail(
                    f"{self.hostport}: no CONNACK within {CONNACK_TIMEOUT_S:g} s "
                    "(is it an MQTT broker?)"
                )
                return None
            if client.socket() is None or not self._io(client):
                break
        self._handle_pubacks()
        if self._connected_at is None:
            if not self._stop.is_set():
                message, level = self._before_connack()
                self._fail(message, level)
            return None
        up_s = time.monotonic() - self._connected_at
        self.connected = False
        if not self._stop.is_set():
            self._poison_check(up_s)
            self.stats.disconnects += 1
            if self._disconnect_by_broker:
                detail = f"the broker disconnected us: {self._disconnect_reason}"
            elif self._paho_error:
                detail = self._paho_error
            elif str(self._disconnect_reason) == "Keep alive timeout":
                detail = "no answer from the broker within the keepalive"
            elif self.conflict is not None:
                detail = f"closed by the broker: likely taken by {self.conflict.who}"
            else:
                detail = "closed by the broker or the network"
            self.last_error = f"{self.hostport}: connection lost after {up_s:.0f} s ({detail})"
            self._down_since = time.monotonic()
            log.warning("%s; reconnecting", self.last_error)
        return up_s

    def _io(self, client: paho.Client) -> bool:
        """Wait for the socket, a notify() or the next timer; let paho read and write.
        False when the connection is gone."""
        sock = client.socket()
        if sock is None:
            return False
        timeout = min(POLL_S, self.cfg.keepalive_s / 2)  # loop_misc sends the pings
        if self.connected:
            timeout = min(timeout, max(0.0, self._next_status - time.monotonic()))
        if self._stop.is_set():
            timeout = min(timeout, 0.05)
        pending = sock.pending() if hasattr(sock, "pending") else 0
        if pending:
            timeout = 0.0  # TLS holds bytes that select() cannot see
        wlist = [sock] if client.want_write() else []
        try:
            readable, writable, _ = select.select([sock, self._wake_r], wlist, [], timeout)
        except (OSError, ValueError):  # the socket was closed under us
            return False
        if self._wake_r in readable:
            try:
                while self._wake_r.recv(4096):
                    pass
            except OSError:  # BlockingIOError: drained
                pass
            # Cleared after draining: a notify() from now on sends a byte again, and one
            # that came before is seen by the outbox read that follows.
            self._kick.clear()
            self._dirty = True
        if sock in readable or pending:
            client.loop_read()
        if client.socket() is not None and (sock in writable or client.want_write()):
            client.loop_write()
        if client.socket() is not None:
            client.loop_misc()
        return client.socket() is not None

    def _new_connection(self) -> None:
        """Forget the previous connection's state."""
        self._client: paho.Client | None = None
        self._connack: Any = None  # the CONNACK reason code, once it came
        self._connected_at: float | None = None
        self._disconnect_reason: Any = None
        self._disconnect_by_broker = False
        self._paho_error: str | None = None
        # mid -> (seq, topic, bytes, monotonic time sent)
        self._inflight: dict[int, tuple[int, str, int, float]] = {}
        self._inflight_memory: dict[int, Delivery] = {}  # mid -> record sent from memory
        self._connection += 1
        self._pubacks: list[tuple[int, Any]] = []  # (mid, reason code) from on_publish
        self._refused_here = False  # a PUBACK on this connection had a failure reason
        self._sent_upto = 0
        self._boundary = 0
        self._limit = 1 if self._careful else self.cfg.max_inflight
        self._dirty = True
        self._exhausted = False
        self._next_poll = 0.0
        self._next_status = math.inf

    def _make_client(self) -> paho.Client:
        kwargs: dict[str, Any] = {}
        if self._protocol == MQTTProtocolVersion.MQTTv311:
            kwargs["clean_session"] = True
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=self._protocol,
            reconnect_on_failure=False,
            **kwargs,
        )
        client.suppress_exceptions = True  # ours are caught already; belt and braces
        client.connect_timeout = CONNECT_TIMEOUT_S
        client.max_inflight_messages_set(0)  # our own limit applies; paho must not queue
        client.max_queued_messages_set(0)
        if self.use_tls:
            try:
                client.tls_set_context(ssl_context(self.cfg))
            except ConfigError as exc:  # a file removed or broken since start-up
                raise ConnectError(str(exc), logging.ERROR) from None
        if self.cfg.username is not None:
            client.username_pw_set(self.cfg.username, read_password(self.cfg))
        if self.presence:
            client.will_set(
                self._topic("status"), self._status_payload("offline", "lost"), qos=1, retain=True
            )
        client.on_connect = self._guard(self._on_connect)
        client.on_disconnect = self._guard(self._on_disconnect)
        client.on_publish = self._guard(self._on_publish)
        client.on_message = self._guard(self._on_message)
        client.on_subscribe = self._guard(self._on_subscribe)
        client.on_log = self._guard(self._on_log)
        return client

    def _close_client(self) -> None:
        client, self._client = self._client, None
        self.connected = False
        if client is None:
            return
        sock = client.socket()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _established(self, client: paho.Client) -> None:
        """After a successful CONNACK: resend from the start of the outbox, subscribe to
        commands, publish the birth."""
        self._boundary = self._outbox.last_seq() if self._outbox is not None else 0
        self._connected_at = time.monotonic()
        self.connected = True
        self.stats.connects += 1
        self.last_error = None
        if self._failures_in_row or self._down_since is not None:
            since = self._down_since
            took = f", down {time.monotonic() - since:.0f} s" if since is not None else ""
            tries = self._failures_in_row
            log.warning(
                "connected to %s again%s%s", self.hostport, took,
                f", {tries} failed attempts" if tries else "",
            )  # fmt: skip
        else:
            log.info("connected to %s as %s", self.hostport, self.client_id)
        self._failures_in_row = 0
        self._down_since = None
        self._cert_diagnosis = None
        self._last_logged = None
        self._repeats = 0
        if self.presence:
            # Before the birth: what the broker retained is what was there before it.
            client.subscribe([(self._topic("cmd/#"), 1), (self._topic("status"), 1)])
            self._publish_status(client, "online")

    def _fill(self, client: paho.Client) -> None:
        """Publish outbox records after the last one sent, up to the in-flight limit."""
        now = time.monotonic()
        if self._careful and self._connected_at is not None:
            if now - self._connected_at >= STABLE_S:
                self._careful = False  # the connection holds: the losses were the network's
                self._limit = self.cfg.max_inflight
        room = self._limit - len(self._inflight) - len(self._inflight_memory)
        if room <= 0 or self._outbox is None:
            return
        if self._attached:
            self._attached = False
            self._boundary = self._outbox.last_seq()
        if self._exhausted and not self._dirty and now < self._next_poll:
            return
        self._dirty = False
        self._next_poll = now + POLL_S
        messages = self._outbox.pending(after=self._sent_upto, limit=room)
        self._exhausted = len(messages) < room
        for m in messages:
            if self._held.get(m.seq, 0.0) > now or m.seq in self._unacked:
                self._sent_upto = m.seq
                continue
            self._held.pop(m.seq, None)
            historical = m.seq <= self._boundary
            body = dict(m.payload)
            body["historical"] = historical
            data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
            topic = self._topic(m.topic)
            info = client.publish(topic, data, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break  # the connection just went; the record stays queued
            self._inflight[info.mid] = (m.seq, topic, len(data), time.monotonic())
            self._sent_upto = m.seq
            self.stats.published += 1
            self.stats.historical += historical

    def _fill_from_memory(self, client: paho.Client) -> None:
        """Publish the records held in memory (send_now) not yet sent on this connection,
        oldest first, in the room the outbox's left."""
        room = self._limit - len(self._inflight) - len(self._inflight_memory)
        if room <= 0:
            return
        with self._memory_lock:
            due = [d for d in self._memory if d.sent_on != self._connection][:room]
        for d in due:
            body = dict(d.payload)
            body["historical"] = d.made < (self._connected_at or 0.0)
            data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
            info = client.publish(self._topic(d.topic), data, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break  # the connection just went; sent again on the next
            d.sent_on, d.sent_at = self._connection, time.monotonic()
            self._inflight_memory[info.mid] = d
            self.stats.published += 1
            self.stats.historical += body["historical"]

    def _memory_acked(self, d: Delivery, reason: Any) -> None:
        """The PUBACK of a record sent from memory: delivered, or refused."""
        if reason is not None and reason.is_failure:
            self.stats.refused += 1
            self._refused_here = True
            self._memory_refused(d, f"refused a record sent from memory ({reason})")
            return
        with self._memory_lock:  # pending_payload reads both at once
            if d in self._memory:
                self._memory.remove(d)
            d.delivered = True
            d.payload = {}  # the broker has it: the memory goes
        self.stats.from_memory += 1
        with self._drained:
            self._drained.notify_all()

    def _memory_refused(self, d: Delivery, why: str) -> None:
        """Send ``d`` from memory no more: the sink puts it in the outbox once the disk
        has room, where a record the broker refuses is held back."""
        with self._memory_lock:
            if d in self._memory:
                self._memory.remove(d)
        self.stats.held_back += 1
        log.error(
            "%s: the broker %s on %s: it is sent from memory no more, and goes to the "
            "outbox once the disk has room", self.hostport, why, self._topic(d.topic),
        )  # fmt: skip

    def _poison_check(self, up_s: float) -> None:
        """After losing an established connection: is one record making the broker drop
        us? (Mosquitto 2.0, for one, closes an MQTT 5 connection after refusing a publish
        its ACL denies, so the refusal itself may never be read.)"""
        now = time.monotonic()
        # Records the broker may have dropped us for: sent just before the loss.
        in_flight = sorted(e for e in self._inflight.values() if now - e[3] < SUSPECT_S)
        memory = [d for d in self._inflight_memory.values() if now - d.sent_at < SUSPECT_S]
        if not (in_flight or memory) or up_s >= STABLE_S or self._refused_here:
            # (A record refused in its PUBACK is held back already: no other is to blame.)
            self._short_losses = 0
            self._careful = False
            return
        alone = len(self._inflight) + len(self._inflight_memory) == 1
        if self._careful and alone and memory:
            self._short_losses = 0
            self._careful = False
            why = "closes the connection whenever it gets a record sent from memory"
            self._memory_refused(memory[0], why)
            return
        if self._careful and alone:
            seq, topic, size, _ = in_flight[0]
            self._held[seq] = time.monotonic() + HOLD_S
            self.stats.held_back += 1
            self._short_losses = 0
            self._careful = False
            log.error(
                "%s: the broker closes the connection whenever it gets record %d on %s "
                "(%d bytes: does its ACL deny the topic, or is the record too large for "
                "it?): held back for %g s, the others go on; it stays in the outbox",
                self.hostport, seq, topic, size, HOLD_S,
            )  # fmt: skip
            return
        self._short_losses += 1
        if self._short_losses >= 2 and not self._careful:
            self._careful = True
            log.warning(
                "%s: %d connections in a row were lost soon after publishing: sending one "
                "record at a time to find one the broker refuses", self.hostport,
                self._short_losses,
            )  # fmt: skip

    def _handle_pubacks(self) -> None:
        if not self._pubacks:
            if self._unacked and time.monotonic() >= self._ack_retry_at:
                self._ack([])
            return
        pubacks, self._pubacks = self._pubacks, []
        done = []
        for mid, reason in pubacks:
            entry = self._inflight.pop(mid, None)
            if entry is None:
                d = self._inflight_memory.pop(mid, None)
                if d is not None:
                    self._memory_acked(d, reason)
                continue  # else a status message
            seq, topic, _, _ = entry
            if reason is not None and reason.is_failure:
                self.stats.refused += 1
                self.stats.held_back += 1
                self._refused_here = True
                self._held[seq] = time.monotonic() + HOLD_S
                key = f"{topic}: {reason}"
                level = logging.DEBUG if key in self._refusals_logged else logging.ERROR
                self._refusals_logged.add(key)
                log.log(
                    level, "%s: the broker refused record %d on %s (%s): held back for %g s, "
                    "the others go on; it stays in the outbox", self.hostport, seq, topic,
                    reason, HOLD_S,
                )  # fmt: skip
                continue
            done.append(seq)
        if done or self._unacked:
            self._ack(done)

    def _ack(self, done: list[int]) -> None:
        """Delete the delivered records ``done`` (and any kept from before) from the outbox.
        A full disk refuses that too: they are kept in memory meanwhile, so that they are not
        sent again, rather than ending the connection over it."""
        seqs = sorted(self._unacked.union(done))
        if self._unacked and time.monotonic() < self._ack_retry_at:
            self._unacked.update(done)
            return
        try:
            self._outbox.ack_many(seqs)
        except StorageError as exc:
            if not self._unacked:
                log.warning(
                    "%s; %d delivered messages stay in the outbox until it can delete them "
                    "(not sent again meanwhile; tried every %g s)", exc, len(seqs), ACK_RETRY_S,
                )  # fmt: skip
            self.stats.ack_errors += 1
            self._unacked.update(seqs)
            self._ack_retry_at = time.monotonic() + ACK_RETRY_S
            return
        if self._unacked:
            log.info("the outbox deleted the %d delivered messages it had kept", len(seqs))
            self._unacked.clear()
        self.stats.acked += len(seqs)
        with self._drained:
            self._drained.notify_all()

    def _goodbye(self, client: paho.Client) -> None:
        """On stop: the retained offline status, then a clean DISCONNECT (no will)."""
        if not self.connected:
            return
        ack_by, flush_by = self._stop_deadlines
        if self.presence:
            info = client.publish(
                self._topic("status"), self._status_payload("offline", "stopped"), qos=1,
                retain=True,
            )  # fmt: skip
            while (not info.is_published() and client.socket() is not None
                   and time.monotonic() < ack_by):  # fmt: skip
                self._io(client)
            self._handle_pubacks()
            if not info.is_published():
                log.warning("%s: no PUBACK for the offline status before stopping", self.hostport)
        client.disconnect()
        while client.socket() is not None and client.want_write() and time.monotonic() < flush_by:
            self._io(client)
        log.info("disconnected from %s", self.hostport)

    # --- status ------------------------------------------------------------------------

    def _topic(self, suffix: str) -> str:
        return f"{self.root}/{suffix}"

    def _status_payload(self, state: str, reason: str | None = None) -> bytes:
        online = state == "online"
        body = schema.status_payload(
            state,
            site=self.site,
            asset=self.asset,
            reason=reason,
            version=_version() if online else None,
            outbox=self._outbox.depth() if online and self._outbox is not None else None,
            counters=self._counters() if online else None,
            host=self.hostname,
            pid=os.getpid(),
            instance=self.instance,
        )
        body["historical"] = False
        return json.dumps(body, separators=(",", ":")).encode()

    def _counters(self) -> dict[str, Any]:
        counters: dict[str, Any] = {}
        if self._outbox is not None:
            counters.update({f"outbox_{k}": v for k, v in asdict(self._outbox.stats).items()})
        counters.update({f"mqtt_{k}": v for k, v in asdict(self.stats).items()})
        if self._status_extra is not None:
            try:
                counters.update(self._status_extra())
            except Exception:
                self.stats.callback_errors += 1
                log.exception("status_extra failed (counted); the status goes without it")
        # Counters are finite numbers (docs/schemas/status.schema.json): others are left out.
        return {
            str(k): v
            for k, v in counters.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        }

    def _publish_status(self, client: paho.Client, state: str) -> None:
        client.publish(self._topic("status"), self._status_payload(state), qos=1, retain=True)
        self._next_status = time.monotonic() + self.status_interval_s

    # --- paho callbacks (all in the edge-mqtt thread; they only record or dispatch) ------

    def _guard(self, fn: Callable[..., None]) -> Callable[..., None]:
        """``fn`` with every exception logged and counted: one escaping a paho callback
        would end the connection's processing."""

        def guarded(*args: Any) -> None:
            try:
                fn(*args)
            except Exception:
                self.stats.callback_errors += 1
                log.exception("error in the MQTT callback %s (counted)", fn.__name__)

        return guarded

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if client is not self._client:
            return
        self._connack = reason_code
        receive_max = getattr(properties, "ReceiveMaximum", None) if properties else None
        if receive_max:
            # One slot is left for the status messages.
            self._limit = max(1, min(self._limit, int(receive_max) - 1))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if client is not self._client:
            return
        self._disconnect_reason = reason_code
        self._disconnect_by_broker = bool(flags.is_disconnect_packet_from_server)
        self.connected = False

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        if client is self._client:
            self._pubacks.append((mid, reason_code))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        topics = (
            (self._topic("cmd/#"), "commands will not arrive"),
            (self._topic("status"), "another agent publishing as this asset will go unseen"),
        )
        for (topic, what), rc in zip(topics, reason_codes, strict=False):
            if rc.is_failure:
                log.warning(
                    "%s: the broker refused the subscription to %s (%s): %s",
                    self.hostport, topic, rc, what,
                )  # fmt: skip

    def _on_message(self, client, userdata, message) -> None:
        prefix = self._topic("cmd/")
        topic = message.topic
        if topic == self._topic("status"):
            self._status_seen(bytes(message.payload), bool(message.retain))
            return
        if not topic.startswith(prefix) or topic == prefix:
            log.warning("ignored a message on %s: expected %s<command>", topic, prefix)
            return
        name = topic[len(prefix) :]
        if message.retain:
            log.warning(
                "ignored the retained command %r on %s: a retained command would run again "
                "at every reconnect (clear it with an empty retained message)", name, topic,
            )  # fmt: skip
            return
        self.stats.commands += 1
        if self._on_command is None:
            log.info("command %r received but no handler is set", name)
            return
        try:
            self._on_command(name, bytes(message.payload))
        except Exception:
            self.stats.callback_errors += 1
            log.exception("the handler of command %r failed (counted)", name)

    def _on_log(self, client, userdata, level, buf) -> None:
        if level == paho.MQTT_LOG_ERR and client is self._client:
            self._paho_error = buf
        paho_log.debug("%s", buf)

    # --- another agent as this asset ----------------------------------------------------

    def _status_seen(self, payload: bytes, retained: bool) -> None:
        """A status on our topic: ours; the last run's, retained (ignored); or another
        agent's, a conflict (counted, said once per agent, and :attr:`conflict`)."""
        try:
            body = json.loads(payload)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = None
        if body is not None and body.get("instance") == self.instance:
            self._own_status_seen = True
            return
        if not payload:
            return  # somebody cleared the retained status
        if retained and not self._own_status_seen:
            # Until the broker has relayed ours, the retained status may be the last run's
            # (a restart, a crash): not a sign of another agent.
            return
        host = body.get("host") if body and isinstance(body.get("host"), str) else None
        if body is not None and body.get("instance"):
            key = str(body["instance"])
        elif body is not None and "state" in body:  # an edge-agent older than instance
            key = f"edge-agent on {host} pid {body.get('pid')}"
        else:
            key = payload[:200].decode(errors="replace")
        self.stats.conflicts += 1
        self._conflict_seen = time.monotonic()
        if self.conflict is not None and self.conflict.key == key:
            log.debug("%s/status: another status of %s", self.root, self.conflict.who)
            return
        who = self._describe_other(body, payload, host)
        self.conflict = Conflict(who=who, key=key, host=host)
        pid = body.get("pid") if body is not None else None
        find = (
            f"; `systemctl status {pid}` names the other's unit"
            if host == self.hostname and isinstance(pid, int)
            else ""
        )
        now, level = time.monotonic(), logging.DEBUG  # a flood of strangers fills no journal
        if now - self._conflict_logged >= CONFLICT_LOG_S:
            level, self._conflict_logged = logging.ERROR, now
        log.log(
            level,
            "%s/status: another agent publishes as this asset: %s. Two agents with one "
            "[output] site and asset send the plant two motors' alerts and summaries under "
            "one name, and with one MQTT client id each connection takes the other's. Give "
            "each motor its own [output] asset (this agent: host %s, pid %d%s). Publishing "
            "goes on; counted as mqtt_conflicts",
            self.root, who, self.hostname, os.getpid(), find,
        )  # fmt: skip

    def _describe_other(self, body: dict | None, payload: bytes, host: str | None) -> str:
        if body is None or "state" not in body:
            return f"a client that is no edge-agent (it sent {payload[:80]!r})"
        version = body.get("version")
        who = f"edge-agent {version}" if isinstance(version, str) else "edge-agent"
        if host is None:
            return f"{who}, of a version that does not name its computer"
        pid = body.get("pid")
        where = "this computer" if host == self.hostname else f"host {host}"
        return f"{who} on {where}" + (f" (pid {pid})" if isinstance(pid, int) else "")

    def _conflict_gone(self) -> None:
        """Clear :attr:`conflict` after CONFLICT_CLEAR_S connected with no other agent."""
        now = time.monotonic()
        assert self._connected_at is not None and self.conflict is not None
        if now - max(self._conflict_seen, self._connected_at) < CONFLICT_CLEAR_S:
            return
        log.warning(
            "%s/status: no other agent has published as this asset for %.0f min: %s is gone",
            self.root, CONFLICT_CLEAR_S / 60, self.conflict.who,
        )  # fmt: skip
        self.conflict = None

    # --- errors ------------------------------------------------------------------------

    def _fail(self, message: str, level: int = logging.WARNING, exc_info: bool = False) -> None:
        """Count and report a failed connection attempt; repeats quietly."""
        self.stats.connect_failures += 1
        self._failures_in_row += 1
        if self._down_since is None:
            self._down_since = time.monotonic()
        self.last_error = message
        if message != self._last_logged:
            self._last_logged = message
            self._repeats = 0
            log.log(
                level, "%s (retrying every %g s at most)", message, self.cfg.reconnect_max_s,
                exc_info=exc_info,
            )  # fmt: skip
            return
        self._repeats += 1
        if self._repeats % REMIND_EVERY == 0:
            log.info("still not connected after %d attempts: %s", self._failures_in_row, message)
        else:
            log.debug("%s (attempt %d)", message, self._failures_in_row)

    def _before_connack(self) -> tuple[str, int]:
        """Why a connection ended before a successful CONNACK."""
        hp = self.hostport
        reason = self._connack
        if reason is not None and reason.is_failure:
            user = self.cfg.username
            who = (
                f"user {user!r}; check mqtt.username and the password"
                if user
                else "no user name: mqtt.username is not set"
            )
            return f"{hp}: the broker refused the connection: {reason} ({who})", logging.ERROR
        err = self._paho_error
        if self.use_tls:
            cert = client_cert_problem(self.cfg, self.hostport, err) if err else None
            if cert is not None:
                self._cert_diagnosis = cert
                return cert, logging.ERROR
            if self._cert_diagnosis is not None:
                # The broker often resets the connection before its TLS alert can be read:
                # the same refusal, less clearly said this time.
                return self._cert_diagnosis, logging.ERROR
            tls = self.cfg.tls
            ours = f"tls.cert_file {tls.cert_file}" if tls and tls.cert_file else "none is set"
            return (
                f"{hp}: the broker closed the TLS connection before CONNACK "
                f"({err or 'no reason given'}); it may refuse our client certificate "
                f"({ours}) or require one",
                logging.WARNING,
            )
        if err:
            return f"{hp}: the connection failed before CONNACK ({err})", logging.WARNING
        return f"{hp}: the broker closed the connection before CONNACK", logging.WARNING

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full (a wake-up is pending anyway) or closed (stopped)
            pass
