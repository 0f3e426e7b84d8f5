"""Delivery through outbox -> Mosquitto -> PUBACK: throughput, disk use, latency.

Runs its own Mosquitto (tests/mosquitto.py) on a free loopback port, so it measures
edge-agent's side plus a local broker, not a network. From the repository root::

    PYTHONPATH=. python benchmarks/mqtt_delivery.py            # about a minute
    PYTHONPATH=. python benchmarks/mqtt_delivery.py --quick    # smaller counts, shorter

What it prints:

- throughput, live: records put one after another (each alert fsynced) while connected,
  until the outbox is empty (every PUBACK in); and put alone;
- throughput, backlog: records queued with the broker away, then the time from start()
  to an empty outbox (connect included);
- disk: outbox file size per 1000 queued alerts and summaries (realistic payloads), after a
  WAL checkpoint, and the WAL's size before it;
- latency from put() (before its fsync) to the PUBACK, at a steady rate and in a burst.

The outbox lives in ``--folder`` (default: a temporary folder); fsync cost depends on the
disk under it, and the script says which filesystem that is.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edge_agent.config import MqttConfig
from edge_agent.publish.mqtt import MqttPublisher
from edge_agent.publish.outbox import Outbox
from tests.mosquitto import Mosquitto, wait_until

SITE, ASSET = "plant1", "m1"


def alert_payload(n: int) -> dict[str, Any]:
    """About the size of a real alert (edge_agent.publish.schema.alert_payload)."""
    return {
        "schema": 1, "id": str(uuid.uuid4()), "ts": time.time(), "site": SITE, "asset": ASSET,
        "alert_id": str(uuid.uuid4()), "state": "raised", "fault": "broken_rotor_bar",
        "severity": "warning", "score": 0.8312, "model": "default-2026-11-23",
        "evidence": {"brb_lsb_db": -41.2, "brb_usb_db": -43.5, "slip": 0.031,
                     "supply_hz": 49.98, "consecutive_windows": 3, "n": n},
    }  # fmt: skip


FEATURES = [
    "supply_hz", "rms_a", "rms_b", "rms_c", "i1", "i2", "i2_i1", "thd_a", "thd_b", "thd_c",
    "epva_2f_db", "slip", "rotor_hz", "brb_lsb_db", "brb_usb_db", "score",
]  # fmt: skip


def summary_payload(n: int) -> dict[str, Any]:
    """A 60 s summary: mean, min, max of 16 features, counts."""
    stats = {f: {"mean": 1.234567, "min": 1.0123, "max": 1.4567} for f in FEATURES}
    return {
        "schema": 1, "id": str(uuid.uuid4()), "ts": time.time(), "site": SITE, "asset": ASSET,
        "t_start": time.time() - 60, "t_end": time.time(), "windows": 120, "anomalous": 0,
        "flags": {"gap": 0, "clipped": 0, "nan": 0}, "features": stats, "n": n,
    }  # fmt: skip


PAYLOAD = {"alert": alert_payload, "summary": summary_payload}
PLURAL = {"alert": "alerts", "summary": "summaries"}


class TimedOutbox(Outbox):
    """An Outbox that notes when each record's ack (its PUBACK) came."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.acked_at: dict[int, float] = {}

    def ack_many(self, seqs: Iterable[int]) -> None:
        now = time.perf_counter()
        seqs = list(seqs)
        super().ack_many(seqs)
        for s in seqs:
            self.acked_at[s] = now


def publisher(url: str, outbox: Outbox) -> MqttPublisher:
    cfg = MqttConfig(url=url, keepalive_s=30, reconnect_min_s=0.1, reconnect_max_s=0.5)
    return MqttPublisher(cfg, site=SITE, asset=ASSET, outbox=outbox)



def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def fresh(folder: Path, name: str, cls: type[Outbox] = Outbox, **kw: Any) -> Outbox:
    path = folder / name
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return cls(path, max_summaries=10**6, max_alerts=10**6, **kw)


def live_throughput(broker: Mosquitto, folder: Path, kind: str, n: int) -> str:
    ob = fresh(folder, f"live-{kind}.db")
    pub = publisher(broker.url, ob)
    pub.start()
    try:
        wait_until(lambda: pub.connected, 10, "connected")
        make = PAYLOAD[kind]
        payloads = [make(i) for i in range(n)]
        t0 = time.perf_counter()
        for p in payloads:
            ob.put(kind, kind, p)
            pub.notify()
        t_put = time.perf_counter() - t0
        if not pub.wait_drained(300):
            raise RuntimeError(f"{kind}: not drained: {ob.depth()}")
        t_all = time.perf_counter() - t0
    finally:
        pub.stop()
        ob.close()
    return (
        f"  {n} {PLURAL[kind]}, live:    {n / t_all:8.0f} msg/s end to end ({t_all:.2f} s); "
        f"put alone {n / t_put:8.0f} msg/s"
    )


def backlog_throughput(broker: Mosquitto, folder: Path, kind: str, n: int) -> str:
    ob = fresh(folder, f"backlog-{kind}.db")
    make = PAYLOAD[kind]
    for i in range(n):
        ob.put(kind, kind, make(i))
    pub = publisher(broker.url, ob)
    t0 = time.perf_counter()
    pub.start()
    try:
        if not pub.wait_drained(300):
            raise RuntimeError(f"{kind}: not drained: {ob.depth()}")
        t = time.perf_counter() - t0
    finally:
        pub.stop()
        ob.close()
    return f"  {n} {PLURAL[kind]}, backlog: {n / t:8.0f} msg/s from start() to empty ({t:.2f} s)"


def disk_use(folder: Path, kind: str, n: int) -> str:
    ob = fresh(folder, f"size-{kind}.db")
    path = ob.path
    make = PAYLOAD[kind]
    payload_bytes = 0
    for i in range(n):
        p = make(i)
        payload_bytes += len(json.dumps(p, separators=(",", ":"), ensure_ascii=False))
        ob.put(kind, kind, p)
    wal = Path(str(path) + "-wal")
    wal_size = wal.stat().st_size if wal.exists() else 0
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = path.stat().st_size
    ob.close()
    return (
        f"  {PLURAL[kind]}: {size / n * 1000 / 1024:7.0f} KiB per 1000 queued "
        f"(payload JSON {payload_bytes / n:.0f} B each; file {size / 2**20:.1f} MiB for {n}, "
        f"WAL before checkpoint {wal_size / 2**20:.1f} MiB)"
    )


def latency(
    broker: Mosquitto, folder: Path, *, rate: float, duration: float, burst: int
) -> list[str]:
    ob = fresh(folder, "latency.db", TimedOutbox)
    assert isinstance(ob, TimedOutbox)
    pub = publisher(broker.url, ob)
    pub.start()
    out = []
    try:
        wait_until(lambda: pub.connected, 10, "connected")

        def run(schedule: list[tuple[float, str]]) -> dict[str, list[float]]:
            put_at: dict[int, tuple[str, float]] = {}
            t0 = time.perf_counter()
            for i, (at, kind) in enumerate(schedule):
                delay = t0 + at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                t = time.perf_counter()
                seq = ob.put(kind, kind, PAYLOAD[kind](i))
                pub.notify()
                put_at[seq] = (kind, t)
            if not pub.wait_drained(120):
                raise RuntimeError(f"latency: not drained: {ob.depth()}")
            lat: dict[str, list[float]] = {"alert": [], "summary": []}
            for seq, (kind, t) in put_at.items():
                lat[kind].append(ob.acked_at[seq] - t)
            return lat

        def report(name: str, lat: dict[str, list[float]]) -> None:
            for kind, values in lat.items():
                if values:
                    out.append(
                        f"  {name}, {PLURAL[kind]} (n={len(values)}): "
                        f"p50 {1e3 * pct(values, 50):6.2f} ms"
                        f"  p99 {1e3 * pct(values, 99):6.2f} ms  max {1e3 * max(values):6.2f} ms"
                        f"  mean {1e3 * statistics.fmean(values):6.2f} ms"
                    )

        n = int(rate * duration)
        steady = [(i / rate, "alert" if i % 2 == 0 else "summary") for i in range(n)]
        report(f"steady {rate:g}/s for {duration:g} s", run(steady))
        report(f"burst of {burst} alerts", run([(0.0, "alert")] * burst))
        report(f"burst of {burst} summaries", run([(0.0, "summary")] * burst))
    finally:
        pub.stop()
        ob.close()
    return out


def filesystem(folder: Path) -> str:
    try:
        res = subprocess.run(["df", "-T", str(folder)], capture_output=True, text=True, check=True)
        return res.stdout.splitlines()[-1].split()[1]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller counts, shorter runs")
    ap.add_argument("-n", type=int, default=None, help="records per throughput run (10000)")
    ap.add_argument("--rate", type=float, default=20.0, help="steady rate, records/s")
    ap.add_argument("--duration", type=float, default=None, help="steady run, s (30)")
    ap.add_argument("--burst", type=int, default=None, help="records in a burst (1000)")
    ap.add_argument("--folder", type=Path, default=None, help="where the outbox files go")
    args = ap.parse_args(argv)
    n = args.n or (2000 if args.quick else 10_000)
    duration = args.duration or (10.0 if args.quick else 30.0)
    burst = args.burst or (200 if args.quick else 1000)

    with tempfile.TemporaryDirectory(prefix="edge-agent-bench-") as tmp:
        folder = args.folder or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        broker = Mosquitto(Path(tmp) / "broker", verbose=False)
        broker.start()
        try:
            print(
                f"edge-agent MQTT delivery: Python {sys.version.split()[0]}, SQLite "
                f"{sqlite3.sqlite_version}, {os.cpu_count()} CPUs, outbox on "
                f"{filesystem(folder)} ({folder}), Mosquitto on 127.0.0.1:{broker.port}"
            )
            print("Throughput (QoS 1, max_inflight 20; alerts fsynced, summaries not):")
            for kind in ("alert", "summary"):
                print(live_throughput(broker, folder, kind, n))
            for kind in ("alert", "summary"):
                print(backlog_throughput(broker, folder, kind, n))
            print("Disk, queued with the broker away:")
            for kind in ("alert", "summary"):
                print(disk_use(folder, kind, n))
            print("Latency, put() to PUBACK:")
            for line in latency(broker, folder, rate=args.rate, duration=duration, burst=burst):
                print(line)
        finally:
            broker.close()


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
