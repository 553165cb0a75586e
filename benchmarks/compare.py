"""Same-run A/B of one worker measurement between two source trees.

Usage: ``python benchmarks/compare.py --a ROOT_A --b ROOT_B --pairs P 'SPEC_JSON'``.

Each tree's :mod:`benchmarks.worker` runs in a fresh process with the tree as its working directory
and first on ``PYTHONPATH`` (so an old export whose modules are top-level imports its own code),
BLAS on one thread, as :mod:`benchmarks.suite` runs it. The runs alternate A, B, B, A, A, B, ...
so that a slow spell of the VM hits both trees alike. Every sample goes to stdout as one JSON line
(``{"tree": "a" | "b", "sample": i, "result": {...}}``), then one summary line per numeric field:
the median of each tree, the ratio of the medians (B / A) and the spread of the per-pair ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_worker(root: Path, spec: dict[str, Any], python: str) -> dict[str, Any]:
    """Run one measurement of the worker of the tree at ``root``.

    Args:
        root: The source tree (holds ``benchmarks/worker.py``).
        spec: The measurement (see :mod:`benchmarks.worker`).
        python: The interpreter to run it with.

    Returns:
        The worker's result.
    """
    env = dict(os.environ)
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [python, "-m", "benchmarks.worker", json.dumps(spec)],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def order(pairs: int) -> list[str]:
    """The alternated order of the runs: A, B, B, A, A, B, ... (``2 * pairs`` runs).

    Args:
        pairs: Runs of each tree.

    Returns:
        The tree (``"a"`` or ``"b"``) of each run in turn.
    """
    return [tree for i in range(pairs) for tree in (("a", "b") if i % 2 == 0 else ("b", "a"))]


def summarize(samples: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Medians per tree, ratio of medians and per-pair ratios of every numeric field.

    Args:
        samples: The results of each tree, in run order.

    Returns:
        Per field: ``a`` and ``b`` (all samples), ``median_a``, ``median_b``, ``ratio`` (B / A of
        the medians) and ``pair_ratios`` (B / A of the i-th sample of each tree).
    """
    out: dict[str, dict[str, Any]] = {}
    for key, value in samples["a"][0].items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        a = [s[key] for s in samples["a"] if isinstance(s.get(key), int | float)]
        b = [s[key] for s in samples["b"] if isinstance(s.get(key), int | float)]
        if not a or not b:
            continue
        median_a, median_b = statistics.median(a), statistics.median(b)
        out[key] = {
            "a": a,
            "b": b,
            "median_a": median_a,
            "median_b": median_b,
            "ratio": median_b / median_a if median_a else None,
            "pair_ratios": [y / x if x else None for x, y in zip(a, b, strict=False)],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the A/B comparison described by the command line and print the results.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, required=True, help="tree A (the baseline)")
    parser.add_argument("--b", type=Path, required=True, help="tree B (the candidate)")
    parser.add_argument("--pairs", type=int, default=4, help="runs of each tree")
    parser.add_argument("--python", default=sys.executable, help="interpreter for both trees")
    parser.add_argument("spec", help="the worker's JSON spec")
    args = parser.parse_args(argv)
    spec = json.loads(args.spec)
    roots = {"a": args.a.resolve(), "b": args.b.resolve()}
    samples: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    for tree in order(args.pairs):
        result = run_worker(roots[tree], spec, args.python)
        samples[tree].append(result)
        print(json.dumps({"tree": tree, "sample": len(samples[tree]) - 1, "result": result}))
        sys.stdout.flush()
    for key, row in summarize(samples).items():
        print(json.dumps({"summary": key, **row}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
