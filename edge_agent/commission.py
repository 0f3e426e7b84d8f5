"""``edge-agent check-wiring``: a commissioning report for the person who installs it.

Reads the configured source for a few seconds through the daemon's own loop
(:func:`edge_agent.service.run`: the same kernels, pipeline and wiring checks) and says,
in one screen, what the sensors read: the supply, each phase's current and its angle
behind ia, the sequence components, the voltages and the displacement angles when they
are wired, and the data's quality. Then a verdict: the wiring checks of
:mod:`edge_agent.wiring` over every window, the motor running, the ADC's range and the
nameplate current. A miswiring reads as a motor fault, so this is the step before
``systemctl enable --now edge-agent``.
"""

from __future__ import annotations

import math
import statistics
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_agent.clock import rate_warning
from edge_agent.config import Config
from edge_agent.diagnosis import RUNNING_CURRENT
from edge_agent.features import PHASES
from edge_agent.publish.sink import RecordSink
from edge_agent.recording import NpyWriter
from edge_agent.service import RunResult
from edge_agent.wiring import energised_warning, nameplate_warning, running

__all__ = ["CommissionReport", "check_wiring", "format_report"]

# Data-quality flags: windows with one are left out of the medians the report gives.
_DATA_FLAGS = ("gap", "nan", "clipped")


@dataclass
class CommissionReport:
    run: RunResult
    windows: int  # analysed
    clean: int  # without a data-quality flag: the medians are theirs
    clipped: int
    median: dict[str, float | None]  # feature -> median over the clean windows
    voltages: bool
    problems: list[str] = field(default_factory=list)  # what to fix, in order
    warnings: list[str] = field(default_factory=list)
    running: bool = True
    energised: bool = False  # reads stopped, with a running motor's current

    @property
    def ok(self) -> bool:
        return self.running and not self.problems


class _Windows(RecordSink):
    """A sink with no output that keeps the pipeline's window records, and sets ``stop``
    once they cover ``seconds`` of signal."""

    def __init__(self, config: Config, seconds: float, stop: threading.Event) -> None:
        super().__init__(config, None)
        self.records: list[dict[str, Any]] = []
        self.seconds = seconds
        self.stop = stop

    def write(self, records, lost_samples: int = 0, *, final: bool = False) -> None:
        w = self.config.windows
        for rec in records:
            if rec["type"] == "window":
                self.records.append(rec)
                # Counted in windows, not by their times: the system clock may be set.
                if (len(self.records) - 1) * w.hop_s + w.length_s >= self.seconds - 1e-9:
                    self.stop.set()
        super().write(records, lost_samples, final=final)


def check_wiring(
    config: Config,
    source: Any,
    seconds: float,
    on_ready: Callable[[], None] | None = None,
    record: NpyWriter | None = None,
) -> CommissionReport:
    """Analyse ``seconds`` of ``source`` (or less, if it ends) and judge the wiring.
    ``on_ready`` is called once the source is open, as samples begin to flow. ``record``
    also keeps every sample read."""
    from edge_agent.service import run as run_service

    stop = threading.Event()
    sink = _Windows(config, seconds, stop)
    try:
        result = run_service(
            config, source, sink, scorer=None, stop=stop, on_ready=on_ready, record=record
        )
    finally:
        sink.close()
    report = judge(config, result, sink.records, voltages=len(source.roles) > 3)
    said = model_warning(config)
    if said is not None:
        report.warnings.append(said)
    return report


def model_warning(config: Config) -> str | None:
    """Why the service will not judge this motor with its model ([model]), or None: a
    model of another motor, or of a simulated one on an ADC (``Scorer.refusal``), or one
    that does not load."""
    from edge_agent.errors import EdgeAgentError
    from edge_agent.scoring import Scorer

    if not config.model.enabled:
        return None
    try:
        scorer = Scorer.load(config.model.path)
    except EdgeAgentError as exc:
        return f"the model does not load, and `run` refuses it: {exc}"
    why = scorer.refusal(config.motor.model_dump(), config.acquisition.source)
    if why is None:
        return None
    return (
        f"model {scorer.path}: {why}, so the service will run without it, raising no "
        "anomaly alert, until `edge-agent train` learns this motor's own baseline"
    )


def judge(
    config: Config, result: RunResult, records: Sequence[Mapping[str, Any]], *, voltages: bool
) -> CommissionReport:
    """The report of a run's window ``records``."""
    clean = [r for r in records if not set(r["flags"]) & set(_DATA_FLAGS)]
    clipped = sum("clipped" in r["flags"] for r in records)
    names = {k for r in clean for k, v in r["features"].items() if v is not None}
    median = {
        k: statistics.median(r["features"][k] for r in clean if r["features"].get(k) is not None)
        for k in names
    }
    report = CommissionReport(result, len(records), len(clean), clipped, median, voltages)
    rated = config.motor.rated_current
    if not records:
        report.problems.append(
            "no window was analysed: the source gave less than one window "
            f"({config.windows.length_s:g} s) of samples"
        )
        return report
    for said in result.wiring.values():
        report.problems.append(said)
    if clipped:
        report.problems.append(
            f"{clipped} of {len(records)} windows clipped: a signal reaches the ADC's full "
            "scale; use a CT or burden with more headroom, or a lower gain"
        )
    said = rate_warning(result.fs, *result.rate) if result.rate is not None else None
    if said is not None:
        report.problems.append(said)
    lost = result.source_stats.lost_samples + result.ring.overwritten
    if lost:
        report.warnings.append(f"{lost} samples lost on the way (cable, baud rate, USB)")
    if not running(median, rated):
        report.running = False
        said = energised_warning(median, rated)
        if said is not None:
            report.energised = True
            report.problems.append(said)
        return report
    said = nameplate_warning(median.get("i1"), rated)
    if said is not None:
        report.warnings.append(said)
    return report


def _num(v: float | None, fmt: str, unit: str = "") -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:{fmt}}{unit}"


def _lag(phase: str, phi: float | None) -> str:
    if phi is None:
        return f"i{phase} against v{phase}: -"
    return f"i{phase} {'lags' if phi >= 0 else 'leads'} v{phase} by {abs(phi):.1f}°"


def format_report(report: CommissionReport, config: Config) -> str:
    """The report as the command prints it."""
    m, run = report.median, report.run
    rated = config.motor.rated_current
    lines = [
        f"{run.source}: {run.pipeline.samples / run.fs:.1f} s at {run.fs:g} Hz, "
        f"{report.windows} windows ({report.clean} without a data flag; the values are "
        "their medians)",
        "",
        f"supply      {_num(m.get('supply_hz'), '.2f', ' Hz')}"
        + (" (fixed by [motor] supply_hz)" if config.motor.supply_hz is not None else ""),
    ]
    rms = [m.get(f"rms_{p}") for p in PHASES]
    # The phases' mean, not i1: a miswiring moves current from i1 to i2 and i0.
    load = sum(rms) / 3 if None not in rms else None
    share = f" ({100 * load / rated:.0f} % of the nameplate's {rated:g} A)" if load else ""
    lines.append(
        "currents    "
        + "  ".join(f"i{p} {_num(r, '.3g', ' A')}" for p, r in zip(PHASES, rms, strict=True))
        + f" rms{share}"
    )
    lines.append(
        f"angles      ib lags ia by {_num(m.get('i_angle_b_deg'), '.1f', '°')}, ic by "
        f"{_num(m.get('i_angle_c_deg'), '.1f', '°')} (120°, 240° when right)"
    )
    lines.append(
        f"sequence    i1 {_num(m.get('i1'), '.3g', ' A')}, i2 {_num(m.get('i2'), '.3g', ' A')} "
        f"(i2/i1 {_num(m.get('i2_i1'), '.3f')}), i0 {_num(m.get('i0'), '.3g', ' A')} "
        f"(i0/i1 {_num(m.get('i0_i1'), '.3f')}; a 3-wire motor draws none)"
    )
    if report.voltages:
        lines.append(
            "voltages    "
            + "  ".join(f"v{p} {_num(m.get(f'rms_v{p}'), '.4g', ' V')}" for p in PHASES)
            + f" rms; vb lags va by {_num(m.get('v_angle_b_deg'), '.1f', '°')}, vc by "
            f"{_num(m.get('v_angle_c_deg'), '.1f', '°')}; v2/v1 "
            f"{_num(None if m.get('v2_v1') is None else 100 * m['v2_v1'], '.2f', ' %')}"
        )
        lines.append(
            "pairing     "
            + ", ".join(_lag(p, m.get(f"phi_{p}_deg")) for p in PHASES)
            + " (a motor's current lags by 10-85°)"
        )
    lost = run.source_stats.lost_samples + run.ring.overwritten
    lines.append(
        f"data        {lost} samples lost, {report.clipped} windows clipped, "
        f"{run.pipeline.flagged_windows} flagged ({run.pipeline.wiring_windows} for wiring)"
    )
    if run.rate is not None:
        lines.append(
            f"sampling    {run.rate[0]:.0f} samples a second per channel by the system clock "
            f"([acquisition] fs = {run.fs:g})"
        )
    lines.append("")
    if not report.running and not report.energised:
        top = max((x for x in rms if x is not None), default=0.0)
        lines.append(
            f"not checked: the motor is not running (its largest phase current is {top:.3g} A, "
            f"under {RUNNING_CURRENT:.0%} of the nameplate's {rated:g} A): start it and run "
            "this again"
        )
    for said in report.problems:
        lines.append(f"problem: {said}")
    for said in report.warnings:
        lines.append(f"warning: {said}")
    if report.ok:
        lines.append(
            "wiring OK: the currents"
            + (" and voltages" if report.voltages else "")
            + " read as a motor's should; `systemctl enable --now edge-agent` next"
        )
    return "\n".join(lines) + "\n"
