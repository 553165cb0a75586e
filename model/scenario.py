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

import math
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mesaopt.model.errors import ScenarioError, clean_message
from mesaopt.model.memory import available_bytes, memory_limit_name
from mesaopt.model.network import TOPOLOGIES, check_network_parameters
from mesaopt.model.ranges import expand_values
from mesaopt.model.user_files import expanded_path

# ------------------------------------------------------------------------------------ bounds
# Every number a scenario gives is bounded, so that no accepted scenario can overflow float64
# (about 1.8e308) or int64, or ask for more memory than the machine has (docs/scenarios.md,
# "Bounds"). The model's deepest products are of a handful of such numbers: an effort is a reward
# (beta * metric + values + goals, each at most MAX_COEFFICIENT^2 * channels) over a cost of at
# least MIN_COST, amplified by peer effects (finite under the stability condition); welfare and
# risk premia square efforts and noise scales. With coefficients within 1e6 and costs above 1e-6
# an effort stays below ~1e19 times the peer amplification and its square times a cost or an
# externality below ~1e50, summed over agents below ~1e60: far from overflow, yet every value a
# study has used (|coefficients| <= 10, costs >= 0.5) is a million times inside the bounds.

#: Largest absolute value of a coefficient (value, metric, externality, contract terms, goals,
#: noise scales, penalties): see above; 1e6 keeps every product of the model finite.
MAX_COEFFICIENT = 1e6
#: Smallest channel cost: effort = reward / cost, so a cost of 5e-324 makes it infinite.
MIN_COST = 1e-6
#: Smallest Student-t df. The largest of N draws grows like N^(1/df) and the chi-square draw
#: under it underflows to 0 (an infinite draw) with probability ~x^(df/2); at df >= 0.5 even
#: 1e15 draws stay below ~1e60 (squared, ~1e120) and an underflow has probability < 1e-70.
MIN_DF = 0.5
#: Largest integer anywhere in a scenario: they are stored in int64 columns (seeds, steps, ids).
MAX_INT = 2**63 - 1
#: Largest ``run.steps``. The steps table gets (principals + 1) rows of ~0.5 KB per step on disk;
#: 1e7 steps are >= 10 GB of tables and, at the fastest measured step (~0.1 ms, 1,000 agents),
#: hours of computing: a larger number is a typo, not an experiment (``--steps`` has this bound).
MAX_STEPS = 10_000_000
#: Largest ``network.n_agents``. The memory check refuses runs far smaller (about 1e9 agents fill
#: a terabyte); this bound keeps the agent counts, split by share in float64, exact (< 2**53)
#: so that the memory estimate is computed on the number asked for.
MAX_AGENTS = 10**12

Coefficient = Annotated[float, Field(ge=-MAX_COEFFICIENT, le=MAX_COEFFICIENT)]
NonNegFloat = Annotated[float, Field(ge=0, le=MAX_COEFFICIENT)]
Probability = Annotated[float, Field(ge=0, le=1)]
PosInt = Annotated[int, Field(ge=1, le=MAX_INT)]
NonNegInt = Annotated[int, Field(ge=0, le=MAX_INT)]

CHANNEL_FIELDS = ("value", "metric", "cost", "noise", "externality", "peer", "level")


#: Capacities and channel levels: small counts compared with each other (int64 arrays).
Capacity = Annotated[int, Field(ge=0, le=1_000)]


def _wanted(annotation: Any) -> str:
    """What a value of ``annotation`` is, in the words of an error message."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _wanted(get_args(annotation)[0])
    if origin is Literal:
        words = [repr(word) for word in get_args(annotation)]
        return " or ".join(words) if len(words) <= 2 else f"one of {', '.join(words)}"
    if origin in (Union, types.UnionType):
        arms = [_wanted(arm) for arm in get_args(annotation) if arm is not type(None)]
        return " or ".join(dict.fromkeys(arms))
    if origin is list:
        return "a list"
    if origin is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return "a table"
    words = {int: "a whole number", float: "a number", bool: "a boolean (true or false)"}
    return words.get(annotation, "a text" if annotation is str else "a value")


def _coerced(value: Any, annotation: Any) -> str | None:
    """Why ``value`` would pass as ``annotation`` only by pydantic's lax coercion, or None.

    Lax mode turns ``true`` into the integer 1, the text ``"10"`` into 10 and ``1`` or ``"yes"``
    into true: a typo in a scenario would run as something else. A number may still be given as
    ``2e9`` for an integer (it is exact) or ``1`` for a float.
    """
    origin = get_origin(annotation)
    if origin is Annotated:
        return _coerced(value, get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        arms = get_args(annotation)
        if any(_coerced(value, arm) is None for arm in arms):
            return None
        given = [arm for arm in arms if arm is not type(None)]
        if len(given) == 1:  # an optional key: the reason of its one type (a list's item)
            return _coerced(value, given[0])
        return f"expected {_wanted(annotation)}"
    if origin is list and isinstance(value, list):
        (item,) = get_args(annotation) or (Any,)
        return next((r for v in value if (r := _coerced(v, item))), None)
    if origin is dict and isinstance(value, dict):
        item = get_args(annotation)[1] if get_args(annotation) else Any
        return next((r for v in value.values() if (r := _coerced(v, item))), None)
    if origin is Literal:
        exact = any(type(value) is type(a) and value == a for a in get_args(annotation))
        return None if exact else f"expected {_wanted(annotation)}"
    if annotation is bool:
        fits = isinstance(value, bool | np.bool_)
    elif annotation in (int, float):
        fits = not isinstance(value, bool | np.bool_ | str)
    elif annotation is str:
        fits = isinstance(value, str)
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        fits = isinstance(value, dict | BaseModel)
    elif annotation is type(None):
        fits = value is None  # an optional key's None arm fits None only
    else:
        fits = True  # lists and tables given as something else: pydantic says so
    return None if fits else f"expected {_wanted(annotation)}"


class _Section(BaseModel):
    """Base of every section: unknown keys are errors, NaN/inf are errors, values re-validated.

    Numbers, booleans and texts are taken as they are written (see :func:`_coerced`): pydantic's
    lax mode would run ``steps = true`` as one step.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _as_written(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        reason = None if field is None else _coerced(value, field.annotation)
        if reason:
            raise ValueError(reason)
        return value


class RunConfig(_Section):
    """``[run]``: length, seed and snapshot cadence of one run."""

    steps: Annotated[int, Field(ge=0, le=MAX_STEPS)] = 200
    seed: NonNegInt = 42
    agent_every: NonNegInt = Field(10, description="agent snapshot every k steps; 0 = never")
    agent_snapshots: Literal["auto", "on", "off"] = Field(
        "auto", description="auto = on up to 10,000 agents, off above"
    )


class NetworkConfig(_Section):
    """``[network]``: topology and size of the agents' network."""

    topology: Literal[TOPOLOGIES] = "watts_strogatz"  # type: ignore[valid-type]
    n_agents: Annotated[int, Field(ge=1, le=MAX_AGENTS)] = 1000
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

    @field_validator("path")
    @classmethod
    def _a_file_could_have_it(cls, path: str | None) -> str | None:
        if path is not None:
            expanded_path(path)  # a NUL byte, an unknown ~user: refused before any file access
        return path

    @model_validator(mode="after")
    def _edgelist_needs_path(self) -> NetworkConfig:
        if self.topology == "edgelist" and not self.path:
            raise ValueError("path: topology 'edgelist' needs a path")
        return self


class NoiseConfig(_Section):
    """Distribution of realized output noise on one channel."""

    dist: Literal["normal", "laplace", "student_t"] = "normal"
    scale: NonNegFloat = 1.0
    df: Annotated[float, Field(ge=MIN_DF, le=MAX_COEFFICIENT)] = 3.0


class ChannelConfig(_Section):
    """``[[channels]]``: one effort channel (docs/model.md, "Objects")."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    value: Coefficient = 0.0
    metric: Coefficient = 0.0
    cost: Annotated[float, Field(ge=MIN_COST, le=MAX_COEFFICIENT)] = 1.0
    noise: NoiseConfig = NoiseConfig()
    externality: Coefficient = 0.0
    peer: NonNegFloat = 0.0
    level: Capacity = 0


class ChoiceConfig(_Section):
    """A discrete distribution of one candidate attribute: ``{values = [...], weights = [...]}``.

    Weights default to equal; they need not sum to one (they are normalised), but must be finite
    and not all zero.
    """

    values: Annotated[list[Any], Field(min_length=1, max_length=64)]
    weights: list[Annotated[float, Field(ge=0)]] | None = None  # normalised: any size

    @model_validator(mode="after")
    def _weights_match(self) -> ChoiceConfig:
        if self.weights is not None:
            if len(self.weights) != len(self.values):
                raise ValueError("weights: needs one weight per value")
            total = sum(w / 2.0 for w in self.weights)  # halves: no overflow at 1e308
            if not total > 0 or total == float("inf"):
                raise ValueError("weights: must be finite and not all zero")
        return self

    def probabilities(self) -> list[float]:
        """The weights normalised to sum to one (equal when none are given)."""
        if self.weights is None:
            return [1.0 / len(self.values)] * len(self.values)
        halves = [w / 2.0 for w in self.weights]
        total = sum(halves)
        return [h / total for h in halves]


def _choice_typed(item: Any) -> type:
    class Typed(ChoiceConfig):
        values: Annotated[list[item], Field(min_length=1, max_length=64)]  # type: ignore[valid-type]

    Typed.__name__ = Typed.__qualname__ = "ChoiceConfig"
    return Typed


OptimizerName = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z0-9_]*$",
        max_length=64,
        description=(
            "a registered mesa-optimizer kind (agents/kinds.py: direct, control, or one you "
            "register) or mixed (direct and control, control_share of them control)"
        ),
    ),
]
Power = Literal["exact"] | Annotated[int, Field(ge=1, le=4096)]
Gain = Annotated[float, Field(gt=0, le=100)]

#: The candidate attributes a pool may give as a distribution (``{values, weights}``).
CapacityChoice = _choice_typed(Capacity)
OptimizerChoice = _choice_typed(OptimizerName)
PowerChoice = _choice_typed(Power)
GainChoice = _choice_typed(Gain)


class GoalsConfig(_Section):
    """Agents' intrinsic goals: shared mean per channel, private per-agent deviations."""

    mean: dict[str, Coefficient] = Field(default_factory=dict)
    scale: NonNegFloat = 0.0


class DeceptionConfig(_Section):
    """``[agents.deception]``: candidates that tell their sandbox from deployment.

    A ``share`` of the candidates whose capacity is at least ``level`` are deceptive: in the
    sandbox they act as the training signal rewards (like every other candidate), once deployed
    they pursue their own goals without the part selection imprinted (docs/model.md).
    """

    level: Capacity = 0
    share: Probability = 0.0


class PoolConfig(_Section):
    """``[principals.selection.pool]``: a principal's own candidate pool (overrides ``[agents]``).

    Any key left out is taken from ``[agents]``. The world-level keys of ``[agents]``
    (``risk_aversion``, ``effort_substitution``) and ``model_noise`` are properties of every
    agent of the run, not of one principal's candidates, and cannot be overridden here.
    """

    capacity: Capacity | CapacityChoice | None = None  # type: ignore[valid-type]
    optimizer: OptimizerName | OptimizerChoice | None = None  # type: ignore[valid-type]
    control_share: Probability | None = None
    power: Power | PowerChoice | None = None  # type: ignore[valid-type]
    gain: Gain | GainChoice | None = None  # type: ignore[valid-type]
    goals: GoalsConfig | None = None
    deception: DeceptionConfig | None = None


class ContractConfig(_Section):
    """Linear contract w = alpha + beta * M, designed by its principal (LEN; docs/model.md).

    ``alpha = "participation"`` sets the fixed pay so that the certainty equivalent the principal
    expects its agents to get equals ``reservation``; ``beta = "optimal"`` maximises its expected
    profit; a number fixes either. ``limited_liability`` imposes alpha >= 0 and beta >= 0.
    """

    alpha: Coefficient | Literal["participation"] = Field(
        "participation",
        description='fixed pay; "participation" = the agents\' expected CE equals reservation',
    )
    beta: Coefficient | Literal["optimal"] = "optimal"
    reservation: Coefficient = Field(
        0.0, description="the agents' reservation certainty equivalent"
    )
    limited_liability: bool = Field(False, description="impose alpha >= 0 and beta >= 0")

    @model_validator(mode="after")
    def _liability(self) -> ContractConfig:
        if self.limited_liability:
            for key in ("alpha", "beta"):
                fixed = getattr(self, key)
                if not isinstance(fixed, str) and fixed < 0:
                    raise ValueError(f"{key}: a fixed {key} must be >= 0 with limited_liability")
        return self


class SelectionConfig(_Section):
    """Best-of-n base optimization of a principal's agents."""

    n: PosInt = 16
    every: NonNegInt = Field(10, description="retrain every k steps; 0 = never after step 0")
    fraction: Probability = 0.1
    eval_samples: PosInt = 4
    prior_scale: NonNegFloat = 1.0
    imprint: NonNegFloat = Field(1.0, description="candidates are centred on imprint * signal")
    sandbox: Literal["model", "world"] = Field(
        "model",
        description=(
            "model = the principal's own model of the world (its beliefs, its world epoch, only "
            "the channels within its capacity); world = the true current mechanics"
        ),
    )
    pool: PoolConfig = PoolConfig()


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
    screen: bool = Field(
        False,
        description=(
            "compare each agent's realized output with the effort it showed in the sandbox and "
            "retrain those that depart from it beyond noise"
        ),
    )
    screen_level: Annotated[float, Field(gt=0, lt=1)] = Field(
        0.01, description="false-alarm rate of the screen (a chi-square test at this level)"
    )


class PrincipalConfig(_Section):
    """``[[principals]]``: one base optimizer."""

    # Names become file names (report figures) and column values: letters, digits, "_", "-" and
    # "." only, not starting with "." or "-", so that no name can point outside a folder.
    name: Annotated[
        str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    ]
    share: Annotated[float, Field(gt=0, le=MAX_COEFFICIENT)] = 1.0
    capacity: Capacity = 1
    train_on: Literal["metric", "value"] = "metric"
    values: dict[str, Coefficient] = Field(default_factory=dict)
    contract: ContractConfig = ContractConfig()
    selection: SelectionConfig = SelectionConfig()
    audit: AuditConfig = AuditConfig()
    federated: FederatedConfig = FederatedConfig()


class AgentsConfig(_Section):
    """``[agents]``: the pool mesa-optimizers are selected from, and their shared make-up.

    ``capacity``, ``optimizer``, ``power`` and ``gain`` are candidate attributes: each is one
    value or a distribution ``{values, weights}`` that every candidate draws from in selection.
    """

    capacity: Capacity | CapacityChoice = 1  # type: ignore[valid-type]
    optimizer: OptimizerName | OptimizerChoice = "direct"  # type: ignore[valid-type]
    control_share: Probability = Field(0.5, description="share of control agents when mixed")
    power: Power | PowerChoice = "exact"  # type: ignore[valid-type]
    model_noise: NonNegFloat = Field(0.5, description="scoring noise of best-of-k planning")
    gain: Gain | GainChoice = Field(  # type: ignore[valid-type]
        0.5, description="control law's feedback gain (its stability limit is 2 / curvature)"
    )
    goals: GoalsConfig = GoalsConfig()
    risk_aversion: NonNegFloat = 1.0
    effort_substitution: Annotated[float, Field(ge=0, lt=1)] = 0.0
    deception: DeceptionConfig = DeceptionConfig()


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
    welfare_counts_agent_goals: bool = Field(
        False,
        description=(
            "count the agents' intrinsic goals θᵀa (agent_goal_payoff) in welfare; off by "
            "default: goals that selection put into an agent are not social value"
        ),
    )


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
                elif dotted in flat:  # "a.b" and a = { b = ... }: one would silently win
                    raise ValueError(f"the grid gives {dotted!r} twice")
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
        counts = agent_counts(self)
        for j, (principal, count) in enumerate(zip(self.principals, counts, strict=True)):
            if count == 0:
                total = sum(p.share for p in self.principals)
                raise ScenarioError(
                    f"principals.{j}.share",
                    f"principal {principal.name!r} would get 0 of the {self.network.n_agents} "
                    f"agents (share {principal.share:g} of {total:g}); raise its share",
                )
        check_network_parameters(self.network)  # a graph no run can build is named first
        _check_memory(self, counts)
        return self

    def channel_index(self, name: str) -> int:
        """Return the index of the channel called ``name``."""
        return [c.name for c in self.channels].index(name)


def agent_counts(scenario: Scenario) -> list[int]:
    """The number of agents each principal builds: ``n_agents`` split by share.

    Args:
        scenario: The scenario (its principals' shares and ``network.n_agents``).

    Returns:
        One count per principal, summing to ``n_agents``, by the largest-remainder method (ties
        to the earlier principal). The model builds its principals with exactly these counts.
    """
    return split_by_share([p.share for p in scenario.principals], scenario.network.n_agents)


def split_by_share(shares: list[float], total: int) -> list[int]:
    """Split ``total`` by ``shares`` with the largest-remainder method (ties to the earlier).

    Args:
        shares: Positive weights, not necessarily normalised.
        total: What is split.

    Returns:
        One count per share, summing to ``total``.
    """
    import numpy as np

    weights = np.asarray(shares, dtype=float) / sum(shares)
    exact = weights * total
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return [int(c) for c in counts]


# Memory of a run, from the measurements in BENCHMARKS.md ("Memory per agent") and the arrays
# the code holds at once. An estimate within a small factor is enough: it refuses what cannot
# fit (1e12 agents, 1e11 candidates), not what fits tightly.
#: Peak-RSS growth per agent: the largest measured (10,000 agents, 4 channels, k = 8), graph in.
AGENT_BYTES = 1_536
#: Per stored adjacency entry while the graph is built: the int64 pairs, their sort and the CSR
#: copy (8-byte weight + index) held at once, ~5 x 8 bytes.
ADJACENCY_ENTRY_BYTES = 40
#: Per candidate and channel in best-of-n selection (agents.sandbox.select_best_of_n): about ten
#: (candidates, channels) float64 arrays live at once, plus one per sandbox episode.
CANDIDATE_CHANNEL_BYTES = 10 * 8
#: Selection fills at most this many slots at once (agents.sandbox.select_best_of_n's chunk).
SELECTION_CHUNK = 8192
#: What the process holds besides the model: interpreter, NumPy, Numba and their compiled code
#: (~300 MB measured) and the recorder's row buffers (model.recording.FLUSH_BYTES, 512 MiB).
BASE_BYTES = 300 * 2**20 + 512 * 2**20


def adjacency_entries(network: NetworkConfig, counts: list[int]) -> float:
    """The expected number of stored entries (twice the edges) of the scenario's graph.

    Args:
        network: The ``[network]`` section.
        counts: Agents per principal (the default SBM blocks).

    Returns:
        The expected entry count (an edge list is bounded by its file instead: 0 here).
    """
    n = network.n_agents
    m = network.m if network.m is not None else max(1, network.k // 2)
    sizes = network.blocks or counts
    within = sum(float(b) * b for b in sizes)
    return {
        "grid": (8.0 if network.neighborhood == "moore" else 4.0) * n,
        "watts_strogatz": float(n) * network.k,
        "ring": float(n) * network.k,
        "erdos_renyi": float(n) * network.k,
        "barabasi_albert": 2.0 * n * m,
        "complete": float(n) * (n - 1),
        "star": 2.0 * n,
        "sbm": network.p_in * within + network.p_out * (float(n) * n - within),
        "edgelist": 0.0,
    }[network.topology]


def memory_parts(scenario: Scenario, counts: list[int]) -> dict[str, float]:
    """The memory a run's sizes ask for, in bytes, by the key that sets each size.

    Args:
        scenario: The scenario.
        counts: Agents per principal.

    Returns:
        ``network.n_agents`` (the agents), ``network.k`` / ``network.m`` / ``network.p_in``
        (graph construction) and ``principals.<j>.selection.n`` (its largest selection chunk;
        ``selection.eval_samples`` when the candidates' sandbox episodes are most of it).
    """
    network = scenario.network
    graph_key = {"sbm": "network.p_in", "barabasi_albert": "network.m"}.get(
        network.topology, "network.k"
    )
    if network.topology == "barabasi_albert" and network.m is None:
        graph_key = "network.k"
    parts = {
        "network.n_agents": float(network.n_agents) * AGENT_BYTES,
        graph_key: ADJACENCY_ENTRY_BYTES * adjacency_entries(network, counts),
    }
    d = len(scenario.channels)
    for j, (principal, count) in enumerate(zip(scenario.principals, counts, strict=True)):
        config = principal.selection
        slots = float(min(count, SELECTION_CHUNK)) * config.n * d
        # The candidates' own arrays, and their sandbox episodes: named by the key that is
        # larger, so that the message points at what to lower.
        own, episodes = slots * CANDIDATE_CHANNEL_BYTES, slots * 8.0 * config.eval_samples
        key = "n" if own >= episodes else "eval_samples"
        parts[f"principals.{j}.selection.{key}"] = own + episodes
    return parts


def estimated_bytes(scenario: Scenario, counts: list[int]) -> float:
    """Estimate the peak memory of a run of ``scenario`` in bytes.

    Args:
        scenario: The scenario.
        counts: Agents per principal.

    Returns:
        The fixed base, the agents and the graph construction, plus the largest selection chunk
        (principals select one after the other).
    """
    parts = memory_parts(scenario, counts)
    selection = [v for k, v in parts.items() if k.startswith("principals.")]
    fixed = sum(v for k, v in parts.items() if not k.startswith("principals."))
    return BASE_BYTES + fixed + max(selection, default=0.0)


def _check_memory(scenario: Scenario, counts: list[int]) -> None:
    """Refuse a scenario whose run would need more memory than this machine has.

    The key named is the size that dominates the estimate (agents, degree or selection n).
    """
    need = estimated_bytes(scenario, counts)
    have = available_bytes()
    if need <= have:
        return
    parts = memory_parts(scenario, counts)
    key = max(parts, key=parts.__getitem__)
    raise ScenarioError(
        key,
        f"the run would need about {need / 2**30:.3g} GiB of memory; {memory_limit_name()} "
        f'is {have / 2**30:.3g} GiB (docs/scenarios.md, "Bounds")',
    )


def _check_finite_risk(scenario: Scenario) -> None:
    """Refuse contracts under which measured noise of infinite variance meets β ≠ 0.

    Student-t noise with df ≤ 2 (and a scale above 0) has no variance; a risk-averse agent paid
    β ≠ 0 on a metric that includes it bears an infinite risk premium (and
    ``alpha = "participation"`` would have to compensate it with an infinite α). The risk is
    that of the current world, over every measured channel (:mod:`model.measurement`). A fixed
    β ≠ 0 is refused if such a channel is measured at any step of the run.

    ``beta = "optimal"`` designs on the principal's world model: the initial world, replaced by
    the current world at each of its federated updates (``federated.every``), each followed by
    a redesign. When the model shows a measured channel of infinite variance that the principal
    perceives, the design is β = 0 under every α rule: with α designed, any β ≠ 0 has an
    infinitely negative surplus; with α fixed, any β ≠ 0 leaves its agents an infinitely negative
    certainty equivalent, which neither meets participation nor is the least shortfall
    (agents.contract.design_len_contract). Otherwise it designs β ≠ 0. So the run is refused
    exactly when, at some step, the world has such a measured channel while the principal's
    model at that step shows none it perceives (a channel beyond its capacity, a heavy tail a
    regime brought that no federated update has refitted yet, or one a refit left behind).
    The world changes only at regime changes and the model only at refits, so the steps are
    checked segment by segment, never one by one.
    """
    if scenario.agents.risk_aversion == 0:
        return
    names = [channel.name for channel in scenario.channels]
    steps = scenario.run.steps
    # The channels' (noise, metric, level) before step 1, then after each step with regime
    # changes (all of a step's changes at once: no step sees the state between them).
    state = [
        (channel.noise.model_dump(), channel.metric, channel.level) for channel in scenario.channels
    ]
    initial = list(state)
    segments = [(1, list(state))]
    for regime in sorted((r for r in scenario.regimes if r.at <= steps), key=lambda r: r.at):
        k = names.index(regime.channel)
        noise, metric, level = state[k]
        if isinstance(regime.set.get("noise"), dict):
            noise = noise | regime.set["noise"]
        state[k] = (noise, regime.set.get("metric", metric), regime.set.get("level", level))
        if segments[-1][0] == regime.at:
            segments[-1] = (regime.at, list(state))
        else:
            segments.append((regime.at, list(state)))
    if steps < 1:
        return

    def heavy(world: list, capacity: float = math.inf) -> str | None:
        """The first measured channel of infinite variance within ``capacity``, if any."""
        for name, (noise, metric, level) in zip(names, world, strict=True):
            tail = noise["dist"] == "student_t" and noise["df"] <= 2 and noise["scale"] > 0
            if tail and metric != 0 and level <= capacity:
                return name
        return None

    for j, principal in enumerate(scenario.principals):
        beta, every = principal.contract.beta, principal.federated.every
        if beta != "optimal" and beta == 0:
            continue
        model, model_from = initial, 0  # the world model, and the step it was refitted
        problem = None
        for i, (first, world) in enumerate(segments):
            last = segments[i + 1][0] - 1 if i + 1 < len(segments) else steps
            if first > last:
                continue
            name = heavy(world)
            refit = -(-first // every) * every if every else None  # first update in the segment
            if name is not None:
                if beta != "optimal":
                    problem = (first, f"a fixed beta != 0 pays on channel {name!r}")
                elif heavy(model, principal.capacity) is None:
                    # steps first..min(refit, last) still pay on the older model
                    problem = (first, _unseen(name, model, names, principal.capacity, model_from))
                elif (
                    refit is not None and refit < last and heavy(world, principal.capacity) is None
                ):
                    problem = (refit + 1, _unseen(name, world, names, principal.capacity, refit))
                if problem:
                    step, why = problem
                    raise ScenarioError(
                        f"principals.{j}.contract.beta",
                        f"{why}, whose Student-t noise of df <= 2 from step {step} gives "
                        "risk-averse agents an infinite risk premium; use df > 2 or beta = 0",
                    )
            if refit is not None and refit <= last:
                model, model_from = world, refit


def _unseen(name: str, model: list, names: list[str], capacity: int, since: int) -> str:
    """Why a principal's design at some step pays β ≠ 0 on channel ``name``."""
    noise, _, level = model[names.index(name)]
    if level > capacity and noise["dist"] == "student_t" and noise["df"] <= 2:
        return f'"optimal" designs beta != 0 without seeing channel {name!r} (beyond capacity)'
    when = "its first world model" if since == 0 else f"the world model it refitted at step {since}"
    return f'"optimal" designs beta != 0 on {when}, which does not show channel {name!r}'


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
