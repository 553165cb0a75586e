"""Tests for agents/sandbox_jit.py: the compiled best-of-n against its NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

from mesaopt.agents import sandbox as reference
from mesaopt.agents import sandbox_jit
from mesaopt.model.kernel_arrays import CandidateArrays, ChosenArrays, SandboxArrays

BLOCK = 256


def _inputs(
    slots: int, n: int, d: int, seed: int, episodes: int = 3
) -> tuple[CandidateArrays, SandboxArrays]:
    """Candidates of all three modes: exact planners, control laws, efforts given by a kind."""
    rng = np.random.default_rng(seed)
    count = slots * n
    mode = rng.integers(0, 3, count).astype(np.int8)
    control = np.flatnonzero(mode == 1)
    episode_row = np.full(count, -1, dtype=np.int64)
    episode_row[control] = np.arange(len(control))
    given = np.abs(rng.normal(size=(count, d)))
    candidates = CandidateArrays(
        draws=rng.normal(size=(d, count)),
        noise=rng.normal(size=(d, count)),
        perceive=rng.random((count, d)) < 0.7,
        n=n,
        mode=mode,
        gain=rng.uniform(0.1, 1.5, count),
        episode_row=episode_row,
        episodes=rng.normal(size=(episodes, len(control), d)),
        given_shown=given,
        given_carried=given * rng.uniform(0.5, 1.5, (count, d)),
    )
    sandbox = SandboxArrays(
        prior_mean=rng.normal(size=d),
        prior_scale=0.5,
        pay_push=rng.normal(size=d) * 0.3,
        root=np.sqrt(rng.uniform(0.5, 2.0, d)),
        substitution=0.2,
        score_weights=rng.normal(size=d),
        true_values=rng.normal(size=d),
    )
    return candidates, sandbox


def _compiled(candidates: CandidateArrays, sandbox: SandboxArrays) -> tuple[np.ndarray, ...]:
    d = candidates.perceive.shape[1]
    chosen = ChosenArrays.empty(candidates.perceive.shape[0] // candidates.n, d)
    low, high = sandbox_jit.score_candidates(candidates, sandbox, chosen)
    return (*chosen, low, high)


@pytest.mark.parametrize(
    ("slots", "n", "d"),
    [(1, 1, 1), (3, 16, 4), (2 * BLOCK + 9, 5, 3), (17, 4, 6)],  # d = 6: the any-d kernel
)
def test_score_candidates_equals_the_numpy_reference(slots, n, d):
    candidates, sandbox = _inputs(slots, n, d, seed=slots + n)
    theta, action, stats, index, shown, low, high = _compiled(candidates, sandbox)
    expected, e_low, e_high = reference.score_candidates(candidates, sandbox)
    assert np.array_equal(index, expected.index)
    assert np.allclose(shown, expected.shown, rtol=1e-12, atol=1e-12)
    # Equal up to rounding: the reference rebuilds K from sqrt(diag K) and s and recovers them
    # from K (the kernel uses them directly), and sums scores with BLAS; statistics over the n
    # candidates add n such terms, hence the looser rtol on them.
    assert np.allclose(theta, expected.theta, rtol=1e-12, atol=1e-12)
    assert np.allclose(action, expected.action, rtol=1e-12, atol=1e-12)
    assert np.allclose(stats, expected.stats, rtol=1e-10, atol=1e-12)
    assert np.allclose(low, e_low, rtol=1e-12) and np.allclose(high, e_high, rtol=1e-12)


def test_score_candidates_does_not_depend_on_the_number_of_threads(same_on_one_and_three_threads):
    candidates, sandbox = _inputs(3 * BLOCK + 1, 8, 4, seed=1)
    same_on_one_and_three_threads(lambda: _compiled(candidates, sandbox))


def test_selection_draws_do_not_depend_on_the_number_of_threads(same_on_one_and_three_threads):
    """Blocked draws (objectives and sandbox noise) beyond one block, on 1 and on 3 threads."""
    from mesaopt.agents.candidates import pool_of
    from mesaopt.agents.sandbox import Sandbox, mean_episode_noise, select_best_of_n
    from mesaopt.model.channels import world_from_scenario
    from mesaopt.model.noise import NOISE_BLOCK
    from mesaopt.model.scenario_files import load_scenario

    scenario = load_scenario(None)
    world = world_from_scenario(scenario)
    pool = pool_of(scenario, 0, world.d)
    candidates = 2 * NOISE_BLOCK + 5
    same_on_one_and_three_threads(
        lambda: mean_episode_noise(world, np.random.default_rng(3), candidates, 4)
    )

    def select():
        result = select_best_of_n(
            sandbox=Sandbox(world, None, 0.3, world.metric, world.value, 4, 0.5),
            pool=pool,
            slots=5000,
            prior_mean=np.zeros(world.d),
            prior_scale=0.5,
            imprinted=np.zeros(world.d),
            n=16,
            rng=np.random.default_rng(9),
        )
        return result.theta, result.action, result.chosen_true, result.traits.kind

    same_on_one_and_three_threads(select)


def test_mean_episode_noise_has_the_mean_of_the_episodes_distribution():
    """Sandbox noise: mean of k episodes; variance σ²/k for every family (Student-t: df/(df-2))."""
    from mesaopt.agents.sandbox import mean_episode_noise
    from mesaopt.model.channels import world_from_scenario
    from mesaopt.model.scenario_files import load_scenario

    world = world_from_scenario(load_scenario(None))
    k, n = 4, 400_000
    noise = mean_episode_noise(world, np.random.default_rng(5), n, k)
    for c in range(world.d):
        var = world.noise_var[c] / k
        assert abs(noise[c].mean()) < 5 * np.sqrt(var / n)
        fourth = np.mean(noise[c] ** 4)
        assert abs(noise[c].var() - var) < 5 * np.sqrt((fourth - var**2) / n)
