"""Wiring checks: what a miswired installation looks like in a window's features; and
:func:`nameplate_warning` and :func:`energised_warning`, for a nameplate current that is
not the motor's (too low: it reads overloaded; far too high: it reads stopped).

The commonest faults of a new current-signature installation are in its wiring, not in
the motor: a CT clipped on the wrong way round, two leads swapped, a CT left open, the
voltages taken in another order than the currents. Each reads as a motor fault (a
reversed CT gives i2/i1 = 2, a stator-short alarm), and each makes the analysis wrong,
so a window that shows one is flagged ``wiring`` and diagnosed no further; the daemon
logs what to check, and ``replay`` and ``train`` say it.

The checks need a running motor (a phase's current at ``RUNNING_CURRENT`` of the
nameplate current or more). Currents, on a 3-wire motor, whose three currents sum to zero:

- ``missing``: one phase reads under ``DEAD_SHARE`` of the largest: its CT is open,
  unplugged or on the wrong input.
- ``sequence``: the negative sequence exceeds the positive (i2/i1 > 1): the currents
  rotate a-c-b. Two current channels are swapped, or the motor runs backwards; swap two
  of ``ia, ib, ic`` in the roles either way, as the analysis reads a forward rotation.
- ``reversed``: a zero-sequence current over ``MAX_I0`` of the larger of i1 and i2 (one
  CT reversed gives 1; sensor mismatch 0.01-0.1): a CT is reversed, or on the wrong
  conductor. The phase angles of ``ib`` and ``ic`` behind ``ia`` (120° and 240° when
  right) say which: 300° and 60° is ``ia`` reversed, 300° and 240° ``ib``, 120° and 60°
  ``ic``.

And the configuration: ``supply_hz``: ``[motor] supply_hz`` fixes the frequency the
features are computed at, but the current's fundamental lies more than
``SUPPLY_MISMATCH_HZ`` from it (a drive, another grid, or a wrong value). Every feature of
the fundamental is then wrong, and the checks above with them (a 40 Hz current read at
50 Hz looks reversed and swapped), so this one is said alone.

Voltages, when wired:

- ``voltage_sequence``: v2 > v1: two voltage channels are swapped.
- ``pairing`` (both sets in sequence): a phase's current lags its voltage by an angle
  outside ``PHI_DEG``, -30° to 95° (a motor's lags by 10-85°; one paired with another
  phase's voltage is 120° off, a reversed CT 180°): that phase's CT is reversed, or
  ``ia, ib, ic`` are not the phases of ``va, vb, vc`` in that order. A motor that
  generates (an overhauling load, a crane lowering) shows so too.
"""

from __future__ import annotations

from collections.abc import Mapping

from edge_agent.diagnosis import RUNNING_CURRENT
from edge_agent.features import PHASES, wrap_deg

DEAD_SHARE = 0.1
# A grid stays within 0.2 Hz of its nominal frequency but in an emergency; half a bin of
# the 1 s window off, a Hann window's phasor reads 15 % low.
SUPPLY_MISMATCH_HZ = 0.5
MAX_I0 = 0.3  # i0 over the larger of i1, i2
# A motoring induction motor draws its current 10-85° behind its voltage (less than 90°:
# it takes power); a phase paired with another's voltage is 120° off, a reversed CT 180°.
PHI_DEG = (-30.0, 95.0)
# Angles of ib and ic behind ia (degrees) with each CT reversed in turn, and right.
_REVERSED = {"ia": (300.0, 60.0), "ib": (300.0, 240.0), "ic": (120.0, 60.0)}
_MATCH_DEG = 30.0
_PHI = tuple((p, f"phi_{p}_deg") for p in PHASES)

# A motor's current above this share of the nameplate's, held, says the motor is
# overloaded (past any service factor) or the nameplate is not this motor's.
OVERLOAD = 1.3

# A window that reads stopped (every phase under RUNNING_CURRENT of the nameplate current)
# but carries a balanced three-phase current of at least this share of it is a running
# motor's: one draws 20 % or more of its rated current even unloaded, a stopped one's CTs
# read noise (well under 1 %) and what little they pick up from other conductors.
ENERGISED = 0.02
# The largest i2/i1 of such a current (the sensors' noise reads near 1; a motor, under 0.1).
ENERGISED_I2_I1 = 0.2

__all__ = [
    "ENERGISED",
    "OVERLOAD",
    "describe_wiring",
    "energised_warning",
    "nameplate_warning",
    "running",
    "wiring_problems",
]


def nameplate_warning(i1: float | None, rated_current: float) -> str | None:
    """What to say when the motor's current ``i1`` (A rms, held a while: a rolling or a
    median value) is over ``OVERLOAD`` x the nameplate current; None otherwise. The stator
    and wiring checks and the slip from the load read the nameplate current."""
    if i1 is None or rated_current <= 0 or i1 <= OVERLOAD * rated_current:
        return None
    return (
        f"the motor draws {i1:.3g} A, {i1 / rated_current:.1f} x the nameplate's "
        f"rated_current ({rated_current:g} A): it is overloaded, or [motor] rated_current "
        "is not this motor's (the stator and wiring checks and the slip read it)"
    )


def energised_warning(features: Mapping[str, float | None], rated_current: float) -> str | None:
    """What to say of a window (or of medians over windows) that reads stopped, under
    :func:`running`, yet carries a running motor's current: a balanced three-phase set
    (i2/i1 and i0/i1 small) of :data:`ENERGISED` of the nameplate current or more. The
    nameplate current is then not the motor's, or the sensors' scale is wrong, and the
    motor is never analysed. None otherwise."""
    get = features.get
    i1, i2_i1, i0, hz = get("i1"), get("i2_i1"), get("i0"), get("supply_hz")
    if (
        i1 is None or i2_i1 is None or i0 is None or hz is None or rated_current <= 0
        or running(features, rated_current)
        or i1 < ENERGISED * rated_current or i2_i1 > ENERGISED_I2_I1 or i0 > MAX_I0 * i1
    ):  # fmt: skip
        return None
    return (
        f"the motor reads stopped (every phase under {RUNNING_CURRENT:.0%} of [motor] "
        f"rated_current = {rated_current:g} A), yet its currents are a running motor's: a "
        f"balanced three-phase set of {i1:.3g} A at {hz:.1f} Hz (i2/i1 {i2_i1:.3f}), "
        f"{100 * i1 / rated_current:.0f} % of the nameplate's. An induction motor draws 20 % or "
        "more of its rated current even unloaded: [motor] rated_current is likely not this "
        "motor's, or the sensors' scale is wrong; nothing is analysed while it reads stopped"
    )


def describe_wiring(windows: int, seen: Mapping[str, str]) -> str:
    """A line for a run's summary: how many windows were flagged, and what to check."""
    return f"wiring: {windows} windows flagged; " + "; ".join(seen.values())


def running(features: Mapping[str, float | None], rated_current: float) -> bool:
    """Whether the window can be checked: a phase carries ``RUNNING_CURRENT`` of the
    nameplate current or more."""
    rms = (features.get("rms_a"), features.get("rms_b"), features.get("rms_c"))
    return None not in rms and max(rms) >= RUNNING_CURRENT * rated_current


def wiring_problems(
    features: Mapping[str, float | None],
    supply_hz: float | None = None,
    peak_hz: float | None = None,
) -> dict[str, str]:
    """What the features of a running motor's window (:func:`running`) say is miswired, by
    check name (module docstring), each with what to do; empty when nothing is.
    ``supply_hz`` is ``[motor] supply_hz`` (None: detected), ``peak_hz`` the frequency
    the window's current runs at."""
    if supply_hz is not None and peak_hz is not None:
        if abs(peak_hz - supply_hz) > SUPPLY_MISMATCH_HZ:
            # Every feature of the fundamental is read at the wrong frequency, and the
            # checks below with them: said alone.
            return {
                "supply_hz": f"the current runs at {peak_hz:.1f} Hz, not at [motor] supply_hz "
                f"= {supply_hz:g}, so every feature is read at the wrong frequency: leave "
                "supply_hz out to detect it (a motor on a drive, or on another grid), or set "
                "it right"
            }
    get = features.get  # this runs at every window: plain lookups, no generators
    rms = [get("rms_a"), get("rms_b"), get("rms_c")]
    if None in rms:
        return {}
    found: dict[str, str] = {}
    top = max(rms)
    dead = [f"i{p}" for p, r in zip(PHASES, rms, strict=True) if r < DEAD_SHARE * top]
    if dead:
        found["missing"] = (
            f"{', '.join(dead)} read{'s' if len(dead) == 1 else ''} under "
            f"{DEAD_SHARE:.0%} of the largest phase current ({top:.3g} A rms): a CT open, "
            "unplugged or on the wrong input"
        )
        return found  # the sequence checks read nothing sensible without a phase
    i0, i1, i2, i2_i1 = get("i0"), get("i1"), get("i2"), get("i2_i1")
    # A reversed CT gives i2/i1 = 2 as well, but a swap no zero sequence: i0 first, over
    # the larger sequence (a swap leaves i1 next to nothing).
    zero = None
    if i0 is not None and i1 is not None and i2 is not None and max(i1, i2) > 0:
        zero = i0 / max(i1, i2)
    if zero is not None and zero > MAX_I0:
        found["reversed"] = (
            f"the three currents do not sum to zero (i0 = {i0:.3g} A, {zero:.2f} of the larger "
            f"sequence current; a 3-wire motor draws none): {_which_reversed(features)}"
        )
    elif i2_i1 is not None and i2_i1 > 1.0:
        found["sequence"] = (
            f"the currents rotate a-c-b (i2/i1 = {i2_i1:.3g}): two of ia, ib, ic are "
            "swapped, or the motor runs backwards; swap two of them in the roles "
            "(--columns) either way"
        )
    v2_v1 = get("v2_v1")
    if v2_v1 is not None and v2_v1 > 1.0:
        found["voltage_sequence"] = (
            f"the voltages rotate a-c-b (v2/v1 = {v2_v1:.3g}): two of va, vb, vc are swapped"
        )
    if found:
        return found  # pairing presumes both sets in sequence
    lo, hi = PHI_DEG
    off = {}
    for p, key in _PHI:
        phi = get(key)
        if phi is not None and not lo <= phi <= hi:
            off[p] = phi
    if off:
        said = ", ".join(
            f"i{p} {'lags' if phi >= 0 else 'leads'} v{p} by {abs(phi):.0f}°"
            for p, phi in off.items()
        )
        found["pairing"] = (
            f"{said} (a motor's current lags its voltage by 10-85°): " + _which_pairing(off)
        )
    return found


def _which_reversed(features: Mapping[str, float | None]) -> str:
    b, c = features.get("i_angle_b_deg"), features.get("i_angle_c_deg")
    if b is not None and c is not None:
        for name, (want_b, want_c) in _REVERSED.items():
            if abs(wrap_deg(b - want_b)) < _MATCH_DEG and abs(wrap_deg(c - want_c)) < _MATCH_DEG:
                return (
                    f"the CT of {name} is reversed (ib, ic lag ia by {b:.0f}°, {c:.0f}°; "
                    "120°, 240° when right): turn it round, or swap its two leads"
                )
        angles = f" (ib, ic lag ia by {b:.0f}°, {c:.0f}°; 120°, 240° when right)"
    else:
        angles = ""
    return f"a CT is reversed or on the wrong conductor{angles}"


def _which_pairing(off: Mapping[str, float]) -> str:
    """What a set of displacement angles out of range says about the pairing."""
    if len(off) == 3:
        # All three 120° off: the voltage channels hold the phases in another order.
        for turn, held in ((120.0, "vb, vc, va"), (-120.0, "vc, va, vb")):
            if all(PHI_DEG[0] <= wrap_deg(phi + turn) <= PHI_DEG[1] for phi in off.values()):
                return (
                    f"the channels read as va, vb, vc hold {held}: give them those roles "
                    "(or move the currents' to match)"
                )
    return "a CT reversed, or ia, ib, ic not the phases of va, vb, vc in that order"
