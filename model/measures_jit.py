"""Compiled row kernels of steps 4–6: outcomes, payoffs and per-agent measures, and group sums.

:func:`outcomes_and_measures` computes, in one parallel pass over the agents, every per-agent
column of the ``agents`` table that the step produces (definitions in :mod:`model.metrics` and
``docs/tables.md``) plus the category flags. :func:`group_sums` adds columns up per group (per
principal, per principal × category) in fixed blocks of rows whose partial sums are added in block
order, so sums — and the ``steps`` table — are identical whatever the number of threads. The
compiled loops run on ranges of rows without the GIL (:mod:`model.parallel`).

The NumPy definitions these kernels follow are the readable reference; ``tests/model`` checks the
kernels against them.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from mesaopt.model.parallel import block_ranges, parallel_map, row_ranges

__all__ = ["BLOCK", "METRIC_ROWS", "group_sums", "outcomes_and_measures"]

#: Rows per block of :func:`group_sums` (partial sums are added in block order).
BLOCK = 2048

#: Rows of the per-agent metric matrix, in the order of the ``agents`` table.
METRIC_ROWS = (
    "proxy",
    "value",
    "pay",
    "profit",
    "utility",
    "private_payoff",
    "externality_given",
    "externality_received",
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
    _GIVEN,
    _RECEIVED,
    _PENALTY,
    _PRINCIPAL_LOSS,
    _MESA_LOSS,
    _CAUSAL,
    _ADVERSARIAL,
) = range(len(METRIC_ROWS))


def outcomes_and_measures(
    indptr: np.ndarray,
    indices: np.ndarray,
    weights: np.ndarray,
    in_weight: np.ndarray,
    action: np.ndarray,
    noise: np.ndarray,
    neighbour_effort: np.ndarray,
    reward: np.ndarray,
    own_best: np.ndarray,
    theta: np.ndarray,
    capacity: np.ndarray,
    principal: np.ndarray,
    caught: np.ndarray,
    metric: np.ndarray,
    cost: np.ndarray,
    externality: np.ndarray,
    peer: np.ndarray,
    alpha: np.ndarray,
    beta: np.ndarray,
    values: np.ndarray,
    risk_premium: np.ndarray,
    penalty: np.ndarray,
    benchmark: np.ndarray,
    hostile: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    principal_capacity: np.ndarray,
    trans_cosine: float,
    harm: np.ndarray,
    out: np.ndarray,
    flags: np.ndarray,
    primary: np.ndarray,
    outside: np.ndarray,
) -> None:
    """Steps 4–6 for every agent i of principal j (per-principal arrays are indexed by j).

    * output ``y = a + ε``; proxy ``M = mᵀy``; value ``V = v_jᵀy``; pay ``α_j + β_j·M``;
    * private payoff ``θᵀa − ½aᵀKa − risk_j + Σ_k δ_k a_k (G a)_k``; externality given
      ``(eᵀa)·in_weight_i``, received ``(G (eᵀa))_i``; penalty if caught;
    * utility = pay + private + received − penalty; principal profit = V − pay + penalty;
    * principal loss ``benchmark_j − (V − ½aᵀKa)``; mesa loss
      ``½rᵀa* − (rᵀa − ½aᵀKa + β_j(M − mᵀa))``;
    * adversarial Goodhart ``Σ_k −v_jk·a_k`` over the principal's hostile channels; acting
      outside ``[low_j, high_j]``; category flags super / sub / trans / aligned and the primary one
      (:func:`model.metrics.categorize`).

    Causal Goodhart (row ``goodhart_causal``) is left at 0: the caller fills it for stale agents.

    Args:
        indptr: CSR row pointers of the adjacency G, (N + 1,).
        indices: CSR column indices, (nnz,).
        weights: CSR values, (nnz,).
        in_weight: Column sums of G, (N,).
        action: Efforts a, (N, d).
        noise: Output noise ε, (N, d).
        neighbour_effort: G a of the previous step, (N, d).
        reward: Marginal rewards r, (N, d).
        own_best: ½ rᵀa* per agent, (N,).
        theta: Objectives θ, (N, d).
        capacity: Agent capacities, (N,).
        principal: Principal index per agent, (N,).
        caught: Caught by this step's audit, (N,).
        metric: Proxy weights m, (d,).
        cost: Cost matrix K, (d, d).
        externality: Per-unit externality e on each neighbour, (d,).
        peer: Peer effects δ, (d,).
        alpha: Fixed pay per principal, (J,).
        beta: Contract slope per principal, (J,).
        values: True values per principal, (J, d).
        risk_premium: Agents' risk premium per principal, (J,).
        penalty: Audit penalty per principal, (J,).
        benchmark: Surplus of the principal's aligned benchmark agent, (J,).
        hostile: Channels counted as adversarial, per principal, (J, d).
        low: Lower end of the selection range (slack included), (J, d).
        high: Upper end of the selection range, (J, d).
        principal_capacity: Capacity per principal, (J,).
        trans_cosine: Cosine below which goals count as misaligned.
        harm: Scratch space, (N,); receives eᵀa.
        out: Receives the metrics, (len(METRIC_ROWS), N).
        flags: Receives the category flags, (N, 4) in the order of ``CATEGORIES``.
        primary: Receives the primary category index, (N,).
        outside: Receives whether the action leaves the selection range, (N,).
    """
    np.dot(action, externality, out=harm)  # all rows' harm first: a row reads its neighbours'
    arguments = (
        indptr, indices, weights, in_weight, action, noise, neighbour_effort, reward, own_best,
        theta, capacity, principal, caught, metric, cost, peer, alpha, beta, values,
        risk_premium, penalty, benchmark, hostile, low, high, principal_capacity, trans_cosine,
        harm, out, flags, primary, outside,
    )  # fmt: skip
    rows_kernel = _OUTCOME_ROWS.get(action.shape[1], _outcome_rows)
    parallel_map(lambda rows: rows_kernel(*rows, arguments), row_ranges(len(action)))


@nb.njit(inline="always", error_model="numpy")
def _outcome_body(lo: int, hi: int, d: int, arguments: tuple) -> None:
    """:func:`outcomes_and_measures` for rows ``lo..hi`` with ``d`` channels (inlined)."""
    (
        indptr, indices, weights, in_weight, action, noise, neighbour_effort, reward, own_best,
        theta, capacity, principal, caught, metric, cost, peer, alpha, beta, values,
        risk_premium, penalty, benchmark, hostile, low, high, principal_capacity, trans_cosine,
        harm, out, flags, primary, outside,
    ) = arguments  # fmt: skip
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
        received = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            received += weights[p] * harm[indices[p]]
        pay = alpha[j] + beta[j] * proxy
        fine = penalty[j] if caught[i] else 0.0
        private = intrinsic - effort_cost - risk_premium[j] + peer_payoff
        out[_PROXY, i] = proxy
        out[_VALUE, i] = value
        out[_PAY, i] = pay
        out[_PROFIT, i] = value - pay + fine
        out[_UTILITY, i] = pay + private + received - fine
        out[_PRIVATE, i] = private
        out[_GIVEN, i] = harm[i] * in_weight[i]
        out[_RECEIVED, i] = received
        out[_PENALTY, i] = fine
        out[_PRINCIPAL_LOSS, i] = benchmark[j] - (value - effort_cost)
        realized = own - effort_cost + beta[j] * (proxy - planned_proxy)
        out[_MESA_LOSS, i] = own_best[i] - realized
        out[_CAUSAL, i] = 0.0
        out[_ADVERSARIAL, i] = adversarial
        outside[i] = gone
        norms = np.sqrt(theta_sq * values_sq)
        cosine = dot / norms if norms > 0 else 0.0
        is_super = capacity[i] > principal_capacity[j]
        is_sub = capacity[i] < principal_capacity[j]
        is_trans = cosine < trans_cosine
        flags[i, 0] = is_super
        flags[i, 1] = is_sub
        flags[i, 2] = is_trans
        flags[i, 3] = not (is_super or is_sub or is_trans)
        if is_super:
            primary[i] = 0
        elif is_trans:
            primary[i] = 2
        elif is_sub:
            primary[i] = 1
        else:
            primary[i] = 3


# One compiled kernel per small channel count (d a constant the compiler unrolls the per-channel
# loops over) and one for any d, written out as for :func:`agents.response_jit.plan_actions`.
@nb.njit(cache=True, nogil=True, error_model="numpy")
def _outcome_rows(lo: int, hi: int, arguments: tuple) -> None:
    """:func:`outcomes_and_measures` for rows ``lo..hi``, any d (compiled; runs without the GIL)."""
    _outcome_body(lo, hi, arguments[4].shape[1], arguments)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _outcome_rows_1(lo: int, hi: int, arguments: tuple) -> None:
    _outcome_body(lo, hi, 1, arguments)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _outcome_rows_2(lo: int, hi: int, arguments: tuple) -> None:
    _outcome_body(lo, hi, 2, arguments)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _outcome_rows_3(lo: int, hi: int, arguments: tuple) -> None:
    _outcome_body(lo, hi, 3, arguments)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _outcome_rows_4(lo: int, hi: int, arguments: tuple) -> None:
    _outcome_body(lo, hi, 4, arguments)


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
