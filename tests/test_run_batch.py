"""The batch commands end to end: ``sweep`` (with its [sweep] section), ``export``, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "scenarios" / "baseline.toml"
TINY = ["--set=network.n_agents=50", "--steps=8", "--set=regimes.0.at=4"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=120,
    )


def test_sweep_from_the_scenario_section_then_export(tmp_path):
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        BASELINE.read_text()
        + '\n[sweep]\nreplicates = 2\n[sweep.grid]\nprincipals.0.selection.n = "1:4:log2"\n'
    )
    out = tmp_path / "out"
    result = cli("sweep", str(scenario), *TINY, "--engine=serial", f"--out={out}")
    assert result.returncode == 0, result.stderr
    assert "6 runs (6 ran, 0 already done, 0 failed)" in result.stdout
    assert "runs |" not in result.stderr  # the progress bar is drawn on a terminal only
    again = cli("sweep", str(scenario), *TINY, "--engine=serial", f"--out={out}")
    assert "6 runs (0 ran, 6 already done, 0 failed)" in again.stdout
    summary = pd.read_parquet(out / "summary.parquet")
    assert set(summary["principals.0.selection.n"]) == {1, 2, 4}
    exported = cli("export", str(out), "--format=csv")
    assert exported.returncode == 0, exported.stderr
    assert len(pd.read_csv(out / "steps.csv")) == 6 * 8 * 3


def test_bad_sweep_input_exits_2_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    for args in (
        ["--grid=network.k=4,-2"],
        ["--grid=network.nope=1,2"],
        ["--grid=network.k=8:2:1"],
        ["--grid=network.k"],
    ):
        result = cli("sweep", str(BASELINE), *TINY, *args, "--engine=serial", f"--out={out}")
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("mesaopt: error: ")
        assert len(result.stderr.strip().splitlines()) == 1
        assert not out.exists()
    assert cli("export", str(tmp_path)).returncode == 2
