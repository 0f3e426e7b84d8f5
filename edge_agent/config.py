"""The whole configuration: pydantic models, loaded from TOML and the environment.

Precedence, lowest first: the defaults below, the TOML file, then environment variables
named ``EDGE_AGENT_<TABLE>__<KEY>`` (for example ``EDGE_AGENT_MOTOR__POLE_PAIRS=2``; nested
tables add more ``__``). Values from the environment are strings and are converted by the
same validation as the file's. Every problem is reported once, at start-up, as a
:class:`~edge_agent.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from edge_agent.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENV_PREFIX = "EDGE_AGENT_"
# Settings whose values an error message never repeats.
SECRET_SETTINGS = ("password", "url")
CURRENT_CHANNELS = ("ia", "ib", "ic")
VOLTAGE_CHANNELS = ("va", "vb", "vc")


class _Model(BaseModel):
    # A typo in a key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ChannelScaling(_Model):
    """Conversion of a raw channel value to amperes or volts: ``(raw - offset) * gain * ratio``."""

    offset: float = 0.0
    gain: float = Field(1.0, description="units per raw count (or per volt at the ADC)")
    ratio: float = Field(1.0, gt=0, description="CT or VT ratio, primary/secondary")


class SerialConfig(_Model):
    """A serial ADC: a device path, or a pyserial URL such as ``rfc2217://host:port``."""

    device: str = Field(
        "/dev/ttyACM0",
        min_length=1,
        description="best the adapter's /dev/serial/by-id/ name, which a replug keeps",
    )
    baud: int = Field(
        2_000_000, gt=0, description="ignored by USB CDC devices; 6 ch at 15 kS/s need ~2 Mbd"
    )
    protocol: Literal["binary", "ascii"] = "binary"
    exclusive: bool = Field(True, description="refuse to share the port with another program")
    reconnect_max_s: float = Field(
        10.0, gt=0, le=600, description="longest wait between reopen attempts after an unplug"
    )


class TcpConfig(_Model):
    """Raw protocol frames (or ASCII lines) from a TCP server, e.g. a serial-to-Ethernet box."""

    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(4001, gt=0, lt=65536)
    protocol: Literal["binary", "ascii"] = "binary"
    reconnect_max_s: float = Field(10.0, gt=0, le=600)


class ReplaySourceConfig(_Model):
    """A recording played as if live."""

    path: Path | None = Field(None, description="a .csv or .npy recording")
    speed: float = Field(1.0, ge=0, description="multiple of real time; 0 = as fast as possible")


class SimulatorSourceConfig(_Model):
    """The built-in motor simulator at the real rate (see ``edge-agent simulate``)."""

    duration_s: float = Field(3600.0, gt=0, description="length of the simulated run, s")
    fault: str | None = None
    severity: float | None = None
    onset_s: float = Field(0.0, ge=0)
    load: float = Field(0.8, ge=0, le=1.2)
    voltages: bool = False
    seed: int = 0


class AcquisitionConfig(_Model):
    source: Literal["serial", "tcp", "replay", "simulator"] = Field(
        "serial", description="where `edge-agent run` takes samples from"
    )
    fs: float = Field(15000.0, gt=0, le=1e6, description="sample rate per channel, Hz")
    ring_s: float = Field(
        5.0, gt=0, le=600, description="seconds of samples buffered between the threads"
    )
    serial: SerialConfig = Field(default_factory=SerialConfig)
    tcp: TcpConfig = Field(default_factory=TcpConfig)
    replay: ReplaySourceConfig = Field(default_factory=ReplaySourceConfig)
    simulator: SimulatorSourceConfig = Field(default_factory=SimulatorSourceConfig)
    channels: list[Literal["ia", "ib", "ic", "va", "vb", "vc"]] = Field(
        default_factory=lambda: list(CURRENT_CHANNELS),
        description="channel order of the source; ia, ib, ic required, va, vb, vc optional",
    )
    scaling: dict[Literal["ia", "ib", "ic", "va", "vb", "vc"], ChannelScaling] = Field(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _check_channels(self) -> AcquisitionConfig:
        missing = [c for c in CURRENT_CHANNELS if c not in self.channels]
        if missing:
            raise ValueError(f"channels must include ia, ib, ic; missing {', '.join(missing)}")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channels has duplicates: {self.channels}")
        return self


class BearingConfig(_Model):
    """Rolling-element bearing geometry (drive end), for the bearing defect frequencies."""

    n_balls: int = Field(gt=2, le=64)
    ball_diameter_mm: float = Field(gt=0)
    pitch_diameter_mm: float = Field(gt=0)
    contact_angle_deg: float = Field(0.0, ge=0, lt=90)

    @model_validator(mode="after")
    def _check_geometry(self) -> BearingConfig:
        if self.ball_diameter_mm >= self.pitch_diameter_mm:
            raise ValueError("ball_diameter_mm must be smaller than pitch_diameter_mm")
        return self


class MotorConfig(_Model):
    """The motor's nameplate."""

    supply_hz: float | None = Field(
        None, ge=5, le=120, description="supply frequency, Hz; absent = detect from the current"
    )
    pole_pairs: int = Field(2, ge=1, le=24)
    rated_hz: float = Field(50.0, ge=5, le=120, description="nameplate frequency, Hz")
    rated_rpm: float = Field(1440.0, gt=0, description="nameplate full-load speed, rpm")
    rated_current: float = Field(10.0, gt=0, description="nameplate full-load current, A rms")
    rated_voltage: float = Field(400.0, gt=0, description="nameplate line-to-line voltage, V rms")
    rotor_bars: int | None = Field(None, ge=8, le=200)
    bearing: BearingConfig | None = None

    @property
    def synchronous_rpm(self) -> float:
        return 60.0 * self.rated_hz / self.pole_pairs

    @property
    def rated_slip(self) -> float:
        """Full-load slip from the nameplate, (n_sync - n_rated) / n_sync."""
        return 1.0 - self.rated_rpm / self.synchronous_rpm

    def slip_scale(self, f: float | None) -> float:
        """How many times the nameplate's slip a torque takes at supply frequency ``f``.

        An induction motor's torque sets its slip *frequency* s·f at the flux a drive
        holds (constant V/f) up to ``rated_hz``: at half the rated frequency the same
        torque takes twice the slip. Above ``rated_hz`` a drive holds the voltage, the
        flux falls as 1/f, and the slip at a given active current stays the nameplate's.
        So ``max(1, rated_hz / f)``: 1 at the rated frequency (the mains), or when ``f``
        is unknown.
        """
        if f is None or not f > 0:
            return 1.0
        return max(1.0, self.rated_hz / f)

    @model_validator(mode="after")
    def _check_speed(self) -> MotorConfig:
        s = self.rated_slip
        if not 0.0 < s < 0.2:
            raise ValueError(
                f"rated_rpm={self.rated_rpm:g} gives a full-load slip of {s:.3f} for "
                f"pole_pairs={self.pole_pairs} at rated_hz={self.rated_hz:g} "
                f"(synchronous {self.synchronous_rpm:g} rpm); expected 0 < slip < 0.2"
            )
        return self


class WindowConfig(_Model):
    length_s: float = Field(1.0, gt=0, le=60, description="short analysis window, s")
    hop_s: float = Field(0.5, gt=0, le=60, description="time between windows, s")
    long_length_s: float = Field(
        8.0,
        ge=1,
        le=120,
        description="long window for rotor sidebands and slip, s (rounded to a power-of-two "
        "number of decimated samples)",
    )
    long_fs: float = Field(
        2000.0, ge=200, description="target sample rate of the decimated long window, Hz"
    )
    long_hop_s: float = Field(
        2.0,
        gt=0,
        le=120,
        description="time between analyses of the long window, s (a whole number of hops; "
        "the records in between repeat its features)",
    )
    rolling_windows: int = Field(
        10, ge=2, le=1000, description="windows in the rolling mean of *_roll features"
    )

    @model_validator(mode="after")
    def _check(self) -> WindowConfig:
        if self.hop_s > self.length_s:
            raise ValueError(f"hop_s={self.hop_s} must not exceed length_s={self.length_s}")
        if self.long_length_s < self.length_s:
            raise ValueError(
                f"long_length_s={self.long_length_s} must be at least length_s={self.length_s}"
            )
        if self.long_hop_s > self.long_length_s:
            raise ValueError(
                f"long_hop_s={self.long_hop_s} must not exceed long_length_s={self.long_length_s}"
            )
        return self


class ModelConfig(_Model):
    path: Path | None = Field(
        None, description="model bundle folder; absent = the bundled models/default"
    )
    enabled: bool = True


class AlertConfig(_Model):
    raise_after: int = Field(3, ge=1, description="consecutive abnormal windows to raise")
    clear_after: int = Field(5, ge=1, description="consecutive normal windows to clear")
    deadband_db: float = Field(
        3.0,
        ge=0,
        le=20,
        description="an open broken-bar, eccentricity or bearing alert reads a window as "
        "normal only once its level is this many dB under the watch level, and its line "
        "this much less prominent (ISA-18.2's deadband: a level hovering at the watch level "
        "raises one alert, not one a minute)",
    )
    deadband: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="an open stator, supply or anomaly alert reads a window as normal only "
        "once its value is this fraction under the watch level (the model's threshold)",
    )
    brb_watch_db: float = Field(-48.0, le=0, description="broken-bar sideband level for watch")
    brb_warning_db: float = Field(-42.0, le=0)
    brb_alarm_db: float = Field(-36.0, le=0)
    stator_i2_watch: float = Field(
        0.08, gt=0, le=1, description="negative-sequence current i2/i1 beyond the supply's share"
    )
    stator_i2_warning: float = Field(0.15, gt=0, le=1)
    stator_i2_alarm: float = Field(0.25, gt=0, le=1)
    stator_i2_change_watch: float = Field(
        0.05,
        gt=0,
        le=1,
        description="without voltages, with a model of the motor: rise of i2 over the "
        "motor's healthy i2 (the model card's negative_sequence), over i1",
    )
    stator_i2_change_warning: float = Field(0.12, gt=0, le=1)
    stator_i2_change_alarm: float = Field(0.22, gt=0, le=1)
    i2_per_v2: float = Field(
        6.0,
        gt=0,
        le=20,
        description="negative-sequence current, in rated currents, a healthy motor draws per "
        "unit of v2/v1 at any load: about its locked-rotor current over rated",
    )
    supply_v2_watch: float = Field(0.02, gt=0, le=1, description="voltage unbalance v2/v1")
    supply_v2_warning: float = Field(0.03, gt=0, le=1)
    supply_v2_alarm: float = Field(0.05, gt=0, le=1)
    line_rise_watch_db: float = Field(
        6.0,
        gt=0,
        le=60,
        description="eccentricity and bearing lines: rise over the motor's healthy baseline",
    )
    line_rise_warning_db: float = Field(12.0, gt=0, le=60)
    line_rise_alarm_db: float = Field(18.0, gt=0, le=60)
    start_s: float = Field(
        10.0,
        ge=0,
        le=600,
        description="anomaly alerts: seconds after a stopped motor starts, and then until "
        "its current has settled under 3 x rated_current (and again while a second surge "
        "settles, such as a star-delta starter's change to delta, within 60 s), whose "
        "windows raise none: a start draws several times the running current",
    )
    baseline_margin: float = Field(
        0.1,
        ge=0,
        le=1,
        description="anomaly alerts: how far, as a fraction, a window's current may fall "
        "below the lowest of the model's healthy training windows, and its supply frequency "
        "stray outside theirs, before its score raises no alert (1 turns this off)",
    )

    @model_validator(mode="after")
    def _check(self) -> AlertConfig:
        for names in self.BANDS.values():
            watch, warning, alarm = (getattr(self, n) for n in names)
            if not watch < warning < alarm:
                raise ValueError("expected {} < {} < {}".format(*names))
        return self

    # The watch, warning and alarm levels of each rule (edge_agent.diagnosis): by fault
    # name, and stator_short_change for the stator rule against a baseline.
    BANDS: ClassVar[dict[str, tuple[str, str, str]]] = {
        "broken_rotor_bar": ("brb_watch_db", "brb_warning_db", "brb_alarm_db"),
        "stator_short": ("stator_i2_watch", "stator_i2_warning", "stator_i2_alarm"),
        "stator_short_change": (
            "stator_i2_change_watch",
            "stator_i2_change_warning",
            "stator_i2_change_alarm",
        ),
        "supply_unbalance": ("supply_v2_watch", "supply_v2_warning", "supply_v2_alarm"),
        "eccentricity": ("line_rise_watch_db", "line_rise_warning_db", "line_rise_alarm_db"),
        "bearing": ("line_rise_watch_db", "line_rise_warning_db", "line_rise_alarm_db"),
    }

    # Rules whose levels are in dB: their deadband is deadband_db, the others' a fraction.
    DB_BANDS: ClassVar[frozenset[str]] = frozenset({"broken_rotor_bar", "eccentricity", "bearing"})

    def severity(self, fault: str, value: float, holding: bool = False) -> str | None:
        """The severity of ``value`` against the levels of ``fault``'s rule (a key of
        :attr:`BANDS`); None below watch. ``holding`` (an alert of the rule is open)
        lowers the watch level by the deadband: down to it, the value still reads
        ``watch``."""
        watch, warning, alarm = (getattr(self, n) for n in self.BANDS[fault])
        if holding:
            watch = (
                watch - self.deadband_db if fault in self.DB_BANDS else watch * (1 - self.deadband)
            )
        if not value >= watch:
            return None
        return "alarm" if value >= alarm else "warning" if value >= warning else "watch"


class OutputConfig(_Model):
    path: Path | None = Field(None, description="JSON Lines output; absent = stdout")
    site: str = Field("site", min_length=1)
    asset: str = Field("motor", min_length=1)
    summary_interval_s: float = Field(
        60.0, ge=1, le=86400, description="seconds of signal between summary records"
    )


class MqttTlsConfig(_Model):
    """TLS to the broker: the CA that signed its certificate, and ours if it asks for one."""

    ca_file: Path | None = Field(None, description="PEM CA bundle; absent = the system's")
    cert_file: Path | None = Field(None, description="PEM client certificate")
    key_file: Path | None = Field(None, description="PEM private key of cert_file")
    check_hostname: bool = Field(True, description="the broker's name must match its certificate")

    @model_validator(mode="after")
    def _check(self) -> MqttTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class MqttConfig(_Model):
    """The plant's MQTT broker. Absent ``url`` = no publishing (records still go to the store)."""

    url: str | None = Field(None, description="mqtt://host[:1883] or mqtts://host[:8883] (TLS)")
    prefix: str = Field("edge-agent", min_length=1, pattern=r"^[^#+\s]+$")
    client_id: str | None = Field(None, description="absent = edge-agent-<site>-<asset>")
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive_s: int = Field(30, ge=5, le=3600)
    username: str | None = None
    password: SecretStr | None = Field(
        None, description="better: password_file, or EDGE_AGENT_MQTT__PASSWORD"
    )
    password_file: Path | None = Field(None, description="first line is the password")
    tls: MqttTlsConfig | None = None
    reconnect_min_s: float = Field(1.0, gt=0, le=60)
    reconnect_max_s: float = Field(60.0, gt=0, le=3600)
    max_inflight: int = Field(20, ge=1, le=1000, description="QoS 1 messages awaiting PUBACK")

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str | None) -> str | None:
        if url is not None and not re.fullmatch(r"(mqtt|mqtts)://[^/\s@]+", url):
            raise ValueError(
                "expected mqtt://host[:port] or mqtts://host[:port] (no path; the user and "
                "password go in username and password_file)"
            )
        return url

    @model_validator(mode="after")
    def _check(self) -> MqttConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("expected reconnect_min_s <= reconnect_max_s")
        return self


def default_state_dir() -> Path:
    """systemd's ``StateDirectory`` when run as the service, else the user's state folder."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "edge-agent"


class StoreConfig(_Model):
    """The local SQLite database: the MQTT outbox and the event store."""

    path: Path | None = Field(
        None, description="absent = $STATE_DIRECTORY or ~/.local/state/edge-agent, edge-agent.db"
    )
    max_summaries: int = Field(
        10000, ge=1, description="summaries queued while the broker is away; oldest dropped"
    )
    max_alerts: int = Field(
        100000, ge=1, description="alerts queued while the broker is away; hard cap, newest refused"
    )
    retention_days: float = Field(365.0, gt=0, description="events older than this are deleted")
    max_mb: float = Field(256.0, gt=0, description="the event store is trimmed oldest first above")
    snapshot_s: float = Field(
        30.0, ge=0, le=60, description="raw samples kept for the snapshot command, s (0 = none)"
    )
    snapshots_keep: int = Field(20, ge=1, description="snapshot files kept; oldest deleted")
    reserve_mb: float = Field(
        8.0,
        ge=0,
        le=1024,
        description="disk kept free beside the database (a file, <path>.reserve) for a stop "
        "on a full disk: the records then held in memory are written into it (0 = none)",
    )

    @property
    def resolved_path(self) -> Path:
        return self.path if self.path is not None else default_state_dir() / "edge-agent.db"


class Config(_Model):
    acquisition: AcquisitionConfig = Field(default_factory=AcquisitionConfig)
    motor: MotorConfig = Field(default_factory=MotorConfig)
    windows: WindowConfig = Field(default_factory=WindowConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    alerts: AlertConfig = Field(default_factory=AlertConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Nested dict from ``EDGE_AGENT_TABLE__KEY=value`` variables (keys lower-cased)."""
    tree: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"environment: {name} conflicts with another variable")
            node = child
        # A list is written the TOML way: EDGE_AGENT_ACQUISITION__CHANNELS=ia,ib,ic
        node[path[-1]] = value.split(",") if path[-1] == "channels" else value
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _describe(
    err: ValidationError,
    source: str,
    env_keys: set[tuple[str, ...]],
    option_keys: set[tuple[str, ...]] = frozenset(),
    env_files: Mapping[str, str] | None = None,
) -> str:
    files_of = env_files or {}

    def var(loc: tuple[str, ...]) -> str:
        return ENV_PREFIX + "__".join(p.upper() for p in loc)

    def env(loc: tuple[str, ...]) -> str:  # a variable of the environment, or of a file's
        where = files_of.get(var(loc))
        return f"{where}: {var(loc)}" if where else f"environment {var(loc)}"

    lines = []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        field = ".".join(loc) or "(top level)"
        value = e.get("input")
        if isinstance(value, Mapping):
            # A check across a table's settings: they may come from several places, and
            # the table is not echoed (it may hold the MQTT password).
            origins = [source]
            files = {files_of.get(var(k)) for k in env_keys if k[: len(loc)] == loc}
            if None in files:
                origins.append("environment")
            origins += sorted(f for f in files if f is not None)
            if any(k[: len(loc)] == loc for k in option_keys):
                origins.append("command line")
            origin, got = " + ".join(origins), ""
        else:
            origin = source
            if loc and any(loc[: len(k)] == k for k in option_keys):
                origin = "command line"
            elif loc and any(loc[: len(k)] == k for k in env_keys):
                origin = env(loc)
            got = ""
            if loc and loc[-1] in SECRET_SETTINGS:
                pass  # a password, or a URL that may hold one: never echoed
            elif e["type"] not in ("missing", "extra_forbidden") and "input" in e:
                got = f" (got {value!r})"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown setting"
        lines.append(f"{origin}: {field}: {msg}{got}")
    return "\n".join(lines)


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    env_files: Mapping[str, str] | None = None,
) -> Config:
    """Resolve the configuration: defaults, then the TOML file at ``path``, then environment.

    ``overrides`` (a nested dict, e.g. from command-line options) is applied last.
    ``env_files`` names the file each variable of ``environ`` was read from, if any
    (:func:`read_env_file`), for the errors. Raises :class:`ConfigError` naming the file
    and field on any problem.
    """
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        source = str(p)
        try:
            with p.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{p}: config file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{p}: cannot read config file: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    env = _env_overrides(environ)
    env_keys = {tuple(k) for k in _leaf_paths(env)}
    merged = _merge(_merge(data, env), overrides or {})
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        option_keys = {tuple(k) for k in _leaf_paths(overrides or {})}
        raise ConfigError(_describe(exc, source, env_keys, option_keys, env_files)) from None


SHARED_ENV_FILE = "edge-agent.env"


def unit_env_files(path: str | os.PathLike[str]) -> list[Path]:
    """The environment files that the service's unit for the configuration at ``path``
    reads (systemd/edge-agent.service for ``edge-agent.toml``, edge-agent@NAME for
    ``NAME.toml``): ``edge-agent.env`` beside it, then ``NAME.env``, those that exist."""
    p = Path(path)
    names = [SHARED_ENV_FILE] + ([f"{p.stem}.env"] if p.stem != "edge-agent" else [])
    return [p.parent / n for n in names if (p.parent / n).is_file()]


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """The variables of an environment file as systemd's ``EnvironmentFile=`` reads them:
    ``NAME=value`` lines, blank lines and lines starting with ``#`` or ``;`` left out,
    whitespace around the value dropped; a value in single quotes taken as it is; one in
    double quotes with a backslash before a backslash, a double quote, a dollar sign or a
    backtick dropped; an unquoted one with each backslash dropped before the character
    it escapes. A quoted value over several lines is refused (ConfigError naming the
    line), as is a line continued with a backslash. OSError (a missing file, one not ours
    to read) is the caller's."""
    p = Path(path)
    out: dict[str, str] = {}
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text: {exc}") from None
    for number, raw in enumerate(text.split("\n"), 1):  # as systemd: not at U+2028 etc.
        line = raw.lstrip(_BLANK)
        if not line or line[0] in "#;" or "=" not in line:
            continue
        name, value = line.split("=", 1)
        name, value = name.strip(_BLANK), value.lstrip(_BLANK)
        where = f"{p}, line {number}: {name}"
        if value[:1] in ("'", '"'):
            value, quote = value.rstrip(_BLANK), value[0]
            if len(value) < 2 or value[-1] != quote:
                raise ConfigError(
                    f"{where}: the quote {quote} is not closed on this line; put the value "
                    "on one line"
                )
            value = value[1:-1]
            if quote == '"':
                value = re.sub(r'\\([\\"$`])', r"\1", value)
        else:
            value = _unescaped(value, where)
        out[name] = value
    return out


_BLANK = " \t\r"


def _unescaped(value: str, where: str) -> str:
    """An unquoted value of an environment file: each backslash dropped before the
    character it escapes; whitespace at the end dropped unless escaped."""
    out: list[str] = []
    keep = 0  # characters of out up to the last one that is not blank, or escaped
    chars = iter(value)
    for c in chars:
        if c == "\\":
            c = next(chars, None)
            if c is None:
                raise ConfigError(f"{where}: a value continued on the next line; put it on one")
            out.append(c)
            keep = len(out)
        else:
            out.append(c)
            if c not in _BLANK:
                keep = len(out)
    return "".join(out[:keep])


class UnitEnviron(NamedTuple):
    environ: dict[str, str]  # the variables, as the service gets them
    origin: dict[str, str]  # the file each variable of a file came from
    read: list[Path]  # the files read
    unread: list[Path]  # those this process may not read


def unit_environ(path: str | os.PathLike[str], base: Mapping[str, str]) -> UnitEnviron:
    """``base`` with the variables of the unit's environment files for ``path``
    (:func:`unit_env_files`) over it, as the service gets them."""
    out = UnitEnviron(dict(base), {}, [], [])
    for f in unit_env_files(path):
        try:
            values = read_env_file(f)
        except PermissionError:
            out.unread.append(f)
            continue
        except OSError as exc:
            raise ConfigError(f"{f}: cannot read it: {exc.strerror or exc}") from None
        out.environ.update(values)
        out.origin.update(dict.fromkeys(values, str(f)))
        out.read.append(f)
    return out


def shared_with_others(path: str | os.PathLike[str], cfg: Config) -> list[str]:
    """What ``cfg``, read from ``path``, shares with the other configurations in its folder
    that two motors' daemons cannot share (``/etc/edge-agent/NAME.toml``, a unit per
    motor): the motor's name, the serial ADC, an event store set by path. A sentence for
    each configuration that does; the others, and those that do not load, say nothing.
    They are read as their units would read them: their files and their ``.env`` files
    (:func:`unit_env_files`; those this process may not read are left out), without this
    process's environment."""
    here = Path(path)
    said = []
    for other in sorted(here.parent.glob("*.toml")):
        try:
            if other.samefile(here):
                continue
            theirs = load_config(other, environ=unit_environ(other, {}).environ)
        except (OSError, ConfigError):
            continue
        same = []
        name = (cfg.output.site, cfg.output.asset)
        if (theirs.output.site, theirs.output.asset) == name:
            same.append(
                f"the same motor ([output] site and asset {'/'.join(name)}): the plant would "
                "get two motors' alerts and summaries under one name, and with a broker "
                "their daemons would take the connection from each other"
            )
        ours, its = cfg.acquisition, theirs.acquisition
        devices = _resolved(ours.serial.device), _resolved(its.serial.device)
        if ours.source == its.source == "serial" and devices[0] == devices[1]:
            same.append(
                f"the same ADC ([acquisition.serial] device {ours.serial.device}): the "
                "daemon started second would find it busy"
            )
        if cfg.store.path is not None and theirs.store.path is not None:
            if _resolved(str(cfg.store.path)) == _resolved(str(theirs.store.path)):
                same.append(
                    f"the same event store ([store] path {cfg.store.path}): two daemons would "
                    "share one outbox"
                )
        if same:
            said.append(f"{other} names " + "; and ".join(same) + ". Each motor needs its own.")
    return said


def _resolved(name: str) -> str:
    """A path as the system resolves it (a by-id link to its tty); a URL as it is."""
    return name if "://" in name else os.path.realpath(name)


def _leaf_paths(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.extend(_leaf_paths(v, (*prefix, k)))
        else:
            out.append((*prefix, k))
    return out


def to_toml(cfg: Config) -> str:
    """The resolved configuration as TOML text (what ``check-config`` prints)."""
    data = cfg.model_dump(mode="json", exclude_none=True)
    lines: list[str] = []

    def emit(table: str, obj: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in obj.items() if not isinstance(v, Mapping)}
        tables = {k: v for k, v in obj.items() if isinstance(v, Mapping)}
        if table and (scalars or not tables):
            lines.append(f"[{table}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {_toml_value(v)}")
        if table and (scalars or not tables):
            lines.append("")
        for k, v in tables.items():
            emit(f"{table}.{k}" if table else k, v)

    emit("", data)
    return "\n".join(lines).rstrip() + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
