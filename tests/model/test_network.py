"""Tests for model.network: build_network's dispatch and checks, the network table, ρ(G)."""

from __future__ import annotations

import hashlib
import math
import pathlib
from types import SimpleNamespace

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from mesaopt.model.errors import ScenarioError
from mesaopt.model.network import (
    MAX_COMPLETE,
    NETWORK_COLUMNS,
    Network,
    _power_iteration,
    build_network,
    network_from_table,
    network_table,
    resolve_grid_shape,
    spectral_radius,
)

DEFAULTS = dict(
    topology="watts_strogatz",
    n_agents=400,
    k=8,
    p=0.1,
    m=None,
    width=None,
    height=None,
    torus=False,
    neighborhood="von_neumann",
    blocks=None,
    p_in=0.05,
    p_out=0.005,
    path=None,
    normalize=False,
)
RANDOM = ["watts_strogatz", "barabasi_albert", "erdos_renyi", "sbm"]
ALL = [*RANDOM, "grid", "ring", "complete", "star"]


def cfg(**overrides: object) -> SimpleNamespace:
    return SimpleNamespace(**{**DEFAULTS, **overrides})


def build(seed: int = 0, block_sizes: list[int] | None = None, **overrides: object) -> Network:
    return build_network(cfg(**overrides), np.random.default_rng(seed), block_sizes=block_sizes)


def assert_simple_graph(net: Network, n: int) -> None:
    a = net.adjacency
    assert isinstance(a, sp.csr_matrix)
    assert a.shape == (n, n)
    assert a.dtype == np.float64
    assert a.has_sorted_indices
    assert (a != a.T).nnz == 0, "not symmetric"  # every caller builds unnormalised graphs
    pattern = a.copy()
    pattern.data[:] = 1.0
    assert (pattern != pattern.T).nnz == 0, "pattern not symmetric"
    assert np.all(a.diagonal() == 0), "self-loop"
    dedup = pattern.copy()
    dedup.sum_duplicates()
    assert dedup.nnz == a.nnz and np.all(dedup.data == 1.0), "duplicate entries"
    assert net.n_nodes == n
    assert net.n_edges * 2 == a.nnz
    assert net.degrees.dtype == np.int64
    assert net.degrees.sum() == a.nnz
    assert net.mean_degree == pytest.approx(a.nnz / n)


def same(a: sp.csr_matrix, b: sp.csr_matrix) -> bool:
    return a.shape == b.shape and (a != b).nnz == 0


# ------------------------------------------------------------------ structure, all builders


@pytest.mark.parametrize("topology", ALL)
def test_structure_and_determinism(topology: str) -> None:
    net = build(3, topology=topology)
    assert_simple_graph(net, 400)
    assert np.all(net.adjacency.data == 1.0)
    assert same(net.adjacency, build(3, topology=topology).adjacency)


@pytest.mark.parametrize("topology", RANDOM)
def test_different_seeds_differ(topology: str) -> None:
    assert not same(build(1, topology=topology).adjacency, build(2, topology=topology).adjacency)


@pytest.mark.parametrize("topology", ALL)
def test_normalize_rows_sum_to_one(topology: str) -> None:
    raw = build(5, topology=topology)
    net = build(5, topology=topology, normalize=True)
    assert same(raw.adjacency.astype(bool), net.adjacency.astype(bool))
    sums = np.asarray(net.adjacency.sum(axis=1)).ravel()
    assert np.allclose(sums[raw.degrees > 0], 1.0)
    assert np.all(sums[raw.degrees == 0] == 0.0)
    assert np.array_equal(net.degrees, raw.degrees)


def test_normalize_keeps_isolated_rows_zero() -> None:
    net = build(0, topology="erdos_renyi", n_agents=300, k=1, normalize=True)
    isolated = net.degrees == 0
    assert isolated.any()
    sums = np.asarray(net.adjacency.sum(axis=1)).ravel()
    assert np.all(sums[isolated] == 0) and np.allclose(sums[~isolated], 1)


def random_cfg(draw: st.DrawFn) -> tuple[SimpleNamespace, int]:
    topology = draw(st.sampled_from([*RANDOM, "ring", "grid"]))
    n = draw(st.integers(1, 60))
    k = 2 * draw(st.integers(0, max(0, (n - 1) // 2)))
    over: dict[str, object] = dict(topology=topology, n_agents=n, k=k, p=draw(st.floats(0, 1)))
    if topology == "barabasi_albert":
        if n < 2:
            over["topology"] = "ring"
            over["k"] = 0
        else:
            over["m"] = draw(st.integers(1, n - 1))
    if topology == "grid":
        width = draw(st.integers(1, 8))
        height = draw(st.integers(1, 8))
        over.update(
            n_agents=width * height,
            width=width,
            height=height,
            torus=draw(st.booleans()),
            neighborhood=draw(st.sampled_from(["von_neumann", "moore"])),
        )
    if topology == "sbm":
        cut = draw(st.integers(0, n))
        over.update(blocks=[cut, n - cut], p_in=draw(st.floats(0, 1)), p_out=draw(st.floats(0, 1)))
    return cfg(**over), int(over["n_agents"])  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_property_simple_graph_any_small_input(data: st.DataObject, seed: int) -> None:
    config, n = data.draw(st.composite(random_cfg)())
    net = build_network(config, np.random.default_rng(seed))
    assert_simple_graph(net, n)
    assert same(net.adjacency, build_network(config, np.random.default_rng(seed)).adjacency)
    if config.topology in ("watts_strogatz", "ring"):
        assert net.n_edges == n * config.k // 2
    if config.topology == "barabasi_albert":
        assert net.n_edges == config.m * (n - config.m)


def test_sbm_blocks_and_block_sizes_argument() -> None:
    net = build(topology="sbm", n_agents=30, blocks=[10, 20], p_in=1.0, p_out=0.0)
    assert net.blocks is not None and net.blocks.dtype == np.int64
    assert np.array_equal(net.blocks, np.repeat([0, 1], [10, 20]))
    assert net.n_edges == 45 + 190
    # the scenario's blocks win over the model's default (agents per principal); the default
    # applies where blocks is unset; None everywhere -> one block
    net = build(topology="sbm", n_agents=30, blocks=[10, 20], block_sizes=[5, 0, 25], p_in=1.0)
    assert np.array_equal(np.bincount(net.blocks), [10, 20])
    net = build(topology="sbm", n_agents=30, blocks=None, block_sizes=[5, 0, 25], p_in=1.0)
    assert np.array_equal(np.bincount(net.blocks, minlength=3), [5, 0, 25])
    assert build(topology="sbm", n_agents=30, p_in=1.0, p_out=0.0).n_edges == 435


def test_barabasi_albert_m_defaults_to_half_k() -> None:
    assert build(topology="barabasi_albert", k=8, m=None).n_edges == 4 * (400 - 4)
    assert build(topology="barabasi_albert", k=1, m=None).n_edges == 1 * (400 - 1)


def test_grid_layout_and_default_square() -> None:
    net = build(topology="grid", n_agents=100)
    assert net.grid_shape == (10, 10)
    assert net.positions is not None and net.positions.shape == (100, 2)
    assert np.array_equal(net.positions[23], [3.0, 2.0])  # node y * width + x
    assert np.all(net.degrees.reshape(10, 10)[1:-1, 1:-1] == 4)
    moore = build(topology="grid", n_agents=12, width=4, height=3, neighborhood="moore", torus=True)
    assert moore.grid_shape == (4, 3) and np.all(moore.degrees == 8)
    assert build(topology="ring").positions is None and build(topology="ring").grid_shape is None


@pytest.mark.parametrize(
    ("width", "height", "n", "expected"),
    [(None, None, 49, (7, 7)), (4, 3, 12, (4, 3)), (1, 5, 5, (1, 5)), (None, None, 1, (1, 1))],
)
def test_resolve_grid_shape(width: int | None, height: int | None, n: int, expected) -> None:
    assert resolve_grid_shape(cfg(width=width, height=height), n) == expected


# Hashes of each topology's graph at seed 11 (DEFAULTS), recorded from the code before the graph
# builders moved to model/graphs.py: build_network makes the same draws in the same order.
PINNED = {
    "watts_strogatz": "c84a226746deca61",
    "barabasi_albert": "438c8a381b489f9d",
    "erdos_renyi": "13006402694a5aba",
    "sbm": "64c56b188c356777",
    "ring": "ba9e97517ab85a14",
    "complete": "a15a232bf35cf4de",
    "star": "dba1ce9a8f902641",
    "grid": "f2d45a6ebb3d62c6",
}


@pytest.mark.parametrize("topology", ALL)
def test_draws_are_pinned(topology: str) -> None:
    a = build(11, topology=topology).adjacency
    digest = hashlib.sha256()
    for part in (a.indptr, a.indices):
        digest.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(a.data, dtype=np.float64).tobytes())
    assert digest.hexdigest()[:16] == PINNED[topology]


def test_to_networkx() -> None:
    grid = build(topology="grid", n_agents=12, width=4, height=3).to_networkx()
    assert grid.number_of_nodes() == 12 and grid.number_of_edges() == 17
    assert grid.nodes[6]["pos"] == (2.0, 1.0)
    sbm = build(topology="sbm", n_agents=20, blocks=[5, 15], normalize=True).to_networkx()
    assert sbm.nodes[7]["block"] == 1 and not nx.is_directed(sbm)


# ------------------------------------------------------------------ edge lists


def test_edgelist_path_resolves_against_base_dir(tmp_path: pathlib.Path) -> None:
    (tmp_path / "edges.csv").write_text("source,target\n0,1\n1,2\n3,0\n")
    net = build_network(
        cfg(topology="edgelist", n_agents=5, path="edges.csv"),
        np.random.default_rng(0),
        base_dir=tmp_path,
    )
    assert_simple_graph(net, 5)
    assert sorted(net.to_networkx().edges()) == [(0, 1), (0, 3), (1, 2)]
    assert net.degrees[4] == 0  # isolated nodes are nodes all the same
    absolute = build(topology="edgelist", n_agents=5, path=str(tmp_path / "edges.csv"))
    assert same(absolute.adjacency, net.adjacency)
    with pytest.raises(ScenarioError, match=r"^network.path: file not found: edges.csv$"):
        build(topology="edgelist", n_agents=5, path="edges.csv")  # no base_dir: the cwd
    with pytest.raises(ScenarioError, match=r"network\.path"):
        build(topology="edgelist", path=None)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (dict(topology="hexagons"), "network.topology"),
        (dict(n_agents=0), "network.n_agents"),
        (dict(n_agents=2.5), "network.n_agents"),
        (dict(topology="grid", n_agents=10), "network.n_agents"),
        (dict(topology="grid", n_agents=12, width=5, height=3), "network.n_agents"),
        (dict(topology="grid", n_agents=12, width=4), "network.height"),
        (dict(topology="grid", n_agents=12, width=0, height=3), "network.width"),
        (dict(topology="grid", n_agents=9, neighborhood="hex"), "network.neighborhood"),
        (dict(topology="watts_strogatz", k=7), "network.k"),
        (dict(topology="watts_strogatz", n_agents=8, k=8), "network.k"),
        (dict(topology="watts_strogatz", k=-2), "network.k"),
        (dict(topology="watts_strogatz", p=1.5), "network.p"),
        (dict(topology="watts_strogatz", p=-0.1), "network.p"),
        (dict(topology="ring", k=3), "network.k"),
        (dict(topology="ring", n_agents=4, k=4), "network.k"),
        (dict(topology="erdos_renyi", n_agents=8, k=8), "network.k"),
        (dict(topology="erdos_renyi", k=-1), "network.k"),
        (dict(topology="barabasi_albert", n_agents=5, m=5), "network.m"),
        (dict(topology="barabasi_albert", m=0), "network.m"),
        (dict(topology="barabasi_albert", n_agents=4, k=8, m=None), "network.k"),
        (dict(topology="complete", n_agents=MAX_COMPLETE + 1), "network.n_agents"),
        (dict(topology="sbm", p_in=2.0), "network.p_in"),
        (dict(topology="sbm", p_out=-1.0), "network.p_out"),
        (dict(topology="sbm", blocks=[100, 200]), "network.blocks"),
        (dict(topology="sbm", blocks=[500, -100]), "network.blocks"),
    ],
)
def test_bad_input_names_key(overrides: dict[str, object], key: str) -> None:
    with pytest.raises(ScenarioError) as err:
        build(**overrides)
    assert err.value.key == key
    assert "\n" not in str(err.value) and str(err.value).startswith(key)


def test_grid_error_message() -> None:
    with pytest.raises(ScenarioError) as err:
        build(topology="grid", n_agents=10)
    assert (
        str(err.value)
        == "network.n_agents: grid needs a perfect square (got 10) or width and height"
    )


# ------------------------------------------------------------------ the network table


def assert_identical(a: sp.csr_matrix, b: sp.csr_matrix) -> None:
    """The same CSR matrix, array for array (values and dtypes)."""
    assert a.shape == b.shape
    for part in ("indptr", "indices", "data"):
        x, y = getattr(a, part), getattr(b, part)
        assert x.dtype == y.dtype, part
        assert np.array_equal(x, y), part


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("topology", ALL)
def test_network_table_round_trips_exactly(topology: str, normalize: bool) -> None:
    net = build(2, topology=topology, normalize=normalize)
    table = network_table(net)
    assert list(table) == list(NETWORK_COLUMNS) == ["source", "target", "weight"]
    assert [table[c].dtype for c in table] == [np.int64, np.int64, np.float64]
    a = net.adjacency
    assert len(table["source"]) == a.nnz  # every stored entry: each edge as (i, j) and (j, i)
    assert np.all(np.diff(table["source"]) >= 0)  # CSR order
    assert np.array_equal(np.asarray(a[table["source"], table["target"]]).ravel(), table["weight"])
    back = network_from_table(
        **table,
        n_nodes=net.n_nodes,
        positions=net.positions,
        blocks=net.blocks,
        grid_shape=net.grid_shape,
    )
    assert_identical(back.adjacency, a)
    assert back.grid_shape == net.grid_shape
    assert back.n_edges == net.n_edges and np.array_equal(back.degrees, net.degrees)


def test_network_table_needs_n_nodes_for_isolated_nodes() -> None:
    net = build(0, topology="erdos_renyi", n_agents=300, k=1, normalize=True)
    isolated = np.flatnonzero(net.degrees == 0)
    assert isolated.size and isolated.max() > 0
    table = network_table(net)
    assert not np.isin(isolated, table["source"]).any()
    assert_identical(network_from_table(**table, n_nodes=300).adjacency, net.adjacency)
    empty = build(topology="ring", n_agents=5, k=0)
    table = network_table(empty)
    assert all(len(column) == 0 for column in table.values())
    assert_identical(network_from_table(**table, n_nodes=5).adjacency, empty.adjacency)


def test_network_from_table_sorts_rows_and_refuses_bad_tables() -> None:
    net = build(4, topology="barabasi_albert", n_agents=200, m=2, normalize=True)
    table = network_table(net)
    order = np.random.default_rng(0).permutation(len(table["source"]))
    shuffled = {name: column[order] for name, column in table.items()}
    assert_identical(network_from_table(**shuffled, n_nodes=200).adjacency, net.adjacency)
    twice = {name: np.concatenate([column, column[:1]]) for name, column in table.items()}
    with pytest.raises(ValueError, match="appears twice"):
        network_from_table(**twice, n_nodes=200)
    with pytest.raises(ValueError, match=r"outside \[0, 150\)"):
        network_from_table(**table, n_nodes=150)
    with pytest.raises(ValueError, match="differ in length"):
        network_from_table(table["source"], table["target"][1:], table["weight"], n_nodes=200)


# ------------------------------------------------------------------ spectral radius


@pytest.mark.parametrize(
    "overrides",
    [
        dict(topology="barabasi_albert", n_agents=300, m=3),  # dense path
        dict(topology="barabasi_albert", n_agents=600, m=3),  # ARPACK path
        dict(topology="erdos_renyi", n_agents=600, k=6),
        dict(topology="grid", n_agents=625),
        dict(topology="star", n_agents=600),
    ],
)
def test_spectral_radius_matches_dense(overrides: dict[str, object]) -> None:
    a = build(**overrides).adjacency
    expected = np.max(np.abs(np.linalg.eigvalsh(a.toarray())))
    assert spectral_radius(a) == pytest.approx(expected, rel=1e-7)


def test_spectral_radius_non_symmetric() -> None:
    a = build(topology="sbm", n_agents=600, blocks=[300, 300]).adjacency
    weights = sp.diags(np.linspace(0.5, 2.0, 600)) @ a  # rows scaled: not symmetric
    expected = np.max(np.abs(np.linalg.eigvals(weights.toarray())))
    assert spectral_radius(sp.csr_matrix(weights)) == pytest.approx(expected, rel=1e-7)


def test_spectral_radius_special_cases() -> None:
    assert spectral_radius(build(topology="ring", n_agents=1000, k=6).adjacency) == 6.0
    assert spectral_radius(build(topology="watts_strogatz", normalize=True).adjacency) == 1.0
    assert spectral_radius(build(topology="complete", n_agents=50).adjacency) == 49.0
    assert spectral_radius(build(topology="erdos_renyi", k=0).adjacency) == 0.0
    assert spectral_radius(sp.csr_matrix((0, 0))) == 0.0
    grid = build(topology="grid", n_agents=30 * 20, width=30, height=20).adjacency
    exact = 2 * math.cos(math.pi / 31) + 2 * math.cos(math.pi / 21)
    assert spectral_radius(grid) == pytest.approx(exact, rel=1e-9)


def test_power_iteration_fallback() -> None:
    a = build(topology="barabasi_albert", n_agents=200, m=2).adjacency
    expected = np.max(np.abs(np.linalg.eigvalsh(a.toarray())))
    assert _power_iteration(a) == pytest.approx(expected, rel=1e-6)


def test_a_scenarios_sbm_blocks_are_the_models_blocks() -> None:
    """``network.blocks`` is honoured by the model, not replaced by the principals' groups."""
    from mesaopt.model.model import MesaOptModel
    from mesaopt.model.scenario_files import load_scenario

    overrides = ["network.topology='sbm'", "network.n_agents=60", "run.steps=1"]
    default = MesaOptModel(load_scenario(None, overrides))
    assert np.array_equal(np.bincount(default.network.blocks), [30, 30])  # two equal shares
    given = MesaOptModel(load_scenario(None, [*overrides, "network.blocks=[10, 20, 30]"]))
    assert np.array_equal(np.bincount(given.network.blocks), [10, 20, 30])
