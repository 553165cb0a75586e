"""Selection builds the mesa-optimizer it deploys: whole candidates, the principal's own sandbox.

Each test checks a mechanism by the outcome it predicts (docs/model.md, "Selection"):

- candidates are whole optimizers, so selection picks capacities (and kinds) by sandbox score;
- the sandbox is the principal's model: it cannot favour gamers on a channel it does not
  perceive, yet the super-optimizers it deploys game because the contract pays for it; after an
  unannounced regime change it keeps deploying agents fitted to the old world;
- a control law's gain is tuned in the sandbox and goes stale when cost curvature changes;
- deceptive candidates score like the others in the sandbox and pursue their own goals once
  deployed, and audits catch them at the audit rate.

Tolerances are in standard errors of the quantity compared (binomial shares, means over agents).
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from mesaopt.model.model import MesaOptModel
from mesaopt.model.scenario_files import validate


class _Tables:
    """A recorder that keeps every row batch, as DataFrames by table."""

    def __init__(self) -> None:
        self.parts: dict[str, list] = {}

    def __call__(self, table, rows) -> None:
        self.parts.setdefault(table, []).append(pd.DataFrame(rows))

    def __getitem__(self, table: str) -> pd.DataFrame:
        return pd.concat(self.parts[table], ignore_index=True)


def _channel(name, value, metric, level=0, cost=1.0, scale=1.0):
    return {
        "name": name,
        "value": value,
        "metric": metric,
        "level": level,
        "cost": cost,
        "noise": {"dist": "normal", "scale": scale},
    }


def _scenario(n_agents=400, **sections):
    """Two channels (output, gaming), one principal, no network effects, fixed β."""
    data = {
        "run": {"steps": 10, "seed": 7, "agent_every": 0},
        "network": {"topology": "ring", "n_agents": n_agents, "k": 2},
        "channels": [_channel("output", 1.0, 1.0), _channel("gaming", -1.0, 1.0, level=1)],
        "principals": [
            {
                "name": "lab",
                "capacity": 1,
                "train_on": "metric",
                "contract": {"alpha": 0.0, "beta": 0.5},
                "selection": {"n": 1, "every": 0, "eval_samples": 4, "prior_scale": 0.3},
                "audit": {"rate": 0.0},
            }
        ],
        "agents": {"capacity": {"values": [0, 1]}, "optimizer": "direct", "risk_aversion": 0},
    }
    for key, value in sections.items():
        section, _, rest = key.partition("__")
        if not rest:
            data[section] = value
            continue
        target = data[section]
        if isinstance(target, list):
            target = target[0]
        for part in rest.split("__")[:-1] if rest else []:
            target = target.setdefault(part, {})
        if rest:
            target[rest.split("__")[-1]] = value
        else:
            data[section] = value
    return validate(copy.deepcopy(data), "<test>")


def _share_and_se(flags: np.ndarray) -> tuple[float, float]:
    p = float(np.mean(flags))
    return p, float(np.sqrt(max(p * (1 - p), 0.25 / len(flags)) / len(flags)))


def test_selection_picks_the_capacity_that_games_a_channel_the_principal_measures():
    """Gaming is measured and perceived: more selection power picks more candidates that game."""
    shares = {}
    for n in (1, 16):
        model = MesaOptModel(
            _scenario(principals__selection__n=n, principals__selection__sandbox="model")
        )
        shares[n] = _share_and_se(model.population.capacity == 1)
    (p1, se1), (p16, se16) = shares[1], shares[16]
    assert abs(p1 - 0.5) < 4 * se1  # no selection: the pool's 50:50
    assert p16 - p1 > 4 * np.hypot(se1, se16)  # gamers score more on the proxy
    assert p16 > 0.9


def test_a_blind_sandbox_cannot_favour_gamers_yet_its_super_optimizers_game():
    """Gaming beyond the principal's capacity: in its sandbox the channel does not exist."""
    scenario = _scenario(
        principals__selection__n=16,
        principals__selection__sandbox="model",
        agents__capacity={"values": [1, 2]},
    )
    scenario.channels[1].level = 2  # beyond the principal's capacity 1
    model = MesaOptModel(scenario)
    capacity = model.population.capacity
    p, se = _share_and_se(capacity == 2)
    assert abs(p - 0.5) < 4 * se  # selection cannot tell gamers apart
    model.run_for(2)
    gaming = model.population.action[:, 1]
    assert (gaming[capacity == 1] == 0).all()
    # Deployed super-optimizers game: the contract pays β·m on gaming (β = 0.5, cost 1).
    assert np.all(gaming[capacity == 2] > 0.3)
    # In a sandbox of the true world the same selection does favour them.
    scenario = copy.deepcopy(scenario)
    scenario.principals[0].selection.sandbox = "world"
    world = MesaOptModel(scenario)
    q, se_q = _share_and_se(world.population.capacity == 2)
    assert q - p > 4 * np.hypot(se, se_q)


def test_after_an_unannounced_regime_change_a_model_sandbox_deploys_agents_of_the_old_world():
    """No federated update: 'model' retrains into the stale epoch, 'world' into the current one."""
    losses, epochs = {}, {}
    for sandbox in ("model", "world"):
        scenario = _scenario(
            principals__selection__n=4,
            principals__selection__every=4,
            principals__selection__fraction=1.0,
            principals__selection__sandbox=sandbox,
            agents__capacity=1,
            regimes=[{"at": 2, "channel": "output", "set": {"cost": 4.0}}],
        )
        model = MesaOptModel(scenario)
        model.run_for(5)  # the change at step 2, everybody retrained at step 4
        epochs[sandbox] = set(model.population.epoch.tolist())
        loss = model.last_agent_metrics["principal_loss"]
        losses[sandbox] = (loss.mean(), loss.std(ddof=1) / np.sqrt(len(loss)))
    assert epochs == {"model": {0}, "world": {1}}
    (stale, se_stale), (fresh, se_fresh) = losses["model"], losses["world"]
    assert stale - fresh > 4 * np.hypot(se_stale, se_fresh)


def _control_scenario(cost_after: float | None, gains=(0.5, 1.0, 1.5, 1.9)):
    regimes = (
        [] if cost_after is None else [{"at": 1, "channel": "output", "set": {"cost": cost_after}}]
    )
    scenario = _scenario(
        n_agents=60,
        channels=[_channel("output", 1.0, 1.0, scale=0.0)],
        principals__selection__n=32,
        principals__selection__prior_scale=0.0,  # one objective: selection tunes the gain alone
        agents__capacity=0,
        agents__optimizer="control",
        agents__gain={"values": list(gains)},
        regimes=regimes,
    )
    return scenario


def test_selection_tunes_a_control_gain_that_is_stable_in_its_sandbox():
    """Scored on mean proxy over 4 episodes from rest, the fastest stable gain wins (γc < 2)."""
    model = MesaOptModel(_control_scenario(None))
    assert set(model.population.gain.tolist()) == {1.9}
    model.run_for(200)  # |1 − γc| = 0.9: it rings down by 0.9 a step
    r = 0.5 + model.population.theta[:, 0]  # θ + βm, cost 1: the optimum effort is r
    np.testing.assert_allclose(model.population.action[:, 0], r, atol=1e-6)


@pytest.mark.parametrize("side", [-1, 1])
def test_a_tuned_gain_goes_stale_when_cost_crosses_its_stability_limit(side):
    """Gain γ = 1.9 tuned at cost 1; cost moves to (2/γ)(1 ± 2 %): converges below, rings above."""
    gain = 1.9
    cost = 2 / gain * (1 + 0.02 * side)
    model = MesaOptModel(_control_scenario(cost))
    assert set(model.population.gain.tolist()) == {gain}
    efforts = []
    for _ in range(400):
        model.step()
        efforts.append(model.population.action[:, 0].copy())
    r = 0.5 + model.population.theta[:, 0]
    last = np.array(efforts[-20:])
    swing = np.abs(np.diff(last, axis=0)).mean()
    if side < 0:  # |1 − γc| = 0.96 < 1: settles on the new optimum r / c
        np.testing.assert_allclose(last[-1], r / cost, rtol=1e-3)
        assert swing < 1e-3
    else:  # |1 − γc| = 1.04 > 1: the projected law falls into a cycle between 0 and γr
        assert swing > 0.5 * r.mean()
        assert np.isclose(last.min(axis=0), 0).all()


def test_deceptive_candidates_score_like_the_others_and_pursue_their_own_goals():
    """Half the candidates are deceptive: same sandbox scores, own goals once deployed."""
    tables = _Tables()
    scenario = _scenario(
        n_agents=600,
        principals__train_on="value",
        principals__selection__n=4,
        principals__selection__sandbox="world",
        principals__selection__prior_scale=0.05,
        principals__contract={"alpha": 0.0, "beta": 0.2},
        principals__audit={"rate": 0.1, "penalty": 0.0, "tolerance": 0.05, "replace": False},
        agents__capacity=1,
        agents__goals={"mean": {"gaming": 0.5}, "scale": 0.0},
        agents__deception={"level": 1, "share": 0.5},
    )
    model = MesaOptModel(scenario, recorder=tables)
    pop = model.population
    deceptive = pop.deceptive.copy()
    p, se = _share_and_se(deceptive)
    assert abs(p - 0.5) < 4 * se  # selection cannot screen them
    rows = tables["selections"]
    assert (rows["deceptive"].to_numpy() == deceptive).all()
    a, b = rows["chosen_proxy"][rows["deceptive"]], rows["chosen_proxy"][~rows["deceptive"]]
    assert abs(a.mean() - b.mean()) < 4 * np.hypot(a.sem(), b.sem())
    # Own goals once deployed: the imprinted part (imprint · v̂ = −1 on gaming) is gone.
    signal = model.principals[0].signal
    np.testing.assert_allclose(pop.theta[deceptive], pop.selected[deceptive] - signal)
    np.testing.assert_allclose(pop.theta[~deceptive], pop.selected[~deceptive])
    # They game (θ_gaming + βm = 0.5 + 0.2 ± 0.05); the honest ones do not (−1 + 0.5 + 0.2).
    assert rows["sandbox_gap"][rows["deceptive"]].mean() > 0.3
    assert abs(rows["sandbox_gap"][~rows["deceptive"]]).max() < 1e-9
    # Audits catch them at the audit rate: an audited gamer is always caught (effort > tolerance).
    model.run_for(1)
    gaming = model.population.action[:, 1] > 0.05
    assert gaming[deceptive].all() and not gaming[~deceptive].any()
    steps = 30
    model.run_for(steps - 1)
    caught = tables["events"].query("kind == 'audit'")["new"].sum()
    # Each step each deceptive agent is audited with probability 0.1 and then always caught.
    expected = 0.1 * steps * deceptive.sum()
    assert abs(caught - expected) < 4 * np.sqrt(expected * 0.9)


def test_a_federated_screen_detects_deceptive_agents_at_the_rate_its_test_predicts():
    """χ² screen of output against sandbox effort: honest agents flagged at the level α,
    deceptive ones with the noncentral-χ² power of their departure Δ (Gaussian noise, σ = 1)."""
    from scipy.stats import chi2, ncx2

    tables = _Tables()
    alpha = 0.05
    scenario = _scenario(
        n_agents=1000,
        principals__train_on="value",
        principals__selection__n=4,
        principals__selection__sandbox="world",
        principals__selection__prior_scale=0.05,
        principals__contract={"alpha": 0.0, "beta": 0.2},
        principals__federated={"every": 3, "screen": True, "screen_level": alpha},
        agents__capacity=1,
        agents__goals={"mean": {"gaming": 0.5}, "scale": 0.0},
        agents__deception={"level": 1, "share": 0.5},
    )
    model = MesaOptModel(scenario, recorder=tables)
    pop = model.population
    deceptive = pop.deceptive.copy()
    model.run_for(2)
    departure = pop.action - pop.sandbox_action  # deterministic: no network, exact planners
    assert np.abs(departure[~deceptive]).max() < 1e-12
    power = ncx2.sf(chi2.isf(alpha, 2), 2, (departure[deceptive] ** 2).sum(axis=1))
    model.step()  # step 3: the federated update screens every agent
    rows = tables["selections"].query("reason == 'screen'")
    flagged = np.zeros(pop.size, dtype=bool)
    flagged[rows["agent_id"].to_numpy()] = True
    honest = int((flagged & ~deceptive).sum())
    n_honest = int((~deceptive).sum())
    assert abs(honest - alpha * n_honest) < 4 * np.sqrt(n_honest * alpha * (1 - alpha))
    caught = int((flagged & deceptive).sum())
    assert abs(caught - power.sum()) < 4 * np.sqrt((power * (1 - power)).sum())
    assert caught / deceptive.sum() > 2 * alpha  # above the false-alarm rate
