"""The model reproduces theory in its limits (docs/model.md), within Monte Carlo error.

Each stochastic check compares a model estimate with its closed form and allows 4 standard errors,
the SE derived from the sample standard deviation of the per-draw quantity (not guessed).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from mesaopt.analysis.theory import (
    bcz_equilibrium,
    expected_max_std_normal,
    hm87_beta,
    hm91_beta,
    len_contract_numeric,
    regressional_selection_gain,
)
from mesaopt.model.model import MesaOptModel
from mesaopt.model.scenario_files import load_scenario, validate


def one_channel(**channel: Any) -> dict[str, Any]:
    """A minimal scenario: one channel, one principal, exact direct agents, no dynamics."""
    base = {
        "run": {"steps": 0, "seed": 1, "agent_every": 0},
        "network": {"topology": "ring", "n_agents": 100, "k": 2},
        "channels": [
            {"name": "x", "value": 1.0, "metric": 1.0, "cost": 1.0, "noise": {"scale": 1.0}}
            | channel
        ],
        "principals": [
            {
                "name": "p",
                "capacity": 0,
                "train_on": "metric",
                "contract": {"alpha": 0.0, "beta": 0.0},
                "selection": {
                    "n": 1,
                    "every": 0,
                    "fraction": 0.0,
                    "eval_samples": 1,
                    "prior_scale": 1.0,
                    "imprint": 1.0,
                },
            }
        ],
        "agents": {"capacity": 0, "optimizer": "direct", "power": "exact"},
    }
    return base


def with_(data: dict[str, Any], **paths: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    for dotted, value in paths.items():
        node = out
        parts = dotted.split("__")
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        node[parts[-1]] = value
    return out


class Tables:
    """A recorder that keeps the columnar batches in memory (tests only)."""

    def __init__(self) -> None:
        self.batches: dict[str, list] = {}

    def __call__(self, table, rows) -> None:
        self.batches.setdefault(table, []).append(rows)

    def column(self, table: str, name: str) -> np.ndarray:
        return np.concatenate([np.asarray(b[name]) for b in self.batches[table] if len(b[name])])


def selections(data: dict[str, Any]) -> Tables:
    tables = Tables()
    MesaOptModel(validate(data), recorder=tables)
    return tables


@pytest.mark.parametrize("n", [1, 4, 32])
def test_regressional_goodhart_matches_best_of_n_theory(n):
    sigma_theta, noise, episodes = 0.2, 0.4, 4
    sigma_eps = noise / np.sqrt(episodes)
    data = with_(
        one_channel(noise={"dist": "normal", "scale": noise}),
        network__n_agents=20_000,
        run__seed=100 + n,
        principals__0__selection={
            "n": n,
            "every": 0,
            "fraction": 0.0,
            "eval_samples": episodes,
            "prior_scale": sigma_theta,
            "imprint": 1.0,
        },
    )
    tables = selections(data)
    gain = tables.column("selections", "chosen_true") - tables.column(
        "selections", "candidates_mean_true"
    )
    curse = tables.column("selections", "winners_curse")
    expected_gain = regressional_selection_gain(n, sigma_theta, sigma_eps)
    expected_curse = sigma_eps**2 / np.hypot(sigma_theta, sigma_eps) * expected_max_std_normal(n)
    if n == 1:
        assert np.all(gain == 0)
    else:
        se = gain.std(ddof=1) / np.sqrt(len(gain))
        assert abs(gain.mean() - expected_gain) < 4 * se
    se_curse = curse.std(ddof=1) / np.sqrt(len(curse))
    assert abs(curse.mean() - expected_curse) < 4 * se_curse


def test_heavy_tailed_noise_makes_selection_rise_then_fall():
    """Student-t (df = 1) evaluation noise: more selection helps, then hurts (extremal Goodhart)."""
    means, ses = [], []
    for n in (1, 8, 1024):
        data = with_(
            one_channel(noise={"dist": "student_t", "scale": 1.0, "df": 1.0}),
            network__n_agents=4_000,
            run__seed=7 + n,
            principals__0__selection={
                "n": n,
                "every": 0,
                "fraction": 0.0,
                "eval_samples": 1,
                "prior_scale": 1.0,
                "imprint": 10.0,  # candidates ~ N(10, 1): efforts stay interior (a = θ)
            },
        )
        chosen = selections(data).column("selections", "chosen_true") - 10.0
        means.append(chosen.mean())
        ses.append(chosen.std(ddof=1) / np.sqrt(len(chosen)))
    rise = means[1] - means[0]
    fall = means[1] - means[2]
    assert rise > 4 * np.hypot(ses[1], ses[0])
    assert fall > 4 * np.hypot(ses[1], ses[2])


def test_contract_is_holmstrom_milgrom_1987_for_one_channel():
    rho, cost, scale = 1.5, 2.0, 0.5
    data = with_(
        one_channel(cost=cost, noise={"dist": "normal", "scale": scale}),
        agents__risk_aversion=rho,
        principals__0__contract={"alpha": "participation", "beta": "optimal"},
        principals__0__selection={"n": 4, "every": 0, "prior_scale": 0.0, "imprint": 0.0},
    )
    model = MesaOptModel(validate(data))
    assert model.principals[0].beta == pytest.approx(hm87_beta(rho, cost, scale**2), rel=1e-12)


@pytest.mark.parametrize("substitution", [0.0, 0.3, 0.7])
def test_contract_is_holmstrom_milgrom_1991_with_an_unmeasured_task(substitution):
    """Task 1 measured, task 2 unmeasured, efforts substitute; unseen gaming is ignored."""
    rho, scale, c1, c2, v1, v2 = 2.0, 0.6, 1.0, 1.5, 1.0, 0.8
    data = one_channel(cost=c1, value=v1, noise={"scale": scale})
    data["channels"] += [
        {"name": "y", "value": v2, "metric": 0.0, "cost": c2, "noise": {"scale": 3.0}},
        {"name": "gaming", "value": -1.0, "metric": 2.0, "cost": 0.5, "level": 5},
    ]
    data = with_(
        data,
        agents__risk_aversion=rho,
        agents__effort_substitution=substitution,
        # A drive for the unmeasured task keeps it interior (without one, substitution makes
        # the agent drop it and HM91's interior formula does not apply).
        agents__goals={"mean": {"y": 0.43}},
        principals__0__contract={"alpha": "participation", "beta": "optimal"},
        principals__0__selection={"n": 2, "every": 0, "prior_scale": 0.0, "imprint": 0.0},
    )
    model = MesaOptModel(validate(data))
    c12 = substitution * np.sqrt(c1 * c2)
    expected = hm91_beta(v1, v2, c1, c12, c2, rho, scale**2)
    assert model.principals[0].beta == pytest.approx(expected, rel=1e-10)


def test_baseline_contract_is_the_len_optimum_over_perceived_channels():
    model = MesaOptModel(load_scenario(None, ["network.n_agents=200", "run.steps=0"]))
    lab = model.principals[0]
    seen = lab.perceived
    world = lab.world_model
    noise_var = float(np.sum(world.metric[seen] ** 2 * world.noise_var[seen]))
    # The lab's agent is at a = 0 on a perceived channel, so the reference is the numerical
    # optimum with a ≥ 0 (an interior formula would be the wrong oracle).
    _, expected, _ = len_contract_numeric(
        lab.value_belief[seen],
        lab.mean_objective[seen],
        world.metric[seen],
        world.cost_matrix[np.ix_(seen, seen)],
        model.config.agents.risk_aversion,
        noise_var,
    )
    assert not seen.all()
    assert lab.beta == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "network",
    [
        {"topology": "watts_strogatz", "n_agents": 300, "k": 4, "p": 0.2},
        {"topology": "grid", "n_agents": 400, "normalize": True, "torus": False},
    ],
    ids=["watts_strogatz", "grid-normalized"],
)
def test_peer_effects_converge_to_the_bcz_equilibrium(network):
    delta = 0.15 if not network.get("normalize") else 0.6
    data = with_(
        one_channel(peer=delta),
        network=network,
        run__steps=0,
        agents__goals={"mean": {"x": 1.0}, "scale": 0.25},
        principals__0__selection={"n": 1, "every": 0, "prior_scale": 0.0, "imprint": 0.0},
    )
    model = MesaOptModel(validate(data))
    theta = model.population.theta[:, 0]
    assert theta.min() > 0  # the equilibrium is interior, as the closed form assumes
    model.run_for(150)
    expected = bcz_equilibrium(model.network.adjacency, delta, theta)
    np.testing.assert_allclose(model.population.action[:, 0], expected, rtol=1e-9, atol=1e-9)
