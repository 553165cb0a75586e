"""The neighbours' efforts G a: gathered once per step, refreshed where efforts changed since.

A step's outcomes gather ``G a_t`` of the efforts just realized (the peer payoff is realized with
them: :mod:`model.measures_jit`), and the next step's agents choose against the same ``G a_t``
(:mod:`agents.response_jit`). Between the two, agents may be replaced — by an audit, a federated
update, scheduled retraining — and start from other efforts. :func:`refresh_neighbour_effort`
finds the agents whose effort changed since the gather (bit for bit: any write, by the model or
by a user's code, counts) and gathers their neighbours' rows again (G's pattern is symmetric in
every network the model builds, so the neighbours of j are the rows that list j). Every row is
summed in CSR index order, as SciPy's sparse product sums it, so the carried ``G a`` is equal
bit for bit to a fresh ``G @ a`` (:func:`refresh_neighbour_effort_numpy`, the NumPy reference).

Why carry it at all: the gather reads every edge's neighbour at random and is the largest cost
of a step after the output noise (``python -m benchmarks.floor``). Gathered twice, in the plan
and again in the outcomes, the same-step peer payoff made the outcome kernel 50 ms slower per
step at 1e6 agents; gathered once (in one pass with the harm received) and carried, an ordinary
step costs what it did before, a selection step (whose plan gathers anew when most agents'
neighbours changed) one gather more (docs/performance.md, "G a once per step").
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np
import scipy.sparse as sp

from mesaopt.model.kernel_arrays import Graph
from mesaopt.model.parallel import parallel_map, row_ranges

__all__ = [
    "CarriedEffort",
    "gather_rows",
    "refresh_neighbour_effort",
    "refresh_neighbour_effort_numpy",
]


class CarriedEffort(NamedTuple):
    """``G a`` of the last step's efforts, carried into the next step's plan.

    Attributes:
        adjacency: The network G it was gathered on (the plan gathers afresh on another).
        neighbour_effort: ``G a``, (N, d).
        gathered_from: The efforts a it was gathered from, a copy, (N, d).
    """

    adjacency: object
    neighbour_effort: np.ndarray
    gathered_from: np.ndarray


@nb.njit(inline="always", error_model="numpy")
def gather_rows(start, stop, d, indptr, indices, weights, source, out):
    """``out[i] = (G source)_i`` for rows ``start..stop``: CSR rows in index order, as SciPy."""
    for i in range(start, stop):
        for k in range(d):
            out[i, k] = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            other = indices[p]
            w = weights[p]
            for k in range(d):
                out[i, k] += w * source[other, k]


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _changed_rows(lo, hi, now, then, changed):
    """``changed[i]``: row i of ``now`` differs from ``then`` in some bit (uint64 views)."""
    count = 0
    for i in range(lo, hi):
        differs = False
        for k in range(now.shape[1]):
            differs |= now[i, k] != then[i, k]
        changed[i] = differs
        count += differs
    return count


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _mark_neighbours(changed, indptr, indices, touched):
    """``touched[i]`` for every row i with a neighbour among the ``changed`` rows.

    The rows whose CSR row lists j are the neighbours of j because the pattern of G is
    symmetric (every network the model builds is undirected; row normalisation keeps the
    pattern), so they are found from the changed rows alone, without reading every row of G.
    """
    for j in changed:
        for p in range(indptr[j], indptr[j + 1]):
            touched[indices[p]] = True


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _regather_rows(rows, indptr, indices, weights, action, out):
    """Gather ``rows`` of ``out = G action`` again."""
    for i in rows:
        gather_rows(i, i + 1, action.shape[1], indptr, indices, weights, action, out)


def refresh_neighbour_effort(
    graph: Graph,
    action: np.ndarray,
    gathered_from: np.ndarray,
    neighbour_effort: np.ndarray,
    most: int | None = None,
) -> int | None:
    """Bring ``neighbour_effort = G gathered_from`` up to ``G action``, in place, bit for bit.

    A few agents change between steps (those replaced), so the rows to gather again are found
    from them: G's pattern must be symmetric, as every network the model builds is. After a
    selection most rows may have a changed neighbour; then gathering them all in the plan, each
    tile used while it is in the cache, is cheaper than gathering them again here.

    Args:
        graph: The network G the effort was gathered on (its pattern symmetric).
        action: The efforts now, (N, d) float64, C order.
        gathered_from: The efforts ``neighbour_effort`` was gathered from, (N, d) float64.
        neighbour_effort: ``G gathered_from``, (N, d); receives ``G action``.
        most: The most rows to gather again (default: a quarter of them).

    Returns:
        The number of rows gathered again (0 when no effort changed), or None if more than
        ``most`` would be: ``neighbour_effort`` is then left as it was, for the caller to
        gather in full.
    """
    n = len(action)
    changed = np.empty(n, dtype=np.bool_)
    now, then = action.view(np.uint64), gathered_from.view(np.uint64)
    spans = row_ranges(n)
    if not sum(parallel_map(lambda span: _changed_rows(*span, now, then, changed), spans)):
        return 0
    touched = np.zeros(n, dtype=np.bool_)
    _mark_neighbours(np.flatnonzero(changed), graph.indptr, graph.indices, touched)
    rows = np.flatnonzero(touched)
    if len(rows) > (n // 4 if most is None else most):
        return None
    parallel_map(
        lambda span: _regather_rows(
            rows[span[0] : span[1]], graph.indptr, graph.indices, graph.data, action,
            neighbour_effort,
        ),
        row_ranges(len(rows)),
    )  # fmt: skip
    return len(rows)


def refresh_neighbour_effort_numpy(
    adjacency: sp.csr_array | sp.csr_matrix,
    action: np.ndarray,
    gathered_from: np.ndarray,
    neighbour_effort: np.ndarray,
) -> int:
    """The NumPy reference of :func:`refresh_neighbour_effort`.

    The rows with a changed neighbour get SciPy's ``G @ action``, which sums each row in index
    order (arguments and result as there; ``adjacency`` is G as a SciPy CSR matrix).
    """
    g = sp.csr_array(adjacency)
    changed = (action.view(np.uint64) != gathered_from.view(np.uint64)).any(axis=1)
    touched = np.diff(np.concatenate([[0], np.cumsum(changed[g.indices])])[g.indptr]) > 0
    rows = np.flatnonzero(touched)
    neighbour_effort[rows] = g[rows] @ action
    return len(rows)
