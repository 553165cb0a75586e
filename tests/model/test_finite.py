"""The non-finite guard: inf never, NaN only where docs/tables.md gives it a meaning."""

from __future__ import annotations

import numpy as np
import pytest

from mesaopt.model.finite import NonFiniteError, check_batch, nan_allowed


def test_documented_nan_columns_and_prefixes():
    assert nan_allowed("steps", "alpha") and nan_allowed("steps", "belief_output")
    assert nan_allowed("events", "old") and nan_allowed("events", "new")
    assert not nan_allowed("steps", "value") and not nan_allowed("agents", "alpha")
    assert not nan_allowed("selections", "chosen_true")


def test_nan_is_accepted_where_documented_and_inf_never():
    check_batch("steps", [{"step": 1, "principal": "all", "alpha": float("nan"), "value": 1.0}])
    check_batch("events", {"step": np.array([1]), "old": np.array([np.nan])})
    with pytest.raises(NonFiniteError, match=r"steps\.alpha \(principal all\) is inf"):
        check_batch("steps", [{"step": 1, "principal": "all", "alpha": float("inf")}])
    with pytest.raises(NonFiniteError, match=r"events\.new is -inf"):
        check_batch("events", {"step": np.array([4]), "new": np.array([-np.inf])})


def test_a_group_without_agents_may_have_nan_means_but_not_inf():
    empty = {"step": 2, "principal": "p", "n_agents": 0, "value": float("nan")}
    check_batch("steps", [empty])
    with pytest.raises(NonFiniteError):
        check_batch("steps", [{**empty, "value": float("inf")}])
    with pytest.raises(NonFiniteError, match=r"step 2: steps\.value"):
        check_batch("steps", [{**empty, "n_agents": 3}])


def test_columns_name_the_first_bad_row_its_step_and_principal():
    columns = {
        "step": np.array([5, 5, 6]),
        "principal": np.array(["a", "b", "c"], dtype=object),
        "agent_id": np.array([0, 1, 2]),  # integers are never checked
        "effort_x": np.array([0.0, np.nan, np.inf]),
    }
    with pytest.raises(NonFiniteError) as caught:
        check_batch("agents", columns)
    err = caught.value
    assert (err.step, err.table, err.column, err.principal) == (5, "agents", "effort_x", "b")
    assert err.record() == {
        "table": "agents",
        "column": "effort_x",
        "value": "nan",
        "step": 5,
        "principal": "b",
        "cause": None,
    }
    assert "\n" not in err.one_line()
    err.explain("the likely cause")
    assert (
        err.one_line().endswith("the run is stopped; the likely cause")
        and str(err) == err.one_line()
    )
    assert err.record()["cause"] == "the likely cause"


def test_finite_batches_and_non_float_columns_pass():
    check_batch("selections", {"step": np.arange(3), "kind": np.array(["d"] * 3, dtype=object)})
    check_batch("network", {"source": np.arange(3), "weight": np.ones(3)})
    check_batch("steps", [{"step": 1, "principal": "x", "value": np.float64(2.0), "flag": True}])
