"""MQTT payloads: pydantic models, builders from pipeline records, and command parsing.

Topics live under ``{prefix}/{site}/{asset}`` (docs/mqtt.md, ARCHITECTURE.md contract):
``/alert``, ``/summary``, ``/status`` (retained), ``/event`` and the received
``/cmd/<command>``. Every published payload carries

- ``schema``: :data:`SCHEMA_VERSION`, raised only by an incompatible change (fields are
  only ever added within a version);
- ``id``: a fresh UUID4 per message, so that a consumer can drop the duplicates that QoS 1
  and the outbox's resending may deliver;
- ``ts``: UNIX seconds of the *data* (an alert's window, a summary's end), not of sending;
- ``historical``: set by the publisher when it sends; true for a message queued before
  the current broker connection;
- ``site`` and ``asset``.

The builders (:func:`alert_payload`, :func:`summary_payload`, :func:`status_payload`,
:func:`event_payload`) return JSON-ready dicts *without* ``historical``, validated through
the models. :func:`parse_command` turns a received ``/cmd/<name>`` message into a command
model or a :class:`CommandError` that says what is wrong.

``python -m edge_agent.publish.schema --write docs/schemas`` writes the JSON Schema of
each payload; ``--check docs/schemas`` exits 1 when a checked-in file is stale.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "COMMANDS",
    "FAULTS",
    "PAYLOADS",
    "SCHEMA_VERSION",
    "SEVERITIES",
    "AlertPayload",
    "CommandError",
    "CommandLabel",
    "CommandReload",
    "CommandSnapshot",
    "EventPayload",
    "StatusPayload",
    "SummaryPayload",
    "alert_payload",
    "event_payload",
    "finite_json",
    "json_schemas",
    "parse_command",
    "status_payload",
    "summary_payload",
    "topic",
]

SCHEMA_VERSION = 1

# The fault and severity names, defined here (edge_agent.diagnosis imports them) so that
# the publisher and consumers' tools need not import the numba pipeline.
Fault = Literal[
    "anomaly", "broken_rotor_bar", "eccentricity", "bearing", "stator_short", "supply_unbalance"
]
Severity = Literal["watch", "warning", "alarm"]
FAULTS: tuple[str, ...] = get_args(Fault)
SEVERITIES: tuple[str, ...] = get_args(Severity)

# A command is a small JSON object; anything bigger is refused before parsing.
MAX_COMMAND_BYTES = 64 * 1024


# --------------------------------------------------------------------------------------
# Published payloads


class _Payload(BaseModel):
    # "schema" is a BaseModel attribute, hence the alias. NaN and inf are not JSON.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    schema_version: Literal[1] = Field(
        alias="schema",
        description="payload schema version; raised only by an incompatible change",
    )
    id: uuid.UUID = Field(
        description="UUID4 of this message, fresh per message: drop a repeated id as a duplicate"
    )
    ts: float = Field(description="UNIX seconds of the data (not of sending)")
    historical: bool = Field(
        description="true when the message was queued before the current broker connection, "
        "i.e. sent late from the outbox (or, sent from memory while the disk is full, made "
        "before it)"
    )
    site: str = Field(min_length=1, description="site name (output.site)")
    asset: str = Field(min_length=1, description="asset (motor) name (output.asset)")


class AlertPayload(_Payload):
    """An alert raised or cleared, on `{prefix}/{site}/{asset}/alert` (QoS 1)."""

    alert_id: str = Field(
        min_length=1,
        description="the alert's own id, the same in its raised and cleared messages; "
        "commands such as /cmd/label refer to it",
    )
    state: Literal["raised", "cleared"] = Field(
        description="raised when the alert starts, cleared when it ends"
    )
    fault: Fault = Field(description="fault name; 'anomaly' is the autoencoder alone")
    severity: Severity = Field(description="watch < warning < alarm")
    score: float | None = Field(
        description="anomaly score of the window that raised or cleared the alert "
        "(model units, higher is more anomalous); null without a model"
    )
    evidence: dict[str, Any] = Field(
        description="what the rule saw, e.g. brb_lsb_db (dB), slip (0-1), supply_hz (Hz), "
        "score and threshold, furthest (an anomaly's three features furthest from the "
        "healthy mean), consecutive_windows"
    )
    model: str | None = Field(
        description="id of the model that scored the windows (event store model id); "
        "null without a model"
    )


class SummaryPayload(_Payload):
    """Aggregates over one period of signal, on `{prefix}/{site}/{asset}/summary` (QoS 1).

    `ts` is `t_end`. Means and percentiles are over the period's windows whose value is
    not null; a value is null when no window had one.
    """

    t_start: float = Field(description="start of the period, UNIX s (inclusive)")
    t_end: float = Field(
        description="end of the period, UNIX s: the period's end, or the last window's end "
        "for the final partial period"
    )
    windows: int = Field(ge=0, description="analysis windows that ended in the period")
    flagged_windows: int = Field(ge=0, description="windows with a data-quality flag")
    wiring_windows: int = Field(
        0,
        ge=0,
        description="of those, windows flagged 'wiring': the sensors look miswired, and no "
        "fault was diagnosed from them (0 in summaries queued before this field existed)",
    )
    stopped_windows: int = Field(
        0,
        ge=0,
        description="windows of the motor at standstill (every phase under 10 % of the "
        "nameplate current): not scored, not diagnosed, not counted in flagged_windows (0 in "
        "summaries queued before this field existed)",
    )
    starting_windows: int = Field(
        0,
        ge=0,
        description="windows of a start: from a stop for [alerts] start_s (10 s), then until "
        "the current settles under 3 x the nameplate current, and again while a surge "
        "within a minute of the start settles "
        "(a star-delta starter's change to delta); also from the first window of a run that "
        "begins in a start; scored, but neither anomalous nor in the "
        "score fields, and not counted in flagged_windows (0 in summaries queued before this "
        "field existed)",
    )
    outside_baseline_windows: int = Field(
        0,
        ge=0,
        description="windows of the motor running at a lighter load or another supply "
        "frequency than the model's training windows: scored, but neither anomalous nor in "
        "the score fields, and not counted in flagged_windows (0 in summaries queued before "
        "this field existed)",
    )
    unsteady_windows: int = Field(
        0,
        ge=0,
        description="windows of the motor running with its load (i1 by more than 5 %) or its "
        "supply frequency (a drive changing speed) changing across the 8 s long window, whose "
        "broken-bar, eccentricity and bearing lines were therefore not read; not counted in "
        "flagged_windows (0 in summaries queued before this field existed)",
    )
    ramping_windows: int = Field(
        0,
        ge=0,
        description="windows of the motor whose drive ramped its frequency faster than "
        "0.2 Hz/s, which smears the 1 s window's lines: scored, but neither anomalous nor in "
        "the score fields, and not counted in flagged_windows (0 in summaries queued before "
        "this field existed)",
    )
    anomalous_windows: int = Field(
        ge=0,
        description="windows scored above the threshold, neither starting nor ramping, and "
        "within the model's baseline",
    )
    alerts_raised: int = Field(ge=0, description="alerts raised in the period")
    alerts_cleared: int = Field(ge=0, description="alerts cleared in the period")
    active_alerts: list[Fault] = Field(
        description="faults with an alert raised and not cleared at the end of the period"
    )
    lost_samples: int = Field(ge=0, description="samples the source lost in the period")
    rms_a: float | None = Field(description="mean rms current of phase a, A")
    rms_b: float | None = Field(description="mean rms current of phase b, A")
    rms_c: float | None = Field(description="mean rms current of phase c, A")
    i2_i1: float | None = Field(description="mean current unbalance i2/i1, ratio")
    i2_i1_max: float | None = Field(description="largest i2/i1 of the period, ratio")
    supply_hz: float | None = Field(description="mean supply frequency, Hz")
    slip: float | None = Field(description="mean slip, 0-1")
    score_p50: float | None = Field(
        description="median anomaly score (of the windows within the model's baseline)"
    )
    score_p95: float | None = Field(description="95th percentile anomaly score (linear)")
    score_max: float | None = Field(description="largest anomaly score")
    # Added later: None in summaries queued before them, so those still publish.
    i1: float | None = Field(None, description="mean positive-sequence current, A rms")
    i2: float | None = Field(None, description="mean negative-sequence current, A rms")
    thd_a: float | None = Field(None, description="mean THD of phase a's current, ratio")
    thd_b: float | None = Field(None, description="mean THD of phase b's current, ratio")
    thd_c: float | None = Field(None, description="mean THD of phase c's current, ratio")
    epva_2f_db: float | None = Field(
        None, description="mean Park's vector modulus line at 2f, dB re its mean"
    )
    brb_lsb_db: float | None = Field(
        None, description="mean broken-bar lower sideband (1-2s)f, dB re the fundamental"
    )
    brb_usb_db: float | None = Field(
        None, description="mean broken-bar upper sideband (1+2s)f, dB re the fundamental"
    )
    ecc_lsb_db: float | None = Field(
        None, description="mean eccentricity line f - f_r, dB re the fundamental"
    )
    ecc_usb_db: float | None = Field(
        None, description="mean eccentricity line f + f_r, dB re the fundamental"
    )
    bearing_outer_db: float | None = Field(
        None, description="mean strongest outer-race line, dB re the fundamental"
    )
    bearing_inner_db: float | None = Field(
        None, description="mean strongest inner-race line, dB re the fundamental"
    )
    bearing_ball_db: float | None = Field(
        None, description="mean strongest ball line, dB re the fundamental"
    )
    bearing_cage_db: float | None = Field(
        None, description="mean strongest cage line, dB re the fundamental"
    )
    v1: float | None = Field(None, description="mean positive-sequence voltage, V rms")
    v2_v1: float | None = Field(None, description="mean voltage unbalance v2/v1, ratio")


class StatusPayload(_Payload):
    """The agent's state, retained on `{prefix}/{site}/{asset}/status` (QoS 1).

    `online` is published on each connection; `offline` with reason `lost` is the
    Last Will the broker sends when the connection drops, and `offline` with reason
    `stopped` is published on a clean shutdown. `ts` is when the status was made
    (for the Last Will: when the connection was opened).
    """

    state: Literal["online", "offline"] = Field(description="whether the agent is connected")
    reason: Literal["lost", "stopped"] | None = Field(
        None, description="why offline: lost (Last Will) or stopped (clean shutdown)"
    )
    version: str | None = Field(None, description="edge-agent version")
    outbox: dict[str, int] | None = Field(
        None, description="messages waiting in the outbox, by kind (alert, summary, ...)"
    )
    counters: dict[str, int | float] | None = Field(
        None, description="running counters by name, e.g. dropped summaries, refused alerts"
    )
    # Added later (absent from an older agent's): who speaks for the asset, so that two
    # agents configured as one asset can be told apart, and found.
    host: str | None = Field(None, description="the name of the computer the agent runs on")
    pid: int | None = Field(None, ge=1, description="the agent's process id on that computer")
    instance: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="a random id of this run of the agent, the same in its online and "
        "offline statuses; another instance on this topic is another agent publishing as "
        "this asset",
    )


class EventPayload(_Payload):
    """A reply to a command, or an error worth telling the plant about, on
    `{prefix}/{site}/{asset}/event` (QoS 1). `ts` is when it happened."""

    event: str = Field(
        min_length=1,
        pattern=r"^[a-z][a-z0-9_]*$",
        description="kind of event: 'command' (a reply to /cmd/<command>), 'error', "
        "'resolved' (an error's cause is gone; detail as the error's), or 'clock' (the "
        "system clock was set: detail.step_s, s, positive forward)",
    )
    command: str | None = Field(description="the command replied to, e.g. 'label'; else null")
    ok: bool = Field(description="whether the command succeeded")
    error: str | None = Field(description="what went wrong, for a person to read; else null")
    detail: dict[str, Any] = Field(
        description="command-specific result; for an error, what it concerns, e.g. "
        "{'source': 'wiring', 'check': 'reversed'}"
    )
    request_id: str | None = Field(
        description="the command's own 'id', echoed so the sender can match the reply"
    )


# --------------------------------------------------------------------------------------
# Received commands


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="the sender's request id, echoed as request_id in the /event reply",
    )


class CommandLabel(_Command):
    """`/cmd/label`: a person's verdict on an alert, kept with it in the event store."""

    alert_id: str = Field(min_length=1, max_length=200, description="alert_id of the alert")
    label: Literal["true_positive", "false_positive"] = Field(
        description="whether the alert was right"
    )
    by: str | None = Field(None, max_length=200, description="who labelled it")
    note: str | None = Field(None, max_length=4000, description="free text")


class CommandReload(_Command):
    """`/cmd/reload`: load the model bundle again (after replacing its files)."""


class CommandSnapshot(_Command):
    """`/cmd/snapshot`: capture the raw waveform of the next `seconds` of signal."""

    seconds: float = Field(10.0, gt=0, le=60, description="length of the capture, s")


PAYLOADS: dict[str, type[_Payload]] = {
    "alert": AlertPayload,
    "summary": SummaryPayload,
    "status": StatusPayload,
    "event": EventPayload,
}
COMMANDS: dict[str, type[_Command]] = {
    "label": CommandLabel,
    "reload": CommandReload,
    "snapshot": CommandSnapshot,
}


class CommandError(ValueError):
    """A received command that cannot be used; ``str()`` says why, for the /event reply.

    ``command`` is the command name and ``request_id`` the message's ``id`` when it could
    be read, so that even a refused command gets a reply the sender can match.
    """

    def __init__(
        self, message: str, *, command: str | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.command = command
        self.request_id = request_id


def parse_command(
    name: str, payload: bytes | bytearray | str
) -> CommandLabel | CommandReload | CommandSnapshot:
    """Validate the message received on ``/cmd/<name>``.

    ``payload`` is a JSON object; empty (or only whitespace) means ``{}``, which is a
    complete ``reload`` or ``snapshot`` command. Raises :class:`CommandError` and nothing
    else, e.g. ``/cmd/snapshot: seconds: Input should be less than or equal to 60 (got 90)``.
    """
    where = f"/cmd/{name}"
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError(
            f"{where}: payload of {len(payload)} bytes; expected at most {MAX_COMMAND_BYTES}",
            command=name,
        )
    if isinstance(payload, (bytes, bytearray)):
        try:
            text = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CommandError(
                f"{where}: payload is not UTF-8 text ({exc})", command=name
            ) from None
    else:
        text = payload
    if not text.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(text)
        except RecursionError:
            raise CommandError(f"{where}: payload nests too deeply", command=name) from None
        except ValueError as exc:  # JSONDecodeError, and int strings too long to convert
            raise CommandError(f"{where}: payload is not valid JSON: {exc}", command=name) from None
    if not isinstance(data, dict):
        raise CommandError(f"{where}: expected a JSON object, got {_json_type(data)}", command=name)
    request_id = data.get("id") if isinstance(data.get("id"), str) else None
    model = COMMANDS.get(name)
    if model is None:
        raise CommandError(
            f"unknown command {name!r}; known commands: {', '.join(sorted(COMMANDS))}",
            command=str(name),
            request_id=request_id,
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise CommandError(
            f"{where}: {_describe(exc)}", command=name, request_id=request_id
        ) from None
    except (RecursionError, ValueError) as exc:  # pragma: no cover - defensive
        raise CommandError(f"{where}: {exc}", command=name, request_id=request_id) from None


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(object)"
        if e["type"] == "extra_forbidden":
            parts.append(f"{field}: unknown field")
        elif e["type"] == "missing":
            parts.append(f"{field}: required field missing")
        else:
            got = repr(e.get("input"))
            if len(got) > 60:
                got = got[:57] + "..."
            parts.append(f"{field}: {e['msg']} (got {got})")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------
# Builders


def topic(prefix: str, site: str, asset: str, kind: str) -> str:
    """``{prefix}/{site}/{asset}/{kind}``, e.g. ``topic("edge-agent", "plant1", "pump3",
    "alert")``; ``kind`` may itself have levels (``cmd/label``, ``cmd/+``).

    Raises ValueError when site or asset would add a topic level or a wildcard.
    """
    for label, value in (("site", site), ("asset", asset)):
        if not value or any(c in value for c in "/+#\0"):
            raise ValueError(f"{label}={value!r} must be non-empty without '/', '+', '#'")
    return f"{prefix}/{site}/{asset}/{kind}"


def finite_json(value: Any) -> Any:
    """``value`` with every NaN or infinity, however deep, replaced by None (JSON has
    neither), and numpy scalars made Python numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # a numpy scalar
        return finite_json(value.item())
    return value


def _build(model: type[_Payload], fields: dict[str, Any]) -> dict[str, Any]:
    # historical=False only to pass validation: the publisher sets the real value.
    payload = model(schema=SCHEMA_VERSION, id=uuid.uuid4(), historical=False, **fields)
    return payload.model_dump(mode="json", by_alias=True, exclude={"historical"})


def alert_payload(
    record: Mapping[str, Any], *, site: str, asset: str, t0: float, model: str | None
) -> dict[str, Any]:
    """The ``/alert`` payload of an alert record (pipeline); ``ts = t0 + record["t"]``.

    ``t0`` is 0 when the record's times are already UNIX seconds (the daemon), the
    recording's start time otherwise. ``model`` is the scoring model's id, or None.
    """
    return _build(
        AlertPayload,
        {
            "ts": t0 + float(record["t"]),
            "site": site,
            "asset": asset,
            "alert_id": record["id"],
            "state": record["state"],
            "fault": record["fault"],
            "severity": record["severity"],
            "score": finite_json(record.get("score")),
            "evidence": finite_json(record.get("evidence") or {}),
            "model": model,
        },
    )


_SUMMARY_FIELDS = tuple(n for n in SummaryPayload.model_fields if n not in _Payload.model_fields)


def summary_payload(
    record: Mapping[str, Any], *, site: str, asset: str, t0: float
) -> dict[str, Any]:
    """The ``/summary`` payload of a summary record (:mod:`edge_agent.summary`).

    ``t_start``, ``t_end`` and ``ts`` (= ``t_end``) become UNIX seconds by adding ``t0``.
    """
    # A summary queued in the outbox by an older version lacks the newer fields.
    fields = {n: finite_json(record[n]) for n in _SUMMARY_FIELDS if n in record}
    fields["t_start"] = t0 + float(record["t_start"])
    fields["t_end"] = t0 + float(record["t_end"])
    return _build(SummaryPayload, {"ts": fields["t_end"], "site": site, "asset": asset, **fields})


def status_payload(
    state: Literal["online", "offline"],
    *,
    site: str,
    asset: str,
    reason: Literal["lost", "stopped"] | None = None,
    version: str | None = None,
    outbox: Mapping[str, int] | None = None,
    counters: Mapping[str, float] | None = None,
    ts: float | None = None,
    host: str | None = None,
    pid: int | None = None,
    instance: str | None = None,
) -> dict[str, Any]:
    """The retained ``/status`` payload; ``ts`` defaults to now."""
    return _build(
        StatusPayload,
        {
            "ts": time.time() if ts is None else ts,
            "site": site,
            "asset": asset,
            "state": state,
            "reason": reason,
            "version": version,
            "host": host,
            "pid": pid,
            "instance": instance,
            "outbox": None if outbox is None else dict(outbox),
            # A counter that is not a finite number is left out rather than sent as null.
            "counters": None
            if counters is None
            else {k: v for k, v in finite_json(dict(counters)).items() if v is not None},
        },
    )


def event_payload(
    event: str,
    *,
    site: str,
    asset: str,
    ok: bool,
    command: str | None = None,
    error: str | None = None,
    detail: Mapping[str, Any] | None = None,
    request_id: str | None = None,
    ts: float | None = None,
) -> dict[str, Any]:
    """The ``/event`` payload, e.g. the reply to a command::

        event_payload("command", site=s, asset=a, command="label", ok=False,
                      error=str(exc), request_id=exc.request_id)

    ``ts`` defaults to now.
    """
    return _build(
        EventPayload,
        {
            "ts": time.time() if ts is None else ts,
            "site": site,
            "asset": asset,
            "event": event,
            "command": command,
            "ok": ok,
            "error": error,
            "detail": finite_json(dict(detail or {})),
            "request_id": request_id,
        },
    )


# --------------------------------------------------------------------------------------
# JSON Schema files

_SCHEMA_FILES: dict[str, type[BaseModel]] = {
    **{f"{kind}.schema.json": model for kind, model in PAYLOADS.items()},
    **{f"cmd-{name}.schema.json": model for name, model in COMMANDS.items()},
}


def json_schemas() -> dict[str, str]:
    """File name -> JSON Schema text (sorted keys, trailing newline) of every payload."""
    out = {}
    for name, model in _SCHEMA_FILES.items():
        schema = model.model_json_schema(by_alias=True)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$comment"] = (
            f"edge-agent payload schema version {SCHEMA_VERSION}; generated by "
            "`python -m edge_agent.publish.schema --write docs/schemas`, do not edit"
        )
        out[name] = json.dumps(schema, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    return out


def _stale(folder: Path) -> list[str]:
    """Names of the schema files in ``folder`` that are missing, different or unexpected."""
    expected = json_schemas()
    stale = []
    for name, text in expected.items():
        path = folder / name
        try:
            current = path.read_text(encoding="utf-8")
        except OSError:
            current = None
        if current != text:
            stale.append(name)
    if folder.is_dir():
        stale += sorted(p.name for p in folder.glob("*.schema.json") if p.name not in expected)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge_agent.publish.schema",
        description="Write or check the JSON Schema files of the MQTT payloads.",
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", metavar="DIR", type=Path, help="write the files into DIR")
    group.add_argument("--check", metavar="DIR", type=Path, help="exit 1 if DIR is stale")
    args = parser.parse_args(argv)
    if args.write is not None:
        args.write.mkdir(parents=True, exist_ok=True)
        for name, text in json_schemas().items():
            (args.write / name).write_text(text, encoding="utf-8")
        return 0
    stale = _stale(args.check)
    if stale:
        print(
            f"{args.check}: stale JSON Schema files: {', '.join(stale)}; run "
            f"`python -m edge_agent.publish.schema --write {args.check}`",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
