"""Channels: the world snapshot and its regime changes."""

from __future__ import annotations

import numpy as np

from model.channels import NOISE_CODES, world_from_scenario
from model.scenario import load_scenario


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
