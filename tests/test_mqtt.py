"""The MQTT publisher against a real Mosquitto broker: what a plant subscriber sees.

Every test runs its own broker on a free loopback port (tests/mosquitto.py). Deadlines
below are generous upper bounds for a shared CI machine, never speed assertions; the one
long test (a 30 s outage) is the issue's requirement.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

import edge_agent
from edge_agent.config import MqttConfig, MqttTlsConfig, load_config
from edge_agent.errors import ConfigError
from edge_agent.publish import mqtt
from edge_agent.publish.mqtt import MqttPublisher
from edge_agent.publish.outbox import Outbox
from tests.mosquitto import (
    Mosquitto,
    Received,
    Subscriber,
    TlsFiles,
    free_port,
    retained,
    wait_until,
)

SITE, ASSET = "plant1", "m1"
ROOT = f"edge-agent/{SITE}/{ASSET}"
KEEPALIVE_S = 5


def mqtt_config(url: str, **kw: Any) -> MqttConfig:
    options: dict[str, Any] = dict(
        url=url, keepalive_s=KEEPALIVE_S, reconnect_min_s=0.1, reconnect_max_s=0.5
    )
    options.update(kw)
    return MqttConfig(**options)


def record(n: int, **extra: Any) -> dict[str, Any]:
    """A payload as the pipeline puts it: schema, id, ts, plus a test counter ``n``."""
    return {"schema": 1, "id": str(uuid.uuid4()), "ts": time.time(), "n": n, **extra}



def data_messages(sub: Subscriber) -> list[Received]:
    return [m for m in sub.messages if m.topic.rsplit("/", 1)[-1] in ("alert", "summary", "event")]


def first_copies(msgs: list[Received]) -> list[dict[str, Any]]:
    """Payloads in arrival order, duplicates (same id, a lost PUBACK) after the first dropped."""
    seen: set[str] = set()
    out = []
    for m in msgs:
        p = m.json
        if p["id"] not in seen:
            seen.add(p["id"])
            out.append(p)
    return out


def statuses(sub: Subscriber) -> list[dict[str, Any]]:
    return [m.json for m in sub.on("status")]


@pytest.fixture
def make_publisher(tmp_path: Path) -> Iterator[Callable[..., MqttPublisher]]:
    """``make_publisher(url, outbox=None, on_command=…, status_extra=…, **mqtt_options)``:
    a started publisher (stopped, and its outbox closed, at teardown)."""
    made: list[tuple[MqttPublisher, Outbox]] = []

    def make(url: str, *, outbox: Outbox | None = None, **kw: Any) -> MqttPublisher:
        ob = outbox if outbox is not None else Outbox(tmp_path / f"edge{len(made)}.db")
        own = {k: kw.pop(k) for k in ("on_command", "status_extra", "status_interval_s") if k in kw}
        pub = MqttPublisher(mqtt_config(url, **kw), site=SITE, asset=ASSET, outbox=ob, **own)
        made.append((pub, ob))
        pub.start()
        return pub

    yield make
    for pub, ob in made:
        pub.stop(timeout=2.0)
        ob.close()


class Child:
    """A Python subprocess running CHILD; its stdout lines arrive in a queue."""

    def __init__(self, *args: str, log: Path) -> None:
        self.log = log
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", CHILD, *args],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.endswith("\n"):  # a line cut by SIGKILL is not a complete record
                self.lines.put(line.rstrip("\n"))

    def line(self, timeout: float) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"child: no output within {timeout} s; stderr:\n{self.log.read_text()[-2000:]}"
            ) from None

    def rest(self) -> list[str]:
        """Every remaining complete line, once the process has ended."""
        self.reader.join(10)
        out = []
        while not self.lines.empty():
            out.append(self.lines.get())
        return out

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    children: list[Child] = []

    def make(*args: str) -> Child:
        child = Child(*args, log=tmp_path / f"child{len(children)}.log")
        children.append(child)
        return child

    yield make
    for child in children:
        child.kill()
        child.proc.wait(10)


# A publisher in another process: "put" queues records as fast as it can, printing
# "seq n" after each put returns; "idle" prints "connected" once connected, then waits.
CHILD = f"""
import sys, time, uuid
from edge_agent.config import MqttConfig
from edge_agent.publish.mqtt import MqttPublisher
from edge_agent.publish.outbox import Outbox

url, db, mode = sys.argv[1:4]
ob = Outbox(db)
cfg = MqttConfig(url=url, keepalive_s={KEEPALIVE_S}, reconnect_min_s=0.1, reconnect_max_s=0.5)
pub = MqttPublisher(cfg, site={SITE!r}, asset={ASSET!r}, outbox=ob)
pub.start()
if mode == "put":
    n = 0
    while True:
        kind = "alert" if n % 2 == 0 else "summary"
        payload = {{"schema": 1, "id": str(uuid.uuid4()), "ts": time.time(), "n": n}}
        seq = ob.put(kind, kind, payload)
        pub.notify()
        print(seq, n, flush=True)
        n += 1
        time.sleep(0.002)
else:
    while not pub.connected:
        time.sleep(0.01)
    print("connected", flush=True)
    time.sleep(3600)
"""


# --- delivery ---------------------------------------------------------------------------


def test_queued_records_reach_a_subscriber_in_order(
    broker: Mosquitto, make_subscriber, make_publisher, tmp_path: Path
) -> None:
    sub = make_subscriber(broker, f"{ROOT}/#")
    ob = Outbox(tmp_path / "edge.db")
    pub = make_publisher(broker.url, outbox=ob)
    wait_until(lambda: pub.connected, 10, "publisher connected")
    sent = []
    for n in range(60):
        kind = "alert" if n % 3 else ("summary" if n % 2 else "event")
        payload = record(n, fault="bearing")
        assert ob.put(kind, kind, payload) is not None
        sent.append((kind, payload))
        pub.notify()
    assert pub.wait_drained(20)
    sub.wait_for(lambda ms: len(data_messages(sub)) >= 60, 10, "60 records")

    got = data_messages(sub)
    assert [m.topic for m in got] == [f"{ROOT}/{kind}" for kind, _ in sent]
    assert [m.json for m in got] == [{**p, "historical": False} for _, p in sent]
    assert all(m.qos == 1 and not m.retain for m in got)
    assert ob.depth() == {"alert": 0, "summary": 0, "event": 0}
    assert pub.stats.acked == pub.stats.published == 60
    assert pub.stats.historical == 0 and pub.last_error is None


def test_notify_alone_wakes_the_publisher(
    broker: Mosquitto, make_subscriber, make_publisher, tmp_path: Path, monkeypatch
) -> None:
    """With the periodic re-read of the outbox pushed out of reach, every burst of puts
    must still go out on notify() alone (a lost wake-up would hang here)."""
    monkeypatch.setattr("edge_agent.publish.mqtt.POLL_S", 3600.0)

    class SlowClear(threading.Event):
        """Widens the window in which a notify() from the test can race the publisher
        thread's handling of the previous one."""

        def clear(self) -> None:
            super().clear()
            time.sleep(0.002)

    sub = make_subscriber(broker, f"{ROOT}/#")
    ob = Outbox(tmp_path / "edge.db")
    pub = make_publisher(broker.url, outbox=ob)
    pub._kick = SlowClear()
    wait_until(lambda: pub.connected, 10, "publisher connected")
    n = 0
    for _ in range(10):
        for _ in range(50):
            ob.put("summary", "summary", record(n))
            pub.notify()
            n += 1
        assert pub.wait_drained(10), f"not delivered after notify(): {ob.depth()}"
    sub.wait_for(lambda ms: len(data_messages(sub)) == n, 10, f"{n} summaries")


def test_a_30_s_broker_outage_loses_nothing(
    make_broker, make_subscriber, make_publisher, tmp_path: Path
) -> None:
    """The broker stops for 30 s while records keep coming (one every 0.2 s), then comes
    back on the same port. The plant's historian (a persistent session on a broker with
    persistence) gets every record once or more, first copies in seq order, and those
    queued during the outage marked historical."""
    broker = make_broker(persistence=True)
    sub = make_subscriber(broker, f"{ROOT}/#", client_id="plant-historian", persistent=True)
    ob = Outbox(tmp_path / "edge.db")
    pub = make_publisher(broker.url, outbox=ob)
    wait_until(lambda: pub.connected, 10, "publisher connected")

    phase = ["up"]
    puts: list[tuple[int, int, str]] = []  # (n, seq, phase)
    done = threading.Event()
    errors: list[BaseException] = []

    def produce() -> None:
        n = 0
        try:
            while not done.wait(0.2):
                before = phase[0]
                kind = "alert" if n % 3 == 0 else "summary"
                seq = ob.put(kind, kind, record(n))
                pub.notify()
                after = phase[0]
                puts.append((n, seq, before if before == after else "between"))
                n += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    producer = threading.Thread(target=produce, name="test-producer")
    producer.start()
    try:
        done.wait(5)
        phase[0] = "stopping"
        broker.stop()
        unacked_at_stop = {m.seq for m in ob.pending(limit=1_000_000)}
        phase[0] = "down"
        done.wait(30)
        phase[0] = "restarting"
        broker.start()
        wait_until(lambda: pub.stats.connects >= 2, 30, "publisher reconnected")
        phase[0] = "after"
        done.wait(3)
    finally:
        done.set()
        producer.join(10)
    assert not errors, errors
    assert pub.wait_drained(60), ob.depth()

    total = len(puts)
    by_phase = {p: [n for n, _, ph in puts if ph == p] for p in ("up", "down", "after")}
    assert len(by_phase["down"]) >= 100  # 30 s at 5 per second
    assert by_phase["up"] and by_phase["after"]

    def complete(ms: list[Received]) -> bool:
        return {m.json["n"] for m in data_messages(sub)} >= set(range(total))

    sub.wait_for(complete, 60, f"all {total} records at the historian")
    firsts = first_copies(data_messages(sub))
    assert [p["n"] for p in firsts] == list(range(total))  # none missing, in seq order

    copies: dict[int, list[bool]] = {}
    for m in data_messages(sub):
        copies.setdefault(m.json["n"], []).append(m.json["historical"])
    seq_of = {n: seq for n, seq, _ in puts}
    for n in by_phase["down"]:
        assert all(copies[n]), f"record {n} queued during the outage: {copies[n]}"
    for n in by_phase["after"]:
        assert copies[n] == [False], f"record {n} queued after the reconnect: {copies[n]}"
    for n in by_phase["up"]:
        if seq_of[n] not in unacked_at_stop:  # acknowledged before the outage: sent once
            assert copies[n] == [False], f"record {n} acked before the outage: {copies[n]}"
    assert pub.stats.disconnects >= 1 and pub.stats.connect_failures >= 1
    assert pub.stats.historical >= len(by_phase["down"])
    assert ob.depth() == {"alert": 0, "summary": 0, "event": 0}


def test_records_put_by_a_killed_process_are_delivered_by_the_next(
    broker: Mosquitto, make_subscriber, make_publisher, spawn, tmp_path: Path
) -> None:
    """kill -9 while queueing with the broker away: every put that returned is on disk,
    and a new publisher on the same file delivers them all, historical."""
    db = tmp_path / "edge.db"
    broker.stop()
    child = spawn(broker.url, str(db), "put")
    lines = [child.line(30) for _ in range(150)]
    child.kill(signal.SIGKILL)
    child.proc.wait(10)
    lines += child.rest()
    returned = {int(line.split()[1]) for line in lines}
    assert returned == set(range(len(returned)))

    broker.start()
    sub = make_subscriber(broker, f"{ROOT}/#")
    ob = Outbox(db)
    on_disk = [m.payload["n"] for m in ob.pending(limit=1_000_000)]
    assert set(on_disk) >= returned  # (one more may have committed before its print)
    assert on_disk == sorted(on_disk)

    pub = make_publisher(broker.url, outbox=ob)
    assert pub.wait_drained(30), ob.depth()
    sub.wait_for(lambda ms: len(data_messages(sub)) >= len(on_disk), 10, "every record")
    got = first_copies(data_messages(sub))
    assert [p["n"] for p in got] == on_disk
    assert all(m.json["historical"] for m in data_messages(sub))
    assert pub.stats.historical == len(on_disk)


def refusing_broker(why: str, make_broker) -> tuple[Mosquitto, dict[str, Any]]:
    """A broker that refuses the alert it returns: by its ACL (summaries only), or for its
    size."""
    if why == "acl":
        acl = f"topic readwrite {ROOT}/status\ntopic readwrite {ROOT}/summary\ntopic read #\n"
        return make_broker(acl=acl), record(0)
    return make_broker(extra="max_packet_size 2000"), record(0, evidence="x" * 3000)


@pytest.mark.parametrize("why", ["acl", "size"])
def test_a_record_the_broker_refuses_does_not_block_the_others(
    why: str, make_broker, make_subscriber, make_publisher, tmp_path: Path, caplog
) -> None:
    """acl: the broker's ACL lets the edge publish summaries but not alerts. MQTT 5 says
    so in the PUBACK (Not authorized); Mosquitto 2.0 then also closes the connection, often
    before that PUBACK can be read. size: the alert is larger than the broker accepts; it
    disconnects without a PUBACK. Either way the alert would be resent first at every
    connect; instead it is held back (it stays in the outbox), the summaries behind it go,
    and it is reported once at ERROR."""
    broker, alert = refusing_broker(why, make_broker)
    sub = make_subscriber(broker, f"{ROOT}/#")
    ob = Outbox(tmp_path / "edge.db")
    ob.put("alert", "alert", alert)
    for n in range(1, 4):
        ob.put("summary", "summary", record(n))
    pub = make_publisher(broker.url, outbox=ob)
    wait_until(lambda: ob.depth()["summary"] == 0, 30, "the summaries delivered")
    assert ob.depth() == {"alert": 1, "summary": 0, "event": 0}
    assert pub.stats.acked == 3 and pub.stats.refused + pub.stats.held_back >= 1
    sub.wait_for(lambda ms: len(data_messages(sub)) >= 3, 10, "the summaries")
    assert [p["n"] for p in first_copies(data_messages(sub))] == [1, 2, 3]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any(f"{ROOT}/alert" in r.message for r in errors)
    assert len(errors) == 1


@pytest.mark.parametrize("why", ["acl", "size"])
def test_a_record_sent_from_memory_that_the_broker_refuses_does_not_block_the_others(
    why: str, make_broker, make_subscriber, make_publisher, tmp_path: Path, caplog
) -> None:
    """While the disk is full the sink sends what the outbox cannot take from memory
    (send_now). An alert the broker refuses, as above, is sent from memory no more (the
    sink puts it in the outbox once the disk has room); the summaries go."""
    broker, alert = refusing_broker(why, make_broker)
    sub = make_subscriber(broker, f"{ROOT}/#")
    pub = make_publisher(broker.url, outbox=Outbox(tmp_path / "edge.db"))
    wait_until(lambda: pub.connected, 10, "publisher connected")
    refused = pub.send_now("alert", alert)
    sent = [pub.send_now("summary", record(n)) for n in range(1, 4)]
    wait_until(lambda: pub.in_memory == 0, 60, "nothing left to send from memory")
    assert all(d.delivered for d in sent) and not refused.delivered
    assert pub.withdraw(refused) is False  # the sink's cue to queue it in the outbox
    assert pub.stats.from_memory == 3 and pub.stats.held_back == 1
    sub.wait_for(lambda ms: len(data_messages(sub)) >= 3, 10, "the summaries")
    assert [p["n"] for p in first_copies(data_messages(sub))] == [1, 2, 3]
    errors = [r.message for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and f"{ROOT}/alert" in errors[0], errors
    assert "sent from memory no more" in errors[0]


def test_records_sent_from_memory_are_waited_for_until_their_pubacks_come(
    broker: Mosquitto, make_publisher, tmp_path: Path
) -> None:
    """Once the disk has room, the sink waits for the PUBACKs of held records on their
    way before the outbox takes them (wait_acked), else the outbox sends them again. The
    broker frozen (SIGSTOP) holds the PUBACKs back."""
    pub = make_publisher(broker.url, outbox=Outbox(tmp_path / "edge.db"))
    wait_until(lambda: pub.connected, 10, "publisher connected")
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGSTOP)
    try:
        before = pub.stats.published
        sent = [pub.send_now("summary", record(n)) for n in range(1, 4)]
        wait_until(lambda: pub.stats.published == before + 3, 10, "the records sent")
        assert pub.wait_acked(sent, 0.5) is False  # no PUBACK from a frozen broker
        assert not any(d.delivered for d in sent)
    finally:
        broker.proc.send_signal(signal.SIGCONT)
    assert pub.wait_acked(sent, 10.0) is True
    assert all(d.delivered for d in sent) and pub.in_memory == 0
    assert pub.wait_acked([], 0.0) is True


# --- TLS --------------------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A CA, the broker's certificate (127.0.0.1, localhost), a client certificate, and
    an unrelated CA with a client certificate of its own."""
    folder = tmp_path / "pki"
    folder.mkdir()
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("edge-agent.plant1.example")
    stranger = other.issue_cert("stranger.example")
    files = {
        "ca": ca.cert_pem,
        "other_ca": other.cert_pem,
        "server": server.cert_chain_pems[0],
        "server_key": server.private_key_pem,
        "client": client.cert_chain_pems[0],
        "client_key": client.private_key_pem,
        "stranger": stranger.cert_chain_pems[0],
        "stranger_key": stranger.private_key_pem,
    }
    paths = {}
    for name, blob in files.items():
        paths[name] = folder / f"{name}.pem"
        blob.write_to_path(paths[name])
    return paths


@pytest.fixture
def tls_broker(make_broker, pki: dict[str, Path]) -> Mosquitto:
    return make_broker(
        tls=TlsFiles(pki["ca"], pki["server"], pki["server_key"], require_certificate=True)
    )


def test_tls_with_a_client_certificate_delivers(
    tls_broker: Mosquitto, pki: dict[str, Path], make_subscriber, make_publisher, tmp_path: Path
) -> None:
    sub = make_subscriber(tls_broker, f"{ROOT}/#")  # on the broker's plain listener
    ob = Outbox(tmp_path / "edge.db")
    ob.put("alert", "alert", record(0))
    tls = MqttTlsConfig(ca_file=pki["ca"], cert_file=pki["client"], key_file=pki["client_key"])
    pub = make_publisher(tls_broker.tls_url, outbox=ob, tls=tls)
    assert pub.wait_drained(20), pub.last_error
    sub.wait_for(lambda ms: len(data_messages(sub)) == 1, 10, "the alert")
    assert data_messages(sub)[0].json["n"] == 0
    assert pub.connected and pub.last_error is None


def test_tls_with_an_untrusted_broker_certificate_is_a_clear_error(
    tls_broker: Mosquitto, pki: dict[str, Path], make_subscriber, make_publisher, tmp_path: Path
) -> None:
    sub = make_subscriber(tls_broker, f"{ROOT}/#")
    ob = Outbox(tmp_path / "edge.db")
    ob.put("alert", "alert", record(0))
    tls = MqttTlsConfig(
        ca_file=pki["other_ca"], cert_file=pki["client"], key_file=pki["client_key"]
    )
    pub = make_publisher(tls_broker.tls_url, outbox=ob, tls=tls)
    wait_until(lambda: pub.stats.connect_failures >= 3, 20, "three failed attempts")
    error = pub.last_error or ""
    assert "certificate is not trusted" in error and str(pki["other_ca"]) in error
    assert f"127.0.0.1:{tls_broker.tls_port}" in error
    assert not pub.connected and pub.stats.connects == 0
    assert data_messages(sub) == []
    assert ob.depth()["alert"] == 1


def test_tls_without_the_client_certificate_the_broker_wants_is_a_clear_error(
    tls_broker: Mosquitto, pki: dict[str, Path], make_publisher
) -> None:
    pub = make_publisher(tls_broker.tls_url, tls=MqttTlsConfig(ca_file=pki["ca"]))
    wait_until(lambda: pub.stats.connect_failures >= 3, 20, "three failed attempts")
    assert "client certificate" in (pub.last_error or "")
    assert pub.stats.connects == 0


def test_tls_files_are_checked_at_construction(tmp_path: Path, pki: dict[str, Path]) -> None:
    ob = Outbox(tmp_path / "edge.db")
    try:
        missing = tmp_path / "nowhere" / "ca.pem"
        with pytest.raises(ConfigError, match=str(missing)):
            MqttPublisher(
                mqtt_config("mqtts://127.0.0.1:8883", tls=MqttTlsConfig(ca_file=missing)),
                site=SITE, asset=ASSET, outbox=ob,
            )  # fmt: skip
        wrong_key = MqttTlsConfig(
            ca_file=pki["ca"], cert_file=pki["client"], key_file=pki["stranger_key"]
        )
        with pytest.raises(ConfigError, match="key_file"):
            MqttPublisher(
                mqtt_config("mqtts://127.0.0.1:8883", tls=wrong_key),
                site=SITE, asset=ASSET, outbox=ob,
            )  # fmt: skip
        with pytest.raises(ConfigError, match="mqtts://"):
            MqttPublisher(
                mqtt_config("mqtt://127.0.0.1", tls=MqttTlsConfig(ca_file=pki["ca"])),
                site=SITE, asset=ASSET, outbox=ob,
            )  # fmt: skip
    finally:
        ob.close()


# --- authentication and connection errors -------------------------------------------------


def test_a_bad_password_is_retried_and_a_fixed_file_is_picked_up(
    make_broker, make_subscriber, make_publisher, tmp_path: Path, caplog
) -> None:
    right, wrong = "Rt-pw-7731", "Wr0ng-s3cret-4419"
    broker = make_broker(users={"edge": right, "plant": "plant-pw"})
    sub = make_subscriber(broker, f"{ROOT}/#", username="plant", password="plant-pw")
    pwfile = tmp_path / "mqtt.password"
    pwfile.write_text(wrong + "\n")
    ob = Outbox(tmp_path / "edge.db")
    ob.put("alert", "alert", record(0))
    caplog.set_level(logging.DEBUG, logger="edge_agent")
    pub = make_publisher(broker.url, outbox=ob, username="edge", password_file=pwfile)
    wait_until(lambda: pub.stats.connect_failures >= 3, 20, "three failed attempts")

    error = pub.last_error or ""
    assert "refused" in error and "'edge'" in error
    for text in (error, caplog.text, repr(pub), repr(pub.cfg), str(pub.stats)):
        assert wrong not in text and right not in text
    first = pub.stats.connect_failures
    wait_until(lambda: pub.stats.connect_failures > first, 10, "more attempts")
    # Reported once above DEBUG, not at every attempt.
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING and "refused" in r.message]
    assert len(loud) == 1

    pwfile.write_text(right + "\n")
    wait_until(lambda: pub.connected, 20, "connected with the fixed password file")
    assert pub.wait_drained(10)
    sub.wait_for(lambda ms: len(data_messages(sub)) == 1, 10, "the alert")
    assert wrong not in caplog.text and right not in caplog.text


def test_connection_refused_and_unknown_host_are_clear_errors(make_publisher) -> None:
    port = free_port()  # nothing listens there
    pub = make_publisher(f"mqtt://127.0.0.1:{port}")
    wait_until(lambda: pub.stats.connect_failures >= 3, 20, "three failed attempts")
    assert f"127.0.0.1:{port}" in (pub.last_error or "") and "refused" in pub.last_error

    pub2 = make_publisher("mqtt://no-such-broker.invalid:1883")
    wait_until(lambda: pub2.stats.connect_failures >= 2, 60, "two failed attempts")
    assert "cannot resolve" in (pub2.last_error or "") and "no-such-broker.invalid" in (
        pub2.last_error
    )


def test_url_forms_and_config_errors(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "edge.db")
    try:

        def make(**kw: Any) -> MqttPublisher:
            return MqttPublisher(MqttConfig(**kw), site=SITE, asset=ASSET, outbox=ob)

        p = make(url="mqtt://[::1]")
        assert (p.host, p.port, p.use_tls, p.hostport) == ("::1", 1883, False, "[::1]:1883")
        p = make(url="mqtts://broker.example", prefix="plant")
        assert (p.port, p.use_tls, p.root) == (8883, True, f"plant/{SITE}/{ASSET}")
        assert p.client_id == f"edge-agent-{SITE}-{ASSET}"
        with pytest.raises(ConfigError, match=r"mqtt\.url is not set"):
            make()
        # Credentials in the URL are refused by the config, without echoing them.
        with pytest.raises(ConfigError, match="password_file") as err:
            load_config(None, environ={"EDGE_AGENT_MQTT__URL": "mqtt://edge:hunter2@broker"})
        assert "hunter2" not in str(err.value)
        with pytest.raises(ConfigError, match=r"need mqtt\.username"):
            make(url="mqtt://broker", password="x")
        with pytest.raises(ConfigError, match="password_file"):
            make(url="mqtt://broker", username="u", password_file=tmp_path / "none")
        with pytest.raises(ConfigError, match="site"):
            MqttPublisher(MqttConfig(url="mqtt://b"), site="a/b", asset=ASSET, outbox=ob)
    finally:
        ob.close()


# --- status: birth, Last Will, clean stop -------------------------------------------------


def test_birth_is_online_and_a_clean_stop_leaves_offline_stopped(
    broker: Mosquitto, make_subscriber, tmp_path: Path
) -> None:
    sub = make_subscriber(broker, f"{ROOT}/status")
    ob = Outbox(tmp_path / "edge.db")
    ob.put("summary", "summary", record(0))
    pub = MqttPublisher(
        mqtt_config(broker.url), site=SITE, asset=ASSET, outbox=ob,
        status_extra=lambda: {"windows": 7}, status_interval_s=0.5,
    )  # fmt: skip
    try:
        pub.start()
        sub.wait_for(lambda ms: len(statuses(sub)) >= 2, 10, "a birth and a periodic status")
        birth, again = statuses(sub)[:2]
        assert birth["state"] == "online" and birth["schema"] == 1
        assert birth["historical"] is False and isinstance(birth["ts"], float)
        assert (birth["site"], birth["asset"]) == (SITE, ASSET)
        assert uuid.UUID(birth["id"]) and again["id"] != birth["id"]
        assert birth["version"] == edge_agent.__version__
        # Who speaks: the same run in every status, and where to find it.
        assert (birth["host"], birth["pid"]) == (socket.gethostname(), os.getpid())
        assert birth["instance"] == again["instance"] == pub.instance
        assert birth["outbox"] == {"alert": 0, "summary": 1, "event": 0}
        c = birth["counters"]
        assert c["windows"] == 7 and c["mqtt_connects"] == 1 and c["outbox_queued"] == 1
        assert again["state"] == "online"
        assert retained(broker, f"{ROOT}/status")["state"] == "online"
    finally:
        pub.stop()
        ob.close()
    final = retained(broker, f"{ROOT}/status")
    assert (final["state"], final["reason"], final["historical"]) == ("offline", "stopped", False)
    assert final["instance"] == pub.instance
    time.sleep(0.5)  # a will (which a clean stop must not trigger) would come at once
    assert [s.get("reason") for s in statuses(sub) if s["state"] == "offline"] == ["stopped"]


@pytest.mark.parametrize("how", ["kill", "freeze"])
def test_last_will_says_offline_when_the_process_dies(
    how: str, broker: Mosquitto, make_subscriber, spawn, tmp_path: Path
) -> None:
    """kill -9: the kernel closes the socket, the broker publishes the will at once.
    freeze (SIGSTOP, like a cut cable): the broker notices the missing keepalive after
    1.5 keepalives and publishes it then."""
    sub = make_subscriber(broker, f"{ROOT}/status")
    child = spawn(broker.url, str(tmp_path / "edge.db"), "idle")
    assert child.line(30) == "connected"
    sub.wait_for(lambda ms: any(s["state"] == "online" for s in statuses(sub)), 10, "birth")
    child.kill(signal.SIGKILL if how == "kill" else signal.SIGSTOP)

    def offline(ms: list[Received]) -> bool:
        return any(s["state"] == "offline" for s in statuses(sub))

    sub.wait_for(offline, 2 * KEEPALIVE_S + 5, "the Last Will")
    will = next(s for s in statuses(sub) if s["state"] == "offline")
    assert will["reason"] == "lost" and will["schema"] == 1 and will["historical"] is False
    assert will["pid"] == child.proc.pid and will["host"] == socket.gethostname()
    assert retained(broker, f"{ROOT}/status")["state"] == "offline"


# --- commands ---------------------------------------------------------------------------


def test_commands_reach_the_handler_and_a_failing_handler_is_survived(
    broker: Mosquitto, make_subscriber, make_publisher, tmp_path: Path
) -> None:
    plant = make_subscriber(broker, f"{ROOT}/#")
    # A retained command would run at every reconnect: ignored.
    plant.client.publish(f"{ROOT}/cmd/reset", b"stale", qos=1, retain=True).wait_for_publish(5)
    calls: list[tuple[str, bytes]] = []

    def handler(name: str, payload: bytes) -> None:
        calls.append((name, payload))
        if len(calls) == 1:
            raise RuntimeError("handler bug")

    ob = Outbox(tmp_path / "edge.db")
    pub = make_publisher(broker.url, outbox=ob, on_command=handler)
    # The subscription precedes the birth on the wire: once the birth is here, commands
    # are routed to the publisher.
    plant.wait_for(lambda ms: any(s["state"] == "online" for s in statuses(plant)), 10, "birth")
    for payload in (b'{"label":"bearing"}', b'{"label":"healthy"}'):
        plant.client.publish(f"{ROOT}/cmd/label", payload, qos=1).wait_for_publish(5)
    plant.client.publish(f"{ROOT}/cmd/ping", b"", qos=1).wait_for_publish(5)
    wait_until(lambda: len(calls) == 3, 10, "three commands handled")
    assert calls == [("label", b'{"label":"bearing"}'), ("label", b'{"label":"healthy"}'),
                     ("ping", b"")]  # fmt: skip
    assert pub.stats.commands == 3 and pub.stats.callback_errors == 1
    # Still connected and publishing.
    ob.put("event", "event", record(1, reply="pong"))
    pub.notify()
    plant.wait_for(lambda ms: len(data_messages(plant)) == 1, 10, "the event")
    assert pub.connected and pub.stats.connects == 1
    plant.client.publish(f"{ROOT}/cmd/reset", b"", qos=1, retain=True)  # clear it


# --- MQTT 3.1.1 -------------------------------------------------------------------------


def test_mqtt_3_1_1(broker: Mosquitto, make_subscriber, make_publisher, tmp_path: Path) -> None:
    sub = make_subscriber(broker, f"{ROOT}/#", protocol="3.1.1")
    calls: list[tuple[str, bytes]] = []
    ob = Outbox(tmp_path / "edge.db")
    for n in range(5):
        ob.put("alert", "alert", record(n))
    pub = make_publisher(
        broker.url, outbox=ob, protocol="3.1.1", on_command=lambda *a: calls.append(a)
    )
    assert pub.wait_drained(20), pub.last_error
    sub.wait_for(lambda ms: len(data_messages(sub)) == 5, 10, "5 alerts")
    assert [m.json["n"] for m in data_messages(sub)] == list(range(5))
    assert all(m.json["historical"] for m in data_messages(sub))  # queued before connecting
    sub.wait_for(lambda ms: any(s["state"] == "online" for s in statuses(sub)), 10, "birth")
    sub.client.publish(f"{ROOT}/cmd/label", b"x", qos=1).wait_for_publish(5)
    wait_until(lambda: calls == [("label", b"x")], 10, "the command")
    pub.stop()
    assert retained(broker, f"{ROOT}/status", protocol="3.1.1")["reason"] == "stopped"


# --- another agent as this asset ------------------------------------------------------


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_two_agents_configured_as_one_asset_each_name_the_other(
    protocol: str, broker: Mosquitto, make_subscriber, make_publisher, tmp_path: Path, caplog,
    monkeypatch,
) -> None:  # fmt: skip
    """A configuration copied to a second motor's computer, its asset unchanged: one client
    id, so each connection takes the other's, and the broker says nothing of why. Each
    agent tells it from the other's status where its own was, names the other once (its
    computer and pid), and delivers all it has; once the other is gone, it says so."""
    monkeypatch.setattr(mqtt, "CONFLICT_CLEAR_S", 3.0)
    caplog.set_level(logging.INFO, logger="edge_agent.mqtt")
    plant = make_subscriber(broker, f"{ROOT}/#")
    outboxes = [Outbox(tmp_path / "first.db"), Outbox(tmp_path / "second.db")]
    first = make_publisher(broker.url, outbox=outboxes[0], protocol=protocol)
    wait_until(lambda: first.connected, 10, "the first agent connected")
    second = make_publisher(broker.url, outbox=outboxes[1], protocol=protocol)
    wait_until(lambda: first.conflict is not None and second.conflict is not None, 30,
               "each agent sees the other")  # fmt: skip
    for pub, other in ((first, second), (second, first)):
        assert pub.conflict is not None and pub.conflict.key == other.instance
        assert pub.conflict.host == socket.gethostname()
        assert pub.conflict.who.startswith("edge-agent")
        assert pub.conflict.who.endswith(f"on this computer (pid {os.getpid()})")
        assert pub.stats.conflicts >= 1
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(said) == 2, said  # once per agent, however often they take turns
    for text in said:
        assert f"{ROOT}/status: another agent publishes as this asset: edge-agent" in text
        assert "Give each motor its own [output] asset" in text
        assert f"`systemctl status {os.getpid()}` names the other's unit" in text
    # Both still deliver.
    for n, ob in enumerate(outboxes):
        ob.put("alert", "alert", record(n))
    first.notify()
    second.notify()
    plant.wait_for(lambda ms: {m.json["n"] for m in data_messages(plant)} == {0, 1}, 30,
                   "a record from each agent")  # fmt: skip
    # Their statuses say who is who.
    seen = {s.get("instance") for s in statuses(plant)}
    assert {first.instance, second.instance} <= seen
    # The second is reconfigured: the first is left alone and, connected a while, says so.
    second.stop()
    wait_until(lambda: first.conflict is None, 30, "the first agent alone")
    assert any("no other agent has published as this asset" in r.getMessage()
               for r in caplog.records)  # fmt: skip


@pytest.mark.parametrize("how", ["kill", "freeze", "stop"])
def test_an_agent_started_again_is_not_taken_for_another(
    how: str, make_broker, spawn, make_publisher, tmp_path: Path, caplog
) -> None:
    """The last run's status, retained (its Last Will after a crash, or after a cut cable
    while the broker still holds its connection; its offline at a clean stop), is not
    another agent; nor is the agent's own, retained across a broker restart."""
    caplog.set_level(logging.INFO, logger="edge_agent.mqtt")
    broker = make_broker(persistence=True)

    def status() -> dict[str, Any]:
        return retained(broker, f"{ROOT}/status") or {}

    if how == "stop":
        last = make_publisher(broker.url)
        wait_until(lambda: status().get("state") == "online", 10, "birth")
        last.stop()
    else:
        child = spawn(broker.url, str(tmp_path / "last.db"), "idle")
        assert child.line(30) == "connected"
        wait_until(lambda: status().get("state") == "online", 10, "birth")
        child.kill(signal.SIGKILL if how == "kill" else signal.SIGSTOP)
    pub = make_publisher(broker.url)
    wait_until(lambda: status().get("instance") == pub.instance, 10, "its own birth retained")
    broker.stop()
    broker.start()
    wait_until(lambda: pub.stats.connects == 2 and pub.connected, 30, "reconnected")
    assert status()["instance"] == pub.instance
    time.sleep(0.5)  # the retained status came before the birth: seen by now
    assert pub.conflict is None and pub.stats.conflicts == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_another_client_id_as_the_same_asset_and_a_stranger_on_its_status_are_seen_live(
    broker: Mosquitto, make_subscriber, make_publisher, caplog
) -> None:
    """Two agents as one asset under client ids of their own are both connected: each
    sees the other's periodic status as it comes. So is anything else published there,
    an older edge-agent's statuses (no instance) as one agent; an empty retained message
    (clearing the status) is nothing. Each is named once, at ERROR at most once a minute:
    a tool flooding the topic fills no journal."""
    caplog.set_level(logging.DEBUG, logger="edge_agent.mqtt")
    plant = make_subscriber(broker, f"{ROOT}/#")
    first = make_publisher(broker.url, status_interval_s=0.5)
    plant.wait_for(lambda ms: any(s.get("instance") == first.instance for s in statuses(plant)),
                   10, "the first agent's birth")  # fmt: skip
    plant.client.publish(f"{ROOT}/status", b"", qos=1, retain=True).wait_for_publish(5)
    plant.client.publish(f"{ROOT}/status", b"down", qos=1).wait_for_publish(5)
    wait_until(lambda: first.conflict is not None, 10, "the stranger seen")
    assert first.conflict.who == "a client that is no edge-agent (it sent b'down')"
    assert first.stats.conflicts == 1
    # An edge-agent older than `instance`: one agent, however many statuses it sends.
    for _ in range(2):
        old = {**record(0), "site": SITE, "asset": ASSET, "state": "online", "version": "0.0.9"}
        plant.client.publish(f"{ROOT}/status", json.dumps(old), qos=1).wait_for_publish(5)
    wait_until(lambda: first.stats.conflicts == 3, 10, "the older agent's statuses seen")
    assert first.conflict.who == "edge-agent 0.0.9, of a version that does not name its computer"
    for n in range(20):
        plant.client.publish(f"{ROOT}/status", f"down {n}".encode(), qos=1).wait_for_publish(5)
    wait_until(lambda: first.stats.conflicts == 23, 10, "the flood seen")
    second = make_publisher(broker.url, client_id="edge-agent-copied", status_interval_s=0.5)
    wait_until(lambda: first.conflict.key == second.instance
               and second.conflict is not None, 10, "each agent sees the other")  # fmt: skip
    assert second.conflict.key == first.instance
    here = f"on this computer (pid {os.getpid()})"
    assert first.conflict.who == f"edge-agent {edge_agent.__version__} {here}"
    assert first.stats.disconnects == second.stats.disconnects == 0  # no connection taken
    named = [r for r in caplog.records if "another agent publishes as this asset" in r.getMessage()]
    # The first names the stranger, the older agent, the flood, the second; the second, it.
    assert len(named) == 1 + 1 + 20 + 1 + 1
    errors = [r.getMessage() for r in named if r.levelno == logging.ERROR]
    assert len(errors) == 2 and "(it sent b'down')" in errors[0]
    assert f"edge-agent {edge_agent.__version__} {here}" in errors[1]
