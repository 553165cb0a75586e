"""Scenario schema: the pydantic model of a scenario file, its defaults and cross-field checks.

A scenario has the sections documented in docs/scenarios.md (``run``, ``network``, ``channels``,
``principals``, ``agents``, ``regimes``, plus ``metrics`` and the optional ``sweep``); each is a
class here, and
:class:`Scenario` is the whole file. Validation refuses unknown keys, wrong types, NaN or infinite
numbers, negative costs, references to channels that do not exist and contracts with infinite risk
premia; the checks that span sections raise :class:`~model.errors.ScenarioError` naming the key.

This module is the schema alone: reading files, applying ``--set`` overrides and wording
pydantic's errors as one line naming key and file is :mod:`model.scenario_files`
(:func:`~model.scenario_files.load_scenario`). The topologies come from :mod:`model.network`, the
sweep range strings from :mod:`model.ranges`. The embedded default scenario lives in
``model/default.toml`` (``scenarios/baseline.toml`` is the same model, documented key by key).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mesaopt.model.errors import ScenarioError, clean_message
from mesaopt.model.network import TOPOLOGIES
from mesaopt.model.ranges import expand_values

NonNegFloat = Annotated[float, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]
PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]

CHANNEL_FIELDS = ("value", "metric", "cost", "noise", "externality", "peer", "level")


class _Section(BaseModel):
    """Base of every section: unknown keys are errors, NaN/inf are errors, values re-validated."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)


class RunConfig(_Section):
    """``[run]``: length, seed and snapshot cadence of one run."""

    steps: NonNegInt = 200
    seed: NonNegInt = 42
    agent_every: NonNegInt = Field(10, description="agent snapshot every k steps; 0 = never")
    agent_snapshots: Literal["auto", "on", "off"] = Field(
        "auto", description="auto = on up to 10,000 agents, off above"
    )


class NetworkConfig(_Section):
    """``[network]``: topology and size of the agents' network."""

    topology: Literal[TOPOLOGIES] = "watts_strogatz"  # type: ignore[valid-type]
    n_agents: PosInt = 1000
    k: NonNegInt = Field(8, description="mean degree (WS ring neighbours, ER, ring)")
    p: Probability = Field(0.1, description="Watts-Strogatz rewiring probability")
    m: PosInt | None = Field(None, description="Barabasi-Albert edges per new node (k // 2)")
    width: PosInt | None = None
    height: PosInt | None = None
    torus: bool = False
    neighborhood: Literal["von_neumann", "moore"] = "von_neumann"
    blocks: list[PosInt] | None = Field(None, description="SBM block sizes (default: principals)")
    p_in: Probability = 0.01
    p_out: Probability = 0.001
    path: str | None = Field(None, description="edgelist CSV of node pairs")
    normalize: bool = False

    @model_validator(mode="after")
    def _edgelist_needs_path(self) -> NetworkConfig:
        if self.topology == "edgelist" and not self.path:
            raise ValueError("path: topology 'edgelist' needs a path")
        return self


class NoiseConfig(_Section):
    """Distribution of realized output noise on one channel."""

    dist: Literal["normal", "laplace", "student_t"] = "normal"
    scale: NonNegFloat = 1.0
    df: Annotated[float, Field(gt=0)] = 3.0


class ChannelConfig(_Section):
    """``[[channels]]``: one effort channel (docs/model.md, "Objects")."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    value: float = 0.0
    metric: float = 0.0
    cost: Annotated[float, Field(gt=0)] = 1.0
    noise: NoiseConfig = NoiseConfig()
    externality: float = 0.0
    peer: NonNegFloat = 0.0
    level: NonNegInt = 0


class ContractConfig(_Section):
    """Linear contract w = alpha + beta * M; ``beta = "optimal"`` designs it (LEN)."""

    alpha: float = 0.0
    beta: float | Literal["optimal"] = "optimal"


class SelectionConfig(_Section):
    """Best-of-n base optimization of a principal's agents."""

    n: PosInt = 16
    every: NonNegInt = Field(10, description="retrain every k steps; 0 = never after step 0")
    fraction: Probability = 0.1
    eval_samples: PosInt = 4
    prior_scale: NonNegFloat = 1.0
    imprint: NonNegFloat = Field(1.0, description="candidates are centred on imprint * signal")


class AuditConfig(_Section):
    """Random audits of deployed agents."""

    rate: Probability = 0.0
    penalty: NonNegFloat = 1.0
    tolerance: NonNegFloat = Field(0.05, description="effort on gaming channels that counts")
    replace: bool = True


class FederatedConfig(_Section):
    """Post-hoc (federated) updates of the principal's value belief from agents' reports."""

    every: NonNegInt = Field(0, description="0 = never")
    report_noise: NonNegFloat = 0.5
    misreport: Probability = 0.0


class PrincipalConfig(_Section):
    """``[[principals]]``: one base optimizer."""

    # Names become file names (report figures) and column values: letters, digits, "_", "-" and
    # "." only, not starting with "." or "-", so that no name can point outside a folder.
    name: Annotated[
        str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    ]
    share: Annotated[float, Field(gt=0)] = 1.0
    capacity: NonNegInt = 1
    train_on: Literal["metric", "value"] = "metric"
    values: dict[str, float] = Field(default_factory=dict)
    contract: ContractConfig = ContractConfig()
    selection: SelectionConfig = SelectionConfig()
    audit: AuditConfig = AuditConfig()
    federated: FederatedConfig = FederatedConfig()


class CapacityConfig(_Section):
    """A discrete distribution of agent capacity."""

    values: Annotated[list[NonNegInt], Field(min_length=1)]
    weights: list[NonNegFloat] | None = None

    @model_validator(mode="after")
    def _weights_match(self) -> CapacityConfig:
        if self.weights is not None:
            if len(self.weights) != len(self.values):
                raise ValueError("weights: needs one weight per value")
            if sum(self.weights) <= 0:
                raise ValueError("weights: must not all be zero")
        return self


class GoalsConfig(_Section):
    """Agents' intrinsic goals: shared mean per channel, private per-agent deviations."""

    mean: dict[str, float] = Field(default_factory=dict)
    scale: NonNegFloat = 0.0


class AgentsConfig(_Section):
    """``[agents]``: the mesa-optimizers' make-up."""

    capacity: NonNegInt | CapacityConfig = 1
    optimizer: Annotated[
        str,
        Field(
            pattern=r"^[a-z][a-z0-9_]*$",
            description=(
                "a registered mesa-optimizer kind (agents/kinds.py: direct, control, or one "
                "you register) or mixed (direct and control, control_share of them control)"
            ),
        ),
    ] = "direct"
    control_share: Probability = Field(0.5, description="share of control agents when mixed")
    power: Literal["exact"] | PosInt = "exact"
    model_noise: NonNegFloat = Field(0.5, description="scoring noise of best-of-k planning")
    gain: Annotated[float, Field(gt=0, le=1)] = 0.2
    goals: GoalsConfig = GoalsConfig()
    risk_aversion: NonNegFloat = 1.0
    effort_substitution: Annotated[float, Field(ge=0, lt=1)] = 0.0


class RegimeConfig(_Section):
    """``[[regimes]]``: at step ``at`` set fields of one channel."""

    at: PosInt
    channel: str
    set: dict[str, Any]

    @field_validator("set")
    @classmethod
    def _known_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("needs at least one field")
        for key in value:
            if key not in CHANNEL_FIELDS:
                raise ValueError(
                    f"unknown channel field {key!r} (one of {', '.join(CHANNEL_FIELDS)})"
                )
        return value


class MetricsConfig(_Section):
    """``[metrics]``: thresholds of the measures (docs/model.md, "Measures")."""

    trans_cosine: Annotated[float, Field(ge=-1, le=1)] = 0.9
    top_quantile: Annotated[float, Field(gt=0, lt=1)] = 0.9


class SweepConfig(_Section):
    """``[sweep]``: a parameter grid and replicates for ``run.py sweep`` (ignored by single runs).

    ``grid`` maps dotted scenario keys to a list of values or a range string (``"1:1024:log2"``,
    ``"0:1:0.25"``; see :mod:`model.ranges` and docs/sweeps.md). Nested TOML tables are flattened,
    so ``[sweep.grid]`` may say ``principals.0.selection.n = "1:64:log2"``.
    """

    grid: dict[str, Any] = Field(default_factory=dict)
    replicates: PosInt = 1
    seed: NonNegInt | None = Field(None, description="replicate seeds spawn from it (run.seed)")

    @field_validator("grid", mode="before")
    @classmethod
    def _flatten_grid(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        flat: dict[str, Any] = {}

        def walk(prefix: str, node: dict[str, Any]) -> None:
            for key, item in node.items():
                dotted = f"{prefix}.{key}" if prefix else str(key)
                if isinstance(item, dict):
                    walk(dotted, item)
                else:
                    flat[dotted] = item

        walk("", value)
        return flat

    @model_validator(mode="after")
    def _values_expand(self) -> SweepConfig:
        for key, spec in self.grid.items():
            try:
                expand_values(spec)
            except ValueError as err:
                raise ScenarioError(f"sweep.grid.{key}", str(err)) from None
        return self


class Scenario(_Section):
    """A whole scenario file (``sweep`` is read by ``run.py sweep`` only)."""

    run: RunConfig = RunConfig()
    network: NetworkConfig = NetworkConfig()
    channels: Annotated[list[ChannelConfig], Field(min_length=1)]
    principals: Annotated[list[PrincipalConfig], Field(min_length=1)]
    agents: AgentsConfig = AgentsConfig()
    regimes: list[RegimeConfig] = Field(default_factory=list)
    metrics: MetricsConfig = MetricsConfig()
    sweep: SweepConfig | None = None

    @model_validator(mode="after")
    def _cross_references(self) -> Scenario:
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise ScenarioError("channels", "channel names must be unique")
        if len(names) > 10:
            raise ScenarioError("channels", "at most 10 channels are supported")
        pnames = [p.name for p in self.principals]
        if len(set(pnames)) != len(pnames) or "all" in pnames:
            raise ScenarioError("principals", "principal names must be unique and not 'all'")
        known = set(names)
        for j, principal in enumerate(self.principals):
            for channel in principal.values:
                if channel not in known:
                    raise ScenarioError(f"principals.{j}.values.{channel}", "no such channel")
        for channel in self.agents.goals.mean:
            if channel not in known:
                raise ScenarioError(f"agents.goals.mean.{channel}", "no such channel")
        for i, regime in enumerate(self.regimes):
            if regime.channel not in known:
                raise ScenarioError(f"regimes.{i}.channel", f"no such channel {regime.channel!r}")
            _validate_regime_set(regime, f"regimes.{i}.set")
        _check_finite_risk(self)
        if self.network.topology == "sbm" and self.network.blocks is not None:
            if sum(self.network.blocks) != self.network.n_agents:
                raise ScenarioError("network.blocks", "block sizes must sum to network.n_agents")
        if len(self.principals) > self.network.n_agents:
            raise ScenarioError("principals", "more principals than agents")
        return self

    def channel_index(self, name: str) -> int:
        """Return the index of the channel called ``name``."""
        return [c.name for c in self.channels].index(name)


def _check_finite_risk(scenario: Scenario) -> None:
    """Refuse contracts under which measured noise of infinite variance meets β ≠ 0.

    Student-t noise with df ≤ 2 has no variance; a risk-averse agent paid β ≠ 0 on a metric that
    includes it would bear an infinite risk premium. A fixed β ≠ 0 is refused; so is
    ``beta = "optimal"`` when such a channel lies beyond the principal's capacity (it designs as if
    the channel did not exist, so it would choose β ≠ 0); one it perceives makes it design β = 0.
    A channel counts if it is heavy-tailed and measured at any time (initially or by a regime).
    """
    if scenario.agents.risk_aversion == 0:
        return
    heavy: dict[int, str] = {}
    for k, channel in enumerate(scenario.channels):
        noises = [channel.noise.model_dump()]
        measured = channel.metric != 0
        for regime in scenario.regimes:
            if regime.channel == channel.name:
                if isinstance(regime.set.get("noise"), dict):
                    noises.append(noises[-1] | regime.set["noise"])
                if regime.set.get("metric", 0) != 0:
                    measured = True
        if measured and any(n["dist"] == "student_t" and n["df"] <= 2 for n in noises):
            heavy[k] = channel.name
    for j, principal in enumerate(scenario.principals):
        beta = principal.contract.beta
        unseen = [
            name for k, name in heavy.items() if scenario.channels[k].level > principal.capacity
        ]
        if beta != "optimal" and beta != 0 and heavy:
            problem = f"a fixed beta != 0 with channel {next(iter(heavy.values()))!r}"
        elif beta == "optimal" and unseen:
            problem = f'"optimal" designed without seeing channel {unseen[0]!r} (beyond capacity)'
        else:
            continue
        raise ScenarioError(
            f"principals.{j}.contract.beta",
            f"{problem} measured with Student-t noise of df <= 2 gives risk-averse agents an "
            "infinite risk premium; use beta = 0 or df > 2",
        )


def _validate_regime_set(regime: RegimeConfig, key: str) -> None:
    """Check the new channel fields of a regime change against the channel schema."""
    for field, value in regime.set.items():
        try:
            if field == "noise":
                NoiseConfig.model_validate(value)
            else:
                ChannelConfig.model_validate({"name": "x", field: value})
        except ValidationError as err:
            first = err.errors()[0]
            raise ScenarioError(f"{key}.{field}", clean_message(first["msg"])) from None
