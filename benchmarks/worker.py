"""One benchmark measurement, run in a fresh process: ``python -m benchmarks.worker JSON``.

The JSON argument names the measurement (``kind``: ``mesaopt``, ``end_to_end``, ``reference`` or
``graph``) and its size; the result is printed as one JSON line on stdout. Running each
measurement in its own process makes ``peak_rss_mb`` (``ru_maxrss``) that configuration's own and
keeps one configuration's garbage from slowing the next. :mod:`benchmarks.suite` drives it.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "baseline.toml"


def _scenario(spec: dict[str, Any]):
    from mesaopt.model.scenario_files import load_scenario

    overrides = [
        f"network.n_agents={spec['n']}",
        "run.agent_snapshots=off",
        f"run.steps={spec['steps']}",
        f"run.seed={spec.get('seed', 42)}",
    ]
    if "k" in spec:
        overrides.append(f"network.k={spec['k']}")
    return load_scenario(SCENARIO, overrides)


def _selection_steps(scenario, steps: int) -> set[int]:
    """Steps at which some principal retrains agents by best-of-n.

    That is scheduled selection, or a federated update of a principal that trains on its value
    belief (it retrains with the refit signal).
    """
    every = [p.selection.every for p in scenario.principals if p.selection.every]
    every += [
        p.federated.every
        for p in scenario.principals
        if p.federated.every and p.train_on == "value" and p.selection.fraction > 0
    ]
    return {t for t in range(1, steps + 1) if any(t % e == 0 for e in every)}


def _step_stats(times: list[float], cpu: list[float], selection: set[int]) -> dict[str, Any]:
    """Summaries of per-step wall and CPU times (step t is ``times[t - 1]``).

    CPU time (``time.process_time``) is what the step cost this process; on a machine shared with
    other busy processes it is the steadier figure, wall time the honest one.
    """
    arr = np.asarray(times)
    cpu_arr = np.asarray(cpu)
    sel = np.array([t in selection for t in range(1, len(times) + 1)])
    ordinary = arr[~sel] if (~sel).any() else arr
    return {
        "steps": len(times),
        "total_step_seconds": float(arr.sum()),
        "steps_per_second": float(len(arr) / arr.sum()),
        "median_step_ms": float(np.median(arr) * 1e3),
        "median_ordinary_step_ms": float(np.median(ordinary) * 1e3),
        "min_ordinary_step_ms": float(ordinary.min() * 1e3),
        "median_selection_step_ms": float(np.median(arr[sel]) * 1e3) if sel.any() else None,
        "steps_per_cpu_second": float(len(cpu_arr) / max(cpu_arr.sum(), 1e-12)),
        "median_ordinary_step_cpu_ms": float(
            np.median(cpu_arr[~sel] if (~sel).any() else cpu_arr) * 1e3
        ),
        "median_selection_step_cpu_ms": float(np.median(cpu_arr[sel]) * 1e3) if sel.any() else None,
    }


def _run_steps(model: Any, steps: int) -> tuple[list[float], list[float]]:
    """Step ``model`` ``steps`` times; wall and CPU seconds of each step."""
    times, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        model.step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return times, cpu


def _timed_builder(module: Any, clock: dict[str, float]) -> None:
    """Wrap ``module.build_network`` so that graph construction is timed on its own."""
    original = module.build_network

    def build(*args: Any, **kwargs: Any):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            clock["graph_seconds"] = time.perf_counter() - start

    module.build_network = build


def measure_mesaopt(spec: dict[str, Any]) -> dict[str, Any]:
    """Build the model, step it ``steps`` times, time every step.

    The heap keeps freed memory as in :func:`model.runner.run_simulation` (:mod:`model.heap`), so
    the steps cost what they cost in a run.
    """
    import mesaopt.model.model as model_module
    from mesaopt.model.heap import retain_freed_memory

    retain_freed_memory()

    scenario = _scenario(spec)
    clock: dict[str, float] = {}
    _timed_builder(model_module, clock)
    start = time.perf_counter()
    model = model_module.MesaOptModel(scenario)
    build = time.perf_counter() - start
    times, cpu = _run_steps(model, spec["steps"])
    pop_bytes = model.population.nbytes()
    adj = model.network.adjacency
    graph_bytes = adj.data.nbytes + adj.indices.nbytes + adj.indptr.nbytes
    return {
        "build_seconds": build,
        "graph_seconds": clock.get("graph_seconds"),
        "mean_degree": model.network.mean_degree,
        "population_bytes": pop_bytes,
        "graph_bytes": graph_bytes,
        "views": len(model._views),
        **_step_stats(times, cpu, _selection_steps(scenario, spec["steps"])),
    }


def measure_end_to_end(spec: dict[str, Any]) -> dict[str, Any]:
    """``run_simulation`` end to end (graph, agents, steps, exports written), wall clock."""
    import mesaopt.model.model as model_module
    from mesaopt.model.runner import run_simulation

    scenario = _scenario(spec)
    clock: dict[str, float] = {}
    _timed_builder(model_module, clock)
    with tempfile.TemporaryDirectory(prefix="mesaopt-bench-") as out:
        start = time.perf_counter()
        result = run_simulation(scenario, Path(out) / "run", progress=False)
        wall = time.perf_counter() - start
        sizes = {p.name: p.stat().st_size for p in result.paths.values()}
    manifest = result.manifest
    steps_seconds = manifest["wall_seconds"] - manifest["build_seconds"]
    return {
        "wall_seconds": wall,
        "build_seconds": manifest["build_seconds"],
        "graph_seconds": clock.get("graph_seconds"),
        "steps": spec["steps"],
        "steps_per_second": spec["steps"] / steps_seconds if steps_seconds > 0 else None,
        "export_bytes": sum(sizes.values()),
        "row_counts": manifest["row_counts"],
    }


def measure_graph(spec: dict[str, Any]) -> dict[str, Any]:
    """Graph construction alone (the scenario's topology at ``n`` nodes), ``repeats`` times."""
    from mesaopt.model.network import build_network

    scenario = _scenario({**spec, "steps": 1})
    rng = np.random.default_rng(spec.get("seed", 42))
    times = []
    for _ in range(spec.get("repeats", 3)):
        start = time.perf_counter()
        network = build_network(scenario.network, rng)
        times.append(time.perf_counter() - start)
        del network
    return {"graph_seconds": times}


def measure_reference(spec: dict[str, Any]) -> dict[str, Any]:
    """Build the idiomatic-Mesa reference and time ``steps`` steps."""
    from benchmarks.reference import ReferenceModel

    scenario = _scenario(spec)
    start = time.perf_counter()
    model = ReferenceModel(scenario)
    build = time.perf_counter() - start
    times, cpu = _run_steps(model, spec["steps"])
    return {
        "build_seconds": build,
        **_step_stats(times, cpu, _selection_steps(scenario, spec["steps"])),
    }


KINDS = {
    "mesaopt": measure_mesaopt,
    "end_to_end": measure_end_to_end,
    "graph": measure_graph,
    "reference": measure_reference,
}


def main(argv: list[str] | None = None) -> int:
    """Run the measurement described by the JSON in ``argv[0]`` and print the result."""
    spec = json.loads((argv or sys.argv[1:])[0])
    load_before = os.getloadavg()[0]
    result = KINDS[spec["kind"]](spec)
    result.update(
        spec=spec,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        load_before=load_before,
        load_after=os.getloadavg()[0],
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
