"""Channels: the effort dimensions of the world, as arrays, and their regime changes.

A :class:`World` is one immutable snapshot of every channel's parameters (value, metric, cost,
noise, externality, peer effect, capacity level) plus the effort-cost matrix K. A regime change
produces a new ``World``; agents keep a reference to the snapshot they were deployed with (their
world model), which is how stale world models arise (docs/model.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mesaopt.model.noise import (
    NOISE_CODES,
    NOISE_NAMES,
    draw_in_blocks,
    noise_variance,
    standard_t,
)
from mesaopt.model.scenario import ChannelConfig, NoiseConfig, Scenario


@dataclass(frozen=True)
class World:
    """Channel parameters at one time (one regime epoch).

    Attributes:
        epoch: 0 for the initial world, +1 at every regime change.
        names: Channel names, in scenario order.
        value: True value per unit output, (d,) (the channels' defaults, before principal
            overrides).
        metric: Weight of each channel in the proxy M, (d,).
        costs: Diagonal of K, (d,).
        cost_matrix: The effort-cost matrix K, (d, d).
        noise_dist: Noise family code per channel (see ``NOISE_CODES``), (d,).
        noise_scale: Noise scale per channel, (d,).
        noise_df: Student-t degrees of freedom per channel, (d,).
        externality: Payoff to each neighbour per unit of effort, (d,).
        peer: Peer-effect complementarity delta, (d,).
        level: Capacity needed to perceive the channel, (d,).
        substitution: Effort substitution used to build K.
    """

    epoch: int
    names: tuple[str, ...]
    value: np.ndarray
    metric: np.ndarray
    costs: np.ndarray
    cost_matrix: np.ndarray
    noise_dist: np.ndarray
    noise_scale: np.ndarray
    noise_df: np.ndarray
    externality: np.ndarray
    peer: np.ndarray
    level: np.ndarray
    substitution: float

    @property
    def d(self) -> int:
        """Number of channels."""
        return len(self.names)

    @property
    def noise_var(self) -> np.ndarray:
        """Variance of each channel's output noise (inf for Student-t with df <= 2)."""
        return np.array(
            [
                noise_variance(NOISE_NAMES[int(c)], float(s), float(df))
                for c, s, df in zip(self.noise_dist, self.noise_scale, self.noise_df, strict=True)
            ]
        )

    def perceives(self, capacity: np.ndarray | int) -> np.ndarray:
        """Return which channels a mind of the given capacity perceives (level <= capacity).

        Args:
            capacity: Scalar or (N,) capacities.

        Returns:
            (d,) bool for a scalar, (N, d) bool for an array.
        """
        cap = np.asarray(capacity)
        return cap[..., None] >= self.level if cap.ndim else self.level <= cap

    def sample_noise(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw realized output noise for ``n`` agents, (n, d) (see :func:`draw_in_blocks`).

        Returns:
            The noise as the transpose of a (d, n) C-ordered array: each channel's draws are
            contiguous, the way they are generated.
        """
        out = np.empty((self.d, n))
        draw_in_blocks(rng, out, self._fill_noise)
        return out.T

    def _fill_noise(self, rng: np.random.Generator, out: np.ndarray) -> None:
        """Fill ``out`` (d, m) with noise draws, channel by channel."""
        m = out.shape[1]
        for k in range(self.d):
            code = self.noise_dist[k]
            if code == NOISE_CODES["normal"]:
                rng.standard_normal(out=out[k])
            elif code == NOISE_CODES["laplace"]:
                # Laplace(0, 1) as the difference of two Exp(1) draws: the same distribution,
                # half the cost of rng.laplace.
                rng.standard_exponential(out=out[k])
                out[k] -= rng.standard_exponential(m)
            else:
                out[k] = standard_t(rng, self.noise_df[k], m)
            out[k] *= self.noise_scale[k]

    def changed(self, channel: int, fields: dict[str, Any]) -> World:
        """Return the next epoch's world with ``fields`` of one channel replaced.

        Args:
            channel: Index of the channel.
            fields: New values of channel fields (validated by the scenario schema).

        Returns:
            A new World with ``epoch + 1``.
        """
        arrays = {
            name: getattr(self, name).copy()
            for name in (
                "value",
                "metric",
                "costs",
                "noise_dist",
                "noise_scale",
                "noise_df",
                "externality",
                "peer",
                "level",
            )
        }
        for field, new in fields.items():
            if field == "noise":
                # A partial table changes only the fields it names (scale alone keeps the family).
                current = {
                    "dist": NOISE_NAMES[int(arrays["noise_dist"][channel])],
                    "scale": float(arrays["noise_scale"][channel]),
                    "df": float(arrays["noise_df"][channel]),
                }
                noise = NoiseConfig.model_validate(current | dict(new))
                arrays["noise_dist"][channel] = NOISE_CODES[noise.dist]
                arrays["noise_scale"][channel] = noise.scale
                arrays["noise_df"][channel] = noise.df
            elif field == "cost":
                arrays["costs"][channel] = float(new)
            else:
                arrays[field][channel] = new
        cost_matrix = substitution_cost_matrix(arrays["costs"], self.substitution)
        return replace(self, epoch=self.epoch + 1, cost_matrix=cost_matrix, **arrays)


def substitution_cost_matrix(costs: np.ndarray, substitution: float) -> np.ndarray:
    """Effort-cost matrix with a shared effort budget.

    ``K_kk = c_k`` and ``K_kl = s·sqrt(c_k c_l)`` for ``k ≠ l``: effort on one channel raises
    the marginal cost of the others, the substitutable-efforts case of Holmström & Milgrom
    (1991, "Multitask Principal-Agent Analyses", J. Law Econ. Organ. 7:24–52). Writing
    ``K = D^½((1 − s)I + s·11ᵀ)D^½`` shows the eigenvalues are positive for ``0 ≤ s < 1``.

    Args:
        costs: Positive per-channel costs c, shape (d,).
        substitution: Substitution strength s in [0, 1).

    Returns:
        The symmetric positive definite cost matrix K, shape (d, d).

    Raises:
        ValueError: If ``costs`` is not a 1-d array of positive finite numbers or ``s`` is
            outside [0, 1).
    """
    c = np.asarray(costs, dtype=float)
    if c.ndim != 1:
        raise ValueError(f"costs must be 1-d, got shape {c.shape}")
    if not np.all(np.isfinite(c) & (c > 0.0)):
        raise ValueError("costs must be positive and finite")
    if not 0.0 <= substitution < 1.0:
        raise ValueError(f"substitution must lie in [0, 1), got {substitution}")
    root = np.sqrt(c)
    k = substitution * np.outer(root, root)
    np.fill_diagonal(k, c)
    return k


def world_from_scenario(scenario: Scenario) -> World:
    """Build the initial world (epoch 0) from the scenario's channels.

    Args:
        scenario: A validated scenario.

    Returns:
        The epoch-0 World.
    """
    channels: list[ChannelConfig] = scenario.channels
    costs = np.array([c.cost for c in channels], dtype=float)
    substitution = scenario.agents.effort_substitution
    return World(
        epoch=0,
        names=tuple(c.name for c in channels),
        value=np.array([c.value for c in channels], dtype=float),
        metric=np.array([c.metric for c in channels], dtype=float),
        costs=costs,
        cost_matrix=substitution_cost_matrix(costs, substitution),
        noise_dist=np.array([NOISE_CODES[c.noise.dist] for c in channels]),
        noise_scale=np.array([c.noise.scale for c in channels], dtype=float),
        noise_df=np.array([c.noise.df for c in channels], dtype=float),
        externality=np.array([c.externality for c in channels], dtype=float),
        peer=np.array([c.peer for c in channels], dtype=float),
        level=np.array([c.level for c in channels], dtype=np.int64),
        substitution=substitution,
    )
