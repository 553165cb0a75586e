"""G a carried from a step's outcomes into the next step's plan (model/neighbour_effort.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mesaopt.model.kernel_arrays import Graph
from mesaopt.model.model import MesaOptModel
from mesaopt.model.neighbour_effort import (
    refresh_neighbour_effort,
    refresh_neighbour_effort_numpy,
)
from mesaopt.model.scenario_files import load_scenario


def _graph(n: int, seed: int, weighted: bool) -> sp.csr_array:
    rng = np.random.default_rng(seed)
    g = sp.random_array((n, n), density=6 / n, rng=rng, format="csr")
    g = ((g + g.T) > 0).astype(float).tocsr()  # symmetric pattern, as the model's networks
    if weighted:  # row-normalised, as network.normalize: no longer symmetric
        g = sp.csr_array(sp.diags_array(1 / np.maximum(g.sum(axis=1), 1)) @ g)
    g.sort_indices()
    return sp.csr_array(g)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("changes", [0, 1, 37, 1000, 5000])
def test_refresh_gives_a_fresh_product_bit_for_bit_and_regathers_only_touched_rows(
    weighted, changes
):
    n, d = 5000, 3
    g = _graph(n, changes, weighted)
    rng = np.random.default_rng(changes + 1)
    before = rng.random((n, d))
    effort = g @ before
    after = before.copy()
    rows = rng.choice(n, size=changes, replace=False)
    after[rows] = rng.random((changes, d))
    if changes:  # a change of sign of zero is a change too (a write is a write)
        after[rows[0]] = [-0.0, 0.0, 1.0]
        before[rows[0]] = [0.0, 0.0, 1.0]
        effort = g @ before
    reference = effort.copy()
    n_ref = refresh_neighbour_effort_numpy(g, after, before, reference)
    got = effort.copy()
    n_got = refresh_neighbour_effort(Graph.of(g), after, before, got, most=n)
    assert np.array_equal(got, g @ after)  # bit for bit
    assert np.array_equal(reference, got)
    touched = np.unique(g[:, rows].tocoo().row) if changes else np.arange(0)
    assert n_got == n_ref == len(touched)  # exactly the rows with a changed neighbour
    # With at most a quarter of the rows to gather again by default, beyond that nothing done
    left = effort.copy()
    n_default = refresh_neighbour_effort(Graph.of(g), after, before, left)
    if len(touched) > n // 4:
        assert n_default is None and np.array_equal(left, effort)
    else:
        assert n_default == len(touched) and np.array_equal(left, got)


def _model(**changes: str) -> MesaOptModel:
    overrides = ["network.n_agents=600", "run.agent_every=0", "run.seed=5"]
    overrides += [f"{key}={value}" for key, value in changes.items()]
    return MesaOptModel(load_scenario(None, overrides))


def _steps(model: MesaOptModel, steps: int, *, carry: bool) -> list[dict]:
    rows = []
    for _ in range(steps):
        if not carry:
            model._carried_effort = None  # the plan gathers G a itself
        model.step()
        rows.extend(model.last_steps)
    return rows


def test_a_run_with_carried_effort_equals_one_that_gathers_every_step():
    # The baseline replaces audited agents every step and retrains every 10: rows change.
    carried = pd.DataFrame(_steps(_model(), 25, carry=True))
    gathered = pd.DataFrame(_steps(_model(), 25, carry=False))
    assert carried.equals(gathered)  # bit for bit, NaN where NaN


def test_efforts_written_between_steps_reach_the_next_plan():
    """A user's write into the population's efforts is seen, as if G a were gathered afresh."""
    models = [_model(), _model()]
    for model in models:
        model.run_for(3)
        model.population.action[::7] *= 1.5
    models[1]._carried_effort = None
    for model in models:
        model.step()
    a, b = (m.last_agent_metrics for m in models)
    for name in a:
        assert np.array_equal(a[name], b[name], equal_nan=True), name
