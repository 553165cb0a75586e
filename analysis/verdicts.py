"""Verdicts on claims: the paired effect of a treatment over its control, its CI and its sign.

An experiment runs a treatment arm and a control arm with the same replicate seeds (common random
numbers, :mod:`analysis.sweep_design`), so replicate ``r`` of both arms shares every random draw
the two arms have in common. The effect is the mean of the paired differences
``treatment[r] − control[r]``; its interval is the Student-t interval of those differences
(:func:`analysis.stats.t_interval`), which is narrower than one built from two independent samples
whenever the arms are positively correlated. The verdict compares the interval with the claim's
expected sign:

* ``supported`` — the interval lies entirely on the expected side of zero;
* ``refuted`` — it lies entirely on the other side;
* ``inconclusive`` — it contains zero, or there are fewer than two pairs (no interval).

A claim whose two arms never differ (every difference exactly 0) has the interval [0, 0] and is
inconclusive: the model shows no effect at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from mesaopt.analysis.stats import t_interval

VerdictName = Literal["supported", "refuted", "inconclusive"]
VERDICTS: tuple[VerdictName, ...] = ("supported", "refuted", "inconclusive")


@dataclass(frozen=True)
class Verdict:
    """The paired effect of a claim and what it says about the claim.

    Attributes:
        effect: Mean paired difference treatment − control.
        ci_low: Lower end of its confidence interval (NaN for fewer than two pairs).
        ci_high: Upper end.
        n: Number of finite pairs.
        verdict: ``"supported"``, ``"refuted"`` or ``"inconclusive"``.
    """

    effect: float
    ci_low: float
    ci_high: float
    n: int
    verdict: VerdictName


def decide(ci_low: float, ci_high: float, expected_sign: int) -> VerdictName:
    """The verdict of an interval for a claim of sign ``expected_sign``.

    Args:
        ci_low: Lower end of the interval (NaN: no interval).
        ci_high: Upper end.
        expected_sign: +1 if the claim says treatment > control, −1 if it says treatment < control.

    Returns:
        ``supported`` if the interval excludes zero on the expected side, ``refuted`` if on the
        other side, else ``inconclusive``.

    Raises:
        ValueError: If ``expected_sign`` is not +1 or −1.
    """
    if expected_sign not in (1, -1):
        raise ValueError(f"expected_sign must be +1 or -1, got {expected_sign!r}")
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return "inconclusive"
    low, high = (ci_low, ci_high) if expected_sign == 1 else (-ci_high, -ci_low)
    if low > 0:
        return "supported"
    if high < 0:
        return "refuted"
    return "inconclusive"


def paired_verdict(
    treatment: np.ndarray, control: np.ndarray, expected_sign: int, level: float = 0.95
) -> Verdict:
    """The paired effect treatment − control, its t interval and the claim's verdict.

    Args:
        treatment: One value per replicate (1-D).
        control: The control arm's value for the same replicates, in the same order.
        expected_sign: +1 if the claim says treatment > control, −1 if it says treatment < control.
        level: Confidence level of the interval.

    Returns:
        The verdict; pairs with a non-finite member are left out of ``n``.

    Raises:
        ValueError: If the arrays are not 1-D of equal length, or ``expected_sign`` is not ±1.
    """
    treatment = np.asarray(treatment, dtype=float)
    control = np.asarray(control, dtype=float)
    if treatment.ndim != 1 or treatment.shape != control.shape:
        raise ValueError(
            f"treatment and control must be 1-D arrays of equal length, got shapes "
            f"{treatment.shape} and {control.shape}"
        )
    n, effect, _sd, low, high = t_interval(treatment - control, level)
    return Verdict(float(effect), float(low), float(high), int(n), decide(low, high, expected_sign))
