"""The candidate pool: the whole optimizers a principal's selection draws from.

A mesa-optimizer is everything selection chose (the essay: "mesa-optimizers are control systems
built within selection systems"). A candidate is therefore a full optimizer — objective θ, kind,
power, capacity, a control law's gain, and whether it can tell its sandbox from deployment — and
nothing a base optimizer would choose is set outside the selection loop. The pool is the
scenario's ``[agents]`` section, with a principal's ``[principals.selection.pool]`` overriding
any candidate key for that principal's selections. Each attribute is one value or a discrete
distribution ``{values, weights}``; :func:`draw_candidates` draws ``count`` candidates' attributes
from the run's generator (an attribute with one value draws nothing, so a fixed pool leaves the
random stream as it was). Objectives are drawn by the sandbox (:mod:`agents.sandbox`), around
the principal's prior.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mesaopt.agents.kinds import Control, Direct, check_optimizer, kind_of
from mesaopt.model.errors import ScenarioError


@dataclass(frozen=True)
class Attribute:
    """One candidate attribute: its possible values and their probabilities.

    Attributes:
        values: The values, (V,).
        probabilities: Their probabilities, (V,), or None for a single value.
    """

    values: np.ndarray
    probabilities: np.ndarray | None

    @classmethod
    def of(cls, spec: Any, convert: Any = lambda value: value, dtype: Any = None) -> Attribute:
        """The attribute of a scenario value or ``{values, weights}`` choice."""
        if hasattr(spec, "values") and hasattr(spec, "probabilities"):
            values = np.array([convert(v) for v in spec.values], dtype=dtype)
            if len(values) == 1:
                return cls(values, None)
            return cls(values, np.array(spec.probabilities()))
        return cls(np.array([convert(spec)], dtype=dtype), None)

    def draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` independent draws (no random number is used for a single value).

        The same draws as ``rng.choice(values, count, p=probabilities)``, made the way NumPy
        makes them (one uniform per draw, the index of the first cumulative probability above
        it), with a comparison per value instead of a binary search per draw: about half the
        time for the pools' few values (``tests/agents/test_candidates.py`` holds it to
        ``rng.choice``).
        """
        if self.probabilities is None:
            return np.full(count, self.values[0], dtype=self.values.dtype)
        cdf = self.probabilities.cumsum()
        cdf /= cdf[-1]
        uniform = rng.random(count)
        if len(cdf) > 255:
            return self.values[cdf.searchsorted(uniform, side="right")]
        index = np.zeros(count, dtype=np.uint8)
        for edge in cdf[:-1]:  # searchsorted(side="right"): how many edges are ≤ the uniform
            index += (uniform >= edge).view(np.uint8)
        return self.values[index]


@dataclass(frozen=True)
class Pool:
    """A principal's candidate pool, resolved from ``[agents]`` and its ``selection.pool``.

    Attributes:
        capacity: Candidate capacities.
        kind: Candidate kind codes (:mod:`agents.kinds`).
        power: Planning power (0 = exact, k = best of k sampled plans).
        gain: Control-law gains.
        goals_mean: The shared mean of the candidates' intrinsic goals, (d,).
        goals_scale: Standard deviation of each deployed agent's private goal deviation.
        deception_level: Capacity a candidate needs to tell its sandbox from deployment.
        deception_share: Share of those candidates that do.
    """

    capacity: Attribute
    kind: Attribute
    power: Attribute
    gain: Attribute
    goals_mean: np.ndarray
    goals_scale: float
    deception_level: int
    deception_share: float

    @property
    def deceives(self) -> bool:
        """Whether any candidate of this pool can be deceptive."""
        return self.deception_share > 0


@dataclass(frozen=True)
class CandidateTraits:
    """The drawn attributes of a batch of candidates (one entry per candidate).

    Attributes:
        capacity: (C,) int64.
        kind: (C,) int8 kind codes.
        power: (C,) int64; 0 = exact.
        gain: (C,) float.
        deceptive: (C,) bool.
    """

    capacity: np.ndarray
    kind: np.ndarray
    power: np.ndarray
    gain: np.ndarray
    deceptive: np.ndarray

    def take(self, index: np.ndarray) -> CandidateTraits:
        """The traits of the candidates at ``index``."""
        return CandidateTraits(*(getattr(self, f)[index] for f in self.__dataclass_fields__))


def _power_code(power: Any) -> int:
    return 0 if power == "exact" else int(power)


def _kind_attribute(optimizer: Any, control_share: float, source: str | None) -> Attribute:
    if isinstance(optimizer, str):
        if optimizer == "mixed":
            return Attribute(
                np.array([Direct.code, Control.code], dtype=np.int8),
                np.array([1.0 - control_share, control_share]),
            )
        check_optimizer(optimizer, source)
        return Attribute(np.array([kind_of(optimizer).code], dtype=np.int8), None)
    for name in optimizer.values:
        if name == "mixed":
            raise ScenarioError(
                "agents.optimizer.values", "'mixed' is not a kind; list direct and control", source
            )
        check_optimizer(name, source)
    return Attribute.of(optimizer, lambda name: kind_of(name).code, np.int8)


def pool_of(scenario: Any, principal_index: int, d: int, source: str | None = None) -> Pool:
    """Resolve one principal's candidate pool: ``[agents]`` overridden by its ``selection.pool``.

    Args:
        scenario: The validated scenario.
        principal_index: The principal's position in ``scenario.principals``.
        d: Number of channels.
        source: The scenario file, for error messages.

    Returns:
        The pool.

    Raises:
        ScenarioError: If an optimizer names no registered kind.
    """
    agents = scenario.agents
    override = scenario.principals[principal_index].selection.pool

    def pick(key: str) -> Any:
        mine = getattr(override, key)
        return getattr(agents, key) if mine is None else mine

    goals = pick("goals")
    mean = np.zeros(d)
    for name, value in goals.mean.items():
        mean[scenario.channel_index(name)] = value
    control_share = pick("control_share")
    deception = pick("deception")
    return Pool(
        capacity=Attribute.of(pick("capacity"), int, np.int64),
        kind=_kind_attribute(pick("optimizer"), control_share, source),
        power=Attribute.of(pick("power"), _power_code, np.int64),
        gain=Attribute.of(pick("gain"), float, float),
        goals_mean=mean,
        goals_scale=float(goals.scale),
        deception_level=int(deception.level),
        deception_share=float(deception.share),
    )


def draw_candidates(pool: Pool, count: int, rng: np.random.Generator) -> CandidateTraits:
    """Draw ``count`` candidates' attributes from ``pool`` (objectives are drawn elsewhere).

    Draw order: capacity, kind, power, gain, then (when the pool can deceive) one uniform per
    candidate for deception; attributes with a single value use no random numbers.

    Args:
        pool: The principal's pool.
        count: Number of candidates.
        rng: The run's generator.

    Returns:
        Their traits.
    """
    capacity = pool.capacity.draw(rng, count).astype(np.int64)
    kind = pool.kind.draw(rng, count).astype(np.int8)
    power = pool.power.draw(rng, count).astype(np.int64)
    gain = pool.gain.draw(rng, count).astype(float)
    if pool.deceives:
        deceptive = (rng.random(count) < pool.deception_share) & (capacity >= pool.deception_level)
    else:
        deceptive = np.zeros(count, dtype=bool)
    return CandidateTraits(capacity, kind, power, gain, deceptive)
