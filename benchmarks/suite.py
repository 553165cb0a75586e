"""The speed suite: plan the measurements, run each in a fresh process, write BENCHMARKS.md.

``python -m benchmarks`` measures the baseline scenario (``scenarios/baseline.toml``, agent
snapshots off) at N = 1e3, 1e4, 1e5, 1e6: steps/s (wall and CPU), build time (graph + agents),
graph construction alone, peak RSS, selection-step cost, the 1e6 × 100-step run end to end
(exports written), the idiomatic-Mesa reference (:mod:`benchmarks.reference`) at 1e3, 1e4, 1e5
for speed ratios measured in the same run, and a fit of step cost against agents × degree.

Every configuration runs in its own subprocess (:mod:`benchmarks.worker`) with BLAS limited to one
thread: the model's matrix products are tiny (N × d by d × d), and multi-threaded OpenBLAS made them
several times slower whenever the two cores were shared with anything else (measured: 1e5 agents, 81
ms vs 325 ms per step under load 5); and the worker keeps freed memory for the next step as
:func:`model.runner.run_simulation` does (:mod:`model.heap`). Repeats are reported as median and
best; the machine's load average is recorded before and after each configuration, because the
wall-clock figures of a shared machine are only as good as its load.

The suite rewrites only its own part of ``BENCHMARKS.md``, between ``<!-- single-run:start -->``
and ``<!-- single-run:end -->``; other sections (e.g. sweeps) are left as they are.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- single-run:start -->", "<!-- single-run:end -->"

#: Targets of issue 3 (full baseline model, 2 cores).
TARGETS = {
    "steps_per_second_1e5": 60.0,
    "ratio_vs_reference": 300.0,
    "end_to_end_1e6_seconds": 45.0,
    "end_to_end_1e6_rss_mb": 2.5 * 1024,
    "graph_1e6_seconds": 3.0,
    "selection_step_ratio": 3.0,
}


def _plan(quick: bool) -> dict[str, Any]:
    """Which configurations to run (sizes, repeats, steps)."""
    if quick:
        return {
            "mesaopt": [(300, 1, 12)],
            "reference": [(300, 2)],
            "graph": (2_000, 1),
            "end_to_end": (300, 12, 1),
            "fit": [(300, 4), (600, 4), (600, 8)],
            "fit_steps": 4,
        }
    return {
        # (agents, repeats, steps): steps cover selection steps (every 10) and the regime change
        # at step 100 where they reach it.
        "mesaopt": [(1_000, 5, 200), (10_000, 5, 200), (100_000, 3, 120), (1_000_000, 1, 20)],
        # (agents, steps): the reference at 1e5 is slow; a few steps are enough for a rate.
        "reference": [(1_000, 20), (10_000, 5), (100_000, 2)],
        "graph": (1_000_000, 3),
        "end_to_end": (1_000_000, 100, 2),
        "fit": [(n, k) for n in (25_000, 50_000, 100_000, 200_000) for k in (4, 8, 16)],
        "fit_steps": 21,
    }


def run_worker(
    spec: dict[str, Any], *, verbose: bool = True, threads: int | None = None
) -> dict[str, Any]:
    """Run one measurement in a fresh Python process and return its JSON result.

    Args:
        spec: The measurement (see :mod:`benchmarks.worker`).
        verbose: Print a line per measurement on stderr.
        threads: Kernel threads (``MESAOPT_THREADS``) of the worker; None: one per core.

    Returns:
        The worker's result.
    """
    env = dict(os.environ)
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if threads is not None:
        env["MESAOPT_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark {spec} failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if verbose:
        print(
            f"  {spec['kind']:<10} n={spec.get('n'):>9,} {time.perf_counter() - start:6.1f} s "
            f"(load {result['load_before']:.1f})",
            file=sys.stderr,
        )
    return result


def _median(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.median(kept)) if kept else None


def collect(quick: bool = False, *, verbose: bool = True) -> dict[str, Any]:
    """Run every configuration of the plan and summarise.

    Args:
        quick: Tiny sizes, one repeat: a smoke test of the suite, not a measurement.
        verbose: Progress on stderr.

    Returns:
        The raw results and their summaries (see :func:`render`).
    """
    plan = _plan(quick)
    out: dict[str, Any] = {"quick": quick, "machine": machine(), "mesaopt": {}, "reference": {}}
    for n, repeats, steps in plan["mesaopt"]:
        runs = [run_worker({"kind": "mesaopt", "n": n, "steps": steps}, verbose=verbose)
                for _ in range(repeats)]  # fmt: skip
        out["mesaopt"][n] = runs
    for n, steps in plan["reference"]:
        out["reference"][n] = run_worker({"kind": "reference", "n": n, "steps": steps},
                                         verbose=verbose)  # fmt: skip
    n, repeats = plan["graph"]
    out["graph"] = run_worker({"kind": "graph", "n": n, "steps": 1, "repeats": repeats},
                              verbose=verbose)  # fmt: skip
    n, steps, repeats = plan["end_to_end"]
    out["end_to_end"] = [
        run_worker({"kind": "end_to_end", "n": n, "steps": steps}, verbose=verbose)
        for _ in range(repeats)
    ]
    out["fit"] = measure_fit(plan, verbose=verbose)
    return out


def measure_fit(plan: dict[str, Any], *, verbose: bool = True) -> list[dict[str, Any]]:
    """The step-cost points of the linearity fit, on one kernel thread.

    One thread measures the work itself: with two threads the CPU time of a step also varies with
    how the operating system schedules them. Each point is the better of two runs' medians, so that
    one run disturbed by another process does not bend the fit (a single disturbed point took R²
    from 0.99 to 0.97).
    """
    points = []
    for n, k in plan["fit"]:
        spec = {"kind": "mesaopt", "n": n, "k": k, "steps": plan["fit_steps"]}
        runs = [run_worker(spec, verbose=verbose, threads=1) for _ in range(2)]
        points.append(min(runs, key=lambda r: r["median_ordinary_step_cpu_ms"]))
    return points


def fit_step_cost(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Least-squares fit of the median ordinary step's CPU time: t = c0 + c1·N + c2·N·k.

    Args:
        runs: Worker results of ``mesaopt`` measurements at several sizes and degrees.

    Returns:
        Coefficients (seconds), R², and each point's measured and fitted time.
    """
    n = np.array([r["spec"]["n"] for r in runs], dtype=float)
    k = np.array([r["mean_degree"] for r in runs])
    t = np.array([r["median_ordinary_step_cpu_ms"] / 1e3 for r in runs])
    design = np.column_stack([np.ones_like(n), n, n * k])
    coef, *_ = np.linalg.lstsq(design, t, rcond=None)
    fitted = design @ coef
    ss_res = float(np.sum((t - fitted) ** 2))
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    return {
        "c0_s": float(coef[0]),
        "per_agent_s": float(coef[1]),
        "per_agent_degree_s": float(coef[2]),
        "r2": 1 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
        "points": [
            {"n": int(a), "k": float(b), "ms": float(c * 1e3), "fit_ms": float(f * 1e3)}
            for a, b, c, f in zip(n, k, t, fitted, strict=True)
        ],
    }


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, load and package versions of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        ram = float("nan")
    versions = {"python": platform.python_version()}
    for name in ("numpy", "scipy", "mesa", "networkx", "pyarrow"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(ram, 1),
        "load": os.getloadavg(),
        "versions": versions,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
    }


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "–" if value is None else format(value, spec)


def render(results: dict[str, Any]) -> str:
    """The single-run section of BENCHMARKS.md (Markdown, between the markers)."""
    m = results["machine"]
    lines = [START, "## Single runs (`python -m benchmarks`)", ""]
    if results["quick"]:
        lines += ["**Quick mode: tiny sizes, a smoke test of the suite, not a measurement.**", ""]
    v = m["versions"]
    lines += [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM; Python {v['python']}, "
        f"NumPy {v['numpy']}, SciPy {v['scipy']}, Mesa {v['mesa']}; {m['platform']}; "
        f"{m['date']}. Load average at the start: {m['load'][0]:.1f} "
        "(each row gives the load seen by its own runs: above ~2 the two cores were shared "
        "and wall-clock rates drop; CPU-time rates are steadier).",
        "",
        "Scenario: `scenarios/baseline.toml` (4 channels, full K, 2 principals, selection every "
        "10 steps, audits, federated updates, regime change at step 100), agent snapshots off, "
        "BLAS on one thread, freed memory kept for the next step as `run_simulation` keeps it "
        "(`model.heap.retain_freed_memory`).",
        "",
        "### Throughput, build time and memory",
        "",
        "| agents | runs × steps | steps/s (median, best) | steps/CPU-s | ordinary step ms | "
        "selection step ms (× ordinary) | build s (graph s) | peak RSS MB | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n, runs in sorted(results["mesaopt"].items(), key=lambda kv: int(kv[0])):
        rates = [r["steps_per_second"] for r in runs]
        ordinary = _median([r["median_ordinary_step_ms"] for r in runs])
        selection = _median([r["median_selection_step_ms"] for r in runs])
        sel_cpu = _median([r["median_selection_step_cpu_ms"] for r in runs])
        ord_cpu = _median([r["median_ordinary_step_cpu_ms"] for r in runs])
        ratio = sel_cpu / ord_cpu if sel_cpu and ord_cpu else None
        lines.append(
            f"| {int(n):,} | {len(runs)} × {runs[0]['steps']} | {_median(rates):.1f}, "
            f"{max(rates):.1f} | {_median([r['steps_per_cpu_second'] for r in runs]):.1f} | "
            f"{_fmt(ordinary, '.2f')} | {_fmt(selection, '.2f')} ({_fmt(ratio, '.2f')}) | "
            f"{_median([r['build_seconds'] for r in runs]):.2f} "
            f"({_median([r['graph_seconds'] for r in runs]):.2f}) | "
            f"{_median([r['peak_rss_mb'] for r in runs]):.0f} | "
            f"{min(r['load_before'] for r in runs):.1f}–{max(r['load_after'] for r in runs):.1f} |"
        )
    lines += [
        "",
        "Selection ratio: median CPU time of a selection step over that of an ordinary step.",
        "",
        "### Memory per agent",
        "",
        "| agents | population arrays B/agent | graph CSR B/agent | "
        "peak RSS growth from the previous size, B/agent |",
        "|---|---|---|---|",
    ]
    previous = None
    for n, runs in sorted(results["mesaopt"].items(), key=lambda kv: int(kv[0])):
        r = runs[0]
        n = int(n)
        rss = _median([x["peak_rss_mb"] for x in runs]) * 2**20
        growth = (rss - previous[1]) / (n - previous[0]) if previous else None
        previous = (n, rss)
        lines.append(
            f"| {n:,} | {r['population_bytes'] / n:.0f} | {r['graph_bytes'] / n:.0f} | "
            f"{_fmt(growth, ',.0f')} |"
        )
    lines += ["", "### End to end and graph construction", ""]
    e2e = results["end_to_end"]
    n_e2e = e2e[0]["spec"]["n"]
    walls = [r["wall_seconds"] for r in e2e]
    lines += [
        f"- `run_simulation` with {n_e2e:,} agents × {e2e[0]['steps']} steps (graph, agents, "
        f"steps, Parquet exports and manifest written), {len(e2e)} runs: wall "
        f"{_median(walls):.1f} s median, {min(walls):.1f} s best; build "
        f"{_median([r['build_seconds'] for r in e2e]):.1f} s of which graph "
        f"{_median([r['graph_seconds'] for r in e2e]):.2f} s; peak RSS "
        f"{max(r['peak_rss_mb'] for r in e2e):,.0f} MB; load "
        f"{min(r['load_before'] for r in e2e):.1f}–{max(r['load_after'] for r in e2e):.1f}.",
    ]
    graph = results["graph"]
    lines.append(
        f"- Graph alone, {graph['spec']['n']:,} nodes (Watts–Strogatz, k = 8, p = 0.1): "
        + ", ".join(f"{t:.2f} s" for t in graph["graph_seconds"])
        + "."
    )
    lines += [
        "",
        "### Against idiomatic Mesa (same run)",
        "",
        "The reference (`benchmarks/reference.py`) is the same core step written with one Mesa "
        "agent per mesa-optimizer, `shuffle_do`, `mesa.discrete_space.Network` neighbourhoods and "
        "per-agent Python best responses; its docstring lists what it leaves out.",
        "",
        "| agents | reference steps timed | reference steps/s | reference build s | "
        "mesaopt steps/s (median) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    ratios = {}
    for n, ref in sorted(results["reference"].items(), key=lambda kv: int(kv[0])):
        ours = results["mesaopt"].get(n) or results["mesaopt"].get(str(n))
        ours_rate = _median([r["steps_per_second"] for r in ours]) if ours else None
        ratio = ours_rate / ref["steps_per_second"] if ours_rate else None
        ratios[int(n)] = ratio
        lines.append(
            f"| {int(n):,} | {ref['steps']} | {ref['steps_per_second']:.3f} | "
            f"{ref['build_seconds']:.1f} | {_fmt(ours_rate)} | {_fmt(ratio, ',.0f')}× |"
        )
    fit = fit_step_cost(results["fit"])
    lines += [
        "",
        "### Step cost against agents × degree",
        "",
        "Median CPU time of an ordinary step on one kernel thread (`MESAOPT_THREADS=1`: the work, "
        "without the scheduling noise of two threads; the better of two runs), Watts–Strogatz "
        "graphs of mean degree k, fitted by "
        f"least squares to t = c0 + c1·N + c2·N·k: c0 = {fit['c0_s'] * 1e3:.2f} ms, "
        f"c1 = {fit['per_agent_s'] * 1e9:.1f} ns per agent, c2 = "
        f"{fit['per_agent_degree_s'] * 1e9:.2f} ns per agent per unit of degree; "
        f"R² = {fit['r2']:.4f}.",
        "",
        "| N | k | measured ms | fitted ms |",
        "|---|---|---|---|",
    ]
    for p in fit["points"]:
        lines.append(f"| {p['n']:,} | {p['k']:.0f} | {p['ms']:.2f} | {p['fit_ms']:.2f} |")
    lines += ["", "### Targets (issue 3)", "", "| target | measured | met |", "|---|---|---|"]
    lines += _target_rows(results, ratios, fit)
    lines += ["", END]
    return "\n".join(lines) + "\n"


def _target_rows(results: dict[str, Any], ratios: dict[int, float | None], fit: dict) -> list:
    rows = []

    def row(name: str, measured: str, ok: bool | None) -> None:
        rows.append(f"| {name} | {measured} | {'–' if ok is None else ('yes' if ok else 'no')} |")

    big = results["mesaopt"].get(100_000) or results["mesaopt"].get("100000")
    if big:
        rate = _median([r["steps_per_second"] for r in big])
        cpu = _median([r["steps_per_cpu_second"] for r in big])
        row("1e5 agents ≥ 60 steps/s", f"{rate:.1f} wall, {cpu:.1f} per CPU-second",
            rate >= TARGETS["steps_per_second_1e5"])  # fmt: skip
    for n in (10_000, 100_000):
        if ratios.get(n) is not None:
            row(f"≥ 300× the reference at {n:,}", f"{ratios[n]:,.0f}×", ratios[n] >= 300)
    e2e = results["end_to_end"]
    if e2e and e2e[0]["spec"]["n"] >= 1_000_000:
        wall = _median([r["wall_seconds"] for r in e2e])
        rss = max(r["peak_rss_mb"] for r in e2e)
        row("1e6 × 100 steps end to end ≤ 45 s", f"{wall:.1f} s", wall <= 45)
        row("… with peak RSS ≤ 2.5 GB", f"{rss:,.0f} MB", rss <= TARGETS["end_to_end_1e6_rss_mb"])
    graph = results["graph"]
    if graph["spec"]["n"] >= 1_000_000:
        best = _median(graph["graph_seconds"])
        row("graph for 1e6 nodes ≤ 3 s", f"{best:.2f} s (median)", best <= 3)
    worst = None
    for runs in results["mesaopt"].values():
        sel = _median([r["median_selection_step_cpu_ms"] for r in runs])
        ordinary = _median([r["median_ordinary_step_cpu_ms"] for r in runs])
        if sel and ordinary:
            worst = max(worst or 0.0, sel / ordinary)
    if worst is not None:
        row("selection step ≤ 3× an ordinary step", f"worst {worst:.2f}× (CPU time)", worst <= 3)
    row("step cost linear in agents × degree", f"R² = {fit['r2']:.4f}", fit["r2"] >= 0.98)
    return rows


def write_section(path: Path, section: str) -> None:
    """Replace the single-run section of ``path`` (or append it), keeping everything else."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Command line of ``python -m benchmarks``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: smoke-test the suite")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md",
                        help="Markdown file whose single-run section is rewritten")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the raw results as JSON")
    parser.add_argument("--no-write", action="store_true", help="print instead of writing --out")
    parser.add_argument("--refit", type=Path, metavar="JSON",
                        help="re-measure the fit only; the rest from a --json file")  # fmt: skip
    args = parser.parse_args(argv)
    if args.refit:
        results = json.loads(args.refit.read_text(encoding="utf-8"))
        results["fit"] = measure_fit(_plan(args.quick), verbose=True)
    else:
        results = collect(args.quick)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    section = render(results)
    if args.no_write:
        print(section)
    else:
        write_section(args.out, section)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
