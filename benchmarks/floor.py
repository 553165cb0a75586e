"""What a step cannot do without, three of its parts timed alone: ``benchmarks.floor``.

Builds the baseline scenario at N agents, runs a few steps, then times, on one kernel thread,
the parts of an ordinary step that no rearrangement of today's step removes (a redesign could
compute the harm received as (G a)ᵀe, changing its rounding, and find the proxy quantile by a
selection instead of a sort; BENCHMARKS.md counts both ways): the output
noise of every channel (:meth:`model.channels.World.sample_noise`), the two sparse gathers over
the network (the neighbours' efforts ``G a`` and the harm they receive, which the outcome kernel
gathers in one pass and carries into the next plan, :mod:`model.neighbour_effort`; timed here
each alone, as a bare compiled loop over the CSR rows, summed in the kernels' order: SciPy's
product of a CSR matrix and an (N, 4) array is twice as slow) and the two sorts of a step's
``steps`` row (:func:`model.group_stats_jit.sort_by_group`, for the Gini coefficient and the
proxy quantile). It prints each median, their sum, and the time an ordinary step may take at a
given rate when every ``every``-th step is a selection step costing ``ratio`` ordinary ones.
BENCHMARKS.md uses it to say whether a speed target can be met on the machine at hand.

Usage::

    python -m benchmarks.floor 100000
    python -m benchmarks.floor 100000 --rate 60 --every 10 --ratio 3
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numba as nb
import numpy as np

from benchmarks.worker import _scenario


@nb.njit(nogil=True)
def gather(
    indptr: np.ndarray, indices: np.ndarray, weights: np.ndarray, x: np.ndarray, out: np.ndarray
) -> None:
    """``out = G x`` for x of shape (N, k): CSR rows in index order, nothing else in the loop."""
    for i in range(indptr.shape[0] - 1):
        for k in range(x.shape[1]):
            out[i, k] = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            other = indices[p]
            w = weights[p]
            for k in range(x.shape[1]):
                out[i, k] += w * x[other, k]


def _median_ms(work: Callable[[], object], repeats: int) -> float:
    work()  # first call: compile or load the kernel, warm the caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def measure(n: int, warmup_steps: int = 3, repeats: int = 15) -> dict[str, float]:
    """Median one-thread wall time of each irreducible part at ``n`` agents, in ms.

    Args:
        n: Agents.
        warmup_steps: Steps run first, so that efforts and measures are a run's, not zeros.
        repeats: Timed repetitions of each part.

    Returns:
        ``{part: ms}``, the parts in the order they run in a step.
    """
    from mesaopt.model.group_stats_jit import sort_by_group
    from mesaopt.model.model import MesaOptModel
    from mesaopt.model.parallel import kernel_threads

    model = MesaOptModel(_scenario({"n": n, "steps": warmup_steps + 1}))
    for _ in range(warmup_steps):
        model.step()
    adjacency = model.adjacency.tocsr()
    action = np.ascontiguousarray(model.population.action)
    harm = (action @ model.world.externality)[:, None]
    csr = (adjacency.indptr, adjacency.indices, adjacency.data)
    efforts_in, harm_in = np.empty_like(action), np.empty_like(harm)  # written, never allocated
    utility = np.ascontiguousarray(model.last_agent_metrics["utility"])
    proxy = np.ascontiguousarray(model.last_agent_metrics["proxy"])
    principal = model.population.principal
    generator = np.random.default_rng(0)
    with kernel_threads(1):
        return {
            "output noise (every channel)": _median_ms(
                lambda: model.world.sample_noise(generator, n), repeats
            ),
            "gather G a (outcomes)": _median_ms(lambda: gather(*csr, action, efforts_in), repeats),
            "gather G harm (outcomes)": _median_ms(lambda: gather(*csr, harm, harm_in), repeats),
            "two sorts (Gini, proxy quantile)": _median_ms(
                lambda: (sort_by_group(utility, principal), sort_by_group(proxy, principal)),
                repeats,
            ),
        }


def ordinary_step_budget(rate: float, every: int, ratio: float) -> float:
    """The ordinary step's time, in ms, that gives ``rate`` steps/s on average.

    Of every ``every`` steps one is a selection step costing ``ratio`` ordinary ones:
    ``every`` steps take ``(every − 1 + ratio)`` ordinary steps.

    Args:
        rate: Steps per second wanted.
        every: A selection step every this many steps (0: none).
        ratio: Cost of a selection step in ordinary steps.
    """
    if every <= 0:
        return 1000.0 / rate
    return 1000.0 / rate * every / (every - 1 + ratio)


def main(argv: list[str] | None = None) -> int:
    """Print the parts' medians, their sum and the ordinary step's budget."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("agents", type=int, nargs="?", default=100_000)
    parser.add_argument("--rate", type=float, default=60.0, help="steps/s wanted")
    parser.add_argument("--every", type=int, default=10, help="a selection step every k steps")
    parser.add_argument("--ratio", type=float, default=3.0, help="selection step / ordinary")
    args = parser.parse_args(argv)
    if args.agents < 1 or not args.rate > 0 or args.ratio < 1:
        parser.error("agents must be positive, --rate above 0 and --ratio at least 1")
    parts = measure(args.agents)
    print(f"{args.agents:,} agents, one kernel thread; median ms:")
    for label, ms in parts.items():
        print(f"  {label:36s} {ms:8.2f}")
    total = sum(parts.values())
    print(f"  {'sum (one core)':36s} {total:8.2f}")
    print(f"  {'sum over two cores, split evenly':36s} {total / 2:8.2f}")
    budget = ordinary_step_budget(args.rate, args.every, args.ratio)
    print(
        f"ordinary step budget at {args.rate:g} steps/s (selection every {args.every}, "
        f"{args.ratio:g}x): {budget:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
