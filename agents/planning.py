"""What a kind may use to re-plan its rows in step 3: the step's planning inputs.

One bundle (:class:`Planning`) that the model hands every optimizer kind
(:meth:`agents.kinds.OptimizerKind.replan`) and the loss decomposition
(:mod:`model.decomposition`, :mod:`model.decomposition_jit`): the current world, every world
epoch, the population and this step's rewards and efforts. It lives apart from the kinds so
that the NumPy references can read it without importing the compiled kernels the kinds call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mesaopt.model.channels import World

__all__ = ["Planning"]


@dataclass(frozen=True)
class Planning:
    """What a kind may use to re-plan its rows in step 3 (arrays are the whole population's).

    Attributes:
        world: The current world.
        worlds: Every world epoch so far (an agent's world model is ``worlds[epoch[i]]``).
        population: The population (its ``action`` is still the previous step's effort).
        beta_of: Each agent's contract slope, (N,).
        neighbour_effort: G a of the previous step, (N, d).
        reward: Marginal reward θ + βm + δ⊙(G a) in the current world, (N, d).
        action: The compiled kernel's efforts, (N, d): re-plan ``action[rows]`` in place.
        optimum: Each agent's best response a* to its reward on every channel of the current
            world, (N, d): the compiled kernel's, read by the loss decomposition (None: the
            decomposition plans it itself).
        agents: The scenario's ``[agents]`` section (power, model noise, gain).
        rng: The run's generator (every draw must come from it).
    """

    world: World
    worlds: list[World]
    population: Any
    beta_of: np.ndarray
    neighbour_effort: np.ndarray
    reward: np.ndarray
    action: np.ndarray
    agents: Any
    rng: np.random.Generator
    optimum: np.ndarray | None = None

    def reward_in(self, world: World, rows: np.ndarray) -> np.ndarray:
        """Marginal rewards θ + βm + δ⊙(G a) of ``rows`` as ``world`` says they are."""
        pop = self.population
        return (
            pop.theta[rows]
            + self.beta_of[rows, None] * world.metric
            + world.peer * self.neighbour_effort[rows]
        )
