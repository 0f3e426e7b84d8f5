"""What the outbox costs the processing and publisher threads, on the disk under tmp_path.

``put`` of an alert commits with ``synchronous=FULL`` (an fsync of the WAL) and is bounded
by the disk; a summary commits with ``synchronous=NORMAL``. ``pending + ack_many`` is the
publisher's side: read 20 records (the default in-flight window) and delete them in one
transaction. End to end through a broker, see ``benchmarks/mqtt_delivery.py``.
"""

from __future__ import annotations

import time
import uuid

import pytest

from edge_agent.publish.outbox import Outbox


def alert(n: int) -> dict:
    return {
        "schema": 1, "id": str(uuid.uuid4()), "ts": time.time(), "site": "plant1",
        "asset": "m1", "alert_id": str(uuid.uuid4()), "state": "raised",
        "fault": "broken_rotor_bar", "severity": "warning", "score": 0.83,
        "evidence": {"brb_lsb_db": -41.2, "slip": 0.031, "supply_hz": 49.98, "n": n},
    }  # fmt: skip


@pytest.fixture
def outbox(tmp_path):
    ob = Outbox(tmp_path / "edge.db", max_summaries=10**7, max_alerts=10**7)
    yield ob
    ob.close()


@pytest.mark.benchmark(group="Outbox.put")
@pytest.mark.parametrize("kind", ["alert", "summary"])
def test_put(benchmark, outbox, kind):
    payload = alert(0)
    outbox.put(kind, kind, payload)  # warm-up: the thread's connection, the page cache
    seq = benchmark(outbox.put, kind, kind, payload)
    assert seq == outbox.last_seq()
    if benchmark.stats is not None:
        benchmark.extra_info["per_s"] = round(1 / benchmark.stats.stats.mean)


@pytest.mark.benchmark(group="Outbox.pending + ack_many (20 records)")
def test_pending_and_ack(benchmark, outbox):
    payload = alert(0)

    def setup():
        for _ in range(20):
            outbox.put("summary", "summary", payload)
        return (), {}

    def cycle():
        batch = outbox.pending(limit=20)
        outbox.ack_many(m.seq for m in batch)
        return len(batch)

    assert benchmark.pedantic(cycle, setup=setup, rounds=200, warmup_rounds=5) == 20
    assert outbox.depth()["summary"] == 0
    if benchmark.stats is not None:
        benchmark.extra_info["records_per_s"] = round(20 / benchmark.stats.stats.mean)
