"""Unit tests of the Mesa view of one mesa-optimizer (agents/optimizer.py).

A view holds only its row index; every property reads the population arrays. Each test names the
plausible bug it guards against: a view that copies state at creation (stale after a step), a
property that returns the array row itself (writes leak into the model), a wrong row or neighbour.
"""

from __future__ import annotations

import numpy as np
import pytest

from mesaopt.agents.optimizer import MesaOptimizer
from mesaopt.model.model import MesaOptModel
from mesaopt.model.scenario_files import load_scenario


@pytest.fixture(scope="module")
def model() -> MesaOptModel:
    built = MesaOptModel(load_scenario(None, ["network.n_agents=40", "run.steps=2"]))
    built.run_for(1)
    return built


def test_a_view_reads_its_own_row(model):
    """Guards against an off-by-one row or a view that caches the row at creation."""
    pop = model.population
    for i in (0, 17, 39):
        view = model.optimizer(i)
        assert view.index == view.node == i
        np.testing.assert_array_equal(view.objective, pop.theta[i])
        np.testing.assert_array_equal(view.action, pop.action[i])
        assert view.capacity == pop.capacity[i]
        assert view.principal is model.principals[pop.principal[i]]
        assert view.category == model.category_of(i)
    before = model.optimizer(5).action
    model.run_for(1)
    np.testing.assert_array_equal(model.optimizer(5).action, model.population.action[5])
    assert model.optimizer(5) is model.optimizer(5)  # one view per agent, not one per call
    assert before.shape == (model.world.d,)


def test_objective_and_action_are_copies(model):
    """Guards against returning the population row: writing to it would change the model."""
    view = model.optimizer(3)
    theta = model.population.theta[3].copy()
    view.objective[:] = 99.0
    view.action[:] = 99.0
    np.testing.assert_array_equal(model.population.theta[3], theta)
    assert not np.any(model.population.action[3] == 99.0)


def test_kind_is_the_name_of_the_row_code(model):
    """Guards against a kind read from the wrong table (codes are int8, names strings)."""
    kinds = {model.optimizer(i).kind for i in range(model.population.size)}
    assert kinds <= {"direct", "control"} and kinds
    assert isinstance(model.optimizer(0).kind, str)


def test_neighbours_are_the_adjacency_row(model):
    """Guards against neighbours taken from a column, or from the wrong row of the CSR matrix."""
    g = model.network.adjacency
    for i in (0, 21):
        expected = sorted(g.indices[g.indptr[i] : g.indptr[i + 1]].tolist())
        got = sorted(v.index for v in model.optimizer(i).neighbors)
        assert got == expected and got
        assert all(isinstance(v, MesaOptimizer) for v in model.optimizer(i).neighbors)


def test_last_step_metrics_by_name_and_unknown_names_raise(model):
    """Guards against __getattr__ swallowing typos (it must raise AttributeError, not return 0)."""
    view = model.optimizer(8)
    assert view.value == pytest.approx(float(model.last_agent_metrics["value"][8]))
    assert isinstance(view.principal_loss, float)
    with pytest.raises(AttributeError):
        _ = view.no_such_metric
    assert not hasattr(view, "no_such_metric")
