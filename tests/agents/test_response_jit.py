"""Tests for agents/response_jit.py: the compiled planning pass equals its NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from numba.core.errors import TypingError

from mesaopt.agents import response, response_jit
from mesaopt.model import parallel
from mesaopt.model.channels import substitution_cost_matrix
from mesaopt.model.kernel_arrays import Graph, PlanArrays, PopulationArrays, WorldArrays
from mesaopt.model.parallel import kernel_threads

BLOCK = 2048


def _problem(n: int, d: int, s: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    costs = rng.uniform(0.3, 2.0, d)
    graph = sp.random(n, n, density=min(1.0, 6 / n), random_state=seed, format="csr")
    graph = ((graph + graph.T) > 0).astype(float).tocsr()
    graph.setdiag(0)
    graph.eliminate_zeros()
    graph.data *= rng.uniform(0.2, 1.0, graph.nnz)  # weighted, as after row normalisation
    graph.sort_indices()
    world = WorldArrays(
        metric=rng.normal(size=d),
        peer=rng.uniform(0, 0.05, d),
        externality=rng.normal(size=d),
        cost=substitution_cost_matrix(costs, s),
        root=np.sqrt(costs),
        substitution=s,
    )
    population = PopulationArrays(
        principal=rng.integers(0, 3, n),
        capacity=rng.integers(0, 3, n),
        is_control=rng.random(n) < 0.3,
        theta=rng.normal(size=(n, d)),
        perceive=rng.random((n, d)) < 0.7,
        last_action=np.abs(rng.normal(size=(n, d))),
        last_noise=rng.normal(size=(n, d)),
        gain=rng.uniform(0.1, 0.6, n),
    )
    return {
        "graph": Graph.of(graph),
        "world": world,
        "population": population,
        "beta": rng.normal(size=3),
    }


def _plan(p: dict) -> PlanArrays:
    n, d = p["population"].theta.shape
    out = PlanArrays.empty(n, d)
    response_jit.plan_actions(p["graph"], p["world"], p["population"], p["beta"], out)
    return out


@pytest.mark.parametrize(("d", "s"), [(1, 0.0), (2, 0.5), (3, 0.3), (4, 0.2), (4, 0.0), (6, 0.9)])
def test_plan_actions_equals_the_numpy_reference(d, s):
    p = _problem(3 * BLOCK + 17, d, s, seed=d)
    got = _plan(p)
    expected = response.plan_actions(p["graph"], p["world"], p["population"], p["beta"])

    # G a and r: the same sums in the same order (CSR rows in index order, as SciPy) — bit for bit.
    assert np.array_equal(got.neighbour_effort, expected.neighbour_effort)
    assert np.array_equal(got.reward, expected.reward)
    # Efforts and optimum: equal up to rounding. The reference recovers s and diag K from K
    # (the kernel is given sqrt(diag K) and s), takes the diagonal fast path for s = 0, and
    # computes K a and rᵀa* with BLAS and einsum; measured differences are a few ulps (≤ 6e-14).
    assert np.allclose(got.action, expected.action, rtol=1e-12, atol=1e-12)
    assert np.allclose(got.own_best, expected.own_best, rtol=1e-12, atol=1e-12)
    assert np.allclose(got.optimum, expected.optimum, rtol=1e-12, atol=1e-12)
    control = p["population"].is_control
    assert 0 < control.sum() < len(control)


def test_a_plan_given_g_a_reads_it_instead_of_gathering():
    """``gathered=True``: the plan reads the G a it is handed (carried from the last outcomes)."""
    p = _problem(2 * BLOCK + 5, 4, 0.2, seed=3)
    n, d = p["population"].theta.shape
    fresh = _plan(p)
    handed = PlanArrays.empty(n, d)
    handed.neighbour_effort[:] = fresh.neighbour_effort
    response_jit.plan_actions(
        p["graph"], p["world"], p["population"], p["beta"], handed, gathered=True
    )
    for got, want in zip(handed, fresh, strict=True):
        assert np.array_equal(got, want)
    # ... and really reads it: another G a gives other rewards.
    other = PlanArrays.empty(n, d)
    other.neighbour_effort[:] = 2.0 * fresh.neighbour_effort
    response_jit.plan_actions(
        p["graph"], p["world"], p["population"], p["beta"], other, gathered=True
    )
    assert np.array_equal(other.neighbour_effort, 2.0 * fresh.neighbour_effort)
    assert not np.array_equal(other.reward, fresh.reward)


def test_plan_actions_does_not_depend_on_the_number_of_threads(same_on_one_and_three_threads):
    p = _problem(5 * BLOCK + 3, 4, 0.2, seed=7)
    same_on_one_and_three_threads(lambda: tuple(_plan(p)))


def test_plan_actions_rejects_swapped_structures():
    """Arrays are read by name: a structure in the wrong place fails to compile (or to run)."""
    p = _problem(50, 2, 0.3, seed=1)
    out = PlanArrays.empty(50, 2)
    with pytest.raises((TypingError, AttributeError)):  # AttributeError with NUMBA_DISABLE_JIT
        response_jit.plan_actions(p["world"], p["graph"], p["population"], p["beta"], out)


def test_kernel_threads_restores_the_thread_count():
    before = parallel.thread_count()
    with kernel_threads(1):
        assert parallel.thread_count() == 1
        assert parallel.row_ranges(10_000) == [(0, 10_000)]
    assert parallel.thread_count() == before


def test_parallel_map_keeps_the_order_of_items(monkeypatch):
    monkeypatch.setattr(parallel, "_MAX_THREADS", 3)
    with kernel_threads(3):
        assert parallel.parallel_map(lambda x: x * x, range(10)) == [x * x for x in range(10)]
        assert parallel.block_ranges(7) == [(0, 2), (2, 4), (4, 7)]


def test_parallel_map_waits_for_every_thread_before_raising(monkeypatch):
    import time

    monkeypatch.setattr(parallel, "_MAX_THREADS", 2)
    finished = []

    def work(x):
        if x == 0:
            raise RuntimeError("first share fails")
        time.sleep(0.2)
        finished.append(x)

    with kernel_threads(2), pytest.raises(RuntimeError):
        parallel.parallel_map(work, range(2))
    assert finished == [1]


@pytest.mark.parametrize(
    ("refusal", "raised"),
    [("can't start new thread", MemoryError), ("interpreter shutdown", RuntimeError)],
)
def test_a_kernel_thread_that_cannot_start_is_out_of_memory(monkeypatch, refusal, raised):
    """Under a tight ``ulimit -v`` the pool's first thread has no room for its stack.

    Python says ``RuntimeError: can't start new thread``; :func:`parallel_map` turns it into
    the MemoryError that ``run.py`` reports in one line (it was a traceback). Other errors pass.
    """
    import threading

    def refuse(self):
        raise RuntimeError(refusal)

    monkeypatch.setattr(parallel, "_MAX_THREADS", 2)
    monkeypatch.setattr(parallel, "_pool", None)  # a new pool, whose threads start on demand
    monkeypatch.setattr(threading.Thread, "start", refuse)
    with kernel_threads(2), pytest.raises(raised, match=refusal):
        parallel.parallel_map(lambda x: x, range(2))


def test_a_share_whose_thread_did_not_start_never_runs_after_the_error(monkeypatch):
    """``submit`` queues the work before it starts the thread: the share stayed queued and a
    pool thread ran it after ``parallel_map`` had raised (review); it is now cancelled."""
    import threading
    import time

    real = threading.Thread.start
    started = []

    def one_thread_only(self):
        if started:
            raise RuntimeError("can't start new thread")
        started.append(self)
        real(self)

    ran = []

    def work(x):
        time.sleep(0.2)
        ran.append((x, time.monotonic()))

    monkeypatch.setattr(parallel, "_MAX_THREADS", 3)
    monkeypatch.setattr(parallel, "_pool", None)
    monkeypatch.setattr(threading.Thread, "start", one_thread_only)
    with kernel_threads(3), pytest.raises(MemoryError):
        parallel.parallel_map(work, range(3))
    raised = time.monotonic()
    time.sleep(0.6)
    assert [x for x, at in ran if at > raised] == []
    assert parallel._pool is None  # the next call starts a new pool


def test_mesaopt_threads_must_be_a_positive_integer(monkeypatch):
    monkeypatch.setenv("MESAOPT_THREADS", "two")
    with pytest.raises(ValueError, match="MESAOPT_THREADS"):
        parallel._default_threads()
    monkeypatch.setenv("MESAOPT_THREADS", "3")
    assert parallel._default_threads() == 3


def test_parallel_map_inside_parallel_map_runs_in_place(monkeypatch):
    monkeypatch.setattr(parallel, "_MAX_THREADS", 2)
    with kernel_threads(2):
        nested = parallel.parallel_map(
            lambda x: parallel.parallel_map(lambda y: x * 10 + y, range(3)), range(4)
        )
    assert nested == [[x * 10 + y for y in range(3)] for x in range(4)]


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_kernels_survive_a_fork_after_using_threads():
    """A forked child (multiprocessing's default on Linux) can still run the threaded kernels."""
    import multiprocessing

    p = _problem(3 * BLOCK, 4, 0.2, seed=2)
    with kernel_threads(2):  # the parent's pool is running when it forks, even on one core
        expected = _plan(p).action
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(_plan_action, (p,)).get(timeout=120)
    assert np.array_equal(got, expected)


def _plan_action(p: dict) -> np.ndarray:
    return _plan(p).action


def test_the_thread_fixture_can_fail(same_on_one_and_three_threads):
    with pytest.raises(AssertionError):
        same_on_one_and_three_threads(lambda: np.array(parallel.thread_count()))
