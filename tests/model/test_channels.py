"""Channels: the world snapshot and its regime changes."""

from __future__ import annotations

import numpy as np
import pytest

from mesaopt.model.channels import substitution_cost_matrix, world_from_scenario
from mesaopt.model.noise import NOISE_BLOCK, NOISE_CODES, standard_t
from mesaopt.model.scenario_files import load_scenario


def test_a_partial_noise_table_changes_only_the_fields_it_names():
    world = world_from_scenario(load_scenario(None))
    extraction = world.names.index("extraction")  # Student-t, df 4, scale 0.5
    changed = world.changed(extraction, {"noise": {"scale": 2.0}})
    assert changed.noise_dist[extraction] == NOISE_CODES["student_t"]
    assert changed.noise_df[extraction] == 4.0 and changed.noise_scale[extraction] == 2.0
    assert changed.epoch == world.epoch + 1


def test_cost_changes_rebuild_the_cost_matrix():
    world = world_from_scenario(load_scenario(None))
    changed = world.changed(0, {"cost": 4.0})
    assert changed.cost_matrix[0, 0] == 4.0
    s = world.substitution
    assert np.isclose(changed.cost_matrix[0, 1], s * np.sqrt(4.0 * world.costs[1]))
    np.testing.assert_array_equal(
        world.cost_matrix, world_from_scenario(load_scenario(None)).cost_matrix
    )


def _three_channel_world():
    return world_from_scenario(
        load_scenario(
            None,
            [
                "channels.0.noise.dist=normal",
                "channels.1.noise.dist=laplace",
                "channels.2.noise.dist=student_t",
                "channels.2.noise.df=5",
                "channels.0.noise.scale=2.0",
            ],
        )
    )


def test_noise_in_blocks_does_not_depend_on_the_number_of_threads(same_on_one_and_three_threads):
    world = _three_channel_world()
    n = 2 * NOISE_BLOCK + 123
    one = same_on_one_and_three_threads(lambda: world.sample_noise(np.random.default_rng(5), n))
    assert one.shape == (n, world.d)
    # every block draws its own numbers
    assert not np.array_equal(one[:NOISE_BLOCK], one[NOISE_BLOCK : 2 * NOISE_BLOCK])


def test_noise_in_blocks_has_each_channels_distribution():
    world = _three_channel_world()
    n = 4 * NOISE_BLOCK
    noise = world.sample_noise(np.random.default_rng(11), n)
    variance = world.noise_var
    for k in range(world.d):
        column = noise[:, k]
        # mean within 5 standard errors; variance within 5 standard errors of the sample variance
        assert abs(column.mean()) < 5 * np.sqrt(variance[k] / n)
        fourth = np.mean(column**4)
        assert abs(column.var() - variance[k]) < 5 * np.sqrt((fourth - variance[k] ** 2) / n)
    # Laplace: P(|x| > scale) = e^-1; a Student-t is heavier tailed than a normal of its variance
    laplace = noise[:, 1] / world.noise_scale[1]
    share = np.mean(np.abs(laplace) > 1.0)
    assert abs(share - np.exp(-1)) < 5 * np.sqrt(np.exp(-1) * (1 - np.exp(-1)) / n)
    t = noise[:, 2] / np.sqrt(variance[2])
    assert np.mean(t**4) > 3.5  # normal: 3; t with 5 df: 9 (in the limit)


@pytest.mark.parametrize("df", [2.0, 4.0, 5.0, 16.0, 2.5])
def test_standard_t_has_the_student_t_distribution(df):
    from scipy import stats

    draws = standard_t(np.random.default_rng(int(df * 10)), df, 200_000)
    # Kolmogorov–Smirnov against the exact CDF; with a fixed seed this is a fixed number
    assert stats.kstest(draws, stats.t(df).cdf).pvalue > 1e-3
    assert draws.shape == (200_000,)
    assert standard_t(np.random.default_rng(0), df, (3, 4)).shape == (3, 4)


def test_substitution_cost_matrix():
    k = substitution_cost_matrix(np.array([1.0, 4.0, 9.0]), 0.5)
    np.testing.assert_allclose(np.diag(k), [1.0, 4.0, 9.0])
    assert k[0, 1] == pytest.approx(0.5 * 2.0)
    assert k[1, 2] == pytest.approx(0.5 * 6.0)
    np.testing.assert_array_equal(k, k.T)
    assert np.linalg.eigvalsh(substitution_cost_matrix(np.ones(6), 0.999))[0] > 0.0
    np.testing.assert_array_equal(
        substitution_cost_matrix(np.array([2.0, 3.0]), 0.0), np.diag([2.0, 3.0])
    )
    for bad in (1.0, -0.1, np.nan):
        with pytest.raises(ValueError):
            substitution_cost_matrix(np.ones(3), bad)
    with pytest.raises(ValueError):
        substitution_cost_matrix(np.array([1.0, 0.0]), 0.2)
