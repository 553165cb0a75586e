"""The planner's first best (model/planner.py): against scipy, its limits and its columns.

Oracles: an independent bound-constrained solve (``scipy.optimize.minimize``, L-BFGS-B) and the
KKT conditions; closed forms where the first best is the agents' own best response (aligned,
exact agents paid nothing: price of anarchy 1) or where the gap is known (a proxy bonus β makes
aligned agents overwork: E[W* − W] = ½β²mᵀK⁻¹m + (ρ/2)β²σ_M², interior efforts). Stochastic checks
allow 4 standard errors, the SE the sample standard deviation of the per-agent quantity / √N.
The comparison welfare is rebuilt from per-agent columns (value + externality received + private
payoff − θᵀa, i.e. welfare without the agents' goals), not taken from the ``welfare`` column.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.optimize import minimize

import mesaopt.model.planner as planner_module
from mesaopt.agents.response import best_response
from mesaopt.model.channels import substitution_cost_matrix
from mesaopt.model.graphs import watts_strogatz
from mesaopt.model.model import MesaOptModel
from mesaopt.model.parallel import kernel_threads
from mesaopt.model.planner import first_best, planner_welfare
from mesaopt.model.scenario_files import validate

# ------------------------------------------------------------------------------ the solver


def random_problem(n: int = 36, normalize: bool = False, seed: int = 1):
    rng = np.random.default_rng(seed)
    a = np.triu(rng.random((n, n)) < 0.15, 1).astype(float)
    a += a.T
    g = a / np.maximum(a.sum(axis=1, keepdims=True), 1.0) if normalize else a
    return dict(
        adjacency=sp.csr_matrix(g),
        values=np.array([[1.0, 0.5, -0.2], [0.3, 1.0, 0.4]]),  # a negative value: a binds
        principal=rng.integers(0, 2, n),
        costs=np.array([1.0, 0.7, 1.3]),
        substitution=0.3,
        externality=np.array([0.05, -0.1, 0.02]),
        peer=np.array([0.04, 0.0, 0.03]) * (5.0 if normalize else 1.0),
    )


def scipy_first_best(p: dict[str, Any]) -> np.ndarray:
    """max W(a) over a ≥ 0 with L-BFGS-B and the analytic gradient b + Δ(G + Gᵀ)a − aK."""
    g = p["adjacency"]
    n, d = len(p["principal"]), len(p["costs"])
    k = substitution_cost_matrix(p["costs"], p["substitution"])
    s = (g + g.T).toarray()
    b = p["values"][p["principal"]] + np.asarray(g.sum(axis=0)).ravel()[:, None] * p["externality"]

    def objective(x):
        a = x.reshape(n, d)
        w = planner_welfare(g, a, p["values"], p["principal"], k, p["externality"], p["peer"])
        return -w.sum(), -(b + (s @ a) * p["peer"] - a @ k).ravel()

    res = minimize(
        objective,
        np.zeros(n * d),
        jac=True,
        bounds=[(0.0, None)] * (n * d),
        method="L-BFGS-B",
        options={"ftol": 1e-15, "gtol": 1e-11, "maxiter": 20_000},
    )
    assert res.success, res.message
    return res.x.reshape(n, d)


@pytest.mark.parametrize("normalize", [False, True], ids=["symmetric", "row-normalised"])
def test_first_best_matches_scipy_with_externalities_peer_effects_and_substitution(normalize):
    p = random_problem(normalize=normalize)
    solution = first_best(**p, rtol=1e-15)
    assert solution.status == "ok" and 0 < solution.modulus < 1
    a = solution.action
    expected = scipy_first_best(p)
    assert (a == 0).any() and (a > 0).any()  # some constraints bind, some do not
    # L-BFGS-B stops at gtol 1e-11 on a problem with condition ~(1 + q)/(1 − q) ≈ 10: 1e-7 is
    # far above both solvers' error (ours: √(2·gap/μ) ≈ 1e-7 at rtol 1e-15).
    np.testing.assert_allclose(a, expected, atol=2e-7)
    # KKT, independently of scipy: gradient 0 where a > 0, ≤ 0 where a = 0.
    g = p["adjacency"]
    k = substitution_cost_matrix(p["costs"], p["substitution"])
    b = p["values"][p["principal"]] + np.asarray(g.sum(axis=0)).ravel()[:, None] * p["externality"]
    gradient = b + ((g + g.T) @ a) * p["peer"] - a @ k
    assert np.abs(gradient[a > 0]).max() < 1e-6
    assert gradient[a == 0].max() < 1e-6


def test_without_peer_effects_the_first_best_is_each_agents_best_response():
    p = random_problem() | {"peer": np.zeros(3)}
    solution = first_best(**p)
    g, k = p["adjacency"], substitution_cost_matrix(p["costs"], p["substitution"])
    b = p["values"][p["principal"]] + np.asarray(g.sum(axis=0)).ravel()[:, None] * p["externality"]
    np.testing.assert_allclose(solution.action, best_response(b, k, np.ones(b.shape, bool)))
    assert solution.sweeps == 1 and solution.error == 0


def test_the_first_best_does_not_depend_on_threads_or_the_start():
    n = 100_000  # colours of ~12,000 agents: each is split among the threads
    rng = np.random.default_rng(4)
    p = random_problem(n=40) | {
        "adjacency": watts_strogatz(n, 6, 0.2, rng),
        "principal": rng.integers(0, 2, n),
    }
    with kernel_threads(1):
        one = first_best(**p)
    two = first_best(**p)
    assert one.status == "ok"
    np.testing.assert_array_equal(one.action, two.action)
    warm = first_best(**p, start=one.action * 1.5, rtol=1e-13)
    # The certificate: W(a*) − W(a) ≤ error·|W| and μ-strong concavity give
    # ‖a − a*‖_K ≤ √(2·error·|W|/μ), μ = 1 − q; the two solutions are within both radii.
    k = substitution_cost_matrix(p["costs"], p["substitution"])
    welfare = abs(planner_welfare(**{n: p[n] for n in ("adjacency", "values", "principal")},
                                  action=one.action, cost_matrix=k, externality=p["externality"],
                                  peer=p["peer"]).sum())  # fmt: skip
    radius = [np.sqrt(2 * x.error * welfare / (1 - x.modulus)) for x in (one, warm)]
    diff = warm.action - one.action
    assert np.sqrt(np.einsum("ij,ij->", diff @ k, diff)) <= sum(radius)
    assert warm.error <= 1e-13 and radius[1] < radius[0]


@pytest.mark.parametrize("s", [0.0, 0.5])
def test_planner_boundaries_unbounded_and_nonconcave(s):
    """Ring: λ_max(G + Gᵀ) = 4. Unbounded iff δ·4 ≥ c; not concave iff 4δ/(c(1 − s)) ≥ 1 with
    peer effects on both of two equal channels."""
    n = 50
    ring = sp.csr_matrix(np.roll(np.eye(n), 1, axis=1) + np.roll(np.eye(n), -1, axis=1))
    base = dict(
        adjacency=ring,
        values=np.array([[1.0, 1.0]]),
        principal=np.zeros(n, dtype=int),
        costs=np.array([1.0, 1.0]),
        substitution=s,
        externality=np.zeros(2),
    )
    edge = (1 - s) / 4  # K − λΔ ≻ 0 iff 4δ < c(1 − s)
    assert first_best(**base, peer=np.full(2, edge * 0.999)).status == "ok"
    above = first_best(**base, peer=np.full(2, edge * 1.001))
    assert above.action is None and np.isnan(above.error)
    assert above.status == ("nonconcave" if s else "unbounded")
    assert "λ_max(G + Gᵀ)" in above.reason and "= 4 " in above.reason
    # One peer channel: the same as the one-channel bound only without substitution.
    assert first_best(**base, peer=np.array([0.26, 0.0])).status == "unbounded"
    assert first_best(**base, peer=np.array([0.24, 0.0])).status == (
        "ok" if 0.24 * 4 / (1 - s**2) < 1 else "nonconcave"
    )


# ------------------------------------------------------------------------------ the model


def aligned_scenario(*, beta: float = 0.0, n: int = 3000, **extra: Any) -> dict[str, Any]:
    """Aligned exact agents: objective = their principal's values, every channel, no peers and
    no externalities unless asked."""
    channels = [
        {"name": "x", "value": 1.0, "metric": 1.0, "cost": 1.0, "noise": {"scale": 0.5}},
        {"name": "y", "value": 0.8, "metric": 0.5, "cost": 2.0, "noise": {"scale": 0.5}},
        {"name": "z", "value": 0.6, "metric": 0.0, "cost": 1.5, "noise": {"scale": 0.5}},
    ]
    principal = {
        "capacity": 5,
        "train_on": "value",
        "contract": {"alpha": 0.0, "beta": beta},
        "selection": {"n": 1, "every": 0, "fraction": 0.0, "prior_scale": 0.0, "imprint": 1.0},
        "audit": {"rate": 0.0},
    }
    data = {
        "run": {"steps": 0, "seed": 11, "agent_every": 0},
        "network": {"topology": "watts_strogatz", "n_agents": n, "k": 4, "p": 0.2},
        "channels": channels,
        "principals": [
            principal | {"name": "a", "values": {}},
            principal | {"name": "b", "values": {"x": 0.5, "z": 1.2}},
        ],
        "agents": {
            "capacity": 5,
            "optimizer": "direct",
            "power": "exact",
            "goals": {"mean": {}, "scale": 0.0},
            "risk_aversion": 0.5,
            "effort_substitution": 0.2,
        },
    }
    for dotted, value in extra.items():
        node = data
        *path, last = dotted.split("__")
        for part in path:
            node = node[int(part)] if part.isdigit() else node[part]
        node[last] = value
    return data


def run_model(data: dict[str, Any], steps: int = 1) -> MesaOptModel:
    model = MesaOptModel(validate(copy.deepcopy(data)))
    model.run_for(steps)
    return model


def comparison_welfare(model: MesaOptModel) -> np.ndarray:
    """Per-agent welfare without the agents' goals, from the per-agent columns."""
    m = model.last_agent_metrics
    goals = np.einsum("ij,ij->i", model.population.theta, model.population.action)
    return m["value"] + m["externality_received"] + m["private_payoff"] - goals


def rows_by_principal(model: MesaOptModel) -> dict[str, dict[str, Any]]:
    return {row["principal"]: row for row in model.last_steps}


def test_price_of_anarchy_is_one_for_aligned_agents_paid_nothing():
    model = run_model(aligned_scenario())
    pop, world = model.population, model.world
    values = np.stack([p.true_values for p in model.principals])[pop.principal]
    np.testing.assert_allclose(pop.theta, values)  # the construction is what it says
    solution = model._planner_cache["solution"]
    np.testing.assert_allclose(solution.action, pop.action, atol=1e-12)  # a* = the agents' a
    welfare = comparison_welfare(model)
    # values holds each agent's own row, so "agent i's principal" is row i.
    exact = planner_welfare(
        model.adjacency, pop.action, values, np.arange(len(values)), world.cost_matrix,
        world.externality, world.peer,
    )  # fmt: skip
    noise = welfare - exact  # v_jᵀε_i
    rows = rows_by_principal(model)
    for name, members in (("a", pop.principal == 0), ("b", pop.principal == 1), ("all", None)):
        chosen = slice(None) if members is None else members
        row = rows[name]
        expected = exact[chosen].mean()  # W(a*) per agent: a* is the agents' own effort
        assert row["welfare_planner"] == pytest.approx(expected, rel=1e-9)
        assert row["planner_status"] == "ok"
        assert row["price_of_anarchy"] == pytest.approx(row["welfare_planner"] / row["welfare"])
        assert row["welfare_gap"] == pytest.approx(row["welfare_planner"] - row["welfare"])
        # The realized welfare differs from W(a*) by the mean of v_jᵀε only: PoA = 1 ± 4 SE.
        realized = welfare[chosen]
        se = noise[chosen].std(ddof=1) / np.sqrt(realized.size)
        assert abs(row["welfare_planner"] - realized.mean()) < 4 * se
        assert abs(row["welfare_planner"] / realized.mean() - 1) < 4 * se / expected


@pytest.mark.parametrize("steps", [1, 3])
def test_recorded_welfare_is_the_planners_welfare_at_the_realized_efforts(steps):
    """Welfare as recorded is W(a_t) plus the value of the output noise, also while efforts move.

    The peer payoff counts the neighbours' efforts of the same step, as the externality and the
    planner's W(a) do; counted with last step's (what the agents chose by), the record and
    W(a_t) part whenever efforts change, most at step 1 (from a_0 = 0).
    """
    data = aligned_scenario(n=500, channels__0__peer=0.1, channels__1__externality=-0.1)
    model = MesaOptModel(validate(copy.deepcopy(data)))
    if steps > 1:
        model.run_for(steps - 1)
    before = model.population.action.copy()
    model.run_for(1)
    pop, world = model.population, model.world
    assert np.abs(pop.action - before).max() > 1e-2  # efforts are still moving
    values = np.stack([p.true_values for p in model.principals])[pop.principal]
    exact = planner_welfare(
        model.adjacency, pop.action, values, np.arange(len(values)), world.cost_matrix,
        world.externality, world.peer,
    )  # fmt: skip
    noise_value = np.einsum("ij,ij->i", values, pop.last_noise)
    np.testing.assert_allclose(comparison_welfare(model), exact + noise_value, rtol=0, atol=1e-12)


def test_price_of_anarchy_exceeds_one_when_the_proxy_pays_aligned_agents():
    beta = 0.6
    model = run_model(aligned_scenario(beta=beta))
    world, pop = model.world, model.population
    assert (pop.action > 0).all()  # interior: the closed form applies
    k = world.cost_matrix
    m = world.metric
    sigma_m2 = float(np.sum(m**2 * world.noise_var))
    expected_gap = 0.5 * beta**2 * m @ np.linalg.solve(k, m) + 0.5 * 0.5 * beta**2 * sigma_m2
    welfare = comparison_welfare(model)
    row = rows_by_principal(model)["all"]
    gap = row["welfare_planner"] - welfare
    se = gap.std(ddof=1) / np.sqrt(gap.size)
    assert abs(gap.mean() - expected_gap) < 4 * se
    poa = row["welfare_planner"] / welfare.mean()
    assert poa - 1 > 4 * se / welfare.mean() and welfare.mean() > 0
    assert row["price_of_anarchy"] == pytest.approx(row["welfare_planner"] / row["welfare"])


def test_an_unbounded_planner_gives_nan_with_its_reason_and_the_run_goes_on():
    # Ring k = 2: agents' δρ(G) = 0.6 < 1 is stable; the planner's δ·λ_max(G + Gᵀ) = 1.2 ≥ 1.
    data = aligned_scenario(n=200, network={"topology": "ring", "n_agents": 200, "k": 2})
    data["channels"][0]["peer"] = 0.3
    events = []
    model = MesaOptModel(
        validate(data),
        recorder=lambda t, rows: (
            events.extend(rows) if t == "events" and isinstance(rows, list) else None
        ),
    )
    model.run_for(3)
    for row in model.last_steps:
        assert row["planner_status"] == "unbounded"
        assert np.isnan(row["welfare_planner"]) and np.isnan(row["welfare_gap"])
        assert np.isnan(row["price_of_anarchy"])
        assert np.isfinite(row["welfare"])
    planner_events = [e for e in events if e["kind"] == "planner"]
    assert len(planner_events) == 1  # solved once per epoch, reported once
    assert planner_events[0]["field"] == "unbounded"
    assert "more effort always pays" in planner_events[0]["detail"]


def test_price_of_anarchy_is_nan_where_welfare_is_not_positive():
    rows = [{"welfare": w} for w in (2.0, 0.0, -1.0)]  # one per principal, then "all"
    model = run_model(aligned_scenario(n=100))
    planner_module.add_planner_columns(model, rows)
    assert np.isfinite(rows[0]["price_of_anarchy"])
    assert np.isnan(rows[1]["price_of_anarchy"]) and np.isnan(rows[2]["price_of_anarchy"])
    assert all(np.isfinite(r["welfare_gap"]) for r in rows)


def test_the_first_best_is_solved_once_per_world_epoch(monkeypatch):
    calls = []
    original = planner_module.first_best

    def counting(*args, **kwargs):
        calls.append(kwargs.get("start") is not None)
        return original(*args, **kwargs)

    monkeypatch.setattr(planner_module, "first_best", counting)
    data = aligned_scenario(n=300)
    data["channels"][0]["peer"] = 0.02
    data["regimes"] = [{"at": 3, "channel": "y", "set": {"cost": 1.0}}]
    model = run_model(data, steps=5)
    assert calls == [False, True]  # epoch 0, then epoch 1 warm-started from epoch 0
    solution = model._planner_cache["solution"]
    assert solution.status == "ok" and model.world.epoch == 1
    k, world = model.world.cost_matrix, model.world
    values = np.stack([p.true_values for p in model.principals])
    fresh = original(
        model.adjacency, values, model.population.principal, world.costs, world.substitution,
        world.externality, world.peer,
    )  # fmt: skip
    w = planner_welfare(
        model.adjacency, fresh.action, values, model.population.principal, k, world.externality,
        world.peer,
    )  # fmt: skip
    assert model.last_steps[-1]["welfare_planner"] == pytest.approx(w.mean(), rel=1e-7)


def test_welfare_that_counts_agent_goals_makes_them_part_of_the_first_best():
    data = aligned_scenario(n=400)
    data["agents"]["goals"] = {"mean": {"z": 0.5}, "scale": 0.1}
    data["metrics"] = {"welfare_counts_agent_goals": True}
    model = run_model(data, steps=2)
    pop, world = model.population, model.world
    values = np.stack([p.true_values for p in model.principals])
    b = values[pop.principal] + pop.theta  # no externalities: b_i = v_j + θ_i
    expected = best_response(b, world.cost_matrix, np.ones(b.shape, bool))
    np.testing.assert_allclose(model._planner_cache["solution"].action, expected, atol=1e-12)
    w = planner_welfare(
        model.adjacency, expected, values, pop.principal, world.cost_matrix,
        world.externality, world.peer, goals=pop.theta,
    )  # fmt: skip
    assert model.last_steps[-1]["welfare_planner"] == pytest.approx(w.mean(), rel=1e-10)


def test_documented_nans_pass_through_the_recorder(tmp_path):
    from mesaopt.model.runner import run_simulation

    data = aligned_scenario(n=200, network={"topology": "ring", "n_agents": 200, "k": 2})
    data["channels"][0]["peer"] = 0.3
    data["run"]["steps"] = 2
    run_simulation(validate(data), tmp_path, progress=False)
    steps = pd.read_parquet(tmp_path / "steps.parquet")
    assert (steps["planner_status"] == "unbounded").all()
    assert steps["welfare_planner"].isna().all() and steps["welfare"].notna().all()
