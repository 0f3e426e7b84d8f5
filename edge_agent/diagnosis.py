"""From window features and scores to named faults, severities and alerts.

Six kinds of finding per window, one per fault name.

- ``anomaly``: the autoencoder's score is above the model's threshold. Severity grows
  with score / threshold: below 2 ``watch``, below 5 ``warning``, else ``alarm``. The
  evidence's ``furthest`` lists the three model features furthest from the training
  windows' mean (value, healthy mean, and deviation in units of the model's scale): what
  changed, for the engineer to read.
- ``broken_rotor_bar``: the lower sideband (1 - 2s)f stands out of the noise of its
  search band by ``SIDEBAND_PROMINENCE_DB`` and is above ``brb_watch_db``. Severity follows the
  usual MCSA bands (Thomson & Fenger 2001): 48-42 dB below the fundamental ``watch``,
  42-36 dB ``warning``, closer than 36 dB ``alarm``.
- ``supply_unbalance`` (voltages wired): voltage unbalance v2/v1 of 2 % ``watch`` (the
  limit EN 50160 sets for a supply), 3 % ``warning``, 5 % ``alarm`` (above which NEMA MG-1
  advises against running a motor at all).
- ``stator_short``: negative-sequence current beyond what a healthy motor draws. An
  inter-turn short adds a negative-sequence current of its own (Kohler, Sottile & Trutt
  2002); so does an unbalanced supply, and the rule takes the supply's share out in one of
  three ways, the best the data allow:

  - *Voltages wired*: a motor's negative-sequence impedance is about its locked-rotor
    impedance, whatever the load (Kersting 2001), so the supply drives i2 of about
    ``i2_per_v2`` (6, the locked-rotor current over rated) times v2/v1 times the rated
    current: i2/i1 of ``i2_per_v2`` · v2/v1 · rated_current / i1, more at light load
    (and never less than ``i2_per_v2`` · v2/v1, in case the nameplate current is too low).
    The excess i2/i1 is graded 0.08 ``watch``, 0.15 ``warning``, 0.25 ``alarm``.
  - *Currents only, with a model of the motor*: ``edge-agent train`` keeps the motor's
    healthy negative-sequence current i2 (A, the median over the training windows) in the
    card's ``negative_sequence``; it holds the supply's unbalance of those days and the
    motor's own asymmetry. What i2 has grown since, over i1, (i2 − healthy i2)/i1, is
    graded 0.05 ``watch``, 0.12 ``warning``, 0.22 ``alarm`` (the ``stator_i2_change_*``
    levels: a change has no healthy asymmetry to clear, so they sit lower). Taking out
    a stored healthy negative sequence is the usual compensation (Kliman et al. 1996;
    docs/features.md has the references).
    It is kept in amperes, and as a magnitude, because the supply's part, usually the
    largest, is the same in amperes at every load while its angle to i1 turns with the
    power factor: a ratio or a phasor learnt at one load would read a change at another
    (at 30 % load after training at 80 %, a phasor's change would read 0.10). The price:
    a short whose negative sequence lies at a wide angle to the supply's reads less (at
    80°, a short's 0.15 on a supply's 0.10 reads 0.09), and one that opposes it shows
    late. A supply whose unbalance changes by about 1 % after training still reads as a
    short.
  - *Currents only, no model of the motor* (the bundled default): i2/i1 itself, on the
    levels of the first case, and the evidence's ``v2_v1`` is null. A supply unbalance of
    about 1.3 % or more (6 × 1.3 % = 0.08) reads as a short.

  On the ITSC motor (tests/data/itsc) healthy runs read i2/i1 0.02-0.04; a 10 % short
  reads 0.11-0.13 (i2 up by 0.08-0.10 of i1 on the healthy i2) and 30-40 % shorts
  0.28-0.35. The rule waits for a running motor (i1 at 10 % of the nameplate current or
  more).
- ``eccentricity`` and ``bearing``: a line at f ± f_r (mixed eccentricity), or at a
  bearing defect frequency f ± m·f_v, that has risen over the motor's own healthy level:
  6 dB (twice the amplitude) ``watch``, 12 dB ``warning``, 18 dB ``alarm``. The healthy
  level is the 95th percentile of the line over the training windows, kept in the model
  card's ``baseline`` by ``edge-agent train``; a motor's inherent eccentricity differs
  from motor to motor, so no absolute level would do. The line must also stand 10 dB out
  of its local noise floor: a floor that rises with it is load or noise, not a fault.
  The bundled default model, trained on a simulator, has no baseline, and these two rules
  wait for a model of the motor itself.

Every level is a key of ``[alerts]``. With voltages, or with neither voltages nor a model
of the motor, set the ``stator_i2_*`` levels above the i2/i1 that your motor shows healthy
(the summary records of ``edge-agent replay`` give its mean and maximum).

:class:`AlertTracker` turns findings into alerts: one is raised after ``raise_after``
consecutive abnormal windows and cleared after ``clear_after`` consecutive normal ones.
While an alert is open, its rule reads a window as normal only once its value has fallen
under the watch level by a deadband (ISA-18.2): 3 dB for the broken-bar sideband and the
eccentricity and bearing rises (``deadband_db``, also taken off the 10 dB prominence they
need), and 20 % of the watch level for the stator and supply ratios and of the anomaly
threshold (``deadband``). Without it, a level hovering within a dB of the watch level
raised and cleared an alert some 25 times an hour.
After ``raise_after`` consecutive windows more severe than a raised alert, that alert is
cleared and a successor raised at the mildest of their severities, each naming the other
in its evidence; severities never go down within an alert. The
faults read off the long window (:data:`LONG_WINDOW_FAULTS`) count only the windows that
analysed it afresh: the windows in between repeat its features, and a repeat confirms
nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_agent.config import AlertConfig
from edge_agent.features import BEARING_DEFECTS, SIDEBAND_PROMINENCE_DB
from edge_agent.publish.schema import FAULTS, SEVERITIES

# The stator rule reads i2/i1 only while the positive-sequence current is at least this
# share of the nameplate current: a stopped motor's ratio is one of noise.
RUNNING_CURRENT = 0.1

# Faults whose findings come from the long window's features.
LONG_WINDOW_FAULTS = frozenset({"broken_rotor_bar", "eccentricity", "bearing"})

# Lines judged against the motor's own healthy level (the model card's "baseline", which
# `edge-agent train` writes), by fault.
BASELINE_LINES: dict[str, tuple[str, ...]] = {
    "eccentricity": ("ecc_lsb_db", "ecc_usb_db"),
    "bearing": tuple(f"bearing_{d}_db" for d in BEARING_DEFECTS),
}

__all__ = [
    "BASELINE_LINES",
    "FAULTS",
    "LONG_WINDOW_FAULTS",
    "SEVERITIES",
    "AlertTracker",
    "Finding",
    "anomaly_severity",
    "describe_alert",
    "diagnose",
]


@dataclass(frozen=True)
class Finding:
    fault: str
    severity: str
    evidence: dict[str, Any]


def anomaly_severity(score: float, threshold: float) -> str:
    ratio = score / threshold
    return "watch" if ratio < 2 else "warning" if ratio < 5 else "alarm"


def diagnose(
    features: Mapping[str, float | None],
    score: float | None,
    threshold: float | None,
    cfg: AlertConfig,
    rated_current: float = 0.0,
    baseline: Mapping[str, float] | None = None,
    negative_sequence: float | None = None,
    furthest: list[dict] | None = None,
    holding: Collection[str] = (),
) -> dict[str, Finding]:
    """Findings of one window, by fault name; an absent fault is a normal window for it.

    ``rated_current`` (A rms, the nameplate's) keeps the stator rule quiet while the motor
    is stopped or idling, when i2/i1 is a ratio of noise, and scales the supply's share of
    i2/i1 with the load. ``baseline`` gives the healthy 95th percentile (dB) of the
    :data:`BASELINE_LINES` (``Scorer.baseline``); without it there are no eccentricity or
    bearing findings. ``negative_sequence`` is the motor's healthy negative-sequence
    current, A (``Scorer.negative_sequence``), which the stator rule judges by without
    voltages. ``furthest`` (``Scorer.furthest``) goes into an anomaly's evidence: the
    features furthest from the healthy training windows, which say what changed.
    ``holding`` names the faults with an alert open (``AlertTracker.active``): their rules
    read ``watch`` down to the watch level less the deadband (``[alerts] deadband_db``,
    ``deadband``), so that an alert clears only once its value has clearly fallen.
    """
    found: dict[str, Finding] = {}
    limit = threshold
    if threshold is not None and "anomaly" in holding:
        limit = threshold * (1.0 - cfg.deadband)
    if score is not None and limit is not None and score > limit:
        found["anomaly"] = Finding(
            "anomaly",
            anomaly_severity(score, threshold),
            {"score": score, "threshold": threshold, "furthest": furthest or []},
        )
    lsb = features.get("brb_lsb_db")
    prominence = features.get("brb_prominence_db")
    hold = "broken_rotor_bar" in holding
    if (
        lsb is not None
        and prominence is not None
        and prominence >= SIDEBAND_PROMINENCE_DB - hold * cfg.deadband_db
    ):
        severity = cfg.severity("broken_rotor_bar", lsb, hold)
        if severity:
            found["broken_rotor_bar"] = Finding(
                "broken_rotor_bar",
                severity,
                {
                    "brb_lsb_db": lsb,
                    "brb_usb_db": features.get("brb_usb_db"),
                    "slip": features.get("slip"),
                    "supply_hz": features.get("supply_hz"),
                },
            )
    v2_v1 = features.get("v2_v1")
    if v2_v1 is not None:
        severity = cfg.severity("supply_unbalance", v2_v1, "supply_unbalance" in holding)
        if severity:
            found["supply_unbalance"] = Finding(
                "supply_unbalance",
                severity,
                {"v2_v1": v2_v1, "i2_i1": features.get("i2_i1"), "v1": features.get("v1")},
            )
    i2_i1 = features.get("i2_i1")
    i1 = features.get("i1")
    if i2_i1 is not None and i1 is not None and i1 > 0 and i1 >= RUNNING_CURRENT * rated_current:
        finding = _stator(
            features, i2_i1, i1, v2_v1, cfg, rated_current, negative_sequence,
            "stator_short" in holding,
        )  # fmt: skip
        if finding is not None:
            found["stator_short"] = finding
    for fault, names in BASELINE_LINES.items():
        finding = _line_rise(fault, names, features, baseline or {}, cfg, fault in holding)
        if finding is not None:
            found[fault] = finding
    return found


def _stator(
    features: Mapping[str, float | None],
    i2_i1: float,
    i1: float,
    v2_v1: float | None,
    cfg: AlertConfig,
    rated_current: float,
    healthy_i2: float | None,
    hold: bool,
) -> Finding | None:
    """The stator rule (module docstring): the supply's share of i2/i1 taken out by the
    voltages, else by the motor's healthy negative sequence, else not at all."""
    evidence: dict[str, Any] = {"i2_i1": i2_i1, "v2_v1": v2_v1}
    i2 = features.get("i2")
    if v2_v1 is not None:
        # The supply drives i2 ≈ i2_per_v2 · v2/v1 · rated current at any load. Never
        # less than at rated load: above it, a nameplate current set too low (the default
        # left in place) would make a supply unbalance read as a short.
        load = max(1.0, rated_current / i1) if rated_current > 0 else 1.0
        from_supply = cfg.i2_per_v2 * v2_v1 * load
        severity = cfg.severity("stator_short", i2_i1 - from_supply, hold)
        evidence["i2_i1_from_supply"] = from_supply
    elif healthy_i2 is not None and i2 is not None:
        change = (i2 - healthy_i2) / i1
        severity = cfg.severity("stator_short_change", change, hold)
        evidence.update(i2=i2, i2_healthy=healthy_i2, i2_i1_change=change)
    else:
        severity = cfg.severity("stator_short", i2_i1, hold)
        evidence["i2_i1_from_supply"] = None
    if severity is None:
        return None
    evidence.update(z2_ohm=features.get("z2_ohm"), i1=i1)
    return Finding("stator_short", severity, evidence)


def _line_rise(
    fault: str,
    names: tuple[str, ...],
    features: Mapping[str, float | None],
    baseline: Mapping[str, float],
    cfg: AlertConfig,
    hold: bool,
) -> Finding | None:
    """The line of ``names`` that has risen most over its healthy level, graded."""
    rises = {}
    for name in names:
        level, healthy = features.get(name), baseline.get(name)
        if level is None or healthy is None:
            continue
        # A fault makes a line; a floor that rises with it (load, noise) is not one.
        floor = features.get(name.replace("_db", "_floor_db"))
        if floor is None or level - floor < SIDEBAND_PROMINENCE_DB - hold * cfg.deadband_db:
            continue
        rises[name] = level - healthy
    if not rises:
        return None
    line = max(rises, key=rises.__getitem__)
    severity = cfg.severity(fault, rises[line], hold)
    if severity is None:
        return None
    return Finding(
        fault,
        severity,
        {"line": line, "level_db": features[line], "healthy_p95_db": baseline[line],
         "rise_db": rises[line], "supply_hz": features.get("supply_hz"),
         "rotor_hz": features.get("rotor_hz")},
    )  # fmt: skip


_RANK = {name: i for i, name in enumerate(SEVERITIES)}


@dataclass
class _State:
    abnormal: int = 0
    normal: int = 0
    alert_id: str | None = None
    severity: str | None = None
    # Consecutive windows more severe than the raised alert, and the mildest of them.
    worse: int = 0
    worse_severity: str | None = None


@dataclass
class AlertTracker:
    """Debounces findings into raised/cleared alert records, per fault."""

    raise_after: int = 3
    clear_after: int = 5
    _states: dict[str, _State] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: AlertConfig) -> AlertTracker:
        return cls(raise_after=cfg.raise_after, clear_after=cfg.clear_after)

    def resume(self, alerts: Iterable[Mapping[str, Any]]) -> None:
        """Carry on alerts a previous run left open (``alert_id``, ``fault``, ``severity``,
        as the event store lists them): kept open under their ids while windows read the
        fault, cleared once ``clear_after`` read normal, escalated as usual."""
        for a in alerts:
            self._states[a["fault"]] = _State(alert_id=a["alert_id"], severity=a["severity"])

    def close(self, fault: str, t: float, reason: str) -> dict[str, Any] | None:
        """Clear ``fault``'s open alert at ``t``, its evidence ``{"reason": reason}``: for
        a fault this run cannot judge. None when none is open."""
        st = self._states.pop(fault, None)
        if st is None or st.alert_id is None:
            return None
        closed = Finding(fault, st.severity or "watch", {"reason": reason})
        return _alert(st.alert_id, "cleared", t, closed, None, 0)

    @property
    def active(self) -> dict[str, str]:
        """Alert ids of the raised alerts, by fault."""
        return {f: s.alert_id for f, s in self._states.items() if s.alert_id is not None}

    def update(
        self,
        t: float,
        findings: Mapping[str, Finding],
        score: float | None,
        repeated: frozenset[str] | set[str] = frozenset(),
    ) -> list[dict[str, Any]]:
        """Feed one window's findings (at time ``t``); returns the alert records it causes.

        ``repeated`` names faults whose evidence this window carries over from an earlier
        one (the long window's, between its analyses): they count neither way.
        """
        records = []
        for fault in sorted(set(findings) | set(self._states)):
            if fault in repeated:
                continue
            st = self._states.setdefault(fault, _State())
            finding = findings.get(fault)
            if finding is not None:
                st.abnormal += 1
                st.normal = 0
                if st.alert_id is None:
                    if st.abnormal >= self.raise_after:
                        st.alert_id = str(uuid.uuid4())
                        st.severity = finding.severity
                        records.append(
                            _alert(st.alert_id, "raised", t, finding, score, self.raise_after)
                        )
                elif _RANK[finding.severity] > _RANK[st.severity or "watch"]:
                    st.worse += 1
                    mildest = min(st.worse_severity or "alarm", finding.severity, key=_RANK.get)
                    st.worse_severity = mildest
                    if st.worse >= self.raise_after:
                        records.extend(self._escalate(st, t, finding, score))
                else:
                    st.worse, st.worse_severity = 0, None
            else:
                st.normal += 1
                st.abnormal = 0
                st.worse, st.worse_severity = 0, None
                if st.alert_id is not None and st.normal >= self.clear_after:
                    cleared = Finding(fault, st.severity or "watch", {})
                    records.append(_alert(st.alert_id, "cleared", t, cleared, score, 0))
                    st.alert_id = None
                    st.severity = None
        return records

    def _escalate(
        self, st: _State, t: float, finding: Finding, score: float | None
    ) -> list[dict[str, Any]]:
        """A raised alert's fault has been worse for ``raise_after`` windows: clear it and
        raise its successor at the mildest of those windows' severities, each record
        naming the other. (A new alert, not a changed one: the contract's states are only
        raised and cleared, and a consumer that pages on "raised" pages again.)"""
        old, old_severity = st.alert_id, st.severity or "watch"
        new, severity = str(uuid.uuid4()), st.worse_severity or finding.severity
        superseded = Finding(finding.fault, old_severity, {"superseded_by": new,
                                                          "severity_now": severity})  # fmt: skip
        escalated = Finding(
            finding.fault,
            severity,
            {**finding.evidence, "escalated_from": old, "previous_severity": old_severity},
        )
        st.alert_id, st.severity, st.worse, st.worse_severity = new, severity, 0, None
        return [
            _alert(old, "cleared", t, superseded, score, 0),
            _alert(new, "raised", t, escalated, score, self.raise_after),
        ]


def _alert(
    alert_id: str, state: str, t: float, finding: Finding, score: float | None, windows: int
) -> dict[str, Any]:
    evidence = dict(finding.evidence)
    if state == "raised":
        evidence["consecutive_windows"] = windows
    return {
        "type": "alert",
        "id": alert_id,
        "state": state,
        "t": t,
        "fault": finding.fault,
        "severity": finding.severity,
        "score": score,
        "evidence": evidence,
    }


def describe_alert(fault: str, evidence: Mapping[str, Any]) -> str:
    """What a raised alert's ``evidence`` says, in one line for a person: the daemon's log
    (the journal) and ``edge-agent alerts``. Empty when the evidence holds nothing to say."""
    e = {k: v for k, v in evidence.items() if v is not None}
    parts: list[str] = []
    if fault == "anomaly" and "score" in e and "threshold" in e:
        parts.append(f"score {e['score']:.3g} over the threshold {e['threshold']:.3g}")
        far = [f"{d['feature']} {d['deviation']:+.1f}" for d in e.get("furthest", [])]
        if far:
            parts.append("furthest from healthy (in healthy spreads): " + ", ".join(far))
    elif fault == "broken_rotor_bar" and "brb_lsb_db" in e:
        text = f"lower sideband {e['brb_lsb_db']:.1f} dB"
        if "brb_usb_db" in e:
            text += f", upper {e['brb_usb_db']:.1f} dB"
        parts.append(text + " re the fundamental")
        if "slip" in e:
            parts.append(f"slip {e['slip']:.3f}")
    elif fault == "supply_unbalance" and "v2_v1" in e:
        parts.append(f"voltage unbalance v2/v1 {100 * e['v2_v1']:.1f} %")
        if "i2_i1" in e:
            parts.append(f"current i2/i1 {e['i2_i1']:.3f}")
    elif fault == "stator_short" and "i2_i1" in e:
        if "i2_i1_change" in e:
            parts.append(
                f"i2 {e['i2']:.3g} A against a healthy {e['i2_healthy']:.3g} A: a rise of "
                f"{e['i2_i1_change']:.3f} of i1"
            )
        elif "i2_i1_from_supply" in e:
            parts.append(
                f"i2/i1 {e['i2_i1']:.3f}, of which the supply's unbalance "
                f"({100 * e.get('v2_v1', 0.0):.1f} %) explains {e['i2_i1_from_supply']:.3f}"
            )
        else:
            parts.append(f"i2/i1 {e['i2_i1']:.3f} (no voltages and no model of this motor)")
        if "i1" in e:
            parts.append(f"i1 {e['i1']:.3g} A")
    elif fault in BASELINE_LINES and "line" in e:
        parts.append(
            f"{e['line']} {e['level_db']:.1f} dB, {e['rise_db']:.1f} dB over its healthy "
            f"{e['healthy_p95_db']:.1f} dB"
        )
    if "previous_severity" in e:
        parts.append(f"escalated from {e['previous_severity']} (alert {e.get('escalated_from')})")
    return "; ".join(parts)
