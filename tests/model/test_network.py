"""Tests for model.network: structure of every builder, parity with networkx, parsing, errors."""

from __future__ import annotations

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
    Network,
    _power_iteration,
    build_network,
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
    assert (abs(a - a.T) > 0).nnz == 0 if not np.any(a.data != 1) else True
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


def nx_adjacency(graph: nx.Graph) -> sp.csr_matrix:
    return sp.csr_matrix(nx.to_scipy_sparse_array(graph, nodelist=sorted(graph), format="csr"))


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


# ------------------------------------------------------------------ deterministic builders


@pytest.mark.parametrize(("width", "height"), [(5, 7), (1, 4), (3, 3), (20, 20)])
def test_grid_von_neumann_matches_networkx(width: int, height: int) -> None:
    net = build(topology="grid", n_agents=width * height, width=width, height=height)
    ref = nx.grid_2d_graph(width, height)  # nodes (x, y)
    ref = nx.relabel_nodes(ref, {(x, y): y * width + x for x, y in ref})
    assert same(net.adjacency, nx_adjacency(ref))
    assert net.n_edges == (width - 1) * height + width * (height - 1)
    assert net.grid_shape == (width, height)
    assert net.positions is not None and net.positions.dtype == np.float64
    assert np.array_equal(net.positions[width + 2], [2.0, 1.0]) if width > 2 < height else True


def test_grid_square_default_and_interior_degrees() -> None:
    vn = build(topology="grid", n_agents=100)
    assert vn.grid_shape == (10, 10)
    deg = vn.degrees.reshape(10, 10)
    assert np.all(deg[1:-1, 1:-1] == 4) and deg[0, 0] == 2 and deg[0, 5] == 3
    moore = build(topology="grid", n_agents=100, neighborhood="moore")
    deg = moore.degrees.reshape(10, 10)
    assert np.all(deg[1:-1, 1:-1] == 8) and deg[0, 0] == 3 and deg[0, 5] == 5
    # node id = y * width + x: node (x=3, y=2) touches (4, 2) and (3, 3) and, for Moore, (4, 3)
    a = moore.adjacency
    assert a[23, 24] == 1 and a[23, 33] == 1 and a[23, 34] == 1 and a[23, 45] == 0


@pytest.mark.parametrize(("neighborhood", "degree"), [("von_neumann", 4), ("moore", 8)])
@pytest.mark.parametrize(("width", "height"), [(3, 3), (4, 6), (10, 10)])
def test_grid_torus_is_regular(neighborhood: str, degree: int, width: int, height: int) -> None:
    net = build(
        topology="grid",
        n_agents=width * height,
        width=width,
        height=height,
        torus=True,
        neighborhood=neighborhood,
    )
    assert np.all(net.degrees == degree)
    assert net.n_edges == width * height * degree // 2
    if neighborhood == "von_neumann":
        ref = nx.grid_2d_graph(width, height, periodic=True)
        ref = nx.relabel_nodes(ref, {(x, y): y * width + x for x, y in ref})
        assert same(net.adjacency, nx_adjacency(ref))


def test_small_torus_merges_wrapped_edges() -> None:
    net = build(topology="grid", n_agents=4, width=2, height=2, torus=True, neighborhood="moore")
    assert_simple_graph(net, 4)
    assert np.all(net.degrees == 3)  # K4


@pytest.mark.parametrize(("n", "k"), [(10, 2), (50, 4), (51, 8), (9, 8)])
def test_ring_matches_networkx(n: int, k: int) -> None:
    net = build(topology="ring", n_agents=n, k=k)
    assert same(net.adjacency, nx_adjacency(nx.watts_strogatz_graph(n, k, 0.0)))
    assert net.n_edges == n * k // 2


@pytest.mark.parametrize("n", [1, 2, 5, 60])
def test_complete_and_star_match_networkx(n: int) -> None:
    assert same(
        build(topology="complete", n_agents=n).adjacency, nx_adjacency(nx.complete_graph(n))
    )
    star = build(topology="star", n_agents=n)
    assert same(star.adjacency, nx_adjacency(nx.star_graph(n - 1)))
    assert star.n_edges == n - 1


def test_watts_strogatz_p0_is_ring_and_p_positive_keeps_edge_count() -> None:
    assert same(build(topology="watts_strogatz", p=0.0).adjacency, build(topology="ring").adjacency)
    for p in (0.05, 0.5, 1.0):
        assert build(topology="watts_strogatz", n_agents=500, k=6, p=p).n_edges == 1500


def test_watts_strogatz_dense_keeps_edge_count() -> None:
    for seed in range(10):
        net = build(seed, topology="watts_strogatz", n_agents=11, k=8, p=1.0)
        assert_simple_graph(net, 11)
        assert net.n_edges == 44


def test_barabasi_albert_small_cases() -> None:
    star = build(topology="barabasi_albert", n_agents=4, m=3)
    assert same(star.adjacency, nx_adjacency(nx.star_graph(3)))
    net = build(topology="barabasi_albert", n_agents=5, m=3)
    assert net.n_edges == 3 * 2 and net.degrees[4] == 3
    assert build(topology="barabasi_albert", k=8, m=None).n_edges == 4 * (400 - 4)


def test_sbm_blocks_and_block_sizes_argument() -> None:
    net = build(topology="sbm", n_agents=30, blocks=[10, 20], p_in=1.0, p_out=0.0)
    assert net.blocks is not None and net.blocks.dtype == np.int64
    assert np.array_equal(net.blocks, np.repeat([0, 1], [10, 20]))
    assert net.n_edges == 45 + 190
    # the model's block_sizes override cfg.blocks; None everywhere -> one block
    net = build(topology="sbm", n_agents=30, blocks=[10, 20], block_sizes=[5, 0, 25], p_in=1.0)
    assert np.array_equal(np.bincount(net.blocks), [5, 0, 25])
    assert build(topology="sbm", n_agents=30, p_in=1.0, p_out=0.0).n_edges == 435


def test_to_networkx() -> None:
    grid = build(topology="grid", n_agents=12, width=4, height=3).to_networkx()
    assert grid.number_of_nodes() == 12 and grid.number_of_edges() == 17
    assert grid.nodes[6]["pos"] == (2.0, 1.0)
    sbm = build(topology="sbm", n_agents=20, blocks=[5, 15], normalize=True).to_networkx()
    assert sbm.nodes[7]["block"] == 1 and not nx.is_directed(sbm)


# ------------------------------------------------------------------ parity with networkx


def mc_stats(generate, stats, seeds=range(8)) -> np.ndarray:
    return np.array([[f(generate(s)) for f in stats] for s in seeds], dtype=float)


def assert_same_distribution(ours: np.ndarray, ref: np.ndarray, z: float = 5.0) -> None:
    """Means of each statistic agree within z standard errors of their difference.

    The standard deviation comes from the networkx runs: se = sd * sqrt(2 / R).
    """
    r = ref.shape[0]
    sd = ref.std(axis=0, ddof=1)
    tol = z * sd * math.sqrt(2 / r) + 1e-9
    diff = np.abs(ours.mean(axis=0) - ref.mean(axis=0))
    assert np.all(diff <= tol), f"diff {diff} > tol {tol}"


def ours_degrees(seed: int, **overrides: object) -> np.ndarray:
    return build(seed, **overrides).degrees


def nx_degrees(graph: nx.Graph) -> np.ndarray:
    return np.array([d for _, d in graph.degree()])


def sparse_clustering(adjacency: sp.csr_matrix) -> float:
    """Average clustering (isolated and degree-1 nodes count 0, as in networkx)."""
    triangles = np.asarray((adjacency @ adjacency).multiply(adjacency).sum(axis=1)).ravel() / 2
    deg = np.diff(adjacency.indptr)
    pairs = deg * (deg - 1) / 2
    return float(
        np.mean(np.divide(triangles, pairs, out=np.zeros_like(triangles), where=pairs > 0))
    )


DEGREE_STATS = [np.mean, np.var, np.max]


def test_watts_strogatz_matches_networkx() -> None:
    n, k, p = 2000, 8, 0.1
    nets = [build(s, topology="watts_strogatz", n_agents=n, k=k, p=p) for s in range(8)]
    graphs = [nx.watts_strogatz_graph(n, k, p, seed=s) for s in range(8)]
    ours = np.array([[f(g.degrees) for f in DEGREE_STATS] for g in nets])
    ref = np.array([[f(nx_degrees(g)) for f in DEGREE_STATS] for g in graphs])
    assert np.all(ours[:, 0] == k) and np.all(ref[:, 0] == k)
    assert_same_distribution(ours, ref)
    clustering = np.array([sparse_clustering(g.adjacency) for g in nets])[:, None]
    clustering_ref = np.array([nx.average_clustering(g) for g in graphs])[:, None]
    assert_same_distribution(clustering, clustering_ref)


def test_erdos_renyi_matches_networkx() -> None:
    n, k = 2000, 8
    ours = mc_stats(
        lambda s: ours_degrees(s, topology="erdos_renyi", n_agents=n, k=k), DEGREE_STATS
    )
    ref = mc_stats(
        lambda s: nx_degrees(nx.fast_gnp_random_graph(n, k / (n - 1), seed=s)), DEGREE_STATS
    )
    assert_same_distribution(ours, ref)
    assert abs(ours[:, 0].mean() - k) < 5 * ref[:, 0].std(ddof=1)


def test_erdos_renyi_tiny_probability() -> None:
    net = build(topology="erdos_renyi", n_agents=10**6, k=1e-300)  # gaps overflow int64
    assert net.n_edges == 0


def test_barabasi_albert_matches_networkx() -> None:
    n, m = 2000, 4
    stats = [
        *DEGREE_STATS,
        lambda d: (d >= 4 * m).mean(),
        lambda d: d[0],  # the first hub: sensitive to the attachment kernel
    ]
    seeds = range(12)
    ours = mc_stats(
        lambda s: ours_degrees(s, topology="barabasi_albert", n_agents=n, m=m), stats, seeds
    )
    ref = mc_stats(lambda s: nx_degrees(nx.barabasi_albert_graph(n, m, seed=s)), stats, seeds)
    assert np.all(ours[:, 0] == 2 * m * (n - m) / n) and np.all(ref[:, 0] == ours[0, 0])
    assert_same_distribution(ours, ref)


def test_barabasi_albert_tiny_exact_distribution() -> None:
    # n = 6, m = 2: compare P(degree of node 0 = d) with networkx over 600 graphs each.
    ours = [ours_degrees(s, topology="barabasi_albert", n_agents=6, m=2)[0] for s in range(600)]
    ref = [nx.barabasi_albert_graph(6, 2, seed=s).degree(0) for s in range(600)]
    p_ours = np.bincount(ours, minlength=6)[:6] / 600
    p_ref = np.bincount(ref, minlength=6)[:6] / 600
    se = np.sqrt(p_ref * (1 - p_ref) / 600 * 2) + 1e-9
    assert np.all(np.abs(p_ours - p_ref) <= 5 * se)


def test_sbm_matches_networkx() -> None:
    sizes, p_in, p_out = [600, 400], 0.02, 0.004

    def block_counts(adjacency: sp.csr_matrix) -> tuple[float, float]:
        upper = sp.triu(adjacency, k=1).tocoo()
        within = np.sum((upper.row < 600) == (upper.col < 600))
        return float(within), float(upper.nnz - within)

    stats = [lambda a: block_counts(a)[0], lambda a: block_counts(a)[1]]
    ours = mc_stats(
        lambda s: (
            build(s, topology="sbm", n_agents=1000, blocks=sizes, p_in=p_in, p_out=p_out).adjacency
        ),
        stats,
    )
    ref = mc_stats(
        lambda s: nx_adjacency(
            nx.stochastic_block_model(sizes, [[p_in, p_out], [p_out, p_in]], seed=s)
        ),
        stats,
    )
    assert_same_distribution(ours, ref)


# ------------------------------------------------------------------ edge lists


def test_edgelist_parsing(tmp_path: pathlib.Path) -> None:
    (tmp_path / "edges.csv").write_text(
        "source,target\n"
        "# a comment line\n"
        "0,1\n"
        "1 , 2   # trailing comment\n"
        "\n"
        "2\t3\n"
        "3 0\n"
        "1,0\n"  # duplicate, reversed
        "0,1\n"  # duplicate
        "4,4\n"  # self-loop: dropped
    )
    net = build_network(
        cfg(topology="edgelist", n_agents=5, path="edges.csv"),
        np.random.default_rng(0),
        base_dir=tmp_path,
    )
    assert_simple_graph(net, 5)
    assert net.n_edges == 4
    assert sorted(net.to_networkx().edges()) == [(0, 1), (0, 3), (1, 2), (2, 3)]
    assert net.degrees[4] == 0
    absolute = build(topology="edgelist", n_agents=5, path=str(tmp_path / "edges.csv"))
    assert same(absolute.adjacency, net.adjacency)


def test_edgelist_without_header(tmp_path: pathlib.Path) -> None:
    (tmp_path / "e.txt").write_text("0 1\n1 2\n")
    assert build(topology="edgelist", n_agents=3, path=str(tmp_path / "e.txt")).n_edges == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b\n0,1\n0,1200\n", "line 3: node 1200 outside [0, 1000)"),
        ("0,1\n-1,2\n", "line 2: node -1 outside [0, 1000)"),
        ("0,1\nx,y\n", "line 2: expected two integer node ids"),
        ("0,1,2\n", "line 1"),
        ("a,b\nc,d\n", "line 2"),
    ],
)
def test_edgelist_bad_lines(tmp_path: pathlib.Path, text: str, message: str) -> None:
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(ScenarioError) as err:
        build(topology="edgelist", n_agents=1000, path=str(tmp_path / "bad.csv"))
    assert err.value.key == "network.path" and message in err.value.message
    assert "\n" not in str(err.value)


def test_edgelist_missing_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ScenarioError, match=r"network.path: file not found: x.csv"):
        build_network(
            cfg(topology="edgelist", path="x.csv"), np.random.default_rng(0), base_dir=tmp_path
        )
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
