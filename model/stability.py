"""When peer effects leave the agents' simultaneous best responses stable: the exact conditions.

Every step all agents best-respond at once to their neighbours' efforts of the previous step (a
Jacobi iteration of the linear-quadratic network game of Ballester, Calvó-Armengol & Zenou 2006,
"Who's Who in Networks", Econometrica 74:1403–1417, with the multitask cost of Holmström &
Milgrom 1991). Agent i's effort is

    a_i = T_i(a) = argmax_{a ≥ 0, a_k = 0 off its perceived channels}  r_iᵀa − ½aᵀKa,
    r_i = θ_i + β_j m + Δ(G a)_i,   Δ = diag(δ),

with ``K = D^½((1 − s)I + s·11ᵀ)D^½`` (costs c on the diagonal, ``s = effort_substitution``;
:func:`model.channels.substitution_cost_matrix`). With M = K^-½ Δ K^-½ (so ρ(M) = ρ(K⁻¹Δ), the
largest xᵀΔx / xᵀKx) and ρ(G) the network's spectral radius, two numbers decide what happens:

* **contraction modulus** q = ρ(K⁻¹Δ)·ρ(G). If q < 1 the map T is a contraction with modulus q
  in the norm ‖x‖² = Σ_i w_i x_iᵀKx_i (w = 1 for a symmetric G, w = degrees for a row-normalised
  one, which makes G self-adjoint): each T_i is the K-metric projection of K⁻¹r_i onto a convex set
  (the orthant, cut down by the perception mask), projections are non-expansive, so
  ‖T(a) − T(b)‖ ≤ ‖(M ⊗ G)‖·‖a − b‖ = ρ(M)ρ(G)‖a − b‖. Hence one equilibrium, reached from any
  start at rate q (Banach). Equivalently the game's potential is strictly concave: K − ρ(G)Δ ≻ 0.
  If q > 1 the map is not a contraction in any norm: at an equilibrium where the agents work
  every channel (and perceive them) the map is linear, a ↦ (K⁻¹Δ ⊗ G)a + const, whose spectral
  radius is exactly ρ(K⁻¹Δ)·ρ(G) (eigenvalues of a Kronecker product multiply), so that
  equilibrium is unstable. ``q < 1`` is therefore the exact condition for a unique, globally stable
  equilibrium for every objective θ the model can select; it is sufficient, not necessary, for a
  particular run (masks and a binding a ≥ 0 only shrink the modulus).
* **growth ratio** g = max_k δ_k·ρ(G)/c_k. Efforts stay bounded iff g < 1: from the KKT
  conditions, a_k > 0 implies r_k = (Ka)_k ≥ c_k a_k because K ≥ 0 entrywise, so every
  best response lies below the one-channel response max(r_k, 0)/c_k, and effort on channel k is
  dominated by the linear recursion x ← (θ_k + β_j m_k)⁺/c_k + (δ_k/c_k)G x, which converges iff
  δ_kρ(G)/c_k < 1 (Perron–Frobenius). Conversely with g ≥ 1 effort on that channel, once positive
  anywhere on a connected graph, grows without bound along the Perron vector (the substitutes
  are crowded out, so channel k ends up alone with cost c_k). Because K ≥ 0 entrywise, K − ρΔ is
  copositive iff its diagonal is positive: g < 1 is also exactly when the potential is bounded
  on the orthant. The domination argument holds for any mix of world epochs (stale planners keep
  their old δ and c), perception mask and non-negative G.

Always g ≤ q (ρ(K⁻¹Δ) ≥ max_k δ_k (K⁻¹)_kk ≥ max_k δ_k/c_k); with one channel, or without
substitution, g = q. In between (only with s > 0 and peer effects on a channel whose substitutes
are worked) efforts stay bounded but the interior equilibrium is unstable: agents drift to
specialised corner equilibria, which need not be unique. The model refuses q ≥ 1 (it needs the
equilibrium it simulates to be the unique stable one) and says in the message whether efforts
would also diverge (g ≥ 1). A single channel: δ·ρ(G) < c.

What is not covered: a population mixing world epochs (stale planners) is guaranteed bounded (the
domination argument) but contracts provably only without substitution (then every channel is a
monotone scalar map and Perron–Frobenius monotonicity applies); best-of-k planners and control
agents approach the same equilibrium by their own dynamics — a control agent's gain must also be
below its network limit 2/max(λ_max(K − λ_min(G)Δ), λ_max(K − λ_max(G)Δ))
(:mod:`model.control_limits`), which is the control kind's own (modelled) failure, not refused.

Every check is pure: arrays and the validated scenario in, a :class:`PeerStability` or a
:class:`model.errors.ScenarioError` out. ρ(G) comes from :func:`model.network.spectral_radius`,
computed only when the cheap bound ρ(G) ≤ max row sum cannot settle the question.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from mesaopt.model.channels import substitution_cost_matrix
from mesaopt.model.errors import ScenarioError
from mesaopt.model.network import spectral_radius

__all__ = [
    "PeerStability",
    "assess",
    "check_peer_stability",
    "peer_gain",
    "radius_upper_bound",
    "scenario_worlds",
]


def peer_gain(cost_matrix: np.ndarray, peer: np.ndarray) -> float:
    """ρ(K⁻¹Δ): how strongly one unit of neighbours' effort feeds back into own effort.

    Computed as λ_max(Δ^½ K⁻¹ Δ^½), the largest generalised eigenvalue of Δx = μKx (K⁻¹Δ is
    similar to that symmetric matrix, so its spectrum is real and non-negative).

    Args:
        cost_matrix: Symmetric positive definite K, (d, d).
        peer: Peer effects δ ≥ 0, (d,).

    Returns:
        ρ(K⁻¹Δ) ≥ 0; 0 without peer effects.

    Raises:
        ValueError: If a peer effect is negative or not finite.
    """
    delta = np.asarray(peer, dtype=float)
    if not np.all(np.isfinite(delta) & (delta >= 0.0)):
        raise ValueError("peer effects must be finite and non-negative")
    if not np.any(delta > 0.0):
        return 0.0
    root = np.sqrt(delta)
    inverse = np.linalg.inv(np.asarray(cost_matrix, dtype=float))
    m = root[:, None] * inverse * root[None, :]
    return max(float(np.linalg.eigvalsh(0.5 * (m + m.T))[-1]), 0.0)


@dataclass(frozen=True)
class PeerStability:
    """The two stability numbers of one world on one network (see the module docstring).

    Attributes:
        radius: ρ(G) used (exact, or an upper bound when ``exact_radius`` is False).
        exact_radius: Whether ``radius`` is the spectral radius itself.
        gain: ρ(K⁻¹Δ).
        modulus: q = ρ(K⁻¹Δ)·ρ(G): the best responses contract iff q < 1.
        growth: g = max_k δ_k·ρ(G)/c_k: efforts stay bounded iff g < 1.
        channel: The channel attaining g (largest δ_k/c_k).
        peer: δ_k of that channel.
        cost: c_k of that channel.
        substitution: s of the world's K.
    """

    radius: float
    exact_radius: bool
    gain: float
    modulus: float
    growth: float
    channel: int
    peer: float
    cost: float
    substitution: float

    @property
    def stable(self) -> bool:
        """Whether q < 1: one equilibrium, reached from any start by simultaneous best responses."""
        return self.modulus < 1.0

    @property
    def diverges(self) -> bool:
        """Whether g ≥ 1: effort on ``channel`` grows without bound once it is positive anywhere."""
        return self.growth >= 1.0

    def describe(self, names: tuple[str, ...] | list[str]) -> str:
        """The condition that fails (or holds), with its numbers, as one sentence.

        Args:
            names: Channel names.

        Returns:
            The message.
        """
        name = names[self.channel]
        if self.diverges:
            return (
                f"peer effect {self.peer:g} times the network's spectral radius "
                f"{self.radius:.4g} is {self.peer * self.radius:.4g} ≥ cost {self.cost:g} of "
                f"channel {name!r}: best responses diverge (efforts grow without bound; stability "
                f"needs δ_k·ρ(G) < c_k on every channel and ρ(K⁻¹Δ)·ρ(G) < 1, here "
                f"{self.modulus:.4g}); lower peer, raise cost or set network.normalize = true"
            )
        verdict = "<" if self.stable else "≥"
        return (
            f"ρ(K⁻¹Δ)·ρ(G) = {self.gain:.4g} × {self.radius:.4g} = {self.modulus:.4g} {verdict} 1 "
            f"with effort_substitution {self.substitution:g}"
            + (
                ""
                if self.stable
                else (
                    ": best responses do not contract (every δ_k·ρ(G) < c_k, so efforts stay "
                    "bounded, but effort moved off substitutes amplifies the peer effect: the "
                    "interior equilibrium is unstable and need not be unique); lower peer, "
                    "raise cost, lower effort_substitution or set network.normalize = true"
                )
            )
        )


def assess(
    costs: np.ndarray, substitution: float, peer: np.ndarray, radius: float, *, exact: bool = True
) -> PeerStability:
    """The stability numbers of a world with these channels on a network of spectral radius ρ.

    Args:
        costs: Channel costs c > 0, (d,).
        substitution: Effort substitution s in [0, 1).
        peer: Peer effects δ ≥ 0, (d,).
        radius: ρ(G) ≥ 0 (or an upper bound of it).
        exact: Whether ``radius`` is exact (recorded in the result).

    Returns:
        The :class:`PeerStability`.
    """
    c = np.asarray(costs, dtype=float)
    delta = np.asarray(peer, dtype=float)
    gain = peer_gain(substitution_cost_matrix(c, substitution), delta)
    ratio = delta / c
    k = int(np.argmax(ratio)) if len(ratio) else 0
    return PeerStability(
        radius=float(radius),
        exact_radius=exact,
        gain=gain,
        modulus=gain * float(radius),
        growth=float(ratio[k] * radius) if len(ratio) else 0.0,
        channel=k,
        peer=float(delta[k]) if len(delta) else 0.0,
        cost=float(c[k]) if len(c) else 1.0,
        substitution=float(substitution),
    )


def radius_upper_bound(adjacency: sp.sparray | sp.spmatrix | np.ndarray) -> float:
    """max_i Σ_j |G_ij| ≥ ρ(G): the bound that spares the eigenvalue when peer effects are weak."""
    a = sp.csr_array(adjacency, dtype=float)
    if a.shape[0] == 0 or a.nnz == 0:
        return 0.0
    return float(np.max(abs(a).sum(axis=1)))


@dataclass(frozen=True)
class _Epoch:
    """One world a scenario reaches: its costs and peer effects, and the key that made it."""

    costs: np.ndarray
    peer: np.ndarray
    key: str  # the scenario key to name if this world is refused


def scenario_worlds(config: Any) -> list[_Epoch]:
    """Every world the scenario's agents can act in, as far as stability is concerned.

    The initial world, and the world after each step with regime changes that set ``cost`` or
    ``peer`` (changes at the same step apply in scenario order, one on top of the other; worlds
    in between exist only within that step's first phase, so nobody acts in them).

    Args:
        config: The validated scenario (``channels``, ``regimes``, ``channel_index``).

    Returns:
        The worlds in the order they arise. The key of the initial world is
        ``channels.<k>.peer`` of the channel with the largest δ_k/c_k; a later world's key is the
        last regime of its step that set ``peer`` or ``cost`` (``regimes.<i>.set.peer`` if it
        raised a peer effect or set no cost, else ``regimes.<i>.set.cost``).
    """
    costs = np.array([c.cost for c in config.channels], dtype=float)
    peer = np.array([c.peer for c in config.channels], dtype=float)
    ratio = peer / costs
    first = int(np.argmax(ratio)) if len(ratio) else 0
    worlds = [_Epoch(costs.copy(), peer.copy(), f"channels.{first}.peer")]
    order = sorted(range(len(config.regimes)), key=lambda i: (config.regimes[i].at, i))
    key = ""
    for pos, i in enumerate(order):
        regime = config.regimes[i]
        k = config.channel_index(regime.channel)
        fields = regime.set
        if "peer" in fields:
            new = float(fields["peer"])
            key = f"regimes.{i}.set.peer" if new > peer[k] or "cost" not in fields else key
            peer[k] = new
        if "cost" in fields:
            new = float(fields["cost"])
            if not key.startswith(f"regimes.{i}.") or new < costs[k]:
                key = f"regimes.{i}.set.cost"
            costs[k] = new
        last_of_step = pos + 1 == len(order) or config.regimes[order[pos + 1]].at != regime.at
        if last_of_step and key:  # the step changed cost or peer: a world agents act in
            worlds.append(_Epoch(costs.copy(), peer.copy(), key))
        if last_of_step:
            key = ""
    return worlds


def check_peer_stability(
    config: Any,
    adjacency: sp.sparray | sp.spmatrix | np.ndarray,
    *,
    radius: Callable[[Any], float] = spectral_radius,
) -> PeerStability | None:
    """Refuse a scenario whose peer effects leave best responses unstable, now or after a regime.

    Checks q = ρ(K⁻¹Δ)·ρ(G) < 1 (which implies δ_k·ρ(G) < c_k on every channel) for the initial
    world and for the world after every step with regime changes. ρ(G) is computed only if the
    bound ρ(G) ≤ max row sum does not already show every world stable.

    Args:
        config: The validated scenario.
        adjacency: The network G the run uses (non-negative; symmetric or row-normalised).
        radius: Spectral radius function (the network module's by default).

    Returns:
        The least stable world's numbers (largest q), or None when no channel has a peer effect
        in any world.

    Raises:
        ScenarioError: For the first world with q ≥ 1, naming the key that made it (a channel's
            ``peer``, ``agents.effort_substitution``, or a regime's ``set.peer`` / ``set.cost``)
            and the failed condition with its numbers.
    """
    worlds = scenario_worlds(config)
    if not any(np.any(w.peer > 0) for w in worlds):
        return None
    s = float(config.agents.effort_substitution)
    bound = radius_upper_bound(adjacency)
    reports = [assess(w.costs, s, w.peer, bound, exact=False) for w in worlds]
    if all(r.stable for r in reports):
        return max(reports, key=lambda r: r.modulus)
    rho = float(radius(adjacency))
    names = [c.name for c in config.channels]
    reports = []
    for world in worlds:
        report = assess(world.costs, s, world.peer, rho)
        if not report.stable:
            key = world.key
            if world is worlds[0] and not report.diverges and s > 0:
                key = "agents.effort_substitution"  # stable without substitution
            raise ScenarioError(key, report.describe(names))
        reports.append(report)
    return max(reports, key=lambda r: r.modulus)
