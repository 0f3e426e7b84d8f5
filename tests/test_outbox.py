"""The SQLite outbox: order, acks, restarts, the size bounds, threads, bad files."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.errors import EdgeAgentError, InputDataError
from edge_agent.publish.outbox import Message, Outbox, OutboxStats


@pytest.fixture
def outbox(tmp_path: Path):
    ob = Outbox(tmp_path / "edge.db")
    yield ob
    ob.close()


def test_pending_returns_what_was_put_in_order(outbox: Outbox) -> None:
    seqs = [
        outbox.put("alert", "alert", {"n": 0, "fault": "bearing"}),
        outbox.put("summary", "summary", {"n": 1, "features": {"rms_a": 1.5, "slip": None}}),
        outbox.put("event", "event", {"n": 2, "text": "über"}),
    ]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    got = outbox.pending()
    assert [m.seq for m in got] == seqs
    assert [(m.kind, m.topic, m.payload["n"]) for m in got] == [
        ("alert", "alert", 0),
        ("summary", "summary", 1),
        ("event", "event", 2),
    ]
    assert got[1].payload == {"n": 1, "features": {"rms_a": 1.5, "slip": None}}
    assert got[2].payload["text"] == "über"
    assert all(isinstance(m, Message) and m.queued > 0 for m in got)
    assert outbox.depth() == {"alert": 1, "summary": 1, "event": 1}


def test_pending_after_and_limit(outbox: Outbox) -> None:
    seqs = [outbox.put("summary", "summary", {"n": i}) for i in range(10)]
    assert [m.seq for m in outbox.pending(limit=3)] == seqs[:3]
    assert [m.seq for m in outbox.pending(after=seqs[4], limit=100)] == seqs[5:]
    assert outbox.pending(after=seqs[-1]) == []


def test_ack_deletes_once_and_seq_is_never_reused(outbox: Outbox) -> None:
    a = outbox.put("alert", "alert", {"n": 0})
    b = outbox.put("alert", "alert", {"n": 1})
    outbox.ack(b)
    outbox.ack(b)  # idempotent
    outbox.ack(12345)  # unknown: nothing happens
    assert [m.seq for m in outbox.pending()] == [a]
    assert outbox.stats.acked == 1
    outbox.ack(a)
    c = outbox.put("alert", "alert", {"n": 2})
    assert c > b  # AUTOINCREMENT: a deleted seq is not given again
    assert outbox.last_seq() == c
    assert outbox.depth() == {"alert": 1, "summary": 0, "event": 0}


def test_reopening_keeps_pending_messages_and_counters(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    ob = Outbox(path, max_summaries=2)
    seqs = [ob.put("summary", "summary", {"n": i}) for i in range(4)]  # 2 dropped
    alert = ob.put("alert", "alert", {"n": 9})
    ob.ack(seqs[3])
    before = ob.stats
    ob.close()
    with pytest.raises(EdgeAgentError, match="the outbox is closed"):
        ob.pending()

    again = Outbox(path, max_summaries=2)
    try:
        assert [m.seq for m in again.pending()] == [seqs[2], alert]
        assert (
            again.stats
            == before
            == OutboxStats(
                dropped_summaries=2, dropped_events=0, refused_alerts=0, queued=5, acked=1
            )
        )
        assert again.depth() == {"alert": 1, "summary": 1, "event": 0}
        assert again.put("event", "event", {"n": 10}) > alert
    finally:
        again.close()


def test_summaries_and_events_beyond_the_cap_drop_the_oldest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ob = Outbox(tmp_path / "edge.db", max_summaries=3, max_alerts=10)
    try:
        alerts = [ob.put("alert", "alert", {"n": -i}) for i in range(2)]
        summaries = [ob.put("summary", "summary", {"n": i}) for i in range(5)]
        events = [ob.put("event", "event", {"n": 100 + i}) for i in range(4)]
        kept = [m.seq for m in ob.pending(limit=100)]
        # The newest 3 of each kind; alerts untouched.
        assert kept == alerts + summaries[2:] + events[1:]
        s = ob.stats
        assert (s.dropped_summaries, s.dropped_events, s.refused_alerts) == (2, 1, 0)
        assert s.queued == 11
        assert ob.depth() == {"alert": 2, "summary": 3, "event": 3}
        assert "dropping the oldest" in caplog.text
    finally:
        ob.close()


def test_alerts_are_never_dropped_but_refused_beyond_the_cap(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ob = Outbox(tmp_path / "edge.db", max_summaries=2, max_alerts=3)
    try:
        first = [ob.put("alert", "alert", {"n": i}) for i in range(3)]
        with caplog.at_level("ERROR", logger="edge_agent.publish.outbox"):
            assert ob.put("alert", "alert", {"n": 3}) is None
            assert ob.put("alert", "alert", {"n": 4}) is None
        assert any(r.levelname == "ERROR" and "refused" in r.getMessage() for r in caplog.records)
        assert [m.seq for m in ob.pending()] == first  # the oldest are kept
        assert ob.put("summary", "summary", {"n": 5}) is not None  # other kinds still go
        ob.ack(first[0])
        assert ob.put("alert", "alert", {"n": 6}) is not None  # room again
        assert ob.stats.refused_alerts == 2
    finally:
        ob.close()
    again = Outbox(tmp_path / "edge.db", max_alerts=3)
    try:
        assert again.stats.refused_alerts == 2
    finally:
        again.close()


def test_put_rejects_what_is_not_a_record(outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="kind='warning'"):
        outbox.put("warning", "alert", {})
    with pytest.raises(ValueError, match="topic"):
        outbox.put("alert", "alert/#", {})
    with pytest.raises(ValueError, match="not valid JSON"):
        outbox.put("summary", "summary", {"score": float("nan")})
    with pytest.raises(ValueError, match="not valid JSON"):
        outbox.put("summary", "summary", {"t": object()})
    assert outbox.depth() == {"alert": 0, "summary": 0, "event": 0}


def test_put_and_ack_from_two_threads(tmp_path: Path) -> None:
    """The processing thread puts while the publisher thread reads and acks."""
    ob = Outbox(tmp_path / "edge.db", max_summaries=100_000)
    n = 1500
    done = threading.Event()
    errors: list[BaseException] = []
    consumed: list[int] = []

    def produce() -> None:
        try:
            for i in range(n):
                ob.put("alert" if i % 10 == 0 else "summary", "summary", {"n": i})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    def consume() -> None:
        try:
            last = 0
            while True:
                finished = done.is_set()
                batch = ob.pending(after=last, limit=50)
                for m in batch:
                    consumed.append(m.payload["n"])
                    ob.ack(m.seq)
                    last = m.seq
                if finished and not batch:
                    return
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert not errors, errors
        assert consumed == list(range(n))
        assert ob.depth() == {"alert": 0, "summary": 0, "event": 0}
        assert ob.stats.queued == ob.stats.acked == n
    finally:
        ob.close()


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    path.write_bytes(b"this is not SQLite\n" * 200)
    with pytest.raises(InputDataError) as err:
        Outbox(path)
    assert str(path) in str(err.value)
    assert "not a usable SQLite database" in str(err.value)


def test_a_foreign_outbox_table_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, body BLOB)")
    with pytest.raises(InputDataError, match="not edge-agent's"):
        Outbox(path)


def test_a_locked_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    Outbox(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(EdgeAgentError, match="locked") as err:
            Outbox(path, busy_timeout_s=0.2)
        assert str(path) in str(err.value)
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_the_folder_is_created_and_the_file_is_shared(tmp_path: Path) -> None:
    path = tmp_path / "state" / "edge-agent" / "edge.db"
    umask = os.umask(0)
    os.umask(umask)
    ob = Outbox(path)
    try:
        assert (path.parent.stat().st_mode & 0o777) == (0o750 & ~umask)
        # Another module keeps its own tables in the same file, with its own connection.
        with sqlite3.connect(path) as store:
            store.execute("CREATE TABLE IF NOT EXISTS alerts (id TEXT PRIMARY KEY)")
            store.execute("INSERT INTO alerts VALUES ('a1')")
        seq = ob.put("alert", "alert", {"n": 1})
        assert [m.seq for m in ob.pending()] == [seq]
        assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        ob.close()
    again = Outbox(path)
    try:
        assert len(again.pending()) == 1
        with sqlite3.connect(path) as store:
            assert store.execute("SELECT id FROM alerts").fetchall() == [("a1",)]
    finally:
        again.close()


def test_a_folder_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(EdgeAgentError) as err:
        Outbox(blocker / "edge.db")
    assert str(blocker) in str(err.value) and "folder" in str(err.value)


# --- property: any sequence of puts, acks and restarts matches a simple model ------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(["alert", "summary", "event"])),
        st.tuples(st.just("ack"), st.integers(0, 12)),
        st.tuples(st.just("ack_unknown"), st.integers(10_000, 20_000)),
        st.tuples(st.just("reopen"), st.none()),
    ),
    max_size=40,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_ops)
def test_outbox_matches_a_model(ops: list[tuple[str, object]]) -> None:
    max_summaries, max_alerts = 3, 4
    model: dict[int, tuple[str, int]] = {}  # seq -> (kind, n), insertion order = seq order
    counters = dict(dropped_summaries=0, dropped_events=0, refused_alerts=0, queued=0, acked=0)
    last_seq = 0
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "edge.db"
        ob = Outbox(path, max_summaries=max_summaries, max_alerts=max_alerts)
        try:
            for i, (op, arg) in enumerate(ops):
                if op == "put":
                    kind = str(arg)
                    seq = ob.put(kind, kind, {"n": i})
                    n_kind = sum(1 for k, _ in model.values() if k == kind)
                    if kind == "alert" and n_kind >= max_alerts:
                        assert seq is None
                        counters["refused_alerts"] += 1
                    else:
                        assert seq is not None and seq > last_seq
                        last_seq = seq
                        model[seq] = (kind, i)
                        counters["queued"] += 1
                        if kind != "alert" and n_kind + 1 > max_summaries:
                            oldest = min(s for s, (k, _) in model.items() if k == kind)
                            del model[oldest]
                            dropped = "dropped_summaries" if kind == "summary" else "dropped_events"
                            counters[dropped] += 1
                elif op == "ack":
                    if model:
                        seq = sorted(model)[int(arg) % len(model)]
                        ob.ack(seq)
                        del model[seq]
                        counters["acked"] += 1
                elif op == "ack_unknown":
                    ob.ack(int(arg))
                else:
                    ob.close()
                    ob = Outbox(path, max_summaries=max_summaries, max_alerts=max_alerts)
                got = ob.pending(limit=1000)
                assert [(m.seq, m.kind, m.payload["n"]) for m in got] == [
                    (s, k, n) for s, (k, n) in sorted(model.items())
                ]
                assert ob.stats == OutboxStats(**counters)
                depth = {k: sum(1 for kk, _ in model.values() if kk == k) for k in
                         ("alert", "summary", "event")}  # fmt: skip
                assert ob.depth() == depth
        finally:
            ob.close()
