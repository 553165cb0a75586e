"""The mesa-optimizer as a Mesa agent: a thin view onto one row of the population arrays.

A :class:`MesaOptimizer` has no state of its own beyond its row index, so ``model.agents``,
``AgentSet`` queries (``select``, ``agg``, ``groupby``) and Mesa's visualization keep working while
every step runs as vectorized kernels over :class:`agents.population.Population`.

What each kind of mesa-optimizer perceives, carries and can lose is declared by its class in
:mod:`agents.kinds`.
"""

from __future__ import annotations

import mesa
import numpy as np

from mesaopt.agents.kinds import kind_names


class MesaOptimizer(mesa.Agent):
    """One deployed mesa-optimizer, viewed through its row of the population arrays.

    Attributes:
        index: The agent's row in the population and its network node id.
    """

    def __init__(self, model: mesa.Model, index: int) -> None:
        super().__init__(model)
        self.index = index

    @property
    def node(self) -> int:
        """Network node id (agent i sits on node i)."""
        return self.index

    @property
    def principal(self):
        """The agent's principal (a :class:`agents.principal.Principal`)."""
        return self.model.principals[int(self.model.population.principal[self.index])]

    @property
    def kind(self) -> str:
        """The name of the agent's mesa-optimizer kind (``direct``, ``control``, ...)."""
        return str(kind_names()[self.model.population.kind[self.index]])

    @property
    def capacity(self) -> int:
        """Capacity C_i."""
        return int(self.model.population.capacity[self.index])

    @property
    def objective(self) -> np.ndarray:
        """The agent's objective θ_i (a copy)."""
        return self.model.population.theta[self.index].copy()

    @property
    def action(self) -> np.ndarray:
        """The agent's current effort a_i (a copy)."""
        return self.model.population.action[self.index].copy()

    @property
    def category(self) -> str:
        """Primary category (super, trans, sub or aligned) as of the last step."""
        return self.model.category_of(self.index)

    @property
    def neighbors(self) -> list[MesaOptimizer]:
        """Views of the agent's network neighbours."""
        adjacency = self.model.network.adjacency
        row = adjacency.indices[adjacency.indptr[self.index] : adjacency.indptr[self.index + 1]]
        return [self.model.optimizer(int(j)) for j in row]

    def __getattr__(self, name: str):
        # Metrics of the last step (proxy, value, utility, principal_loss, ...) by name, so that
        # AgentSet.get("value") and Mesa reporters work on views.
        last = self.__dict__.get("model") and self.model.last_agent_metrics
        if last and name in last:
            return float(last[name][self.index])
        raise AttributeError(name)
