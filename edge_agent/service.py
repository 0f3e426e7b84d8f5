"""The daemon's main loop: a source thread fills the ring, this thread analyses it.

``edge-agent run`` calls :func:`run`. The acquisition thread (``edge-acq``) runs the
source's producer loop; the calling thread reads the ring, feeds the pipeline and writes
each record as a JSON line. It ends when the source ends (a recording, a simulated run) or
when ``stop`` is set (SIGINT, SIGTERM), after analysing every sample already received.
systemd specifics (sd_notify, the watchdog) come later.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from edge_agent.acquisition.ring import RingStats, SampleRing
from edge_agent.acquisition.sources import Source, SourceStats
from edge_agent.config import Config
from edge_agent.pipeline import Pipeline, PipelineStats
from edge_agent.recording import NpyWriter
from edge_agent.replay import dumps

if TYPE_CHECKING:
    from edge_agent.scoring import Scorer


@dataclass
class RunResult:
    source: str
    fs: float
    pipeline: PipelineStats
    source_stats: SourceStats
    ring: RingStats
    wall_s: float

    def summary(self) -> str:
        p, s, r = self.pipeline, self.source_stats, self.ring
        parts = [
            f"{self.source}: {p.windows} windows ({p.flagged_windows} flagged, "
            f"{p.anomalous_windows} anomalous), alerts: {p.alerts_raised} raised, "
            f"{p.alerts_cleared} cleared; {p.samples / self.fs:.1f} s of signal in "
            f"{self.wall_s:.1f} s",
            f"samples lost: {s.lost_samples} in transit, {r.overwritten} overwritten "
            f"(analysis fell behind)",
        ]
        if s.frames or s.crc_errors or s.bad_headers:
            parts.append(
                f"frames: {s.frames} ok, {s.crc_errors} bad CRC, {s.bad_headers} bad headers, "
                f"{s.bytes_skipped} bytes of garbage skipped"
            )
        if s.bad_lines:
            parts.append(f"lines: {s.bad_lines} bad")
        if s.reconnects:
            parts.append(f"reconnects: {s.reconnects} ({s.disconnected_s:.1f} s disconnected)")
        return "; ".join(parts)


def run(
    config: Config,
    source: Source,
    out: IO[str],
    *,
    scorer: Scorer | None,
    stop: threading.Event | None = None,
    t0: float | None = None,
    record: NpyWriter | None = None,
    on_ready: Callable[[], None] | None = None,
) -> RunResult:
    """Analyse ``source`` until it ends or ``stop`` is set; records go to ``out``.

    ``t0`` is the time of the first sample (UNIX seconds; default now), from which window
    times count. ``record`` also keeps every sample analysed, as received. ``on_ready`` is
    called once the kernels are compiled and the source is open, just before samples flow.
    Raises whatever the source raised, after analysing what it delivered.
    """
    from edge_agent import kernels

    # Compile (or load) every kernel before the source opens: a first compile takes longer
    # than the ring holds, and the samples that arrived meanwhile would be lost. Then open
    # it here, so that a missing device or a permission problem is an error at once.
    kernels.warm_up()
    source.open()
    if on_ready is not None:
        on_ready()
    stop = stop or threading.Event()
    t_wall = time.perf_counter()
    # float64: the samples reach the pipeline exactly as a replay of the same values would.
    capacity = max(1, round(config.acquisition.ring_s * source.fs))
    ring = SampleRing(len(source.roles), capacity, dtype="float64")
    pipe = Pipeline(config, source.fs, source.roles, scorer, t0=time.time() if t0 is None else t0)
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            source.run(ring, stop)
        except BaseException as exc:  # re-raised in the main thread
            failure.append(exc)
        finally:
            ring.close()

    producer = threading.Thread(target=produce, name="edge-acq", daemon=True)
    producer.start()
    try:
        while True:
            ring.wait(0.5)
            chunk = ring.read()
            if chunk:
                if record is not None:
                    record.write(chunk.data)
                records = pipe.update(chunk.data, chunk.gaps, chunk.gap_lost)
                lines = [dumps(r) for r in records]
                if lines:
                    out.write("\n".join(lines) + "\n")
                    out.flush()
            elif ring.closed:
                break
    finally:
        stop.set()
        producer.join(timeout=5.0)
    if failure:
        raise failure[0]
    return RunResult(
        source.name, source.fs, pipe.stats, source.stats, ring.stats,
        time.perf_counter() - t_wall,
    )  # fmt: skip
