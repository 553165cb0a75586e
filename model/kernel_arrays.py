"""The named bundles of arrays the compiled kernels take and fill (``typing.NamedTuple``s).

The step's row kernels (:mod:`agents.response_jit`, :mod:`model.measures_jit`) and the
selection kernel (:mod:`agents.sandbox_jit`) take a handful of these, not dozens of positional
arrays: a kernel reads ``world.metric`` and ``population.theta`` by name, so two arrays of the
same shape cannot change places silently, and every kernel and its NumPy reference
(:mod:`agents.response`, :mod:`agents.sandbox`, :mod:`model.measures`) read the same bundles.
Numba compiles a NamedTuple argument as a struct of its fields: reading a field costs nothing,
and ``cache=True`` / ``nogil=True`` work as with plain arrays (measured: the planning and
selection kernels take the bundles as they are, at the speed of the positional version; the
outcome kernel, whose loop reads some thirty arrays, compiles to slower code when they come in
several bundles, so :func:`model.measures_jit.outcomes_and_measures` takes them apart by name
into one flat bundle first; docs/performance.md).

Build them with keywords. Fields are NumPy arrays or Python scalars; a kernel is compiled once
per combination of dtypes and dimensions, so keep the dtypes given here (a float passed as an
int compiles a second, equivalent kernel). Rows are agents (N of them), columns channels (d);
per-principal arrays (J rows) are indexed by an agent's principal j.

This module sits at the bottom of the package (NumPy and the standard library only), so that
the world's data, the behaviour in ``agents/`` and the measures in ``model/`` can all import it.

Editing the fields: Numba's on-disk cache knows a NamedTuple argument by its class and field
*types*, not its field names, and drops a cached kernel only when the kernel's own file changes.
After reordering two fields of the same type here, a kernel cached before the edit would read one
for the other, silently. So each compiled module whose kernels take these bundles
(:mod:`agents.response_jit`, :mod:`agents.sandbox_jit`) records the :func:`layout` it was
written for and checks it at import (:func:`check_layout`): a changed layout stops the import
with a message saying which value to update, and updating it edits the compiled module, which
drops its cache.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "CandidateArrays",
    "ChosenArrays",
    "Graph",
    "MeasureArrays",
    "PlanArrays",
    "PopulationArrays",
    "PrincipalArrays",
    "SandboxArrays",
    "StepArrays",
    "WorldArrays",
    "check_layout",
    "layout",
]


class Graph(NamedTuple):
    """The network G in compressed sparse row form, and its column sums.

    ``G[i, l]`` is the weight of neighbour l in agent i's neighbourhood (CSR row i); the kernels
    sum a row in index order, as SciPy's sparse product does.

    Attributes:
        indptr: Row pointers, (N + 1,).
        indices: Column indices, sorted within each row, (nnz,).
        data: Weights, (nnz,) float.
        in_weight: Column sums ``Σ_l G[l, i]``, (N,): how much agent i weighs in others' rows.
    """

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    in_weight: np.ndarray

    @classmethod
    def of(cls, adjacency: Any, in_weight: np.ndarray | None = None) -> Graph:
        """The arrays of a SciPy CSR matrix (column sums computed unless given)."""
        if in_weight is None:
            in_weight = np.asarray(adjacency.sum(axis=0)).ravel()
        return cls(adjacency.indptr, adjacency.indices, adjacency.data, in_weight)


class WorldArrays(NamedTuple):
    """The channels of the current world (:class:`model.channels.World`) as the kernels read them.

    ``cost``, ``root`` and ``substitution`` describe the same shared-effort-budget cost matrix
    ``K = D^½((1 − s)I + s·11ᵀ)D^½`` (:func:`model.channels.substitution_cost_matrix`): the
    water filling reads ``root = sqrt(diag K)`` and ``s``, the control update and the effort
    cost read ``K``. Build it with :meth:`of` so that they agree.

    Attributes:
        metric: Proxy weights m, (d,).
        peer: Peer effects δ, (d,).
        externality: Payoff e to each neighbour per unit of effort, (d,).
        cost: The cost matrix K, (d, d).
        root: ``sqrt(diag K)``, (d,).
        substitution: s, 0 ≤ s < 1 (a float).
    """

    metric: np.ndarray
    peer: np.ndarray
    externality: np.ndarray
    cost: np.ndarray
    root: np.ndarray
    substitution: float

    @classmethod
    def of(cls, world: Any) -> WorldArrays:
        """The arrays of a :class:`model.channels.World`."""
        return cls(
            metric=world.metric,
            peer=world.peer,
            externality=world.externality,
            cost=world.cost_matrix,
            root=np.sqrt(world.costs),
            substitution=float(world.substitution),
        )


class PopulationArrays(NamedTuple):
    """The mesa-optimizers as the step finds them (:class:`agents.population.Population`).

    Attributes:
        principal: Principal index j of each agent, (N,) int64.
        capacity: Capacity C_i, (N,) int64.
        is_control: Control (feedback) optimizer flags, (N,) bool.
        theta: Objectives θ, (N, d).
        perceive: Channels each agent perceives in the current world, (N, d) bool.
        last_action: Efforts of the previous step, (N, d).
        last_noise: Output noise of the previous step (what a controller felt), (N, d).
        gain: Each control agent's selection-tuned gain, (N,).
    """

    principal: np.ndarray
    capacity: np.ndarray
    is_control: np.ndarray
    theta: np.ndarray
    perceive: np.ndarray
    last_action: np.ndarray
    last_noise: np.ndarray
    gain: np.ndarray

    @classmethod
    def of(cls, population: Any, perceive: np.ndarray, is_control: np.ndarray) -> PopulationArrays:
        """The arrays of a :class:`agents.population.Population` at the start of a step.

        ``is_control`` flags the rows the compiled kernel steers by feedback (the ``control``
        kind of :mod:`agents.kinds`; every other row gets the exact best response there).
        """
        return cls(
            principal=population.principal,
            capacity=population.capacity,
            is_control=is_control,
            theta=population.theta,
            perceive=perceive,
            last_action=population.action,
            last_noise=population.last_noise,
            gain=population.gain,
        )


class PlanArrays(NamedTuple):
    """What planning (step 3) produces for every agent.

    Attributes:
        neighbour_effort: ``G a`` of the previous step's efforts, (N, d).
        reward: Marginal rewards ``r = θ + β_j m + δ ⊙ (G a)``, (N, d).
        action: The new efforts a, (N, d).
        own_best: ``½ rᵀa*``, the payoff at the agent's optimum over every channel, (N,).
        optimum: That optimum a*, the best response to r on every channel, (N, d) (the loss
            decomposition's plan of an agent with every channel, :mod:`model.decomposition`).
    """

    neighbour_effort: np.ndarray
    reward: np.ndarray
    action: np.ndarray
    own_best: np.ndarray
    optimum: np.ndarray

    @classmethod
    def empty(cls, n: int, d: int) -> PlanArrays:
        """Uninitialised arrays for ``n`` agents and ``d`` channels (the kernel fills them)."""
        return cls(
            np.empty((n, d)), np.empty((n, d)), np.empty((n, d)), np.empty(n), np.empty((n, d))
        )


class StepArrays(NamedTuple):
    """What the step has produced by the time it is measured (steps 3–5).

    Attributes:
        plan: The plan (whose ``action`` is every agent's final effort this step).
        noise: Output noise ε, (N, d).
        caught: Caught by this step's audit, (N,) bool.
    """

    plan: PlanArrays
    noise: np.ndarray
    caught: np.ndarray


class PrincipalArrays(NamedTuple):
    """Each principal j as the measures of its agents need it (arrays indexed by j).

    Attributes:
        alpha: Fixed pay α_j, (J,).
        beta: Contract slope β_j, (J,).
        risk_premium: The risk premium ``(ρ/2)β_j²σ_M²`` its agents bear, (J,).
        penalty: Audit penalty, (J,).
        values: True values v_j, (J, d).
        capacity: Capacity C_j, (J,) int64.
        benchmark: Surplus of its aligned benchmark agent, (J,).
        hostile: Channels counted as adversarial Goodhart, (J, d) bool.
        low: Lower end of the range of actions seen in its selections (slack included), (J, d).
        high: Upper end of that range, (J, d).
        trans_cosine: Cosine between θ_i and v_j below which an agent counts as ``trans``
            (``metrics.trans_cosine``, one float for every principal).
    """

    alpha: np.ndarray
    beta: np.ndarray
    risk_premium: np.ndarray
    penalty: np.ndarray
    values: np.ndarray
    capacity: np.ndarray
    benchmark: np.ndarray
    hostile: np.ndarray
    low: np.ndarray
    high: np.ndarray
    trans_cosine: float


class MeasureArrays(NamedTuple):
    """What measurement (steps 4–6) fills for every agent.

    Attributes:
        metrics: Per-agent metrics, (len(METRIC_ROWS), N), rows in the order of
            :data:`model.measures_jit.METRIC_ROWS`.
        flags: Category flags, (N, 5) bool, in the order of :data:`model.measures.FLAGS`.
        primary: Primary category index, (N,) int64.
        outside: Whether the action leaves the principal's selection range, (N,) bool.
        harm: ``eᵀa``, the externality each agent gives each neighbour, (N,).
        neighbour_effort: ``G a`` of this step's efforts, (N, d): the peer payoff's, and the
            next step's agents choose against it (:mod:`model.neighbour_effort`).
        gathered_from: A copy of the efforts ``neighbour_effort`` was gathered from, (N, d).
    """

    metrics: np.ndarray
    flags: np.ndarray
    primary: np.ndarray
    outside: np.ndarray
    harm: np.ndarray
    neighbour_effort: np.ndarray
    gathered_from: np.ndarray

    @classmethod
    def empty(cls, rows: int, n: int, categories: int, d: int) -> MeasureArrays:
        """Uninitialised arrays for ``rows`` metrics of ``n`` agents (the kernel fills them)."""
        return cls(
            metrics=np.empty((rows, n)),
            flags=np.empty((n, categories), dtype=bool),
            primary=np.empty(n, dtype=np.int64),
            outside=np.empty(n, dtype=bool),
            harm=np.empty(n),
            neighbour_effort=np.empty((n, d)),
            gathered_from=np.empty((n, d)),
        )


class CandidateArrays(NamedTuple):
    """The candidates of one round of best-of-n selection: n whole optimizers per slot.

    Candidate c of slot i is column ``i·n + c`` of ``draws`` and ``noise`` and row ``i·n + c``
    of the per-candidate arrays.

    Attributes:
        draws: Standard normal draws z of the candidates' objectives, (d, slots·n).
        noise: Mean sandbox noise over the evaluation episodes, (d, slots·n).
        perceive: Each candidate's perception mask in the sandbox, (slots·n, d) bool.
        n: Candidates per slot (an int).
        mode: How the kernel plays each candidate in the sandbox, (slots·n,) int8: 0 = the
            exact plan (a direct planner of power "exact"), 1 = a control law run for
            ``eval_samples`` episodes, 2 = ``given_shown`` / ``given_carried`` (planned outside
            the kernel by the candidate's kind).
        gain: Each candidate's control gain (read for mode 1), (slots·n,).
        episode_row: Row of ``episodes`` holding a mode-1 candidate's noise (−1 otherwise).
        episodes: Per-episode sandbox noise of the mode-1 candidates, (E, R, d).
        given_shown: Mean sandbox effort of mode-2 candidates, (slots·n, d) or (1, d).
        given_carried: The effort a mode-2 candidate carries into deployment, same shape.
    """

    draws: np.ndarray
    noise: np.ndarray
    perceive: np.ndarray
    n: int
    mode: np.ndarray
    gain: np.ndarray
    episode_row: np.ndarray
    episodes: np.ndarray
    given_shown: np.ndarray
    given_carried: np.ndarray


class SandboxArrays(NamedTuple):
    """What a principal's sandbox makes of a candidate: its objective, action and scores.

    Attributes:
        prior_mean: Centre of the candidates' objectives, (d,).
        prior_scale: Their standard deviation (a float).
        pay_push: ``β·m``, the contract's marginal reward, (d,).
        root: sqrt of the channel costs, (d,).
        substitution: Effort substitution s of the cost matrix (a float).
        score_weights: The training signal w the candidates are scored by, (d,).
        true_values: The principal's true values v, (d,).
    """

    prior_mean: np.ndarray
    prior_scale: float
    pay_push: np.ndarray
    root: np.ndarray
    substitution: float
    score_weights: np.ndarray
    true_values: np.ndarray


class ChosenArrays(NamedTuple):
    """What selection keeps per slot: the chosen candidate and statistics of all n.

    Attributes:
        theta: The chosen objectives, (slots, d).
        action: The effort the chosen candidate carries into deployment, (slots, d).
        stats: Per slot: chosen score, chosen expected score, chosen true value, mean true,
            sd true (ddof 0), max true, mean score, mean expected score; (slots, 8).
        index: Which of the n candidates was chosen, (slots,) int64.
        shown: The chosen candidate's mean effort over its sandbox episodes, (slots, d).
    """

    theta: np.ndarray
    action: np.ndarray
    stats: np.ndarray
    index: np.ndarray
    shown: np.ndarray

    @classmethod
    def empty(cls, slots: int, d: int, stats: int = 8) -> ChosenArrays:
        """Uninitialised arrays for ``slots`` slots (the kernel fills them)."""
        return cls(
            np.empty((slots, d)),
            np.empty((slots, d)),
            np.empty((slots, stats)),
            np.empty(slots, dtype=np.int64),
            np.empty((slots, d)),
        )


_BUNDLES = (
    Graph,
    WorldArrays,
    PopulationArrays,
    PlanArrays,
    StepArrays,
    PrincipalArrays,
    MeasureArrays,
    CandidateArrays,
    SandboxArrays,
    ChosenArrays,
)


def layout() -> str:
    """Fingerprint of the bundles' fields: every class's field names, in order (12 hex digits)."""
    text = ";".join(f"{cls.__name__}({','.join(cls._fields)})" for cls in _BUNDLES)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def check_layout(recorded: str, module: str) -> None:
    """Refuse to import a compiled module written for other fields of these bundles.

    Args:
        recorded: The :func:`layout` the module's kernels were written (and cached) for.
        module: The module's name, for the message.

    Raises:
        RuntimeError: If the fields changed since; the message says what to update.
    """
    current = layout()
    if recorded != current:
        raise RuntimeError(
            f"the fields of model/kernel_arrays.py changed: check the kernels of {module} "
            f"against them, then set its KERNEL_ARRAYS_LAYOUT = {current!r} (editing that file "
            "also discards the kernels Numba cached for the old fields)"
        )
