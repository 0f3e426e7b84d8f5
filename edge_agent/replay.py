"""Offline runs of the full pipeline over a recording (``edge-agent replay``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from edge_agent.config import Config
from edge_agent.pipeline import Pipeline, PipelineStats
from edge_agent.publish.sink import RecordSink
from edge_agent.recording import gaps_in, open_recording
from edge_agent.wiring import describe_wiring

if TYPE_CHECKING:
    from edge_agent.scoring import Scorer


@dataclass
class ReplayResult:
    path: Path
    fs: float
    stats: PipelineStats
    wall_s: float
    wiring: dict[str, str] = field(default_factory=dict)  # Pipeline.wiring_seen
    energised: str | None = None  # Pipeline.energised_seen

    @property
    def signal_s(self) -> float:
        return self.stats.samples / self.fs

    @property
    def realtime_factor(self) -> float:
        return self.signal_s / self.wall_s if self.wall_s > 0 else float("inf")

    def summary(self) -> str:
        s = self.stats
        return (
            (
                f"{self.path.name}: {s.describe()}; {self.signal_s:.1f} s of signal at "
                f"{self.fs:g} Hz in {self.wall_s:.2f} s ({self.realtime_factor:.0f}x real time)"
            )
            + (f"\n{describe_wiring(s.wiring_windows, self.wiring)}" if self.wiring else "")
            + (f"\nnameplate: {self.energised}" if self.energised else "")
        )


def replay(
    path: str | Path,
    config: Config,
    out: IO[str] | RecordSink,
    *,
    scorer: Scorer | None,
    fs: float | None = None,
    columns: Sequence[str] | None = None,
    speed: float | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Stream ``path`` through a :class:`Pipeline`, writing each record to ``out``.

    ``speed`` paces the replay at that multiple of real time (1 = live rate); ``None`` runs
    as fast as possible. Records are written as they are made, so a bad line later in the
    file leaves every record before it in ``out``: a JSON Lines stream, or a
    :class:`RecordSink` that also publishes (the caller closes a sink; a stream gets the
    last summary here).
    """
    t_wall = time.perf_counter()
    sink = out if isinstance(out, RecordSink) else RecordSink(config, out)
    with open_recording(path, fs=fs, columns=columns) as rec:
        pipe = Pipeline(config, rec.fs, rec.roles, scorer)
        step = max(1, round(0.1 * rec.fs)) if speed else None
        for chunk in rec.chunks():
            pieces = (
                [(chunk.samples, chunk.gaps, chunk.lost)]
                if step is None
                else [
                    (chunk.samples[i : i + step], *gaps_in(chunk, i, i + step))
                    for i in range(0, chunk.samples.shape[0], step)
                ]
            )
            for samples, gaps, lost in pieces:
                sink.write(pipe.update(samples, gaps, lost))
                sink.poll()
                if speed:
                    ahead = pipe.stats.samples / rec.fs / speed - (time.perf_counter() - t_wall)
                    if ahead > 0:
                        time.sleep(ahead)
            if on_progress is not None:
                on_progress(rec.bytes_read, rec.size)
        if sink is not out:
            sink.close()
        return ReplayResult(
            Path(path), rec.fs, pipe.stats, time.perf_counter() - t_wall, pipe.wiring_seen,
            pipe.energised_seen,
        )  # fmt: skip
