"""Tests for benchmarks/floor.py: the irreducible parts are timed and the budget is the rate's."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from benchmarks import floor


def test_the_gather_is_the_sparse_product():
    rng = np.random.default_rng(5)
    adjacency = sp.random(300, 300, density=0.03, format="csr", random_state=7)
    x = rng.normal(size=(300, 4))
    out = np.full_like(x, np.nan)  # every entry written, none read
    floor.gather(adjacency.indptr, adjacency.indices, adjacency.data, x, out)
    np.testing.assert_allclose(out, adjacency @ x, rtol=1e-13, atol=1e-13)


def test_the_budget_counts_the_selection_steps():
    # 10 steps = 9 ordinary + one of 3 ordinary: 12 ordinary steps in 10 / 60 s
    assert floor.ordinary_step_budget(60, 10, 3) == pytest.approx(1000 / 60 * 10 / 12)
    assert floor.ordinary_step_budget(60, 0, 3) == pytest.approx(1000 / 60)
    assert floor.ordinary_step_budget(60, 10, 1) == pytest.approx(1000 / 60)


def test_the_parts_are_timed(capsys):
    parts = floor.measure(2_000, warmup_steps=2, repeats=2)
    assert list(parts) == [
        "output noise (every channel)",
        "gather G a (outcomes)",
        "gather G harm (outcomes)",
        "two sorts (Gini, proxy quantile)",
    ]
    assert all(ms > 0 for ms in parts.values())
    assert floor.main(["1500"]) == 0
    out = capsys.readouterr().out
    assert "sum (one core)" in out and "ordinary step budget at 60 steps/s" in out
    with pytest.raises(SystemExit) as refused:
        floor.main(["0"])
    assert refused.value.code == 2
