"""Where a step's time goes: wall time per part of the step, ``python -m benchmarks.sections N``.

Wraps the parts of :meth:`model.model.MesaOptModel.step` (and, indented, the parts of the
measurement and of the ``steps`` rows) with wall-clock timers, runs the baseline scenario at N
agents (agent snapshots off) and prints each part's median over the ordinary steps (selection
steps and the first three steps left out). A part nested in another is included in its parent's
time; the kernels run on the kernel threads, so a part's wall time is not its CPU time. For a
profile of one part at a time; the figures in ``BENCHMARKS.md`` come from :mod:`benchmarks.suite`.

Usage::

    python -m benchmarks.sections 100000        # 60 steps
    python -m benchmarks.sections 1000000 24    # 24 steps
    python -m benchmarks.sections 100000 140 --after 100   # past the regime change
"""

from __future__ import annotations

import argparse
import collections
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.worker import _scenario, _selection_steps

#: (module, function, label) of the timed parts; the label's indent shows the nesting.
PARTS = (
    ("mesaopt.model.model", "apply_regime_changes", "regime changes"),
    ("mesaopt.model.model", "scheduled_retraining", "scheduled selection"),
    ("mesaopt.model.model", "refresh_neighbour_effort", "G a refreshed (compiled)"),
    ("mesaopt.model.model", "plan_actions", "plan_actions (compiled)"),
    ("mesaopt.model.model", "audit", "audit"),
    ("mesaopt.model.model", "measure_step", "measure_step"),
    ("mesaopt.model.measurement", "outcomes_and_measures", "  outcomes_and_measures (compiled)"),
    ("mesaopt.model.measurement", "decompose_agents", "  decompose_agents (compiled)"),
    ("mesaopt.model.measurement", "record_decomposition", "  record_decomposition (compiled)"),
    ("mesaopt.model.measurement", "aggregate_steps", "  aggregate_steps"),
    ("mesaopt.model.metrics", "parallel_map", "    the two sorts (two threads)"),
    ("mesaopt.model.metrics", "group_ginis", "    group_ginis"),
    ("mesaopt.model.metrics", "group_correlations", "    group_correlations"),
    ("mesaopt.model.metrics", "sample_estimates", "    sample_estimates"),
    ("mesaopt.model.measurement", "add_planner_columns", "  add_planner_columns"),
    ("mesaopt.model.model", "replace_caught", "replace_caught (retraining)"),
    ("mesaopt.model.model", "federated_updates", "federated updates"),
)


def _timed(function: Callable[..., Any], label: str, clock: dict[str, float]) -> Callable:
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            clock[label] += time.perf_counter() - start

    return timed


def measure(n: int, steps: int, after: int = 3) -> tuple[float, dict[str, float]]:
    """Median wall time of an ordinary step and of each part, in ms (the timers are removed after).

    Args:
        n: Agents.
        steps: Steps to run.
        after: Only the ordinary steps after this one count (the baseline's regime change is at
            step 100: ``after=100`` times the steps of stale agents).

    Returns:
        The median ordinary step and the median of each part, in ms.
    """
    import importlib

    from mesaopt.model.channels import World
    from mesaopt.model.heap import retain_freed_memory
    from mesaopt.model.model import MesaOptModel

    retain_freed_memory()  # as run_simulation does
    clock: dict[str, float] = collections.defaultdict(float)
    originals = [(World, "sample_noise", World.sample_noise)]
    for module_name, name, _ in PARTS:
        module = importlib.import_module(module_name)
        originals.append((module, name, getattr(module, name)))
    try:
        World.sample_noise = _timed(World.sample_noise, "output noise", clock)
        for module_name, name, label in PARTS:
            module = importlib.import_module(module_name)
            setattr(module, name, _timed(getattr(module, name), label, clock))
        scenario = _scenario({"n": n, "steps": steps})
        model = MesaOptModel(scenario)
        selection = _selection_steps(scenario, steps)
        totals, parts = [], collections.defaultdict(list)
        for t in range(1, steps + 1):
            clock.clear()
            start = time.perf_counter()
            model.step()
            elapsed = time.perf_counter() - start
            if t in selection or t <= after:
                continue
            totals.append(elapsed)
            for label in ("output noise", *(label for _, _, label in PARTS)):
                parts[label].append(clock.get(label, 0.0))
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
    return float(np.median(totals) * 1e3), {k: float(np.median(v) * 1e3) for k, v in parts.items()}


def main(argv: list[str] | None = None) -> int:
    """Print the median wall time of each part of an ordinary step."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("agents", type=int, nargs="?", default=100_000)
    parser.add_argument("steps", type=int, nargs="?", default=60)
    parser.add_argument(
        "--after", type=int, default=3, help="count only the ordinary steps after this one"
    )
    args = parser.parse_args(argv)
    if not 0 <= args.after < args.steps:
        parser.error("--after must be at least 0 and below the number of steps")
    total, parts = measure(args.agents, args.steps, args.after)
    print(f"{args.agents:,} agents, median ordinary step {total:.2f} ms; parts (median ms):")
    for label, ms in parts.items():
        print(f"  {label:42s} {ms:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
