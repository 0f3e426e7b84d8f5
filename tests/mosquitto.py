"""A real Mosquitto broker for tests and benchmarks, and a subscriber that records.

:class:`Mosquitto` writes a config in its own folder and runs ``mosquitto -c`` on a free
loopback port; ``stop()`` (SIGTERM, which also saves persistence) and ``start()`` again
reuse the same port, ``kill()`` is SIGKILL. Options: ``persistence`` (sessions and queued
messages survive a restart), ``users`` (a password file made with ``mosquitto_passwd``;
anonymous clients refused), ``tls`` (a second listener with TLS, the plain one stays for
test subscribers), ``acl`` (the text of an ACL file), ``extra`` (more lines of
configuration, before any TLS listener).

:class:`Subscriber` is a plant-side client: it connects (optionally with a persistent
session that survives a broker restart, paho reconnecting it), subscribes and records every
message it gets, parsed when it is JSON.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST = "127.0.0.1"
INSTALL_HINT = "apt-get install -y mosquitto"


class MosquittoMissing(RuntimeError):
    pass


def find_mosquitto() -> str:
    """The broker's executable, or MosquittoMissing saying how to install it."""
    for candidate in (
        shutil.which("mosquitto"),
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise MosquittoMissing(f"the MQTT tests need the Mosquitto broker: {INSTALL_HINT}")


def find_mosquitto_passwd() -> str:
    for candidate in (shutil.which("mosquitto_passwd"), "/usr/bin/mosquitto_passwd"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise MosquittoMissing(f"mosquitto_passwd not found: {INSTALL_HINT}")


_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A free loopback port outside the kernel's ephemeral range.

    Not one from ``bind(0)``: while the broker is stopped, clients keep connecting to its
    port, and a connect to a port in the ephemeral range can be given that same port as
    its source (a TCP self-connect), which then holds the port and the broker cannot
    start again on it.
    """
    low, high = _ephemeral_range()
    ranges = [r for r in ((10000, low - 1), (high + 1, 65535)) if r[1] - r[0] > 1000]
    rng = random.SystemRandom()
    for _ in range(500):
        first, last = rng.choice(ranges)
        port = rng.randint(first, last)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port outside the ephemeral range")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of the broker's TLS listener."""

    cafile: Path  # the CA that client certificates must chain to
    certfile: Path
    keyfile: Path
    require_certificate: bool = False


class Mosquitto:
    """One broker process; ``close()`` always leaves no process behind."""

    def __init__(
        self,
        folder: Path,
        *,
        persistence: bool = False,
        users: dict[str, str] | None = None,
        tls: TlsFiles | None = None,
        verbose: bool = True,
        max_queued: int = 0,
        acl: str | None = None,
        extra: str = "",
    ) -> None:
        self.exe = find_mosquitto()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.persistence = persistence
        self.users = dict(users or {})
        self.tls = tls
        self.verbose = verbose
        self.max_queued = max_queued
        self.acl = acl
        self.extra = extra
        self.port = free_port()
        self.tls_port = free_port() if tls is not None else None
        self.conf = self.folder / "mosquitto.conf"
        self.log_path = self.folder / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    @property
    def tls_url(self) -> str:
        assert self.tls_port is not None
        return f"mqtts://{HOST}:{self.tls_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {HOST}",
            f"allow_anonymous {'false' if self.users else 'true'}",
            f"max_queued_messages {self.max_queued}",
            "max_inflight_messages 20",
            "log_dest stderr",
            "log_timestamp_format %H:%M:%S",
            "connection_messages true",
        ]
        if self.verbose:
            lines += ["log_type all"]
        else:
            lines += ["log_type error", "log_type warning", "log_type notice"]
        if os.geteuid() == 0:
            # Run as root, mosquitto 2 drops to user "mosquitto", who cannot read our files.
            lines.append("user root")
        if self.persistence:
            lines += [
                "persistence true",
                f"persistence_location {self.folder}/",
                "persistence_file mosquitto.db",
                "autosave_interval 1",
            ]
        if self.users:
            pwfile = self.folder / "passwd"
            pwfile.unlink(missing_ok=True)
            pwfile.touch(mode=0o600)
            tool = find_mosquitto_passwd()
            for user, password in self.users.items():
                subprocess.run(
                    [tool, "-b", str(pwfile), user, password], check=True, capture_output=True
                )
            lines.append(f"password_file {pwfile}")
        if self.extra:
            lines.append(self.extra.strip())
        if self.acl is not None:
            aclfile = self.folder / "acl"
            aclfile.write_text(self.acl)
            lines.append(f"acl_file {aclfile}")
        if self.tls is not None:
            # The TLS options belong to the listener above them.
            lines += [
                f"listener {self.tls_port} {HOST}",
                f"cafile {self.tls.cafile}",
                f"certfile {self.tls.certfile}",
                f"keyfile {self.tls.keyfile}",
                f"require_certificate {'true' if self.tls.require_certificate else 'false'}",
            ]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> None:
        """Run the broker and wait until every listener accepts connections."""
        if self.running:
            return
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                [self.exe, "-c", str(self.conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        ports = [self.port] + ([self.tls_port] if self.tls_port is not None else [])
        deadline = time.monotonic() + timeout
        for port in ports:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"mosquitto exited with {self.proc.returncode} at start-up:\n"
                        + self.log_tail()
                    )
                try:
                    with socket.create_connection((HOST, port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        self.kill()
                        raise RuntimeError(
                            f"mosquitto did not listen on {HOST}:{port} within {timeout} s:\n"
                            + self.log_tail()
                        ) from None
                    time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (mosquitto saves its persistence file) and wait for the exit."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: no persistence saved, no clean disconnects."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc = None

    close = kill

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    t: float  # time.monotonic() on arrival

    @property
    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """A plant-side client recording what it receives on ``topics``.

    ``persistent``: a fixed client id and a session kept by the broker (QoS 1 messages for
    it are queued while it is away, and kept across a restart of a broker with
    persistence); paho reconnects it automatically.
    """

    def __init__(
        self,
        broker: Mosquitto,
        topics: str | list[str] = "#",
        *,
        client_id: str | None = None,
        persistent: bool = False,
        username: str | None = None,
        password: str | None = None,
        protocol: str = "5",
    ) -> None:
        self.broker = broker
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.persistent = persistent
        self.messages: list[Received] = []
        self.cond = threading.Condition()
        self.subscribed = threading.Event()
        self.connects = 0
        v5 = protocol == "5"
        self.v5 = v5
        kwargs: dict[str, Any] = {}
        if not v5:
            kwargs["clean_session"] = not persistent
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-sub-{os.getpid()}-{id(self)}",
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            **kwargs,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def start(self, timeout: float = 10.0) -> Subscriber:
        props = None
        kwargs: dict[str, Any] = {}
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            if self.persistent:
                props.SessionExpiryInterval = 3600
            kwargs = {"clean_start": not self.persistent, "properties": props}
        self.client.connect(HOST, self.broker.port, keepalive=10, **kwargs)
        self.client.loop_start()
        if not self.subscribed.wait(timeout):
            raise AssertionError(f"subscriber: no SUBACK within {timeout} s")
        return self

    def stop(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            return
        self.connects += 1
        if self.persistent and flags.session_present:
            self.subscribed.set()
            return
        client.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self.subscribed.set()

    def _on_message(self, client, userdata, msg) -> None:
        with self.cond:
            self.messages.append(
                Received(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos, time.monotonic())
            )
            self.cond.notify_all()

    def on(self, suffix: str) -> list[Received]:
        """Messages whose topic ends with ``/suffix``, in arrival order."""
        with self.cond:
            return [m for m in self.messages if m.topic.endswith("/" + suffix)]

    def wait_for(self, predicate, timeout: float, what: str = "condition") -> list[Received]:
        """Wait until ``predicate(messages)`` is true; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"subscriber: {what} not met within {timeout} s; got "
                        f"{len(self.messages)} messages, last: "
                        f"{[(m.topic, m.payload[:120]) for m in self.messages[-3:]]}"
                    )
                self.cond.wait(min(left, 0.2))
            return list(self.messages)


def retained(broker: Mosquitto, topic: str, timeout: float = 5.0, **kw: Any) -> Any:
    """The retained message on ``topic`` (parsed JSON), or None if there is none."""
    sub = Subscriber(broker, topic, **kw).start()
    try:
        try:
            msgs = sub.wait_for(lambda ms: any(m.retain for m in ms), min(timeout, 1.0))
        except AssertionError:
            return None
        return next(m for m in msgs if m.retain).json
    finally:
        sub.stop()


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.02
) -> None:
    """Poll ``predicate`` until true; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(step)
