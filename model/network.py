"""The agents' network: the :class:`Network` a run uses, built from the scenario, and its table.

:func:`build_network` reads the ``[network]`` section of a scenario (by attribute only, see
:mod:`model.scenario`), checks its parameters (errors name the key, ``network.k``, ...), draws the
graph with one of the builders of :mod:`model.graphs` from the run's
:class:`numpy.random.Generator`, optionally row-normalises it (:func:`row_normalize`) and wraps it
in a :class:`Network`. :mod:`model.model` uses the adjacency for peer effects and checks their
stability with :func:`spectral_radius`.

The model records the network once, at construction, as the run's ``network`` table
(:func:`network_table`, docs/tables.md); :func:`network_from_table` turns the table back into the
same :class:`Network`, which is how :mod:`analysis.run_folder` reads it (analysis never draws the
graph again).
"""

from __future__ import annotations

import math
import pathlib
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from mesaopt.model.errors import ScenarioError
from mesaopt.model.graphs import (
    NEIGHBORHOODS,
    barabasi_albert,
    complete,
    erdos_renyi,
    grid,
    read_edgelist,
    star,
    stochastic_block_model,
    watts_strogatz,
)

TOPOLOGIES = (
    "grid",
    "watts_strogatz",
    "barabasi_albert",
    "erdos_renyi",
    "complete",
    "star",
    "ring",
    "sbm",
    "edgelist",
)
MAX_COMPLETE = 5_000
"""Largest ``n_agents`` accepted for the complete graph (it stores n·(n-1) entries)."""


@dataclass(frozen=True, eq=False)
class Network:
    """An undirected graph on nodes ``0 .. n-1`` and the layout it came from.

    Attributes:
        adjacency: Symmetric ``(N, N)`` float64 CSR matrix with sorted indices, no self-loops and
            no duplicate entries. Weights are 1, or ``1 / degree`` per row if the scenario asked
            for row normalisation (then it is no longer symmetric; its pattern still is).
        positions: ``(N, 2)`` lattice coordinates ``(x=col, y=row)`` for ``"grid"``, else None.
        blocks: ``(N,)`` int64 block index of each node for ``"sbm"``, else None.
        grid_shape: ``(width, height)`` for ``"grid"``, else None.
    """

    adjacency: sp.csr_matrix
    positions: np.ndarray | None = None
    blocks: np.ndarray | None = None
    grid_shape: tuple[int, int] | None = None

    @property
    def n_nodes(self) -> int:
        """Number of nodes N."""
        return int(self.adjacency.shape[0])

    @property
    def n_edges(self) -> int:
        """Number of undirected edges."""
        return int(self.adjacency.nnz // 2)

    @property
    def degrees(self) -> np.ndarray:
        """Unnormalised degree of every node, ``(N,)`` int64."""
        return np.diff(self.adjacency.indptr).astype(np.int64)

    @property
    def mean_degree(self) -> float:
        """Mean unnormalised degree, ``2 E / N``."""
        return self.adjacency.nnz / self.n_nodes if self.n_nodes else 0.0

    def to_networkx(self) -> nx.Graph:
        """Return the graph as an unweighted :class:`networkx.Graph` (for small graphs).

        Nodes carry ``pos`` (grid) or ``block`` (SBM) attributes when the network has them.
        """
        graph = nx.Graph()
        graph.add_nodes_from(range(self.n_nodes))
        coo = sp.triu(self.adjacency, k=1, format="coo")
        graph.add_edges_from(zip(coo.row.tolist(), coo.col.tolist(), strict=True))
        if self.positions is not None:
            nx.set_node_attributes(
                graph, {i: (float(x), float(y)) for i, (x, y) in enumerate(self.positions)}, "pos"
            )
        if self.blocks is not None:
            nx.set_node_attributes(graph, dict(enumerate(self.blocks.tolist())), "block")
        return graph


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def build_network(
    cfg: Any,
    rng: np.random.Generator,
    *,
    block_sizes: list[int] | None = None,
    base_dir: pathlib.Path | None = None,
) -> Network:
    """Build the network described by a ``[network]`` scenario section.

    Args:
        cfg: The network config, read by attribute: ``topology``, ``n_agents``, ``k``, ``p``,
            ``m``, ``width``, ``height``, ``torus``, ``neighborhood``, ``p_in``, ``p_out``,
            ``blocks``, ``path``, ``normalize`` (missing optional attributes take their defaults).
        rng: The generator every random draw comes from.
        block_sizes: The default SBM block sizes (the model passes agents per principal), used
            where ``cfg.blocks`` is not set.
        base_dir: Folder that a relative edge-list ``path`` is resolved against (the scenario
            file's folder); the working directory if None.

    Returns:
        The network, with ``positions`` and ``grid_shape`` set for grids and ``blocks`` for SBMs.

    Raises:
        ScenarioError: A parameter is out of range for the topology, or the edge list is missing
            or malformed. The error names the key (``network.k``, ``network.path``, ...).
    """
    topology, n, params = _checked_parameters(cfg, block_sizes)
    positions = blocks = grid_shape = None
    if topology == "grid":
        grid_shape = params["shape"]
        adjacency, positions = grid(
            *grid_shape, torus=params["torus"], neighborhood=params["neighborhood"]
        )
    elif topology in ("watts_strogatz", "ring"):
        adjacency = watts_strogatz(n, params["k"], params["p"], rng)
    elif topology == "barabasi_albert":
        adjacency = barabasi_albert(n, params["m"], rng)
    elif topology == "erdos_renyi":
        adjacency = erdos_renyi(n, params["p"], rng)
    elif topology == "complete":
        adjacency = complete(n)
    elif topology == "star":
        adjacency = star(n)
    elif topology == "sbm":
        sizes = params["sizes"]
        adjacency = stochastic_block_model(sizes, params["p_in"], params["p_out"], rng)
        blocks = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    else:  # edgelist
        adjacency = read_edgelist(params["path"], n, base_dir)
    if getattr(cfg, "normalize", False):
        adjacency = row_normalize(adjacency)
    return Network(adjacency, positions=positions, blocks=blocks, grid_shape=grid_shape)


def check_network(
    cfg: Any,
    *,
    base_dir: pathlib.Path | None = None,
    edge_lists_read: dict[tuple[str, int, str], sp.csr_matrix] | None = None,
) -> None:
    """Make every check :func:`build_network` makes, without drawing or building the graph.

    A sweep runs this on every distinct ``[network]`` of its design before any run starts, so
    that a value no run can build (``k >= n_agents``, a grid that is not square, a bad edge list)
    is one error naming the key instead of every run failing. An edge list is read and checked
    in full.

    Args:
        cfg: The network config, as for :func:`build_network`.
        base_dir: Folder a relative edge-list ``path`` is resolved against.
        edge_lists_read: The edge lists already read and found good, by ``(path, n_agents,
            base_dir)``, with the adjacency read (before any row normalisation); one in it is
            not read again (a sweep over other network keys), a new one is added once it passes.

    Raises:
        ScenarioError: As :func:`build_network`.
    """
    topology, n, params = _checked_parameters(cfg, None)
    if topology == "edgelist":
        read = {} if edge_lists_read is None else edge_lists_read
        key = edge_list_key(params["path"], n, base_dir)
        if key not in read:
            read[key] = read_edgelist(params["path"], n, base_dir)


def edge_list_key(path: Any, n_agents: int, base_dir: pathlib.Path | None) -> tuple[str, int, str]:
    """The key an edge list read by :func:`check_network` is remembered under."""
    return (str(path), n_agents, str(base_dir))


def check_network_parameters(cfg: Any) -> None:
    """The checks of :func:`build_network` that read no file: topology and its parameters.

    Scenario validation runs these before it estimates a run's memory, so that a network no run
    can build (``k >= n_agents``) is named as such, not as a run too large for the machine.

    Args:
        cfg: The network config, as for :func:`build_network`.

    Raises:
        ScenarioError: As :func:`build_network`.
    """
    _checked_parameters(cfg, None)


def _checked_parameters(cfg: Any, block_sizes: list[int] | None) -> tuple[str, int, dict[str, Any]]:
    """The topology, ``n_agents`` and the checked parameters its generator takes."""
    topology = getattr(cfg, "topology", None)
    n = _int_param("network.n_agents", getattr(cfg, "n_agents", None), 1)
    if topology == "grid":
        neighborhood = getattr(cfg, "neighborhood", "von_neumann")
        shape = resolve_grid_shape(cfg, n)
        if neighborhood not in NEIGHBORHOODS:
            raise ScenarioError(
                "network.neighborhood", f"expected 'von_neumann' or 'moore', got {neighborhood!r}"
            )
        torus = bool(getattr(cfg, "torus", False))
        return topology, n, {"shape": shape, "neighborhood": neighborhood, "torus": torus}
    if topology == "watts_strogatz":
        k = _even_k(cfg, n, "watts_strogatz")
        return topology, n, {"k": k, "p": _prob_param("network.p", getattr(cfg, "p", 0.0))}
    if topology == "ring":
        return topology, n, {"k": _even_k(cfg, n, "ring"), "p": 0.0}
    if topology == "barabasi_albert":
        m_raw = getattr(cfg, "m", None)
        if m_raw is None:
            k = _int_param("network.k", getattr(cfg, "k", None), 0)
            key, m = "network.k", max(1, k // 2)
        else:
            key, m = "network.m", _int_param("network.m", m_raw, 1)
        if m >= n:
            raise ScenarioError(key, f"barabasi_albert needs m = {m} < n_agents ({n})")
        return topology, n, {"m": m}
    if topology == "erdos_renyi":
        k = _float_param("network.k", getattr(cfg, "k", None))
        if k < 0 or (k >= n and k > 0):
            raise ScenarioError("network.k", f"erdos_renyi needs 0 <= k < n_agents ({n}), got {k}")
        return topology, n, {"p": k / (n - 1) if n > 1 else 0.0}
    if topology == "complete":
        if n > MAX_COMPLETE:
            raise ScenarioError(
                "network.n_agents", f"complete graph limited to {MAX_COMPLETE} nodes (got {n})"
            )
        return topology, n, {}
    if topology == "star":
        return topology, n, {}
    if topology == "sbm":
        sizes = _block_sizes(cfg, n, block_sizes)
        p_in = _prob_param("network.p_in", getattr(cfg, "p_in", None))
        p_out = _prob_param("network.p_out", getattr(cfg, "p_out", None))
        return topology, n, {"sizes": sizes, "p_in": p_in, "p_out": p_out}
    if topology == "edgelist":
        return topology, n, {"path": getattr(cfg, "path", None)}
    raise ScenarioError(
        "network.topology", f"unknown topology {topology!r} (one of {', '.join(TOPOLOGIES)})"
    )


def resolve_grid_shape(cfg: Any, n: int) -> tuple[int, int]:
    """The ``(width, height)`` of a grid scenario: as given, or the square of side √n.

    Args:
        cfg: The network config, read by attribute (``width``, ``height``; None = unset).
        n: ``n_agents``.

    Returns:
        ``(width, height)`` with ``width * height == n``.

    Raises:
        ScenarioError: Only one of width and height is set, either is not a positive integer,
            ``n`` is not a perfect square when neither is set, or ``width * height != n``.
    """
    width, height = getattr(cfg, "width", None), getattr(cfg, "height", None)
    if width is None and height is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ScenarioError(
                "network.n_agents", f"grid needs a perfect square (got {n}) or width and height"
            )
        width = height = side
    elif width is None or height is None:
        missing = "network.width" if width is None else "network.height"
        raise ScenarioError(missing, "grid needs both width and height (or neither)")
    width = _int_param("network.width", width, 1)
    height = _int_param("network.height", height, 1)
    if width * height != n:
        raise ScenarioError(
            "network.n_agents", f"grid width*height = {width * height} != n_agents ({n})"
        )
    return width, height


# --------------------------------------------------------------------------------------------
# The network table: what a run records, and reading it back
# --------------------------------------------------------------------------------------------

#: Columns of the ``network`` table and their dtypes.
NETWORK_COLUMNS = {"source": np.int64, "target": np.int64, "weight": np.float64}


def network_table(network: Network) -> dict[str, np.ndarray]:
    """The columns of the run's ``network`` table: every stored entry of the adjacency matrix.

    One row per non-zero G_ij, in CSR order (by ``source``, then ``target``): an undirected edge
    appears twice, as ``(i, j)`` and ``(j, i)``, so that row-normalised weights (not symmetric)
    are kept exactly. The table does not hold the number of nodes (isolated nodes have no row: the
    manifest's ``n_agents`` gives it) nor the grid layout or SBM blocks (fixed by the scenario;
    :func:`analysis.run_folder.read_network` supplies them).

    Args:
        network: The run's network.

    Returns:
        ``source`` (int64 row i), ``target`` (int64 column j) and ``weight`` (float64 G_ij).
    """
    adjacency = network.adjacency
    rows = np.arange(adjacency.shape[0], dtype=np.int64)
    return {
        "source": np.repeat(rows, np.diff(adjacency.indptr)),
        "target": adjacency.indices.astype(np.int64),
        "weight": adjacency.data.astype(np.float64, copy=True),
    }


def network_from_table(
    source: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray,
    n_nodes: int,
    *,
    positions: np.ndarray | None = None,
    blocks: np.ndarray | None = None,
    grid_shape: tuple[int, int] | None = None,
) -> Network:
    """Rebuild a :class:`Network` from the columns of a ``network`` table (see network_table).

    The adjacency is the CSR matrix the model used, entry for entry: rows in CSR order give its
    ``indptr``, ``indices`` and ``data`` directly (rows in another order are sorted first).

    Args:
        source: Row index of each entry.
        target: Column index of each entry.
        weight: Value of each entry.
        n_nodes: Number of nodes (isolated nodes have no row).
        positions: Grid positions, as :attr:`Network.positions`.
        blocks: SBM block of each node, as :attr:`Network.blocks`.
        grid_shape: ``(width, height)`` of a grid.

    Returns:
        The network.

    Raises:
        ValueError: The columns differ in length, a node id lies outside ``[0, n_nodes)``, or an
            entry appears twice.
    """
    source = np.asarray(source, dtype=np.int64)
    target = np.asarray(target, dtype=np.int64)
    weight = np.asarray(weight, dtype=np.float64)
    if not source.shape == target.shape == weight.shape or source.ndim != 1:
        raise ValueError("network table: source, target and weight differ in length")
    if source.size and (
        min(source.min(), target.min()) < 0 or max(source.max(), target.max()) >= n_nodes
    ):
        raise ValueError(f"network table: a node id lies outside [0, {n_nodes})")
    key = source * max(n_nodes, 1) + target
    if key.size > 1 and np.any(key[1:] <= key[:-1]):
        order = np.argsort(key, kind="stable")
        source, target, weight, key = source[order], target[order], weight[order], key[order]
        if np.any(key[1:] == key[:-1]):
            raise ValueError("network table: an entry appears twice")
    indptr = np.zeros(n_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(source, minlength=n_nodes), out=indptr[1:])
    adjacency = sp.csr_matrix((weight, target, indptr), shape=(n_nodes, n_nodes))
    return Network(adjacency, positions=positions, blocks=blocks, grid_shape=grid_shape)


# --------------------------------------------------------------------------------------------
# Spectral radius and normalisation
# --------------------------------------------------------------------------------------------


def spectral_radius(adjacency: sp.csr_matrix) -> float:
    """Return the spectral radius ρ(G), the largest ``|eigenvalue|`` of a non-negative matrix.

    Used for the peer-effect stability condition ``δ·ρ(G) < 1`` (Ballester, Calvó-Armengol &
    Zenou 2006). For a non-negative matrix ρ is itself an eigenvalue (Perron–Frobenius), so it is
    found as the largest real eigenvalue: exactly for regular graphs (ρ = the common row sum, which
    covers rings, tori, complete graphs and row-normalised graphs without isolated nodes), densely
    for N ≤ 500, and otherwise with ARPACK (``eigsh`` for symmetric, ``eigs`` otherwise), falling
    back to power iteration if ARPACK does not converge. Relative accuracy is about 1e-8.

    Args:
        adjacency: Square non-negative sparse (or dense) matrix.

    Returns:
        ρ(G) as a float; 0.0 for an empty matrix or a graph without edges.
    """
    a = sp.csr_matrix(adjacency, dtype=np.float64)
    n = a.shape[0]
    if n == 0 or a.nnz == 0:
        return 0.0
    row_sums = np.asarray(abs(a).sum(axis=1)).ravel()
    if np.allclose(row_sums, row_sums[0], rtol=1e-12, atol=0.0):
        return float(row_sums[0])
    symmetric = abs(a - a.T).max() <= 1e-12 * max(1.0, float(row_sums.max()))
    if n <= 500:
        dense = a.toarray()
        eigenvalues = np.linalg.eigvalsh(dense) if symmetric else np.linalg.eigvals(dense)
        return float(np.max(np.abs(eigenvalues)))
    # Deterministic positive start vector (so not orthogonal to the Perron vector), irregular so
    # that its Krylov space is no small invariant subspace (as all-ones is for a star).
    v0 = 1.0 + (np.arange(n) * 0.6180339887498949) % 1.0
    try:
        if symmetric:
            vals = spla.eigsh(a, k=1, which="LA", v0=v0, tol=1e-8, return_eigenvectors=False)
        else:
            vals = spla.eigs(a, k=1, which="LR", v0=v0, tol=1e-8, return_eigenvectors=False)
        return float(np.max(np.abs(vals)))
    except spla.ArpackNoConvergence:
        return _power_iteration(a)


def row_normalize(adjacency: sp.csr_matrix) -> sp.csr_matrix:
    """Divide every row by its sum; rows of isolated nodes stay zero.

    Args:
        adjacency: CSR matrix with non-negative weights.

    Returns:
        A new CSR matrix with the same sparsity pattern whose non-empty rows sum to 1.
    """
    sums = np.asarray(adjacency.sum(axis=1)).ravel()
    inv = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    out = adjacency.copy()
    out.data = out.data * np.repeat(inv, np.diff(out.indptr))
    return out


def _power_iteration(a: sp.csr_matrix, tol: float = 1e-10, max_iter: int = 100_000) -> float:
    """Perron root of a non-negative matrix by power iteration on ``(A + I) / 2`` (aperiodic)."""
    x = np.ones(a.shape[0]) / a.shape[0]
    estimate = 0.0
    for _ in range(max_iter):
        y = 0.5 * (a @ x + x)
        norm = float(np.abs(y).sum())
        if norm == 0.0:
            return 0.0
        y /= norm
        new = 2 * norm - 1  # ||(A+I)x/2||_1 = (rho + 1)/2 at convergence (x >= 0, ||x||_1 = 1)
        if abs(new - estimate) <= tol * max(1.0, abs(new)):
            return new
        x, estimate = y, new
    return estimate


# --------------------------------------------------------------------------------------------
# Parameter checks
# --------------------------------------------------------------------------------------------


def _int_param(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ScenarioError(key, f"expected an integer, got {value!r}")
    if value < minimum:
        raise ScenarioError(key, f"must be >= {minimum}, got {value}")
    return int(value)


def _float_param(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ScenarioError(key, f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ScenarioError(key, f"must be finite, got {value}")
    return float(value)


def _prob_param(key: str, value: Any) -> float:
    p = _float_param(key, value)
    if not 0.0 <= p <= 1.0:
        raise ScenarioError(key, f"must be a probability in [0, 1], got {p}")
    return p


def _even_k(cfg: Any, n: int, topology: str) -> int:
    k = _int_param("network.k", getattr(cfg, "k", None), 0)
    if k % 2:
        raise ScenarioError("network.k", f"{topology} needs an even k (got {k})")
    if k >= n and k > 0:
        raise ScenarioError("network.k", f"{topology} needs k < n_agents ({n}), got {k}")
    return k


def _block_sizes(cfg: Any, n: int, block_sizes: list[int] | None) -> list[int]:
    given = getattr(cfg, "blocks", None)  # the scenario's own blocks win over the default
    sizes = given if given is not None else block_sizes
    if sizes is None:
        return [n]
    sizes = [_int_param("network.blocks", s, 0) for s in sizes]
    if sum(sizes) != n:
        raise ScenarioError(
            "network.blocks", f"block sizes sum to {sum(sizes)}, not n_agents ({n})"
        )
    return sizes
