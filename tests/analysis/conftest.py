"""Shared fixtures of the analysis tests: one small run folder and one small sweep folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mesaopt.model.runner import run_simulation
from mesaopt.model.scenario_files import load_scenario

SMALL = [
    "network.n_agents=120",
    "run.steps=30",
    "run.agent_every=10",
    "regimes.0.at=15",
]


def small_run(out: Path, overrides: list[str] | None = None) -> Path:
    """Run a small baseline variant into ``out`` and return the folder."""
    scenario = load_scenario(None, SMALL + list(overrides or []))
    run_simulation(scenario, out, progress=False, source="<default scenario>")
    return out


def small_sweep(out: Path, ns: tuple[int, ...] = (1, 4, 16), replicates: int = 2) -> Path:
    """A sweep folder in the layout of ``run.py sweep``: sweep.json + runs/<run_id>/."""
    key = "principals.1.selection.n"
    runs = []
    for design_id, n in enumerate(ns):
        for replicate in range(replicates):
            run_id = f"d{design_id}r{replicate}"
            small_run(
                out / "runs" / run_id,
                [f"{key}={n}", f"run.seed={100 + replicate}", "run.steps=12", "run.agent_every=0"],
            )
            runs.append({"run_id": run_id, "design_id": design_id, "replicate": replicate})
    record = {"kind": "grid", "parameters": [key], "runs": runs}
    (out / "sweep.json").write_text(json.dumps(record), encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_run(tmp_path_factory.mktemp("run") / "out")


@pytest.fixture(scope="session")
def grid_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_run(
        tmp_path_factory.mktemp("grid") / "out",
        ["network.topology=grid", "network.n_agents=144"],
    )


@pytest.fixture(scope="session")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_sweep(tmp_path_factory.mktemp("sweep") / "sweep")
