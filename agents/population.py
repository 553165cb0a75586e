"""The population of mesa-optimizers as arrays: one row per agent, one column per channel.

All per-agent state lives here so that a step is a handful of vectorized kernels over rows;
:class:`agents.optimizer.MesaOptimizer` objects are thin views onto one row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Population:
    """Per-agent state of every mesa-optimizer (agent i sits on network node i).

    Attributes:
        principal: Index of each agent's principal, (N,) int.
        capacity: Capacity C_i, (N,) int.
        kind: Code of each agent's mesa-optimizer kind (:mod:`agents.kinds`), (N,) int8.
        theta: Objective θ_i per channel (selected part + private deviation), (N, d).
        selected: The part of θ_i that selection put there (what the principal knows), (N, d).
        epoch: World epoch of the agent's world model (the world it was deployed into), (N,).
        deployed_at: Step at which the agent was last (re)trained, (N,).
        action: Current effort a_i, (N, d).
        last_noise: Output noise realized last step (what a controller felt), (N, d).
        last_proxy: Proxy M_i realized last step (selection retrains the worst), (N,).
        power: Planning power of each agent: 0 = exact, k ≥ 1 = best of k plans, (N,) int.
        gain: Gain of each control agent's feedback law, tuned by selection (0 elsewhere), (N,).
        deceptive: Whether the agent told its sandbox from deployment (known to the simulator
            only; the principal never reads it), (N,) bool.
        sandbox_action: The effort the agent showed in its sandbox (what its principal saw when
            it selected it), (N, d).
    """

    principal: np.ndarray
    capacity: np.ndarray
    kind: np.ndarray
    theta: np.ndarray
    selected: np.ndarray
    epoch: np.ndarray
    deployed_at: np.ndarray
    action: np.ndarray
    last_noise: np.ndarray
    last_proxy: np.ndarray
    power: np.ndarray
    gain: np.ndarray
    deceptive: np.ndarray
    sandbox_action: np.ndarray

    @classmethod
    def empty(cls, principal: np.ndarray, capacity: np.ndarray, kind: np.ndarray, d: int):
        """Allocate a population whose objectives and actions are zero until first selection.

        Args:
            principal: Principal index per agent, (N,).
            capacity: Capacity per agent, (N,).
            kind: Kind code per agent, (N,).
            d: Number of channels.

        Returns:
            The new population.
        """
        n = len(principal)
        return cls(
            principal=principal.astype(np.int64),
            capacity=capacity.astype(np.int64),
            kind=kind.astype(np.int8),
            theta=np.zeros((n, d)),
            selected=np.zeros((n, d)),
            epoch=np.zeros(n, dtype=np.int64),
            deployed_at=np.zeros(n, dtype=np.int64),
            action=np.zeros((n, d)),
            last_noise=np.zeros((d, n)).T,  # the layout of each step's noise: one compile
            last_proxy=np.zeros(n),
            power=np.zeros(n, dtype=np.int64),
            gain=np.zeros(n),
            deceptive=np.zeros(n, dtype=bool),
            sandbox_action=np.zeros((n, d)),
        )

    @property
    def size(self) -> int:
        """Number of agents N."""
        return len(self.principal)

    def nbytes(self) -> int:
        """Bytes held by the population arrays."""
        return sum(getattr(self, f).nbytes for f in self.__dataclass_fields__)
