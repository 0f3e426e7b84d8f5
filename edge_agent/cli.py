"""Command line: ``edge-agent COMMAND``. Thin: parse, call, print.

Exit codes (ARCHITECTURE.md): 0 ok, 1 runtime failure, 2 usage error, 65 bad input data
(check-wiring: something to fix), 66 input file missing, 74 a write the disk refused
(full, or failing; the daemon holds what it could not write until it can), 75 messages
left undelivered in the outbox (check-wiring: the motor not running, try again),
77 permission denied, 78 bad configuration.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edge_agent import __version__
from edge_agent.config import Config, load_config, shared_with_others, to_toml, unit_environ
from edge_agent.errors import EdgeAgentError, StorageError

# Seconds a stopping daemon gives the broker to acknowledge what is queued (the rest waits
# in the outbox for the next start).
RUN_DRAIN_S = 2.0
CONFIG_HELP = "TOML configuration file (environment variables EDGE_AGENT_TABLE__KEY override it)."


class _Group(click.Group):
    """Turns an EdgeAgentError into its message on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgeAgentError as exc:
            click.echo(f"edge-agent: error: {exc}", err=True)
            ctx.exit(exc.exit_code)


def _config(path: Path | None, **overrides: Any) -> Config:
    tree: dict[str, Any] = {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        *tables, key = dotted.split(".")
        node = tree
        for table in tables:
            node = node.setdefault(table, {})
        node[key] = value
    return load_config(path, overrides=tree)


config_option = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), help=CONFIG_HELP
)


def analysis_options(fn):
    """--model, --no-model and --out, shared by the commands that analyse samples."""
    fn = click.option(
        "--out", type=click.Path(path_type=Path), help="JSON Lines output (default stdout)."
    )(fn)
    fn = click.option(
        "--no-model", is_flag=True, help="Compute features only; no scores or anomaly alerts."
    )(fn)
    return click.option(
        "--model",
        type=click.Path(path_type=Path),
        help="Model bundle folder (default: the config's, else the bundled default); not "
        "used when trained for a motor of another nameplate than [motor]'s, nor by `run` "
        "on a serial or tcp source when trained on a simulated motor, as the bundled "
        "default was (logged).",
    )(fn)


def recording_options(fn):
    """--fs and --columns, for the commands that read several recordings."""
    fn = click.option(
        "--columns", help="File columns holding ia,ib,ic[,va,vb,vc], comma-separated."
    )(fn)
    return click.option(
        "--fs", type=float, help="Sample rate, Hz (when the files have no t_s column)."
    )(fn)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edge-agent")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    envvar="EDGE_AGENT_LOG_LEVEL",
    help="Messages to stderr (the journal under systemd): broker connections, reconnects, "
    "commands. Also EDGE_AGENT_LOG_LEVEL.",
)
def main(log_level: str) -> None:
    """Motor current signature analysis for three-phase induction motors.

    Computes per-window MCSA features from stator currents, scores each window with an
    autoencoder trained on the motor's own healthy baseline, and raises alerts.
    """
    import logging

    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    # paho's own chatter is for debugging the MQTT client, not for the journal.
    logging.getLogger("edge_agent.mqtt.paho").setLevel(max(logging.WARNING, logging.root.level))


@main.command("check-config")
@click.argument("file", required=False, type=click.Path(path_type=Path))
@config_option
def check_config(file: Path | None, config_path: Path | None) -> None:
    """Validate a configuration and print it resolved (defaults, file, environment).

    The environment is this shell's, and over it, as the service gets them, the variables
    of the environment files its unit reads: edge-agent.env beside FILE, then NAME.env for
    FILE NAME.toml (edge-agent@NAME; as root, as they are the root's to read). Exits 78
    naming the field (and the file) when a value is wrong. Warns when another configuration
    in the same folder (/etc/edge-agent/NAME.toml, a unit per motor) names the same motor,
    the same serial ADC or the same event store.
    """
    path = file or config_path
    unit = unit_environ(path, os.environ) if path is not None else None
    if unit is not None and unit.read:
        click.echo(f"read as the service does: {', '.join(map(str, unit.read))}", err=True)
    for f in unit.unread if unit is not None else []:
        click.echo(
            f"warning: cannot read {f} (permission denied), which the service reads: what it "
            "sets is not shown; run this as root", err=True,
        )  # fmt: skip
    cfg = (
        load_config(path, environ=unit.environ, env_files=unit.origin)
        if unit is not None
        else load_config(None)
    )
    click.echo(to_toml(cfg), nl=False)
    if path is not None:
        for said in shared_with_others(path, cfg):
            click.echo(f"warning: {said}", err=True)


@main.command()
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(path_type=Path),
    help="Recording to write: .csv (t_s,ia,ib,ic[,va,vb,vc]) or .npy.",
)
@click.option(
    "--fs", type=float, help="Sample rate, Hz. Default: the config's [acquisition] fs (15000)."
)
@click.option("--duration", type=float, default=10.0, show_default=True, help="Length, s.")
@click.option(
    "--supply-hz",
    type=float,
    help="Supply frequency, Hz. Default: the config's [motor] supply_hz, else its rated_hz "
    "(50). Below rated_hz, as a drive runs the motor, a load takes rated_hz / f times the "
    "slip.",
)
@click.option(
    "--load",
    type=float,
    default=0.8,
    show_default=True,
    help="Load as a fraction of rated torque (sets current and slip).",
)
@click.option(
    "--fault",
    type=click.Choice(
        ["broken-bar", "eccentricity", "bearing-outer", "stator-short", "supply-unbalance"]
    ),
    help="Fault to inject (default: healthy).",
)
@click.option(
    "--severity",
    type=float,
    help="broken-bar, eccentricity, bearing-outer: dB of the first sideband pair "
    "below the fundamental; stator-short: % of phase-C turns shorted; "
    "supply-unbalance: % voltage unbalance.",
)
@click.option(
    "--onset", type=float, default=0.0, show_default=True, help="Time at which the fault starts, s."
)
@click.option("--voltages", is_flag=True, help="Also write phase voltages va, vb, vc.")
@click.option(
    "--noise",
    type=float,
    default=0.002,
    show_default=True,
    help="White noise rms as a fraction of the fundamental.",
)
@click.option(
    "--ct-mismatch",
    type=float,
    default=0.01,
    show_default=True,
    help="Largest relative CT gain error, drawn per phase (0.01: class 1 CTs; "
    "0 for an ideal measurement chain).",
)
@click.option("--adc-bits", type=int, help="Quantise to this ADC resolution.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@config_option
def simulate(
    output: Path,
    fs: float | None,
    duration: float,
    supply_hz: float | None,
    load: float,
    fault: str | None,
    severity: float | None,
    onset: float,
    voltages: bool,
    noise: float,
    ct_mismatch: float,
    adc_bits: int | None,
    seed: int,
    config_path: Path | None,
) -> None:
    """Write a synthetic three-phase motor recording, healthy or with a fault.

    The motor is the config's [motor] nameplate (default: 4-pole, 1440 rpm at 50 Hz, 10 A),
    fed at its frequency and sampled at the config's rate, as `run` with the simulator
    source has it.
    """
    from edge_agent import simulate as sim

    cfg = _config(config_path)
    spec = sim.SimulationSpec(
        fs=cfg.acquisition.fs if fs is None else fs,
        duration_s=duration,
        supply_hz=(cfg.motor.supply_hz or cfg.motor.rated_hz) if supply_hz is None else supply_hz,
        load=load,
        fault=fault,
        severity=severity,
        onset_s=onset,
        voltages=voltages,
        noise=noise,
        ct_mismatch=ct_mismatch,
        adc_bits=adc_bits,
        seed=seed,
    )
    try:
        sim.validate_spec(spec, cfg.motor)
        n = sim.write_recording(output, spec, cfg.motor)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"wrote {output}: {n} samples, {n / spec.fs:g} s at {spec.fs:g} Hz", err=True)


def _open_out(out: Path | None, mode: str = "w"):
    if out is None:
        return sys.stdout, False
    try:
        return out.open(mode, encoding="utf-8"), True
    except OSError as exc:
        raise EdgeAgentError(f"{out}: cannot write: {exc.strerror}") from None


def _load_scorer(cfg: Config, model: Path | None, no_model: bool, source: str | None = None):
    """The model to score with: ``--model``, else the config's; None with ``--no-model``,
    and when the model must not judge this motor read from ``source`` (`run`'s
    ``[acquisition] source``, None for a replay): a model of another motor than
    ``[motor]``, or of a simulated motor on an ADC (``Scorer.refusal``; logged)."""
    import logging

    from edge_agent.scoring import Scorer

    if no_model or (model is None and not cfg.model.enabled):
        return None
    scorer = Scorer.load(model or cfg.model.path)
    why = scorer.refusal(cfg.motor.model_dump(), source)
    if why is None:
        return scorer
    logging.getLogger(__name__).warning(
        "model %s: %s, so it is not used: no anomaly alerts until `edge-agent train` learns "
        "this motor's own baseline (model.path then names it)", scorer.path, why,
    )  # fmt: skip
    return None


def mqtt_option(default: str):
    return click.option(
        "--mqtt",
        "mqtt_url",
        metavar="URL",
        help="Publish alerts and summaries to this broker, mqtt://host[:port] or "
        f"mqtts://host[:port] (TLS); the rest of [mqtt] applies. Default: {default}.",
    )


def _make_sink(cfg: Config, stream, scorer, *, ts_offset: float, daemon: bool):
    """The daemon keeps the event store always, logs its alerts, and holds in memory
    what a full disk refuses; a replay keeps the store only when it publishes."""
    from edge_agent.publish.sink import RecordSink

    publish = bool(cfg.mqtt.url)
    return RecordSink(
        cfg, stream, ts_offset=ts_offset, scorer=scorer, publish=publish,
        store=daemon or publish, resume=daemon, presence=daemon, log_alerts=daemon,
        hold=daemon,
    )  # fmt: skip


def _close_sink(sink, drain_timeout: float, *, strict: bool) -> None:
    """Close ``sink``; with ``strict``, messages the broker has not taken are an error (75)."""
    from edge_agent.errors import DeliveryPendingError

    left = sink.close(drain_timeout=drain_timeout)
    if left:
        publisher = sink.publisher
        why = f" (last error: {publisher.last_error})" if publisher and publisher.last_error else ""
        msg = (
            f"{left} messages not yet acknowledged by {sink.config.mqtt.url}{why}; they are "
            f"kept in {sink.config.store.resolved_path} and sent by the next run"
        )
        if strict:
            raise DeliveryPendingError(msg)
        click.echo(f"edge-agent: {msg}", err=True)


def source_options(fn):
    """--source, --device and --recording, for the commands that read a live source."""
    fn = click.option(
        "--recording",
        type=click.Path(path_type=Path),
        help="With --source replay: the .csv or .npy file to play as if live.",
    )(fn)
    fn = click.option(
        "--device",
        help="Serial device path (best its /dev/serial/by-id/ name) or pyserial URL "
        "(socket://, rfc2217://) to read.",
    )(fn)
    return click.option(
        "--source",
        type=click.Choice(["serial", "tcp", "replay", "simulator"]),
        help="Where samples come from (default: the config's [acquisition] source).",
    )(fn)


def source_overrides(source: str | None, device: str | None, recording: Path | None) -> dict:
    """The config keys those options override."""
    return {
        "acquisition.source": source,
        "acquisition.serial.device": device,
        "acquisition.replay.path": str(recording) if recording else None,
    }


@main.command()
@source_options
@analysis_options
@click.option(
    "--record",
    type=click.Path(path_type=Path),
    help="Also keep every sample received, in A and V, as a .npy file (for replay or train); "
    "samples lost on the way are rows of NaN, so that a replay sees the gap.",
)
@mqtt_option("the config's [mqtt] url")
@config_option
def run(
    source: str | None,
    device: str | None,
    recording: Path | None,
    model: Path | None,
    no_model: bool,
    out: Path | None,
    record: Path | None,
    mqtt_url: str | None,
    config_path: Path | None,
) -> None:
    """Analyse a live source until it ends or is stopped (Ctrl-C, SIGTERM).

    Reads samples from the serial ADC, a TCP socket, a recording played at its real rate,
    or the simulator, as [acquisition] in the config says, and writes one JSON record per
    line as in replay (times in UNIX seconds, by the system clock, which they follow
    when it is set; --out appends to the file). Alerts,
    summaries and counters are kept in the event store ([store] path) and, with an [mqtt]
    url, published through its outbox; the broker's commands (label, reload, snapshot) are
    carried out. Counters (lost samples, CRC errors, reconnects) go to stderr at the end.
    SIGHUP (systemctl reload) reads the configuration and the model again, as the reload
    command does. Under systemd (systemd/edge-agent.service) it reports readiness, status
    and watchdog pings to $NOTIFY_SOCKET.
    """
    import signal
    import threading

    from edge_agent.acquisition.sources import make_source
    from edge_agent.recording import NpyWriter
    from edge_agent.service import run as run_service

    overrides = {
        **source_overrides(source, device, recording),
        "output.path": str(out) if out else None,
        "mqtt.url": mqtt_url,
    }
    cfg = _config(config_path, **overrides)
    src = make_source(cfg)
    scorer = _load_scorer(cfg, model, no_model, cfg.acquisition.source)
    stop = threading.Event()

    def reload() -> tuple[Config, Any]:
        new = _config(config_path, **overrides)
        return new, _load_scorer(new, model, no_model, new.acquisition.source)

    def on_ready() -> None:
        click.echo(
            f"edge-agent run: reading {src.name} ({', '.join(src.roles)} at {src.fs:g} Hz)",
            err=True,
        )

    reload_requested = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        (reload_requested if signum == signal.SIGHUP else stop).set()

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, on_signal) for sig in signals}
    # Appended to: a restart of the daemon must not erase the records before it.
    stream, close = _open_out(cfg.output.path, "a")
    writer = NpyWriter(record, len(src.roles), src.fs) if record is not None else None
    try:
        sink = _make_sink(cfg, stream, scorer, ts_offset=0.0, daemon=True)
        sink.start()
        try:
            result = run_service(
                cfg, src, sink, scorer=scorer, stop=stop, record=writer, on_ready=on_ready,
                reload=reload, reload_requested=reload_requested,
            )  # fmt: skip
        finally:
            # What the broker has not acknowledged stays in the outbox for the next start.
            _close_sink(sink, RUN_DRAIN_S, strict=False)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if close:
            stream.close()
        if writer is not None:
            writer.close()
    click.echo(result.summary(), err=True)
    if writer is not None and writer.failed is not None:
        raise StorageError(f"{writer.failed}; it holds what was received until then")


@main.command("check-wiring")
@source_options
@click.option(
    "--seconds",
    type=click.FloatRange(min=1.0, max=600.0),
    default=10.0,
    show_default=True,
    help="Signal to analyse.",
)
@click.option(
    "--record",
    type=click.Path(path_type=Path),
    help="Also keep every sample read, in A and V, as a .npy file: with the motor healthy "
    "and the wiring right, a baseline run for `edge-agent train` (with --fs). Samples lost "
    "on the way are rows of NaN, whose windows train leaves out.",
)
@config_option
@click.pass_context
def check_wiring(
    ctx: click.Context,
    source: str | None,
    device: str | None,
    recording: Path | None,
    seconds: float,
    record: Path | None,
    config_path: Path | None,
) -> None:
    """Check the sensors' wiring on the running motor, before starting the service.

    Reads the source as `run` does for --seconds and prints what the sensors read: the
    supply frequency, each phase's current and its angle behind ia, the sequence
    currents, and with voltages wired, the voltages and each phase's displacement
    angle; and from a live source, the samples a second it delivers by the system
    clock. Then what to fix: a CT reversed, open or on the wrong input, two leads
    swapped, the voltages in another order than the currents, a signal clipping the
    ADC, a board sampling 0.5 % or more off [acquisition] fs, or a nameplate current
    that is not this motor's; and a model ([model]) the service would not use: another
    motor's, a simulated motor's on an ADC, or broken.
    Stop the service first (`systemctl stop edge-agent`): it holds the serial port. Exits
    0 when the wiring reads right, 65 when something is to fix, 75 when the motor is not
    running (start it and check again); 66 for a missing device, 77 for one this user
    may not open, 74 when the disk refuses the --record file.
    """
    from edge_agent.acquisition.sources import make_source
    from edge_agent.commission import check_wiring as check
    from edge_agent.commission import format_report
    from edge_agent.recording import NpyWriter

    cfg = _config(config_path, **source_overrides(source, device, recording))
    src = make_source(cfg)

    def on_ready() -> None:
        click.echo(f"edge-agent check-wiring: reading {src.name} for {seconds:g} s", err=True)

    writer = NpyWriter(record, len(src.roles), src.fs) if record is not None else None
    try:
        report = check(cfg, src, seconds, on_ready, writer)
    finally:
        if writer is not None:
            writer.close()
    click.echo(format_report(report, cfg), nl=False)
    if writer is not None:
        flagged = report.windows - report.clean
        if not report.ok:
            use = "not one to learn from until the above is mended"
        else:  # samples lost are rows of NaN in it: train leaves their windows out
            left_out = (
                f" (train leaves out the {flagged} of its {report.windows} windows that hold "
                "a gap or samples missing)"
                if flagged
                else ""
            )
            use = (
                f"a healthy run to learn from{left_out}: edge-agent train {record} [more runs] "
                f"--fs {src.fs:g}{f' --config {config_path}' if config_path else ''} --out DIR"
            )
        click.echo(f"recorded {record}: {writer.rows / src.fs:.1f} s at {src.fs:g} Hz; {use}")
        if writer.failed is not None:  # the check went on; the recording is shorter
            raise StorageError(f"{writer.failed}; it holds what was read until then")
    if not report.ok:
        ctx.exit(65 if report.problems else 75)


@main.command("adc-emulate")
@click.argument("device")
@click.option(
    "--recording",
    type=click.Path(path_type=Path),
    help="Play this .csv or .npy recording (default: the simulator, as [acquisition.simulator]).",
)
@click.option("--fs", type=float, help="Sample rate of a .npy recording, Hz (default: config fs).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), help="Simulated s.")
@click.option("--fault", help="Simulated fault (as `simulate --fault`).")
@click.option(
    "--protocol",
    type=click.Choice(["binary", "ascii"]),
    help="Frames (docs/serial-protocol.md) or ASCII lines (default: [acquisition.serial]).",
)
@click.option("--frame-samples", type=click.IntRange(1, 4096), default=64, show_default=True)
@click.option("--baud", type=int, help="UART line rate (default: [acquisition.serial] baud).")
@click.option(
    "--speed",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Multiple of real time; 0 = as fast as the device takes it.",
)
@config_option
def adc_emulate(
    device: str,
    recording: Path | None,
    fs: float | None,
    duration: float | None,
    fault: str | None,
    protocol: str | None,
    frame_samples: int,
    baud: int | None,
    speed: float,
    config_path: Path | None,
) -> None:
    """Play samples out as an ADC board would, to a serial DEVICE at the real rate.

    DEVICE is a serial port, a pseudo-terminal or a pyserial URL (socket://host:port).
    Samples come from a recording or the simulator and are turned into int16 counts with
    [acquisition.scaling], so `edge-agent run` with the same config reads back amperes and
    volts. Set a gain there (e.g. gain = 0.001 A per count): without one a count is one
    ampere. For wiring tests, and as a reference for firmware authors.
    """
    from edge_agent.acquisition.emulator import Emulator, open_sink
    from edge_agent.acquisition.sources import scaling_for

    cfg = _config(
        config_path,
        **{"acquisition.simulator.duration_s": duration, "acquisition.simulator.fault": fault},
    )
    ser = cfg.acquisition.serial
    protocol = protocol or ser.protocol
    with contextlib.ExitStack() as stack:
        if recording is not None:
            from edge_agent.recording import open_recording

            npy = recording.suffix.lower() == ".npy"
            # Short chunks: reading one delays the batch after it (0.1 s at 15 kS/s).
            rec = stack.enter_context(
                open_recording(
                    recording, fs=(fs or cfg.acquisition.fs) if npy else fs, chunk_samples=1500
                )
            )
            rate, roles = rec.fs, rec.roles
            blocks = (c.samples for c in rec.chunks())
        else:
            from edge_agent.acquisition.sources import SimulatorSource
            from edge_agent.simulate import iter_blocks

            sim = SimulatorSource(cfg)
            rate, roles = sim.fs, sim.roles
            blocks = (x for _, x in iter_blocks(sim.spec, sim.motor, block_s=0.1))
        write, close = open_sink(device, baud or ser.baud)
        stack.callback(close)
        emu = Emulator(
            write, rate, len(roles), protocol=protocol, frame_samples=frame_samples,
            realtime=speed > 0, speed=speed or 1.0,
        )  # fmt: skip
        click.echo(
            f"adc-emulate: {len(roles)} channels ({','.join(roles)}) at {rate:g} Hz, "
            f"{protocol}, to {device}; Ctrl-C to stop",
            err=True,
        )
        try:
            emu.play(blocks, scaling_for(cfg, roles))
        except KeyboardInterrupt:
            pass
    st = emu.stats
    click.echo(
        f"adc-emulate: {st.samples} samples in {st.frames} frames ({st.bytes} bytes), "
        f"{st.clipped} values saturated, {st.late_batches} batches late",
        err=True,
    )


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--fs", type=float, help="Sample rate, Hz (when the file has no t_s column).")
@click.option(
    "--columns",
    help="File columns holding ia,ib,ic[,va,vb,vc], comma-separated "
    "(CSV header names, or 0-based indices for .npy).",
)
@analysis_options
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),
    help="Pace at this multiple of real time (1 = live rate); default: as fast as possible.",
)
@mqtt_option("none (a replay publishes only when asked)")
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="With --mqtt: seconds to wait at the end for the broker to take every message.",
)
@config_option
def replay(
    file: Path,
    fs: float | None,
    columns: str | None,
    model: Path | None,
    no_model: bool,
    out: Path | None,
    speed: float | None,
    mqtt_url: str | None,
    drain_timeout: float,
    config_path: Path | None,
) -> None:
    """Run the full pipeline over a recording (.csv or .npy) and write records.

    One JSON object per line: "window" records with features, score and flags, "alert"
    records, and a "summary" every [output] summary_interval_s of signal. A summary line
    goes to stderr. With --mqtt, alerts and summaries are also published as `run` does
    (times counted from the start of the replay); if the broker has not taken them all
    within --drain-timeout, they stay in the outbox ([store] path) and the exit code is 75.
    """
    import time

    from edge_agent.recording import parse_columns
    from edge_agent.replay import replay as run_replay

    cfg = _config(config_path, **{"mqtt.url": mqtt_url})
    scorer = _load_scorer(cfg, model, no_model)
    out = out or cfg.output.path
    stream, close = _open_out(out)
    bar = None
    sink = None
    try:
        if not mqtt_url:  # the config's [mqtt] url is for `run`; a replay publishes on request
            cfg.mqtt.url = None
        sink = _make_sink(cfg, stream, scorer, ts_offset=time.time(), daemon=False)
        sink.start()
        on_progress = None
        if sys.stderr.isatty() and stream is not sys.stdout:
            bar = click.progressbar(
                length=file.stat().st_size if file.is_file() else 0,
                label=file.name,
                file=sys.stderr,
            )
            bar.__enter__()
            state = {"done": 0}

            def on_progress(done: int, total: int) -> None:
                bar.update(done - state["done"])
                state["done"] = done

        result = run_replay(
            file,
            cfg,
            sink,
            scorer=scorer,
            fs=fs,
            columns=parse_columns(columns),
            speed=speed,
            on_progress=on_progress,
        )
        if bar is not None:
            bar.__exit__(None, None, None)
            bar = None
        click.echo(result.summary(), err=True)
        done, sink = sink, None
        _close_sink(done, drain_timeout, strict=True)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
        if sink is not None:  # failed: keep what was queued, for the next run
            sink.close()
        if close:
            stream.close()


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for the model bundle (model.onnx, model.json).",
)
@recording_options
@click.option(
    "--epochs",
    type=click.IntRange(min=10),
    default=1500,
    show_default=True,
    help="Training epochs.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@config_option
def train(
    files: tuple[Path, ...],
    out: Path,
    fs: float | None,
    columns: str | None,
    epochs: int,
    seed: int,
    config_path: Path | None,
) -> None:
    """Learn a motor's healthy baseline from recordings and write a model bundle.

    Every clean window of the FILES (recordings of the motor running healthy; windows
    flagged for data quality or wiring, of a stopped motor or of a start are left out)
    becomes a training vector. The
    threshold is set from the scores of these healthy windows, each recording also scored
    by a model fitted without it (one recording: each of three stretches of it); use three
    or more recordings. The card also keeps the motor's healthy line levels and
    negative-sequence current, which the diagnosis judges later windows by, and the
    current and supply frequency the windows ran at: a lighter load or another speed
    raises no anomaly alert ([alerts] baseline_margin).
    """
    from edge_agent.recording import parse_columns
    from edge_agent.training.baseline import (
        describe_line_baseline,
        describe_nameplate,
        describe_negative_sequence,
        describe_operating_range,
        describe_threshold_folds,
        train_baseline,
    )
    from edge_agent.wiring import describe_wiring

    cfg = _config(config_path)
    bundle, result, threshold, base = train_baseline(
        files, out, cfg, fs=fs, columns=parse_columns(columns), epochs=epochs, seed=seed
    )
    click.echo(
        f"wrote {bundle}: {base.X.shape[0]} windows from {len(files)} recordings at "
        f"{base.fs:g} Hz ({result.n_train} train, {result.n_val} validation), "
        f"threshold {threshold:.4g}",
        err=True,
    )
    click.echo(describe_line_baseline(base.line_levels(), cfg, base.unsteady), err=True)
    click.echo(describe_negative_sequence(base.negative_sequence_level(), cfg), err=True)
    click.echo(describe_operating_range(base.operating_range(), cfg), err=True)
    for warning in (describe_threshold_folds(base), describe_nameplate(base, cfg)):
        if warning:
            click.echo(warning, err=True)
    for path, n, seen in base.miswired:
        click.echo(f"warning: {path}: {describe_wiring(n, seen)}; left out", err=True)


def _parsed(hint: str, parse, *args: Any) -> Any:
    """``parse(*args)``, its ValueError a usage error (exit 2) naming the option."""
    try:
        return parse(*args)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None


store_option = click.option(
    "--store",
    type=click.Path(path_type=Path),
    help="The event store (SQLite file). Default: [store] path, else the services' on this "
    "computer when there are any (/var/lib/edge-agent/edge-agent.db, and each motor's "
    "/var/lib/edge-agent-NAME/edge-agent.db), read as one, else the one `run` keeps for "
    "this user.",
)


def asset_option(default: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--asset",
        help="Only the motor named so: SITE/ASSET, or ASSET when one site has it (its "
        f"daemon's [output] site and asset). Default: {default}.",
    )


@main.command()
@click.argument("alert_id", required=False)
@click.option("--open", "open_only", is_flag=True, help="Only alerts not yet cleared.")
@click.option("--since", help="Raised since an age (30m, 12h, 7d, 2w) or a local date.")
@click.option(
    "--fault",
    help="Only alerts of this fault: anomaly, broken_rotor_bar, eccentricity, bearing, "
    "stator_short or supply_unbalance.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Show at most this many, the newest (0: all).",
)
@asset_option("every motor in the stores read (--store), each alert's named when there are several")
@click.option("--json", "as_json", is_flag=True, help="A JSON object per alert, for scripts.")
@store_option
@config_option
def alerts(
    alert_id: str | None,
    open_only: bool,
    since: str | None,
    fault: str | None,
    asset: str | None,
    limit: int,
    as_json: bool,
    store: Path | None,
    config_path: Path | None,
) -> None:
    """The alerts the daemon has raised, from its event store, newest first.

    A line per alert (when raised, fault, severity, open or how long it lasted, its label
    and id), a line of what its evidence says, and one of why it was cleared when not by
    reading normal again (escalated, not judged in that run, a restart). With ALERT_ID
    (its first 4 or more characters will do), that alert whole, with its evidence and why
    it was cleared. Reads the store while the daemon runs. Exits 66 when there is no
    store, 77 when it is not yours to read (sudo), 65 for an id that fits no alert or
    several, or an --asset the store does not hold.
    """
    import time

    from edge_agent import history
    from edge_agent.publish.schema import FAULTS

    if fault is not None and fault not in FAULTS:
        raise click.BadParameter(
            f"{fault!r} is not one of {', '.join(FAULTS)}", param_hint="--fault"
        )
    now = time.time()
    since_ts = None if since is None else _parsed("--since", history.parse_since, since, now)
    cfg = _config(config_path)
    with history.Stores(history.locate_stores(cfg, store)) as db:
        if alert_id is not None:
            _, one = db.find_alert(alert_id)
            text = history.as_json(one) if as_json else history.format_alert(one, now)
            click.echo(text, nl=as_json)
            return
        site, asset = (None, None) if asset is None else history.find_motor(db, asset)
        found = db.alerts(
            site=site,
            asset=asset,
            since=since_ts,
            open_only=open_only,
            fault=fault,
            limit=(limit or None),
        )
    if as_json:
        for a in found:
            click.echo(history.as_json(a))
        return
    limited = bool(limit) and len(found) == limit
    click.echo(history.format_alerts(found, db.path, now, limited=limited), nl=False)


@main.command()
@click.argument("alert_id")
@click.argument("verdict", type=click.Choice(["true_positive", "false_positive"]))
@click.option("--by", help="Who says so (kept with the label; at most 200 characters).")
@click.option("--note", help="What was found (at most 4000 characters).")
@store_option
@config_option
def label(
    alert_id: str,
    verdict: str,
    by: str | None,
    note: str | None,
    store: Path | None,
    config_path: Path | None,
) -> None:
    """Say whether an alert was right: VERDICT is true_positive or false_positive.

    Kept with the alert in the event store, as the MQTT label command keeps it; a new
    label replaces the one before. ALERT_ID: its first 4 or more characters will do
    (`edge-agent alerts` lists them). Exits 66 when there is no store, 77 when it is not
    yours to write (sudo), 65 for an id that fits no alert or several.
    """
    from pydantic import ValidationError

    from edge_agent import history
    from edge_agent.publish.schema import CommandLabel

    try:  # the limits of the MQTT label command
        CommandLabel(alert_id=alert_id, label=verdict, by=by, note=note)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise click.BadParameter(err["msg"], param_hint=f"--{err['loc'][0]}") from None
    cfg = _config(config_path)
    with history.Stores(history.locate_stores(cfg, store)) as stores:
        db, found = stores.find_alert(alert_id)
        db.label(found["alert_id"], verdict, by=by, note=note)
    click.echo(
        f"{found['alert_id']} ({found['fault']} {found['severity']}, raised "
        f"{history.when(found['raised_ts'])}): labelled {verdict}"
    )


@main.command()
@click.argument("names", nargs=-1)
@click.option(
    "--since",
    default="30d",
    show_default=True,
    help="From an age (12h, 7d, 2w) or a local date on.",
)
@click.option(
    "--every",
    default="1d",
    show_default=True,
    help="A line per span of 1h, 2h, 3h, 4h, 6h, 8h, 12h, 1d or 1w (on the local clock).",
)
@asset_option("every motor in the stores read (--store), each in a table of its own")
@click.option("--json", "as_json", is_flag=True, help="A JSON object per span, for scripts.")
@store_option
@config_option
def trend(
    names: tuple[str, ...],
    since: str,
    every: str,
    asset: str | None,
    as_json: bool,
    store: Path | None,
    config_path: Path | None,
) -> None:
    """How the motor has gone, span by span, from the summaries the daemon kept.

    A line per day (--every) from the day 30 days ago (--since), a column per NAME: a
    field of the summaries (docs/mqtt.md), averaged over the span's summaries; counts
    such as anomalous_windows are summed, and i2_i1_max and score_max take their
    greatest. By default the motor's current and the diagnosis's lines that have data:
    i1, i2_i1, epva_2f_db, brb_lsb_db, ecc_lsb_db, bearing_outer_db, bearing_inner_db,
    v2_v1, score_p95 and anomalous_windows; then stopped_windows,
    outside_baseline_windows and ramping_windows (not judged for an anomaly) and
    unsteady_windows (the load or speed changing: the rotor and bearing lines not read)
    when there were any. The event
    store keeps the summaries hour by hour for store.retention_days, of each motor its
    daemon watched ([output] site and asset): a table each, never averaged together, also
    when the stores of several motors' services are read (--store).
    Exits 66 when there is no store, 77 when it is not yours to read (sudo), 65 for an
    --asset it does not hold.
    """
    import json
    import time

    from edge_agent import history

    _parsed("NAMES", history.check_names, names)
    since_ts = _parsed("--since", history.parse_since, since, time.time())
    span = _parsed("--every", history.parse_every, every)
    cfg = _config(config_path)
    with history.Stores(history.locate_stores(cfg, store)) as stores:
        motor = None if asset is None else history.find_motor(stores, asset)
        site, asset = motor or (None, None)
        # Each store's hours, from the start of the span holding --since.
        start = history.span_start(since_ts, span)
        hours = {db.path: db.trend(site=site, asset=asset, since=start) for db in stores.dbs}
    # A motor's summaries are never averaged with another's: a table each (and one for
    # each store that holds it: the summaries of one motor's two services, before and after
    # it was moved to edge-agent@.service, are two tables).
    motors: dict[tuple[str, str] | None, dict[Path | str, list[dict[str, Any]]]] = {}
    for path, rows in hours.items():
        for h in rows:
            motors.setdefault((h["site"], h["asset"]), {}).setdefault(path, []).append(h)
    tables = []
    for m in sorted(motors) or [motor]:
        for path, held in (motors.get(m) or {stores.path: []}).items():
            chosen = list(names or history.TREND_DEFAULT)
            rows = history.trend_rows(held, span, chosen)
            if not names:  # the defaults this motor has data for
                chosen = history.default_columns(rows)
            if as_json:
                for r in rows:
                    fields = {k: r[k] for k in ("start", "summaries", "windows", *chosen)}
                    click.echo(
                        json.dumps({"site": m[0], "asset": m[1], "store": str(path), **fields})
                    )
                continue
            name = None if m is None else history.motor_name(*m)
            tables.append(history.format_trend(rows, chosen, span, path, name))
    click.echo("\n".join(tables), nl=False)


@main.command()
@click.argument("labels", type=click.Path(path_type=Path))
@click.option(
    "--model",
    type=click.Path(path_type=Path),
    help="Model bundle folder to evaluate (default: the config's, else the bundled default).",
)
@recording_options
@click.option(
    "--max-fpr",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.01,
    show_default=True,
    help="False-positive rate on the healthy windows for which to suggest a threshold.",
)
@click.option(
    "--out", type=click.Path(path_type=Path), help="Also write the report as JSON to this file."
)
@config_option
def evaluate(
    labels: Path,
    model: Path | None,
    fs: float | None,
    columns: str | None,
    max_fpr: float,
    out: Path | None,
    config_path: Path | None,
) -> None:
    """Metrics and a report of a model and the diagnosis on labelled recordings.

    LABELS is a CSV file with a header and a row per recording: `file` (relative to
    LABELS), `label` (healthy, faulty, or a fault name: broken_rotor_bar, eccentricity,
    bearing, stator_short, supply_unbalance) and optionally `onset_s` and `end_s`, when
    the fault began and ended (s). Each recording runs through the pipeline as in replay.
    The report gives, per window, the false-positive and detection rates at the model's
    threshold, the ROC AUC, and the threshold that would keep false positives at
    --max-fpr; per recording, the alerts raised, false alarms, delay after the onset, and
    whether an alert named the labelled fault. Exits 65 naming the line of a wrong label
    or time, 66 for a missing file.
    """
    import json

    from edge_agent.recording import parse_columns
    from edge_agent.scoring import Scorer
    from edge_agent.training.evaluate import evaluate as run_evaluation
    from edge_agent.training.evaluate import format_report

    cfg = _config(config_path)
    scorer = Scorer.load(model or cfg.model.path)
    report = run_evaluation(
        labels, cfg, scorer, fs=fs, columns=parse_columns(columns), max_fpr=max_fpr
    )
    other = scorer.another_motor(cfg.motor.model_dump())
    if other is not None:
        click.echo(
            f"warning: model {scorer.path}: {other}: evaluated as asked, but `run` and "
            "`replay` would not use it with this [motor]",
            err=True,
        )
    click.echo(format_report(report), nl=False)
    if out is not None:
        stream, _ = _open_out(out)
        with stream:
            json.dump(report, stream, indent=2)
            stream.write("\n")


if __name__ == "__main__":  # pragma: no cover
    main()
