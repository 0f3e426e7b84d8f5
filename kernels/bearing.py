"""Characteristic defect frequencies of a rolling-element bearing, from its geometry.

A defect on a race or a ball is struck at a rate set by the bearing's kinematics (rolling
without slip, stationary outer race, shaft turning at f_r). With ``n`` rolling elements of
diameter ``d`` on a pitch circle of diameter ``D`` and contact angle θ (Harris, *Rolling
Bearing Analysis*; Randall & Antoni, MSSP 25 (2011) 485-520):

- outer race, BPFO = n/2 · f_r · (1 − d/D·cos θ)
- inner race, BPFI = n/2 · f_r · (1 + d/D·cos θ)
- ball spin,  BSF  = D/(2d) · f_r · (1 − (d/D·cos θ)²)
- cage,       FTF  = f_r/2 · (1 − d/D·cos θ)

``ball`` is the ball *spin* frequency BSF, one turn of the ball about its own axis. A ball
defect strikes the inner and the outer race once each per turn, so its impacts (and the
current line of Schoen et al., 1995) are often quoted at 2·BSF: double ``ball`` for that.
For a 6205 (9 balls of 7.94 mm on a 39.04 mm pitch circle, θ = 0) the orders are
BPFO 3.585, BPFI 5.415, BSF 2.357 (2·BSF 4.714) and FTF 0.398.

The frequencies scale with shaft speed, so the pipeline keeps the orders
(:func:`bearing_orders`, per unit of f_r) and multiplies them by each window's rotor
frequency. Plain Python: it runs once per configuration.
"""

from __future__ import annotations

import math
import operator
from typing import NamedTuple


class BearingFrequencies(NamedTuple):
    """Defect frequencies in Hz, or orders (per unit of rotor frequency)."""

    outer: float  # BPFO, ball pass frequency of the outer race
    inner: float  # BPFI, ball pass frequency of the inner race
    ball: float  # BSF, ball spin frequency (a ball defect strikes the races at 2·BSF)
    cage: float  # FTF, fundamental train (cage) frequency


def bearing_orders(
    n_balls: int, ball_diameter: float, pitch_diameter: float, contact_angle_deg: float
) -> BearingFrequencies:
    """Defect frequencies per unit of shaft speed (orders), from the bearing's geometry.

    ``ball_diameter`` and ``pitch_diameter`` in any one unit (only their ratio counts);
    ``contact_angle_deg`` in degrees, 0 for a deep-groove ball bearing under radial load.
    Example: ``bearing_orders(9, 7.94, 39.04, 0.0).outer`` is 3.585 (a 6205's BPFO).
    """
    try:
        n = operator.index(n_balls)
    except TypeError:
        raise TypeError(f"{n_balls=} must be an integer") from None
    if n < 3:
        raise ValueError(f"{n_balls=} must be at least 3")
    d, pd, theta = float(ball_diameter), float(pitch_diameter), float(contact_angle_deg)
    if not (math.isfinite(d) and d > 0):
        raise ValueError(f"{ball_diameter=} must be positive")
    if not (math.isfinite(pd) and pd > d):
        raise ValueError(f"{pitch_diameter=} must be larger than {ball_diameter=}")
    if not 0.0 <= theta < 90.0:
        raise ValueError(f"{contact_angle_deg=} must be in [0, 90) degrees")
    r = d / pd * math.cos(math.radians(theta))
    return BearingFrequencies(
        outer=0.5 * n * (1.0 - r),
        inner=0.5 * n * (1.0 + r),
        ball=pd / (2.0 * d) * (1.0 - r * r),
        cage=0.5 * (1.0 - r),
    )


def bearing_frequencies(
    n_balls: int,
    ball_diameter: float,
    pitch_diameter: float,
    contact_angle_deg: float,
    rotor_hz: float,
) -> BearingFrequencies:
    """Defect frequencies in Hz at shaft speed ``rotor_hz`` (Hz, revolutions per second).

    Example: a 6205 at 1797 rpm (``rotor_hz=29.95``) has BPFO = 3.585 × 29.95 = 107.4 Hz.
    """
    f_r = float(rotor_hz)
    if not (math.isfinite(f_r) and f_r >= 0.0):
        raise ValueError(f"{rotor_hz=} must be a non-negative number of Hz")
    orders = bearing_orders(n_balls, ball_diameter, pitch_diameter, contact_angle_deg)
    return BearingFrequencies(*(o * f_r for o in orders))
