"""The principal (base optimizer) as a Mesa agent: its beliefs, its contract and its mechanisms.

A :class:`Principal` holds what the principal knows — its capacity, its belief v̂ of the channel
values, its model of the world (the channel parameters as of its last federated update), its
contract — and decides with the pure kernels of :mod:`agents.response`, :mod:`agents.contract`
and :mod:`agents.sandbox`. The population arrays it acts on belong to the model; the
principal never reads the simulator's ground truth except through the channels it is allowed to
observe (audits, reports, measured proxies). When and how each mechanism acts on the model —
selection, audits, federated updates — and what it perceives and changes is in its module:
:mod:`model.selection`, :mod:`model.audit`, :mod:`model.federated`.
"""

from __future__ import annotations

import mesa
import numpy as np

from mesaopt.agents.contract import ContractDesign, design_len_contract
from mesaopt.model.channels import World
from mesaopt.model.noise import metric_noise_variance
from mesaopt.model.scenario import PrincipalConfig


class Principal(mesa.Agent):
    """A base optimizer that builds, pays, audits and updates its mesa-optimizers.

    Attributes:
        index: Position of the principal in the scenario (0-based).
        name: Its name in the scenario and in the tables.
        config: Its scenario section.
        capacity: Which channel levels its own model contains.
        true_values: Its true values v_j per channel (known to the simulator only).
        value_belief: Its belief v̂_j (0 on channels it does not perceive).
        world_model: The channel parameters it designs with (refreshed by federated updates).
        alpha: Fixed pay of its linear contract (designed when ``alpha = "participation"``).
        beta: Slope of its linear contract (designed when ``beta = "optimal"``).
        contract_design: Its last design and what it expects of it (None before the first).
        mean_objective: Its belief ḡ of its agents' mean objective (what selection put there).
        action_low: Smallest action per channel seen in its selections so far.
        action_high: Largest action per channel seen in its selections so far.
    """

    def __init__(
        self,
        model: mesa.Model,
        index: int,
        config: PrincipalConfig,
        true_values: np.ndarray,
        world: World,
        intrinsic_mean: np.ndarray,
    ) -> None:
        super().__init__(model)
        self.index = index
        self.name = config.name
        self.config = config
        self.capacity = config.capacity
        self.true_values = true_values.astype(float).copy()
        self.world_model = world
        self.value_belief = np.where(self.perceived, self.true_values, 0.0)
        # Designed terms start at 0 until the first design (model.selection.initial_selection
        # designs every contract before anything is selected or paid).
        contract = config.contract
        self.alpha = 0.0 if contract.alpha == "participation" else float(contract.alpha)
        self.beta = 0.0 if contract.beta == "optimal" else float(contract.beta)
        self.contract_design: ContractDesign | None = None
        self.intrinsic_mean = intrinsic_mean
        self.mean_objective = self.prior_mean()
        self.action_low = np.full(world.d, np.inf)
        self.action_high = np.full(world.d, -np.inf)

    @property
    def perceived(self) -> np.ndarray:
        """Channels within the principal's capacity under its world model, (d,) bool."""
        return self.world_model.perceives(self.capacity)

    @property
    def signal(self) -> np.ndarray:
        """The training signal s_j: the metric m, or the value belief v̂.

        It also scores sandbox outcomes: training on the metric scores the proxy M = mᵀy, measured
        on every channel, perceived or not; training on value scores v̂ᵀy, zero off perceived ones.
        """
        if self.config.train_on == "metric":
            return self.world_model.metric.copy()
        return self.value_belief.copy()

    def prior_mean(self) -> np.ndarray:
        """Centre of candidate objectives: imprint · signal + the agents' shared intrinsic goals."""
        return self.config.selection.imprint * self.signal + self.intrinsic_mean

    def gaming_channels(self) -> np.ndarray:
        """Channels it calls gaming: perceived, rewarded by the metric, not valued (m > 0 ≥ v̂)."""
        metric = self.world_model.metric
        return self.perceived & (metric > 0) & (self.value_belief <= 0)

    def design_contract(self, risk_aversion: float) -> ContractDesign:
        """Design its linear contract under its own model (LEN with participation).

        It maximises its expected profit E[V − w] subject to its agents' participation (and
        limited liability, if set), over the channels it perceives, with its belief v̂, its world
        model's m, K and σ_M² = Var(mᵀε) on those channels, and its belief ḡ of its agents' mean
        objective (:func:`agents.contract.design_len_contract`, which defines every combination of
        a fixed or designed α and β). A fixed term stays as configured.

        Args:
            risk_aversion: The agents' risk aversion ρ (known to the principal).

        Returns:
            The design now in force (``alpha`` and ``beta`` are set from it).
        """
        contract = self.config.contract
        world = self.world_model
        perceived = self.perceived
        sigma2 = metric_noise_variance(world.metric, world.noise_var, perceived)
        design = design_len_contract(
            self.value_belief,
            self.mean_objective,
            world.metric,
            world.cost_matrix,
            risk_aversion,
            sigma2,
            perceived,
            reservation=contract.reservation,
            limited_liability=contract.limited_liability,
            alpha=None if contract.alpha == "participation" else float(contract.alpha),
            beta=None if contract.beta == "optimal" else float(contract.beta),
        )
        self.alpha, self.beta = design.alpha, design.beta
        self.contract_design = design
        return design

    def record_selection_range(self, low: np.ndarray, high: np.ndarray) -> None:
        """Widen the range of actions it has seen in selection (for the extremal measure)."""
        self.action_low = np.minimum(self.action_low, low)
        self.action_high = np.maximum(self.action_high, high)

    def refit_values(self, outputs: np.ndarray, reports: np.ndarray, world: World) -> np.ndarray:
        """Federated update: refit v̂ from agents' reports and refresh the world model.

        Each perceived channel's value is the least-squares slope (through the origin) of
        reported value on realized output; channels outside its capacity stay unknown (0).

        Args:
            outputs: Realized outputs of the reporting agents, (R, d).
            reports: Their reported value per channel, (R, d).
            world: The current world, which becomes its world model.

        Returns:
            The new belief v̂.
        """
        self.world_model = world
        perceived = self.perceived
        denominator = np.einsum("ij,ij->j", outputs, outputs)
        slope = np.divide(
            np.einsum("ij,ij->j", outputs, reports),
            denominator,
            out=self.value_belief.copy(),
            where=denominator > 0,
        )
        self.value_belief = np.where(perceived, slope, 0.0)
        return self.value_belief
