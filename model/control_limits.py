"""When a control law's gain makes it diverge on its network: the linear stability limit.

A control agent's law (docs/model.md, "Control laws") is projected gradient ascent,
``a_t = max(0, a_{t-1} + γ_i (r − K(a_{t-1} + ε)))`` on its perceived channels, with the
marginal reward ``r = θ_i + β_j m + Δ(G a)_prev`` pulled by its neighbours. Away from the bound
a ≥ 0 all control agents together iterate ``a ← a + γ(b − (I ⊗ K − G ⊗ Δ) a)``. For an
undirected G with eigenvalues λ, the iteration splits into one d × d block per λ,
``I − γ(K − λΔ)``, whose eigenvalues lie in (−1, 1) iff every eigenvalue μ of K − λΔ has
0 < γμ < 2. The lower side is the peer-stability condition the model refuses outright
(:mod:`model.stability`); the upper side is the gain's: ``γ < 2 / max_λ λ_max(K − λΔ)``, and as
the largest eigenvalue of an affine matrix function is convex in λ, the maximum is at λ_min(G)
or λ_max(G). With peer effects on a graph whose λ_min(G) < 0 (a bipartite torus has −4), the limit
lies below the lone agent's 2/λ_max(K): the neighbours' overshoots feed each other. Beyond the
limit the agents swing between the graph's two sides; the bound a ≥ 0 holds the swing to a
cycle while one side's pull on the other stays below one (on a k-regular bipartite graph with
one channel, γδk < 1), and past that the swing grows without bound (a lone agent beyond its
limit only cycles between 0 and γr).

This limit is not refused: a gain beyond it is the control kind's own modelled failure (a gain
tuned in the sandbox and gone stale). But its divergence ends in numbers no table can hold, so
when a run stops on a non-finite number the runner names the control agents beyond their limit
(:func:`divergence_hint`), the likely cause.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

__all__ = ["control_limit", "divergence_hint", "extreme_eigenvalues"]

#: Up to this many nodes the eigenvalues of G are found densely.
DENSE_NODES = 2_000


def extreme_eigenvalues(
    adjacency: sp.spmatrix | sp.sparray, tol: float = 1e-8, maxiter: int = 300
) -> tuple[float, float]:
    """The smallest and largest real parts of the eigenvalues of G.

    Densely up to :data:`DENSE_NODES` nodes, else with ARPACK (``eigsh`` for a symmetric G).

    Args:
        adjacency: The agents' network, (N, N).
        tol: ARPACK's relative tolerance (measured at 1e6 agents, WS k = 8: 1e-3 takes 5 s and
            is off by 3e-5, 1e-4 takes 10 s).
        maxiter: ARPACK's restarts, a bound on the time: the clustered spectrum of a long ring
            does not converge at 1e-8 (20,000 nodes, k = 2: 300 restarts take 1.3 s and fail;
            unbounded, more than five minutes), and converges at 1e-3 in 0.1 s.

    Returns:
        ``(λ_min, λ_max)``; ``(0, 0)`` for a graph without edges.

    Raises:
        scipy.sparse.linalg.ArpackNoConvergence: If ARPACK does not converge in ``maxiter``.
    """
    a = sp.csr_matrix(adjacency, dtype=np.float64)
    n = a.shape[0]
    if n == 0 or a.nnz == 0:
        return 0.0, 0.0
    symmetric = abs(a - a.T).max() <= 1e-12
    if n <= DENSE_NODES:
        dense = a.toarray()
        values = np.linalg.eigvalsh(dense) if symmetric else np.linalg.eigvals(dense).real
        return float(values.min()), float(values.max())
    if symmetric:
        low = spla.eigsh(a, k=1, which="SA", tol=tol, maxiter=maxiter, return_eigenvectors=False)
        high = spla.eigsh(a, k=1, which="LA", tol=tol, maxiter=maxiter, return_eigenvectors=False)
    else:
        low = spla.eigs(
            a, k=1, which="SR", tol=tol, maxiter=maxiter, return_eigenvectors=False
        ).real
        high = spla.eigs(
            a, k=1, which="LR", tol=tol, maxiter=maxiter, return_eigenvectors=False
        ).real
    return float(low[0]), float(high[0])


def control_limit(
    cost_matrix: np.ndarray, peer: np.ndarray, perceive: np.ndarray, low: float, high: float
) -> float:
    """The largest stable gain of a control law on its perceived channels and network.

    Args:
        cost_matrix: K, (d, d).
        peer: δ per channel, (d,).
        perceive: The channels the law acts on, (d,) bool.
        low: λ_min(G).
        high: λ_max(G).

    Returns:
        ``2 / max(λ_max(K_P − λ_min Δ_P), λ_max(K_P − λ_max Δ_P))`` over the perceived block P;
        inf when the law acts on no channel.
    """
    if not perceive.any():
        return float("inf")
    block = cost_matrix[np.ix_(perceive, perceive)]
    delta = np.diag(peer[perceive])
    largest = max(float(np.linalg.eigvalsh(block - lam * delta).max()) for lam in (low, high))
    return 2.0 / largest if largest > 0 else float("inf")


def divergence_hint(model) -> str | None:
    """Name the control agents whose gains exceed their limit in the current world, or None.

    Args:
        model: The model (its population, world, network and control rows).

    Returns:
        One clause for an error line, or None when no control agent is beyond its limit (or no
        channel has a peer effect: a lone law beyond its limit only cycles).
    """
    rows = np.flatnonzero(model.is_control)
    if not len(rows):
        return None
    world = model.world
    if not (world.peer != 0).any():
        return None  # a lone law beyond its limit cycles (the bound a >= 0 holds it): no cause
    try:  # a hint to an error, not a result: a looser tolerance keeps it to seconds
        low, high = extreme_eigenvalues(model.adjacency, tol=1e-3, maxiter=100)
    except (spla.ArpackError, np.linalg.LinAlgError):  # no convergence, or ARPACK's own failures
        return None
    perceive = model.perceives(world)[rows]
    gains = model.population.gain[rows]
    beyond = np.zeros(len(rows), dtype=bool)
    limit_of = np.empty(len(rows))
    for mask in np.unique(perceive, axis=0):
        same = (perceive == mask).all(axis=1)
        limit = control_limit(world.cost_matrix, world.peer, mask, low, high)
        limit_of[same] = limit
        beyond[same] = gains[same] >= limit
    if not beyond.any():
        return None
    worst = int(np.argmax(np.where(beyond, gains / limit_of, -np.inf)))
    return (
        f"{int(beyond.sum())} of {len(rows)} control agents have gains at or above their "
        f"stability limit on this network (γ = {gains[worst]:.4g} ≥ 2/λ_max(K − λΔ) = "
        f"{limit_of[worst]:.4g}, with λ_min(G) = {low:.4g}): neighbours' overshoots feed "
        "each other and their efforts can grow without bound (docs/model.md, Control laws)"
    )
