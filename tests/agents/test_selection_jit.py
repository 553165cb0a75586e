"""Tests for agents/selection_jit.py: the compiled best-of-n against NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from mesaopt.agents.response import best_response
from mesaopt.agents.selection_jit import score_candidates
from mesaopt.model.channels import substitution_cost_matrix

BLOCK = 256


def _inputs(slots: int, n: int, d: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    costs = rng.uniform(0.5, 2.0, d)
    return {
        "draws": rng.normal(size=(d, slots * n)),
        "noise": rng.normal(size=(d, slots * n)),
        "perceive": rng.random((slots, d)) < 0.7,
        "prior_mean": rng.normal(size=d),
        "prior_scale": 0.5,
        "pay_push": rng.normal(size=d) * 0.3,
        "costs": costs,
        "s": 0.2,
        "score_weights": rng.normal(size=d),
        "true_values": rng.normal(size=d),
        "n": n,
    }


def _compiled(x: dict) -> tuple[np.ndarray, ...]:
    slots, d = x["perceive"].shape
    outs = (np.empty((slots, d)), np.empty((slots, d)), np.empty((slots, 8)))
    low, high = score_candidates(
        x["draws"], x["noise"], x["perceive"], x["prior_mean"], x["prior_scale"], x["pay_push"],
        np.sqrt(x["costs"]), x["s"], x["score_weights"], x["true_values"], x["n"], *outs,
    )  # fmt: skip
    return (*outs, low, high)


def _numpy(x: dict) -> tuple[np.ndarray, ...]:
    slots, d = x["perceive"].shape
    n = x["n"]
    theta = (x["prior_mean"] + x["prior_scale"] * x["draws"].T).reshape(slots, n, d)
    cost = substitution_cost_matrix(x["costs"], x["s"])
    perceive = np.repeat(x["perceive"], n, axis=0)
    action = best_response((theta + x["pay_push"]).reshape(-1, d), cost, perceive)
    action = action.reshape(slots, n, d)
    outcome = action + x["noise"].T.reshape(slots, n, d)
    score = outcome @ x["score_weights"]
    expected = action @ x["score_weights"]
    true = action @ x["true_values"]
    best = np.argmax(score, axis=1)
    rows = np.arange(slots)
    stats = np.column_stack(
        [
            score[rows, best],
            expected[rows, best],
            true[rows, best],
            true.mean(axis=1),
            true.std(axis=1),
            true.max(axis=1),
            score.mean(axis=1),
            expected.mean(axis=1),
        ]
    )
    return (
        theta[rows, best],
        action[rows, best],
        stats,
        action.min(axis=(0, 1)),
        action.max(axis=(0, 1)),
    )


@pytest.mark.parametrize(("slots", "n", "d"), [(1, 1, 1), (3, 16, 4), (2 * BLOCK + 9, 5, 3)])
def test_score_candidates_equals_numpy(slots, n, d):
    x = _inputs(slots, n, d, seed=slots + n)
    theta, action, stats, low, high = _compiled(x)
    e_theta, e_action, e_stats, e_low, e_high = _numpy(x)
    assert np.allclose(theta, e_theta, rtol=1e-12, atol=1e-12)
    assert np.allclose(action, e_action, rtol=1e-12, atol=1e-12)
    assert np.allclose(stats, e_stats, rtol=1e-10, atol=1e-12)
    assert np.allclose(low, e_low, rtol=1e-12) and np.allclose(high, e_high, rtol=1e-12)


def test_score_candidates_does_not_depend_on_the_number_of_threads(same_on_one_and_three_threads):
    x = _inputs(3 * BLOCK + 1, 8, 4, seed=1)
    same_on_one_and_three_threads(lambda: _compiled(x))


def test_selection_draws_do_not_depend_on_the_number_of_threads(same_on_one_and_three_threads):
    """Blocked draws (objectives and sandbox noise) beyond one block, on 1 and on 3 threads."""
    from mesaopt.agents.selection import mean_episode_noise, select_best_of_n
    from mesaopt.model.channels import world_from_scenario
    from mesaopt.model.noise import NOISE_BLOCK
    from mesaopt.model.scenario import load_scenario

    world = world_from_scenario(load_scenario(None))
    candidates = 2 * NOISE_BLOCK + 5
    same_on_one_and_three_threads(
        lambda: mean_episode_noise(world, np.random.default_rng(3), candidates, 4)
    )

    def select():
        result = select_best_of_n(
            world=world,
            capacity=np.full(5000, 2),
            prior_mean=np.zeros(world.d),
            prior_scale=0.5,
            n=16,
            eval_samples=4,
            beta=0.3,
            score_weights=world.metric,
            true_values=world.value,
            rng=np.random.default_rng(9),
        )
        return result.theta, result.action, result.chosen_true

    same_on_one_and_three_threads(select)


def test_mean_episode_noise_has_the_mean_of_the_episodes_distribution():
    """Sandbox noise: mean of k episodes; variance σ²/k for every family (Student-t: df/(df-2))."""
    from mesaopt.agents.selection import mean_episode_noise
    from mesaopt.model.channels import world_from_scenario
    from mesaopt.model.scenario import load_scenario

    world = world_from_scenario(load_scenario(None))
    k, n = 4, 400_000
    noise = mean_episode_noise(world, np.random.default_rng(5), n, k)
    for c in range(world.d):
        var = world.noise_var[c] / k
        assert abs(noise[c].mean()) < 5 * np.sqrt(var / n)
        fourth = np.mean(noise[c] ** 4)
        assert abs(noise[c].var() - var) < 5 * np.sqrt((fourth - var**2) / n)
