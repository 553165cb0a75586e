"""Peer-effect stability (model/stability.py): the exact condition, through the model.

Simultaneous best responses contract iff q = ρ(K⁻¹Δ)·ρ(G) < 1; efforts diverge iff some
δ_k·ρ(G) ≥ c_k. Boundaries are tested on rings (ρ(G) = k exactly) a relative 1e-3 either side,
against closed forms that do not use the module's eigenvalue code: one channel δρ < c; equal costs
and peer effects on every channel δρ < c(1 − s) (K's smallest eigenvalue is c(1 − s)); a peer effect
on the first of two channels δρ < c₁(1 − s²) (1/(K⁻¹)₁₁ is the Schur complement c₁(1 − s²)).
Equilibria are compared with the Ballester–Calvó-Armengol–Zenou closed form with costs,
(I ⊗ K − G ⊗ Δ)⁻¹θ, which the contraction reaches to rounding: the deterministic tests allow 1e-9.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from mesaopt.agents.response import best_response
from mesaopt.model.channels import substitution_cost_matrix
from mesaopt.model.errors import ScenarioError
from mesaopt.model.model import MesaOptModel
from mesaopt.model.network import spectral_radius
from mesaopt.model.scenario_files import load_scenario, validate
from mesaopt.model.stability import assess, check_peer_stability, peer_gain

RING = {"topology": "ring", "n_agents": 60, "k": 4}  # ρ(G) = 4 exactly (4-regular)
BELOW, ABOVE = 1 - 1e-3, 1 + 1e-3


def scenario(channels: list[dict[str, Any]], *, s: float = 0.0, network=None, regimes=()):
    """Exact direct agents with objectives θ ~ 1 + N(0, 0.2²) on every channel, no contract."""
    names = [c["name"] for c in channels]
    return {
        "run": {"steps": 0, "seed": 3, "agent_every": 0},
        "network": dict(network or RING),
        "channels": [
            {"value": 1.0, "metric": 0.0, "cost": 1.0, "noise": {"scale": 0.1}} | c
            for c in channels
        ],
        "principals": [
            {
                "name": "p",
                "capacity": 0,
                "train_on": "metric",
                "contract": {"alpha": 0.0, "beta": 0.0},
                "selection": {"n": 1, "every": 0, "fraction": 0.0, "prior_scale": 0.0},
            }
        ],
        "agents": {
            "capacity": 0,
            "optimizer": "direct",
            "power": "exact",
            "effort_substitution": s,
            "goals": {"mean": dict.fromkeys(names, 1.0), "scale": 0.2},
        },
        "regimes": list(regimes),
    }


def build(data: dict[str, Any]) -> MesaOptModel:
    return MesaOptModel(validate(copy.deepcopy(data)))


def refused_key(data: dict[str, Any]) -> str:
    with pytest.raises(ScenarioError) as info:
        build(data)
    return info.value.key


# ---------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("s", [0.0, 0.3, 0.8])
def test_peer_gain_matches_closed_forms(s):
    c = np.array([2.0, 2.0, 2.0])
    k = substitution_cost_matrix(c, s)
    assert peer_gain(k, np.full(3, 0.5)) == pytest.approx(0.5 / (2.0 * (1 - s)), rel=1e-12)
    two = substitution_cost_matrix(np.array([1.5, 0.7]), s)
    assert peer_gain(two, np.array([0.4, 0.0])) == pytest.approx(0.4 / (1.5 * (1 - s**2)))
    assert peer_gain(k, np.zeros(3)) == 0.0
    with pytest.raises(ValueError):
        peer_gain(k, np.array([0.1, -0.1, 0.0]))


def test_modulus_is_the_spectral_radius_of_the_linearised_map():
    """ρ((K⁻¹Δ) ⊗ G), computed densely, is ρ(K⁻¹Δ)·ρ(G); the growth ratio never exceeds it."""
    rng = np.random.default_rng(0)
    g = np.triu(rng.random((30, 30)) < 0.2, 1).astype(float)
    g += g.T
    costs, peer, s = np.array([1.0, 0.5, 2.0]), np.array([0.1, 0.05, 0.3]), 0.4
    k = substitution_cost_matrix(costs, s)
    linear = np.kron(np.linalg.solve(k, np.diag(peer)), g)
    report = assess(costs, s, peer, spectral_radius(sp.csr_matrix(g)))
    assert report.modulus == pytest.approx(np.max(np.abs(np.linalg.eigvals(linear))), rel=1e-9)
    assert report.growth <= report.modulus
    assert report.growth == pytest.approx(np.max(peer / costs) * report.radius)


# ------------------------------------------------------------------ boundaries, through the model


@pytest.mark.parametrize("cost", [0.5, 2.0])
def test_one_channel_boundary_is_delta_rho_below_cost(cost):
    edge = cost / 4.0
    build(scenario([{"name": "x", "cost": cost, "peer": edge * BELOW}]))
    key = refused_key(scenario([{"name": "x", "cost": cost, "peer": edge * ABOVE}]))
    assert key == "channels.0.peer"


@pytest.mark.parametrize("s", [0.0, 0.5])
def test_equal_channels_boundary_is_delta_rho_below_cost_times_one_minus_s(s):
    edge = 1.0 * (1 - s) / 4.0
    channels = [{"name": n, "peer": edge * BELOW} for n in ("x", "y", "z")]
    build(scenario(channels, s=s))
    over = [c | {"peer": edge * ABOVE} for c in channels]
    # Without substitution the efforts diverge (a channel's δρ ≥ c): its peer key is named; with
    # it, every δρ < c, and substitution is what breaks the contraction.
    assert refused_key(scenario(over, s=s)) == (
        "agents.effort_substitution" if s else "channels.0.peer"
    )


@pytest.mark.parametrize("s", [0.2, 0.6])
def test_one_peer_channel_with_a_substitute_boundary_is_the_schur_complement(s):
    c1 = 1.5
    edge = c1 * (1 - s**2) / 4.0
    channels = [{"name": "x", "cost": c1}, {"name": "y", "cost": 0.7}]
    build(scenario([channels[0] | {"peer": edge * BELOW}, channels[1]], s=s))
    key = refused_key(scenario([channels[0] | {"peer": edge * ABOVE}, channels[1]], s=s))
    assert key == "agents.effort_substitution"


def test_regime_changes_are_checked_on_both_sides_of_the_boundary():
    base = [{"name": "x", "cost": 1.0, "peer": 0.1}, {"name": "y"}]
    cheap = 4 * 0.1  # δρ: the cost below which channel x diverges
    ok = [{"at": 3, "channel": "x", "set": {"cost": cheap * ABOVE}}]
    build(scenario(base, regimes=ok))
    bad = [{"at": 3, "channel": "x", "set": {"cost": cheap * BELOW}}]
    assert refused_key(scenario(base, regimes=bad)) == "regimes.0.set.cost"
    up = [{"at": 3, "channel": "y", "set": {"peer": 0.25 * ABOVE}}]
    assert refused_key(scenario(base, regimes=up)) == "regimes.0.set.peer"
    build(scenario(base, regimes=[{"at": 3, "channel": "y", "set": {"peer": 0.25 * BELOW}}]))


def test_regime_changes_with_substitution_use_the_exact_condition():
    s = 0.5
    base = [{"name": "x", "cost": 1.0, "peer": 0.0}, {"name": "y", "cost": 1.0}]
    edge = (1 - s**2) / 4.0  # δρ < c(1 − s²) while y is worked
    ok = [{"at": 2, "channel": "x", "set": {"peer": edge * BELOW}}]
    build(scenario(base, s=s, regimes=ok))
    bad = [{"at": 2, "channel": "x", "set": {"peer": edge * ABOVE}}]
    assert refused_key(scenario(base, s=s, regimes=bad)) == "regimes.0.set.peer"


def test_regimes_apply_in_at_order_and_a_step_is_checked_once_complete():
    base = [{"name": "x", "cost": 1.0, "peer": 0.1}]
    # In file order the peer change (cost 1: 0.6·4 ≥ 1 only after the cost change)...
    regimes = [
        {"at": 10, "channel": "x", "set": {"peer": 0.15}},  # 0.6 ≥ 0.5: refused here
        {"at": 5, "channel": "x", "set": {"cost": 0.5}},  # 0.4 < 0.5: fine at step 5
    ]
    assert refused_key(scenario(base, regimes=regimes)) == "regimes.0.set.peer"
    # Two changes at one step: the world in between (cost 0.3, peer 0.1) is never acted in.
    same_step = [
        {"at": 5, "channel": "x", "set": {"cost": 0.3}},
        {"at": 5, "channel": "x", "set": {"peer": 0.05}},
    ]
    build(scenario(base, regimes=same_step))
    assert refused_key(scenario(base, regimes=same_step[:1])) == "regimes.0.set.cost"


def test_the_review_cases():
    """ER(400, k = 6): cost 0.5 with δ = 0.1 used to be accepted and diverge; cost 2 with δ = 0.2
    used to be refused although stable."""
    er = ["network.topology=erdos_renyi", "network.n_agents=400", "network.k=6", "run.steps=60"]
    with pytest.raises(ScenarioError) as info:
        MesaOptModel(load_scenario(None, [*er, "channels.0.cost=0.5", "channels.0.peer=0.1"]))
    assert info.value.key == "channels.0.peer"
    assert "diverge" in info.value.message and "cost 0.5" in info.value.message
    model = MesaOptModel(load_scenario(None, [*er, "channels.0.cost=2", "channels.0.peer=0.2"]))
    rho = spectral_radius(model.network.adjacency)
    assert 1 <= 0.2 * rho < 2  # refused by the old δ·ρ(G) < 1, accepted by δ·ρ(G) < c
    peak = []
    for _ in range(6):
        model.run_for(10)
        peak.append(np.abs(model.population.action).max())
    assert np.all(np.isfinite(peak)) and max(peak) < 50  # bounded, not 1e9


# ---------------------------------------------------------------------- dynamics at the boundary


def jacobi(g, k, delta, theta, steps):
    """Simultaneous exact best responses (the model's step 3 for exact direct agents)."""
    a = np.zeros_like(theta)
    for _ in range(steps):
        a = best_response(theta + delta * (g @ a), k, np.ones(theta.shape, bool))
    return a


@pytest.mark.parametrize("s", [0.0, 0.4])
def test_efforts_diverge_exactly_past_delta_rho_equal_to_cost(s):
    """With or without substitution, effort on a channel with δρ > c grows (the substitutes are
    crowded out); just below it, bounded by the one-channel response θ/(c − δρ)."""
    g = build(scenario([{"name": "x"}])).network.adjacency
    k = substitution_cost_matrix(np.array([1.0, 1.0]), s)
    theta = np.ones((60, 2))
    below = jacobi(g, k, np.array([0.25 * BELOW, 0.0]), theta, 3000)
    assert below.max() <= 1.0 / (1.0 - 4 * 0.25 * BELOW) * (1 + 1e-9)
    above = jacobi(g, k, np.array([0.25 * ABOVE, 0.0]), theta, 3000)
    assert above[:, 0].min() > 1e4
    # The substitute is crowded out (a shared budget), or untouched without substitution.
    np.testing.assert_array_equal(above[:, 1], 0.0 if s else 1.0)


# ------------------------------------------------------------------------ BCZ with non-unit cost


def bcz(g: sp.csr_matrix, k: np.ndarray, delta: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Interior equilibrium K a_i = θ_i + Δ(G a)_i: (I ⊗ K − G ⊗ Δ) vec(a) = vec(θ) (row-major)."""
    n, d = theta.shape
    system = sp.kron(sp.identity(n), k) - sp.kron(g, np.diag(delta))
    return spla.spsolve(system.tocsc(), theta.ravel()).reshape(n, d)


def test_equilibrium_with_cost_is_bcz_through_the_model():
    """One channel, cost 2: a* = (cI − δG)⁻¹θ (Ballester, Calvó-Armengol & Zenou 2006)."""
    cost, delta = 2.0, 0.4  # δρ = 1.6 < 2 (refused by the old δρ < 1 check); q = 0.8
    model = build(scenario([{"name": "x", "cost": cost, "peer": delta}]))
    theta = model.population.theta[:, 0]
    assert theta.min() > 0  # interior
    model.run_for(200)  # 0.8^200 ≈ 4e-20
    g = model.network.adjacency
    expected = spla.spsolve((cost * sp.identity(60) - delta * g).tocsc(), theta)
    np.testing.assert_allclose(model.population.action[:, 0], expected, rtol=1e-9)


def test_equilibrium_with_substitution_is_the_kronecker_solve_through_the_model():
    s = 0.3
    channels = [{"name": "x", "cost": 2.0, "peer": 0.3}, {"name": "y", "cost": 1.0, "peer": 0.1}]
    model = build(
        scenario(
            channels, s=s, network={"topology": "watts_strogatz", "n_agents": 80, "k": 4, "p": 0.3}
        )
    )
    world = model.world
    report = check_peer_stability(model.config, model.network.adjacency)
    assert report is not None and report.modulus < 0.8
    model.run_for(250)
    expected = bcz(model.network.adjacency, world.cost_matrix, world.peer, model.population.theta)
    assert expected.min() > 0  # interior: the closed form is the equilibrium
    np.testing.assert_allclose(model.population.action, expected, rtol=1e-9)
