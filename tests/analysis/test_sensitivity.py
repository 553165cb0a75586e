"""Sensitivity analysis: SALib designs through the sweep engine, indices with intervals, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mesaopt.analysis.sensitivity import (
    Bound,
    indices,
    parameter_type,
    parse_param,
    sample,
    sensitivity_design,
)
from mesaopt.model.errors import ScenarioError

ROOT = Path(__file__).resolve().parents[2]
TINY = ["network.n_agents=50", "run.steps=10", "run.agent_every=0", "regimes.0.at=5"]


def test_parse_param():
    assert parse_param("principals.0.selection.n=1:64") == Bound(
        "principals.0.selection.n", 1.0, 64.0, True
    )
    assert parse_param("agents.risk_aversion=0:2.5").integer is False
    for bad in ("x=1", "x=2:1", "x=a:b", "=1:2", "principals.0.selection.n=1.5:4"):
        with pytest.raises(ScenarioError):
            parse_param(bad)
    # the replicate's seed overwrote it, as for --grid (review)
    with pytest.raises(ScenarioError, match="use --replicates") as info:
        parse_param("run.seed=0:100")
    assert info.value.key == "--param run.seed"


def test_parameter_type_comes_from_the_schema_not_the_bounds():
    """``agents.risk_aversion=0:2`` is a float range although both bounds are whole numbers."""
    assert parse_param("agents.risk_aversion=0:2") == Bound("agents.risk_aversion", 0, 2, False)
    assert parameter_type("principals.0.contract.beta") is float  # a float or "optimal"
    assert parameter_type("agents.capacity") is int  # an int or a distribution
    assert parameter_type("regimes.0.set.level") is int  # a channel field
    assert parameter_type("regimes.0.set.noise.df") is float
    assert parameter_type("channels.0.noise.scale") is float
    bounds = [parse_param("agents.risk_aversion=0:2")]
    design, _ = sensitivity_design("sobol", bounds, sample("sobol", bounds, 8, seed=3), 1, 3)
    values = [p["agents.risk_aversion"] for p in design.points]
    assert len(set(values)) == len(values) > 3  # not just {0, 1, 2}
    assert any(not float(v).is_integer() for v in values)
    for key, words in (
        ("network.torus", "not a number"),
        ("principals.0.name", "not a number"),
        ("network.nonsense", "no key 'nonsense'"),
    ):
        with pytest.raises(ScenarioError, match=words):
            parse_param(f"{key}=0:2")


def test_sobol_recovers_a_known_function():
    """Y = 4a + b (c inert): S1 = ST = 16/17, 1/17, 0 lie inside the reported 95% intervals.

    The width is checked against the delta-method standard error of SALib's first-order
    estimator (Saltelli 2010, on Y standardised as SALib does): with A, B independent base
    samples and AB_a = A with column a from B, S1_a = mean(y_B·(y_AB − y_A)) / Var(Y), whose
    influence function per base sample is (y_B·(y_AB − y_A) − S1·(y_A² + y_B²)/2) / Var(Y) for
    centred y. Its sd σ is computed below by Monte Carlo (10⁶ draws, relative error ≈ 0.1%), and
    the reported half-width should be z·σ/√N with z = 1.96 (95%). The bootstrap half-width is
    itself an estimate (100 resamples: relative sd ≈ 7%) on a quasi-random sample, so it is
    accepted within [0.5, 1.5] × z·σ/√N — about seven of its sds either side — which still fails
    a missing or degenerate interval, and one that does not shrink as 1/√N.
    """
    bounds = [Bound("a", 0, 1, False), Bound("b", 0, 1, False), Bound("c", 0, 1, False)]
    n = 256
    matrix = sample("sobol", bounds, n, seed=1)
    y = 4 * matrix[:, 0] + 1 * matrix[:, 1]  # c has no effect
    table = indices("sobol", bounds, matrix, y, seed=1).set_index(["parameter", "index"])
    exact = {"a": 16 / 17, "b": 1 / 17, "c": 0.0}
    for (parameter, index), row in table.iterrows():
        assert row["ci_low"] <= exact[parameter] <= row["ci_high"], (parameter, index)

    rng = np.random.default_rng(0)
    a_a, b_a, a_b, b_b = rng.random((4, 1_000_000))
    centre, variance = 2.5, 17 / 12
    y_a, y_b, y_ab = 4 * a_a + b_a - centre, 4 * a_b + b_b - centre, 4 * a_b + b_a - centre
    influence = (y_b * (y_ab - y_a) - exact["a"] * (y_a**2 + y_b**2) / 2) / variance
    expected_half_width = 1.96 * influence.std() / np.sqrt(n)
    assert expected_half_width == pytest.approx(0.142, abs=0.002)
    half_width = table.loc[("a", "S1"), "conf"]
    assert 0.5 * expected_half_width <= half_width <= 1.5 * expected_half_width
    assert table.loc[("c", "ST"), "conf"] < 0.01  # an inert input: (nearly) no spread at all


def test_a_constant_output_has_no_sobol_indices_and_zero_morris_effects():
    """Sobol indices are shares of Var(y): for a constant y they are 0/0, which SALib reported as
    zeros after a RuntimeWarning. They are refused; Morris' elementary effects are truly 0."""
    import warnings

    bounds = [Bound("a", 0, 1, False), Bound("b", 0, 1, False)]
    matrix = sample("sobol", bounds, 16, seed=1)
    with pytest.raises(ValueError, match=r"the output is 0\.5 at every sample point"):
        indices("sobol", bounds, matrix, np.full(len(matrix), 0.5), seed=1)
    matrix = sample("morris", bounds, 8, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = indices("morris", bounds, matrix, np.full(len(matrix), 0.5), seed=1)
    assert (table["value"] == 0).all()


def test_integer_parameters_are_rounded_and_repeats_run_once():
    bounds = [Bound("principals.0.selection.n", 1, 3, True)]
    matrix = sample("morris", bounds, 4, seed=2)
    design, point_of = sensitivity_design("morris", bounds, matrix, 2, seed=2)
    values = [p["principals.0.selection.n"] for p in design.points]
    assert all(isinstance(v, int) for v in values) and len(values) == len(set(values))
    assert len(point_of) == len(matrix) and point_of.max() == len(values) - 1
    assert len(design.seeds) == 2


@pytest.mark.parametrize("method", ["sobol", "morris"])
def test_sensitivity_command_writes_indices_with_intervals(tmp_path, method):
    out = tmp_path / method
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run.py"),
            "sensitivity",
            "scenarios/baseline.toml",
            *[f"--set={o}" for o in TINY],
            f"--method={method}",
            "--param=agents.risk_aversion=0:2",
            "--param=principals.0.selection.n=1:16",
            "--samples=4",
            "--engine=serial",
            f"--out={out}",
        ],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(out / "sensitivity.parquet")
    expected = {"sobol": {"S1", "ST"}, "morris": {"mu_star", "mu", "sigma"}}[method]
    assert set(table["index"]) == expected
    assert set(table["parameter"]) == {"agents.risk_aversion", "principals.0.selection.n"}
    assert np.isfinite(table["value"]).all()
    first = table[table["index"].isin(["S1", "mu_star"])]
    assert np.isfinite(first["conf"]).all()
    assert (table["metric"] == "value").all() and (table["statistic"] == "mean").all()
    assert pd.read_csv(out / "sensitivity.csv").shape == table.shape
    assert (out / "summary.parquet").is_file() and (out / "steps").is_dir()
    risk = json.loads((out / "sweep.json").read_text())
    sampled = {p["params"]["agents.risk_aversion"] for p in risk["design_points"]}
    assert not sampled <= {0, 1, 2}  # a float field samples floats (issue 15)


def test_indices_refused_for_a_constant_output_leave_no_earlier_indices_behind(tmp_path, capsys):
    """The same sample judged on another metric: the runs are reused, the constant metric gets
    no indices (exit 1), and the earlier metric's sensitivity files are gone, not left current."""
    from mesaopt import run

    args = ["sensitivity", "regressional", "--set=network.n_agents=20", "--steps=2"]
    args += ["--param=principals.0.selection.n=1:64", "--samples=4", "--engine=serial"]
    args += [f"--out={tmp_path / 'out'}", "--quiet"]
    assert run.main([*args, "--metric=value"]) == 0
    assert (tmp_path / "out" / "sensitivity.csv").is_file()
    capsys.readouterr()
    assert run.main([*args, "--metric=goodhart_adversarial"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "mesaopt: no indices of goodhart_adversarial (mean, all): the output is 0.0 at every "
        "sample point, so its variance has no shares: choose another --metric or wider --param "
        "ranges"
    ]
    assert not list((tmp_path / "out").glob("sensitivity.*"))
    assert (tmp_path / "out" / "runs.parquet").is_file()


def test_sensitivity_command_refuses_a_parameter_without_a_range(tmp_path):
    out = tmp_path / "sa"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run.py"),
            "sensitivity",
            "scenarios/baseline.toml",
            "--param=network.torus=0:1",
            f"--out={out}",
        ],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "network.torus" in result.stderr
    assert not out.exists()


def test_a_sobol_n_that_is_not_a_power_of_two_or_too_many_runs_are_refused():
    """SALib only warns that Saltelli's estimators need N = 2^k; a sensitivity run refuses it
    (naming the powers either side), and a sample too large to plan."""
    bounds = [parse_param("agents.risk_aversion=0:2")]
    with pytest.raises(ScenarioError, match=r"power of 2, got 3 \(try 2 or 4\)") as err:
        sample("sobol", bounds, 3, seed=0)
    assert err.value.key == "--samples"
    assert len(sample("morris", bounds, 3, seed=0)) == 6  # Morris: any number of trajectories
    with pytest.raises(ScenarioError, match="more than 1,000,000"):
        sample("sobol", bounds, 2**20, seed=0)


def test_replicates_count_towards_the_million_runs():
    """A small sample with many replicates is as many runs: refused on --replicates."""
    bounds = [parse_param("agents.risk_aversion=0:2")]
    matrix = sample("sobol", bounds, 1024, seed=0)  # 3,072 rows, 2,048 distinct (one parameter)
    design, _ = sensitivity_design("sobol", bounds, matrix, 400, seed=0)
    assert len(design.points) * len(design.seeds) == 2048 * 400
    with pytest.raises(ScenarioError, match=r"2,048 design points × 1,000 replicates") as err:
        sensitivity_design("sobol", bounds, matrix, 1000, seed=0)
    assert err.value.key == "--replicates"
