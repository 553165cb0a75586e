"""Sensitivity analysis: SALib designs through the sweep engine, indices with intervals, the CLI."""

from __future__ import annotations

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
    for bad in ("x=1", "x=2:1", "x=a:b", "=1:2"):
        with pytest.raises(ScenarioError):
            parse_param(bad)


def test_sobol_recovers_a_known_function():
    bounds = [Bound("a", 0, 1, False), Bound("b", 0, 1, False), Bound("c", 0, 1, False)]
    matrix = sample("sobol", bounds, 256, seed=1)
    y = 4 * matrix[:, 0] + 1 * matrix[:, 1]  # c has no effect
    table = indices("sobol", bounds, matrix, y, seed=1).set_index(["parameter", "index"])
    assert table.loc[("a", "S1"), "value"] == pytest.approx(16 / 17, abs=0.1)
    assert table.loc[("c", "ST"), "value"] == pytest.approx(0, abs=0.05)
    assert (table["ci_low"] <= table["value"]).all() and (table["value"] <= table["ci_high"]).all()


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
