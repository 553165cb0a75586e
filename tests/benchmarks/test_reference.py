"""The idiomatic-Mesa reference agrees with mesaopt; the speed suite runs (no timing asserts)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.reference import ReferenceModel
from benchmarks.suite import END, START
from mesaopt.model.model import MesaOptModel
from mesaopt.model.scenario_files import load_scenario

ROOT = Path(__file__).resolve().parents[2]
KEYS = (
    "proxy",
    "value",
    "pay",
    "utility",
    "effort_output",
    "effort_quality",
    "effort_gaming",
    "effort_extraction",
)


def _run_means(model, steps: int, reference: bool) -> np.ndarray:
    if reference:
        for _ in range(steps):
            model.step()
        frame = model.datacollector.get_model_vars_dataframe()
        return frame[list(KEYS)].to_numpy().mean(axis=0)
    rows = []
    for _ in range(steps):
        model.step()
        row = next(r for r in model.last_steps if r["principal"] == "all")
        rows.append([row[k] for k in KEYS])
    return np.mean(rows, axis=0)


@pytest.mark.slow
def test_reference_agrees_with_mesaopt_within_noise():
    # Baseline dynamics (selection, audits, regime change at step 50) without federated updates,
    # which the reference leaves out. Independent seeds give the standard error.
    steps, seeds = 70, range(6)
    scenario = load_scenario(
        ROOT / "scenarios" / "baseline.toml",
        [
            "network.n_agents=300",
            "principals.1.federated.every=0",
            "regimes.0.at=50",
            f"run.steps={steps}",
        ],
    )
    ours = np.array([_run_means(MesaOptModel(scenario, rng=s), steps, False) for s in seeds])
    theirs = np.array(
        [_run_means(ReferenceModel(scenario, rng=1000 + s), steps, True) for s in seeds]
    )
    se = np.sqrt(ours.var(axis=0, ddof=1) / len(ours) + theirs.var(axis=0, ddof=1) / len(theirs))
    z = (ours.mean(axis=0) - theirs.mean(axis=0)) / se
    assert np.all(np.abs(z) < 4.5), dict(zip(KEYS, np.round(z, 2), strict=True))
    # And the agreement is not vacuous: the means are far from zero relative to their noise.
    assert abs(ours[:, 0].mean()) > 10 * se[0]


def test_reference_step_is_staged_and_uses_mesa_network():
    scenario = load_scenario(ROOT / "scenarios" / "baseline.toml", ["network.n_agents=60"])
    model = ReferenceModel(scenario, rng=1)
    model.step()
    agent = model.optimizers[0]
    assert len(list(agent.cell.neighborhood)) == model.grid.G.degree(agent.cell.coordinate)
    assert all(a >= 0 for a in agent.action)
    assert len(model.datacollector.get_model_vars_dataframe()) == 1


@pytest.mark.slow
def test_quick_suite_writes_only_its_section(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    out.write_text(
        f"# Benchmarks\n\nkept above\n\n{START}\nold\n{END}\n\n## Sweeps\n\nkept below\n"
    )
    subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    text = out.read_text()
    assert "kept above" in text and "## Sweeps\n\nkept below" in text
    assert "old" not in text.split(START)[1].split(END)[0]
    assert "| 300 |" in text and "Against idiomatic Mesa" in text
