"""Content hashes of the tables of every shipped scenario and of one sweep: the refactor oracle.

A refactor must leave every table bit-identical. This module runs each shipped scenario at a small
size (300 agents, 60 steps; 289 = 17 x 17 for the grid scenario), four variants that take code
paths the shipped scenarios do not (:data:`VARIANTS`), and one small sweep through the public
API, and hashes each table by its content: column names, dtypes and every value's bytes, in
column and row order (file bytes would also hash writer metadata). ``tests/golden_hashes.json``
holds the hashes recorded from the code before the architecture refactor (commit 7ab8e51; the
variants were hashed by running that commit's code); ``tests/test_golden_tables.py`` compares
against them. When a model change alters results on purpose, re-record in the same commit and say
why::

    OPENBLAS_CORETYPE=Haswell python -m tests.golden --write

The hashes hold for BLAS kernels that round alike: OpenBLAS picks its kernels by CPU, and its
Haswell, Zen and SkylakeX kernels give these hashes while its older Sandybridge ones change five
(docs/performance.md, "Across machines"). They are recorded with the Haswell kernels (``--write``
refuses any other), and the test runs this module in a subprocess with :data:`BLAS_CORETYPE` set.
Re-recorded on 2026-12-03 (7 tables) when the planner's spectral bracket stopped using BLAS's dot
product: ``welfare_planner``, ``welfare_gap`` and ``price_of_anarchy`` moved by ≤ 1e-15 relative.
Re-recorded on 2026-12-08 (15 tables: the scenarios with peer effects and the sweep) when the peer
payoff came to be realized with the neighbours' efforts of the same step, as the externality and
the planner's W(a) are: ``private_payoff``, ``utility``, ``welfare`` and what is built on them
(``gini_utility``, ``welfare_gap``, ``price_of_anarchy``) moved; no other column did.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from mesaopt import load_scenario, run_simulation, run_sweep
from mesaopt.model.runner import blas_kernels

ROOT = Path(__file__).resolve().parent.parent
HASHES = Path(__file__).with_name("golden_hashes.json")
#: The OpenBLAS kernels the hashes were recorded with (``OPENBLAS_CORETYPE``).
BLAS_CORETYPE = "Haswell"
SCENARIOS = (
    "baseline",
    "federated",
    "heavy_tails",
    "multi_principal",
    "peer_grid",
    "regime_change",
    "regressional",
    "superoptimizer",
)
#: Code paths no shipped scenario takes at the small size: best-of-k planners (stale and
#: current), control-only and mixed populations, the multi-threaded kernels (≥ 8,192 agents).
VARIANTS = {
    "regime_change+best_of_8": (
        "regime_change",
        ["network.n_agents=300", "run.steps=60", "agents.power=8"],
    ),
    "regime_change+control": (
        "regime_change",
        ["network.n_agents=300", "run.steps=60", "agents.optimizer='control'"],
    ),
    "federated+mixed+best_of_4": (
        "federated",
        ["network.n_agents=300", "run.steps=60", "agents.optimizer='mixed'", "agents.power=4"],
    ),
    "baseline+threads_9000": ("baseline", ["network.n_agents=9000", "run.steps=12"]),
    # Stale direct planners of four channels past a cost change, with a shared effort budget
    # and with a diagonal K (recorded with 43f380c, before they were planned by a compiled kernel).
    "baseline+direct+cost_change": (
        "baseline",
        ["network.n_agents=300", "run.steps=60", "agents.optimizer='direct'", "regimes.0.at=30"],
    ),
    "baseline+direct+cost_change+no_substitution": (
        "baseline",
        [
            "network.n_agents=300",
            "run.steps=60",
            "agents.optimizer='direct'",
            "regimes.0.at=30",
            "agents.effort_substitution=0.0",
        ],
    ),
}
RUN_TABLES = ("steps", "agents", "selections", "events")
SWEEP_TABLES = ("steps", "run_metrics", "summary")
#: Columns that record when or how fast something ran, not what it computed.
TIMING_COLUMNS = ("wall_seconds", "build_seconds", "started_utc", "finished_utc")


def frame_hash(frame: pd.DataFrame) -> str:
    """SHA-256 of a table's content: column names, dtypes and values, in order."""
    digest = hashlib.sha256()
    for name in frame.columns:
        column = frame[name]
        digest.update(f"{name}:{column.dtype}\n".encode())
        if column.dtype == object or isinstance(column.dtype, pd.CategoricalDtype | pd.StringDtype):
            digest.update("\x1f".join(map(str, column.tolist())).encode())
        else:
            digest.update(np.ascontiguousarray(column.to_numpy()).tobytes())
    return digest.hexdigest()


def blas_architectures() -> set[str | None]:
    """The CPU kernels of the BLAS libraries a run uses (what its manifest records as ``blas``)."""
    return {kernel["architecture"] for kernel in blas_kernels()}


def _overrides(name: str) -> list[str]:
    n = 289 if name == "peer_grid" else 300
    return [f"network.n_agents={n}", "run.steps=60"]


def compute_hashes() -> dict[str, str]:
    """Run every shipped scenario and the sweep; return ``{"scenario/table": hash}``."""
    hashes: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in SCENARIOS:
            path = ROOT / "scenarios" / f"{name}.toml"
            scenario = load_scenario(path, _overrides(name))
            out = Path(tmp) / name
            run_simulation(scenario, out, base_dir=path.parent, progress=False)
            for table in RUN_TABLES:
                hashes[f"{name}/{table}"] = frame_hash(pd.read_parquet(out / f"{table}.parquet"))
        for key, (name, overrides) in VARIANTS.items():
            path = ROOT / "scenarios" / f"{name}.toml"
            out = Path(tmp) / key
            run_simulation(
                load_scenario(path, overrides), out, base_dir=path.parent, progress=False
            )
            for table in RUN_TABLES:
                hashes[f"{key}/{table}"] = frame_hash(pd.read_parquet(out / f"{table}.parquet"))
        out = Path(tmp) / "sweep"
        run_sweep(
            ROOT / "scenarios" / "baseline.toml",
            out,
            overrides=["network.n_agents=120", "run.steps=20"],
            grid={"principals.0.selection.n": [1, 16]},
            replicates=2,
            engine="serial",
        )
        for table in SWEEP_TABLES:
            frame = pd.read_parquet(out / table if table == "steps" else out / f"{table}.parquet")
            if table == "steps":
                frame = frame.sort_values(["run_id", "step", "principal"], kind="stable")
                frame = frame.reset_index(drop=True)
            frame = frame.drop(columns=[c for c in TIMING_COLUMNS if c in frame.columns])
            hashes[f"sweep/{table}"] = frame_hash(frame)
    return hashes


def main(argv: list[str] | None = None) -> int:
    """Print the hashes, or write them to ``golden_hashes.json`` with ``--write``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="record the hashes")
    args = parser.parse_args(argv)
    kernels = blas_architectures()
    if args.write and kernels != {BLAS_CORETYPE}:
        print(f"refusing to record with BLAS kernels {sorted(kernels)}: set OPENBLAS_CORETYPE=")
        return 2
    hashes = compute_hashes()
    if args.write:
        HASHES.write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n")
    json.dump(hashes, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
