"""Compiled row kernels of steps 4–6: outcomes, payoffs and per-agent measures, and group sums.

:func:`outcomes_and_measures` computes, in one parallel pass over the agents, every per-agent
column of the ``agents`` table that the step produces (definitions in :mod:`model.measures` and
``docs/tables.md``) plus the category flags (the primary category needs the loss decomposition
of :mod:`model.decomposition`, which the caller runs), and adds them up per group as it goes
(:class:`GroupSums`: per principal, per principal × flags). :func:`group_sums` adds columns up
per group the same way, in fixed blocks of rows whose partial sums are added in block order, so
sums — and the ``steps`` table — are identical whatever the number of threads. The compiled
loops run on ranges of blocks without the GIL (:mod:`model.parallel`).

The NumPy reference of every kernel here is the same-named function of :mod:`model.measures`
(the readable definitions, with the equations); ``tests/model/test_measures_jit.py`` holds the
kernels to them.
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np

from mesaopt.model.kernel_arrays import (
    Graph,
    MeasureArrays,
    PopulationArrays,
    PrincipalArrays,
    StepArrays,
    WorldArrays,
)
from mesaopt.model.measures import ALIGNED_TOLERANCE, CATEGORIES, FLAGS, PARTS
from mesaopt.model.parallel import block_ranges, parallel_map

__all__ = [
    "BLOCK",
    "COMBINATIONS",
    "METRIC_ROWS",
    "PAIR_LOSSES",
    "DecomposedRows",
    "GroupSums",
    "group_sums",
    "outcomes_and_measures",
    "record_decomposition",
]

#: Rows per block of :func:`group_sums` (partial sums are added in block order).
BLOCK = 2048

#: Rows of the per-agent metric matrix, in the order of the ``agents`` table. Defined here, next
#: to the kernels that write them: Numba freezes the row numbers below into the cached kernels,
#: and only an edit of this file invalidates that cache.
METRIC_ROWS = (
    "proxy",
    "value",
    "pay",
    "profit",
    "utility",
    "private_payoff",
    "agent_goal_payoff",
    "externality_given",
    "externality_received",
    "welfare",
    "penalty",
    "principal_loss",
    "mesa_loss",
    "goodhart_causal",
    "goodhart_adversarial",
)
(
    _PROXY,
    _VALUE,
    _PAY,
    _PROFIT,
    _UTILITY,
    _PRIVATE,
    _GOALS,
    _GIVEN,
    _RECEIVED,
    _WELFARE,
    _PENALTY,
    _PRINCIPAL_LOSS,
    _MESA_LOSS,
    _CAUSAL,
    _ADVERSARIAL,
) = range(len(METRIC_ROWS))


#: Combinations of the category flags (:data:`model.measures.FLAGS`, which the kernel writes in
#: that order): a combination's code is ``Σ_f flag_f·2^f``.
COMBINATIONS = 1 << len(FLAGS)
if FLAGS != ("super", "sub", "trans", "deceptive", "aligned"):
    raise RuntimeError(
        "model.measures.FLAGS changed: the outcome kernel (model/measures_jit.py) writes the flags "
        "and their combination codes in the order super, sub, trans, deceptive, aligned; update it"
    )

#: The losses summed per (principal, flag combination) pair (:class:`GroupSums`), in this order.
PAIR_LOSSES = ("principal_loss", "mesa_loss")


class GroupSums(NamedTuple):
    """The per-group sums the outcome kernel adds up as it goes, one partial per block of rows.

    Block b holds rows ``b·BLOCK .. (b + 1)·BLOCK − 1``, added in row order, exactly as
    :func:`group_sums` adds them, so that ``partial.sum(axis=0)`` equals :func:`group_sums`' result
    bit for bit and does not depend on the number of threads. Folding the sums into the pass
    that computes the values saves three more passes over the (M, N) metrics
    (:func:`model.metrics.aggregate_steps`).

    Attributes:
        metrics: Σ of every metric row per principal, (B, J, len(METRIC_ROWS)); the
            ``goodhart_causal`` column is left at 0 (the caller adds the decomposed agents').
        effort: Σ of effort per principal and channel, (B, J, d).
        pair_losses: Σ of the :data:`PAIR_LOSSES` per (principal, flag combination) pair
            ``j·COMBINATIONS + code``, (B, J·COMBINATIONS, 2).
        pair_count: Agents per pair, (B, J·COMBINATIONS) int64.
        outside: Agents acting outside the selection range per principal, (B, J) int64.
    """

    metrics: np.ndarray
    effort: np.ndarray
    pair_losses: np.ndarray
    pair_count: np.ndarray
    outside: np.ndarray

    @classmethod
    def zeros(cls, n: int, principals: int, d: int) -> GroupSums:
        """Zeroed partials for ``n`` rows in blocks of :data:`BLOCK`."""
        blocks = (n + BLOCK - 1) // BLOCK
        pairs = principals * COMBINATIONS
        return cls(
            metrics=np.zeros((blocks, principals, len(METRIC_ROWS))),
            effort=np.zeros((blocks, principals, d)),
            pair_losses=np.zeros((blocks, pairs, 2)),
            pair_count=np.zeros((blocks, pairs), dtype=np.int64),
            outside=np.zeros((blocks, principals), dtype=np.int64),
        )


def outcomes_and_measures(
    graph: Graph,
    world: WorldArrays,
    population: PopulationArrays,
    principals: PrincipalArrays,
    step: StepArrays,
    out: MeasureArrays,
    *,
    deceptive: np.ndarray | None = None,
    welfare_counts_agent_goals: bool = False,
) -> GroupSums:
    """Steps 4–6 for every agent i of principal j (per-principal arrays are indexed by j).

    The NumPy reference, with the equations, is :func:`model.measures.outcomes_and_measures`:

    * output ``y = a + ε``; proxy ``M = mᵀy``; value ``V = v_jᵀy``; pay ``α_j + β_j·M``;
    * agent goal payoff ``θᵀa``; private payoff ``θᵀa − ½aᵀKa − risk_j + Σ_k δ_k a_k (G a)_k``;
      externality given ``(eᵀa)·in_weight_i``, received ``(G (eᵀa))_i``; penalty if caught;
    * utility = pay + private + received − penalty; principal profit = V − pay + penalty;
      welfare = V + received + peer payoff − ½aᵀKa − risk_j (+ θᵀa if it counts goals);
    * principal loss ``benchmark_j − (V − ½aᵀKa)``; mesa loss
      ``½rᵀa* − (rᵀa − ½aᵀKa + β_j(M − mᵀa))``;
    * adversarial Goodhart ``Σ_k −v_jk·a_k`` over the principal's hostile channels; acting
      outside ``[low_j, high_j]``; flags super / sub / trans / deceptive / aligned
      (:func:`model.measures.categorize`).

    Causal Goodhart (row ``goodhart_causal``) is left at 0: the caller fills it for stale agents.
    ``out.primary`` is not written: the primary category is the largest part of the principal
    loss (:func:`model.measures.primary_category`), which the caller decomposes.

    Args:
        graph: The network G and its column sums.
        world: The current world's channels (``root`` and ``substitution`` are not read).
        population: The agents (``theta``, ``capacity`` and ``principal`` are read).
        principals: Contracts, values and yardsticks per principal.
        step: The plan (``plan.reward`` holds the rewards the agents chose by, with
            ``plan.neighbour_effort`` = G a of the previous step), output noise, audit catches.
        out: Receives the metrics, flags (N, 5) in :data:`model.measures.FLAGS` order,
            ``outside``, ``harm`` (eᵀa), ``neighbour_effort`` (G a of this step's efforts) and
            ``gathered_from`` (a copy of those efforts).
        deceptive: Deceptive agents, (N,) bool (None: none).
        welfare_counts_agent_goals: Count θᵀa in welfare (``metrics.welfare_counts_agent_goals``).

    Returns:
        The per-group sums of the step (:class:`GroupSums`), added up in the same pass.
    """
    # All rows' harm first: a row reads its neighbours'.
    np.dot(step.plan.action, world.externality, out=out.harm)
    n, d = step.plan.action.shape
    sums = GroupSums.zeros(n, len(principals.alpha), d)
    rows = _OutcomeRows.of(
        graph,
        world,
        population,
        principals,
        step,
        out,
        np.zeros(n, dtype=np.bool_) if deceptive is None else deceptive.astype(np.bool_),
        bool(welfare_counts_agent_goals),
        sums,
    )
    rows_kernel = _OUTCOME_ROWS.get(d, _outcome_rows)
    blocks = sums.metrics.shape[0]
    parallel_map(lambda span: rows_kernel(*span, rows), block_ranges(blocks))
    return sums


class _OutcomeRows(NamedTuple):
    """Every array the outcome kernel reads or writes, flat: the bundles taken apart by name.

    Why not pass the bundles themselves, as :mod:`agents.response_jit` does: this loop reads some
    thirty arrays per row, and when they arrive in several aggregates LLVM keeps fewer of them
    in registers; measured on the same arrays in one process, the kernel took 15–25 % longer
    (identical IR instruction counts, different register allocation), while one flat aggregate
    compiles as the old positional tuple did. The fields are filled by name (:meth:`of`) and
    read by name, so no two arrays can change places.
    """

    indptr: np.ndarray
    indices: np.ndarray
    weights: np.ndarray
    in_weight: np.ndarray
    action: np.ndarray
    noise: np.ndarray
    reward: np.ndarray
    own_best: np.ndarray
    theta: np.ndarray
    capacity: np.ndarray
    principal: np.ndarray
    caught: np.ndarray
    metric: np.ndarray
    cost: np.ndarray
    peer: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    values: np.ndarray
    risk_premium: np.ndarray
    penalty: np.ndarray
    benchmark: np.ndarray
    hostile: np.ndarray
    low: np.ndarray
    high: np.ndarray
    principal_capacity: np.ndarray
    trans_cosine: float
    deceptive: np.ndarray
    counts_goals: bool
    harm: np.ndarray
    neighbour_effort: np.ndarray
    gathered_from: np.ndarray
    metrics: np.ndarray
    flags: np.ndarray
    outside: np.ndarray
    block_rows: int
    combinations: int
    sum_metrics: np.ndarray
    sum_effort: np.ndarray
    pair_losses: np.ndarray
    pair_count: np.ndarray
    sum_outside: np.ndarray

    @classmethod
    def of(
        cls,
        graph: Graph,
        world: WorldArrays,
        population: PopulationArrays,
        principals: PrincipalArrays,
        step: StepArrays,
        out: MeasureArrays,
        deceptive: np.ndarray,
        counts_goals: bool,
        sums: GroupSums,
    ) -> _OutcomeRows:
        """The arrays of the bundles that :func:`outcomes_and_measures` reads and writes.

        ``deceptive`` (N,) bool flags the deceptive agents; ``counts_goals`` says whether θᵀa
        counts in welfare; ``sums`` receives the per-block group sums.
        """
        plan = step.plan
        return cls(
            indptr=graph.indptr,
            indices=graph.indices,
            weights=graph.data,
            in_weight=graph.in_weight,
            action=plan.action,
            noise=step.noise,
            reward=plan.reward,
            own_best=plan.own_best,
            theta=population.theta,
            capacity=population.capacity,
            principal=population.principal,
            caught=step.caught,
            metric=world.metric,
            cost=world.cost,
            peer=world.peer,
            alpha=principals.alpha,
            beta=principals.beta,
            values=principals.values,
            risk_premium=principals.risk_premium,
            penalty=principals.penalty,
            benchmark=principals.benchmark,
            hostile=principals.hostile,
            low=principals.low,
            high=principals.high,
            principal_capacity=principals.capacity,
            trans_cosine=float(principals.trans_cosine),
            deceptive=deceptive,
            counts_goals=bool(counts_goals),
            harm=out.harm,
            neighbour_effort=out.neighbour_effort,
            gathered_from=out.gathered_from,
            metrics=out.metrics,
            flags=out.flags,
            outside=out.outside,
            # Constants as fields, not globals read by the kernel: Numba freezes a global into
            # the cached code, and COMBINATIONS comes from another file (model.measures.FLAGS),
            # whose edit would not discard that cache.
            block_rows=BLOCK,
            combinations=COMBINATIONS,
            sum_metrics=sums.metrics,
            sum_effort=sums.effort,
            pair_losses=sums.pair_losses,
            pair_count=sums.pair_count,
            sum_outside=sums.outside,
        )


@nb.njit(inline="always", error_model="numpy")
def _outcome_body(first_block: int, last_block: int, d: int, rows: _OutcomeRows) -> None:
    """:func:`outcomes_and_measures` for blocks ``first_block..last_block``, ``d`` channels.

    Inlined into the kernels below. Each row's values are added into its block's group sums as
    soon as they are known (:class:`GroupSums`), in row order.
    """
    indptr, indices, weights, in_weight = rows.indptr, rows.indices, rows.weights, rows.in_weight
    action, noise, caught = rows.action, rows.noise, rows.caught
    reward, own_best = rows.reward, rows.own_best
    theta, capacity, principal = rows.theta, rows.capacity, rows.principal
    metric, cost, peer = rows.metric, rows.cost, rows.peer
    alpha, beta, values = rows.alpha, rows.beta, rows.values
    risk_premium, penalty, benchmark = rows.risk_premium, rows.penalty, rows.benchmark
    hostile, low, high = rows.hostile, rows.low, rows.high
    principal_capacity, trans_cosine = rows.principal_capacity, rows.trans_cosine
    deceptive, counts_goals = rows.deceptive, rows.counts_goals
    harm, metrics, flags, outside = rows.harm, rows.metrics, rows.flags, rows.outside
    neighbour_effort, gathered_from = rows.neighbour_effort, rows.gathered_from
    sum_metrics, sum_effort, sum_outside = rows.sum_metrics, rows.sum_effort, rows.sum_outside
    pair_losses, pair_count = rows.pair_losses, rows.pair_count
    n_metrics = metrics.shape[0]
    received_of = np.empty(rows.block_rows)
    for block in range(first_block, last_block):
        lo = block * rows.block_rows
        hi = min(action.shape[0], lo + rows.block_rows)
        # The externality received, (G harm)_i, and G a of this step's efforts (the peer
        # payoff is realized with them, as the externality is and as the planner's W(a) counts
        # it; the next step's agents choose against them) for the whole block first: a tight
        # loop of gathers keeps more cache misses in flight (agents.response_jit._GATHER_TILE).
        # Both in one pass over the CSR rows (model.neighbour_effort.gather_rows with the harm
        # added: measured at 1e6 agents, the kernel 143 ms against 162 ms in two passes), each
        # summed in CSR index order, as SciPy's product sums it.
        for i in range(lo, hi):
            total = 0.0
            for k in range(d):
                neighbour_effort[i, k] = 0.0
            for p in range(indptr[i], indptr[i + 1]):
                other = indices[p]
                w = weights[p]
                total += w * harm[other]
                for k in range(d):
                    neighbour_effort[i, k] += w * action[other, k]
            received_of[i - lo] = total
        for i in range(lo, hi):
            for k in range(d):
                gathered_from[i, k] = action[i, k]
        for i in range(lo, hi):
            j = principal[i]
            proxy = 0.0
            value = 0.0
            intrinsic = 0.0
            effort_cost = 0.0
            peer_payoff = 0.0
            planned_proxy = 0.0
            own = 0.0
            adversarial = 0.0
            gone = False
            dot = 0.0
            theta_sq = 0.0
            values_sq = 0.0
            for k in range(d):
                a = action[i, k]
                y = a + noise[i, k]
                proxy += y * metric[k]
                value += y * values[j, k]
                intrinsic += theta[i, k] * a
                pushed = 0.0
                for m in range(d):
                    pushed += cost[k, m] * action[i, m]
                effort_cost += pushed * a
                peer_payoff += a * peer[k] * neighbour_effort[i, k]
                planned_proxy += a * metric[k]
                own += reward[i, k] * a
                if hostile[j, k]:
                    adversarial -= values[j, k] * a
                if a < low[j, k] or a > high[j, k]:
                    gone = True
                dot += theta[i, k] * values[j, k]
                theta_sq += theta[i, k] * theta[i, k]
                values_sq += values[j, k] * values[j, k]
            effort_cost *= 0.5
            received = received_of[i - lo]
            pay = alpha[j] + beta[j] * proxy
            fine = penalty[j] if caught[i] else 0.0
            private = intrinsic - effort_cost - risk_premium[j] + peer_payoff
            welfare = value + received + peer_payoff - effort_cost - risk_premium[j]
            metrics[_PROXY, i] = proxy
            metrics[_VALUE, i] = value
            metrics[_PAY, i] = pay
            metrics[_PROFIT, i] = value - pay + fine
            metrics[_UTILITY, i] = pay + private + received - fine
            metrics[_PRIVATE, i] = private
            metrics[_GOALS, i] = intrinsic
            metrics[_GIVEN, i] = harm[i] * in_weight[i]
            metrics[_RECEIVED, i] = received
            metrics[_WELFARE, i] = welfare + intrinsic if counts_goals else welfare
            metrics[_PENALTY, i] = fine
            metrics[_PRINCIPAL_LOSS, i] = benchmark[j] - (value - effort_cost)
            realized = own - effort_cost + beta[j] * (proxy - planned_proxy)
            metrics[_MESA_LOSS, i] = own_best[i] - realized
            metrics[_CAUSAL, i] = 0.0
            metrics[_ADVERSARIAL, i] = adversarial
            outside[i] = gone
            norms = np.sqrt(theta_sq * values_sq)
            cosine = dot / norms if norms > 0 else 0.0
            is_super = capacity[i] > principal_capacity[j]
            is_sub = capacity[i] < principal_capacity[j]
            is_trans = cosine < trans_cosine
            is_deceptive = deceptive[i]
            flags[i, 0] = is_super
            flags[i, 1] = is_sub
            flags[i, 2] = is_trans
            flags[i, 3] = is_deceptive
            is_aligned = not (is_super or is_sub or is_trans or is_deceptive)
            flags[i, 4] = is_aligned
            # The group sums (GroupSums), indexed element by element: a view such as
            # sum_metrics[block, j] per row would cost an atomic reference-count pair.
            for q in range(n_metrics):
                if q != _CAUSAL:  # filled by the caller after the decomposition
                    sum_metrics[block, j, q] += metrics[q, i]
            for k in range(d):
                sum_effort[block, j, k] += action[i, k]
            code = (
                np.int64(is_super)
                + 2 * np.int64(is_sub)
                + 4 * np.int64(is_trans)
                + 8 * np.int64(is_deceptive)
                + 16 * np.int64(is_aligned)
            )
            pair = j * rows.combinations + code
            pair_losses[block, pair, 0] += metrics[_PRINCIPAL_LOSS, i]
            pair_losses[block, pair, 1] += metrics[_MESA_LOSS, i]
            pair_count[block, pair] += 1
            if gone:
                sum_outside[block, j] += 1


# One compiled kernel per small channel count (d a constant the compiler unrolls the per-channel
# loops over) and one for any d, written out as for :func:`agents.response_jit.plan_actions`.
@nb.njit(cache=True, nogil=True, error_model="numpy")
def _outcome_rows(first_block: int, last_block: int, rows: _OutcomeRows) -> None:
    """:func:`outcomes_and_measures` for blocks ``first_block..last_block``, any d (no GIL)."""
    _outcome_body(first_block, last_block, rows.action.shape[1], rows)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _outcome_rows_1(first_block: int, last_block: int, rows: _OutcomeRows) -> None:
    _outcome_body(first_block, last_block, 1, rows)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _outcome_rows_2(first_block: int, last_block: int, rows: _OutcomeRows) -> None:
    _outcome_body(first_block, last_block, 2, rows)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _outcome_rows_3(first_block: int, last_block: int, rows: _OutcomeRows) -> None:
    _outcome_body(first_block, last_block, 3, rows)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _outcome_rows_4(first_block: int, last_block: int, rows: _OutcomeRows) -> None:
    _outcome_body(first_block, last_block, 4, rows)


_OUTCOME_ROWS = {1: _outcome_rows_1, 2: _outcome_rows_2, 3: _outcome_rows_3, 4: _outcome_rows_4}


def group_sums(
    columns: np.ndarray, group: np.ndarray, n_groups: int, rows: list[int] | None = None
) -> np.ndarray:
    """Sum each column's entries per group, identically whatever the number of threads.

    Args:
        columns: Values, (M, N): M quantities over N agents (booleans count as 0/1).
        group: Group index of each agent in ``0 .. n_groups-1``, (N,).
        n_groups: Number of groups.
        rows: Only these rows of ``columns`` (all by default; saves copying them out).

    Returns:
        The sums, (n_groups, len(rows)).
    """
    n = columns.shape[1]
    picked = np.arange(columns.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    blocks = (n + BLOCK - 1) // BLOCK
    partial = np.zeros((blocks, n_groups, len(picked)))
    parallel_map(
        lambda span: _block_sums(columns, picked, group, span[0], span[1], partial),
        block_ranges(blocks),
    )
    return partial.sum(axis=0)  # the partials do not depend on the threads; nor does this


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _block_sums(
    columns: np.ndarray,
    rows: np.ndarray,
    group: np.ndarray,
    first: int,
    last: int,
    partial: np.ndarray,
) -> None:
    """Partial sums of blocks ``first..last`` into ``partial[block]`` (compiled, no GIL)."""
    n = columns.shape[1]
    for block in range(first, last):
        sums = partial[block]
        for i in range(block * BLOCK, min(n, (block + 1) * BLOCK)):
            g = group[i]
            for q in range(rows.shape[0]):
                sums[g, q] += columns[rows[q], i]


class DecomposedRows(NamedTuple):
    """The decomposed agents of a step and what their parts set (:func:`record_decomposition`).

    Attributes:
        rows: The agents, (R,) int64, sorted.
        parts: Their loss parts, (len(PARTS), R), rows in :data:`model.measures.PARTS` order.
        stale: Every agent's world model is stale, (N,) bool.
        principal: Every agent's principal, (N,) int64.
        capacity: Every agent's capacity, (N,) int64.
        principal_capacity: Each principal's capacity, (J,) int64.
        benchmark: Each principal's benchmark surplus, (J,).
        causal: Every agent's ``goodhart_causal`` (the metrics' row), (N,): written at ``rows``.
        sums: The outcome kernel's metric sums (:attr:`GroupSums.metrics`), (B, J, M): the
            ``goodhart_causal`` column of each row's block and principal receives its value.
        causal_column: Index of ``goodhart_causal`` in :data:`METRIC_ROWS`.
        primary: Every agent's primary category code, (N,) int64: written at ``rows``.
    """

    rows: np.ndarray
    parts: np.ndarray
    stale: np.ndarray
    principal: np.ndarray
    capacity: np.ndarray
    principal_capacity: np.ndarray
    benchmark: np.ndarray
    causal: np.ndarray
    sums: np.ndarray
    causal_column: int
    primary: np.ndarray


def record_decomposition(x: DecomposedRows) -> None:
    """What the decomposed agents' parts set: causal Goodhart, its group sums, primary categories.

    For each decomposed agent i (in row order), with world-model part w_i:

    * ``goodhart_causal_i = w_i`` if its world model is stale, else exactly 0;
    * that value is added into the ``goodhart_causal`` sum of i's block and principal, in row
      order, as :func:`group_sums` would add the column (the outcome kernel left it at 0);
    * its primary category is :func:`model.measures.primary_category` of its parts (the NumPy
      reference ``tests/model/test_measures_jit.py`` holds this to).

    One thread: the sums must be added in row order, and the pass is short (every stale agent
    after a regime change: ~0.1 ms per 10^5).

    Args:
        x: The rows, their parts and the arrays written.
    """
    _record_rows(x)


_PART_CAPACITY, _PART_WORLD_MODEL = PARTS.index("capacity"), PARTS.index("world_model")
_TRANS, _SUPER, _SUB = CATEGORIES.index("trans"), CATEGORIES.index("super"), CATEGORIES.index("sub")
_STALE, _KIND_CODE = CATEGORIES.index("stale"), CATEGORIES.index("kind")
_ALIGNED = CATEGORIES.index("aligned")
#: Category named by each cause part (goals, capacity, world model, kind); capacity is resolved
#: by comparing the agent's capacity with its principal's.
_BY_PART = (_TRANS, _SUB, _STALE, _KIND_CODE)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _record_rows(x: DecomposedRows) -> None:
    """:func:`record_decomposition` (compiled; one pass, in row order)."""
    rows, parts, stale, principal = x.rows, x.parts, x.stale, x.principal
    capacity, principal_capacity, benchmark = x.capacity, x.principal_capacity, x.benchmark
    causal, sums, column, primary = x.causal, x.sums, x.causal_column, x.primary
    by_part = np.array(_BY_PART, dtype=np.int64)
    for r in range(rows.shape[0]):
        i = rows[r]
        j = principal[i]
        value = parts[_PART_WORLD_MODEL, r] if stale[i] else 0.0
        causal[i] = value
        sums[i // BLOCK, j, column] += value
        # The largest cause part (goals, capacity, world model, kind: the first four), the first
        # of equals, as np.argmax (parts are finite: model.finite checks every table).
        largest = 0
        top = parts[0, r]
        for p in range(1, 4):
            if parts[p, r] > top:
                largest = p
                top = parts[p, r]
        code = by_part[largest]
        if largest == _PART_CAPACITY and capacity[i] > principal_capacity[j]:
            code = _SUPER
        if not top > ALIGNED_TOLERANCE * max(1.0, abs(benchmark[j])):
            code = _ALIGNED
        primary[i] = code
