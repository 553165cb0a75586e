"""Network builders: the agents' interaction graph as a symmetric SciPy CSR matrix.

:func:`build_network` turns the ``[network]`` section of a scenario (read by attribute only, see
:mod:`model.scenario`) and the run's :class:`numpy.random.Generator` into a :class:`Network`.
:mod:`model.model` uses its adjacency for peer effects and checks their stability with
:func:`spectral_radius`.

Every random draw comes from the generator it is given, so a seed fixes the graph. The random
builders are vectorised with NumPy so that graphs of 10^6 nodes build in about a second, and each
draws from the same distribution as the :mod:`networkx` generator named in its docstring (the
tests compare them); the only deviations are documented where they occur (Watts–Strogatz).

References:
    Watts, D. J. & Strogatz, S. H. (1998). Collective dynamics of 'small-world' networks.
    Nature 393, 440–442.
    Barabási, A.-L. & Albert, R. (1999). Emergence of scaling in random networks. Science 286,
    509–512.
    Erdős, P. & Rényi, A. (1959). On random graphs I. Publ. Math. Debrecen 6, 290–297;
    Gilbert, E. N. (1959). Random graphs. Ann. Math. Stat. 30, 1141–1144.
    Holland, P. W., Laskey, K. B. & Leinhardt, S. (1983). Stochastic blockmodels: first steps.
    Social Networks 5, 109–137.
    Batagelj, V. & Brandes, U. (2005). Efficient generation of large random networks.
    Phys. Rev. E 71, 036113.
"""

from __future__ import annotations

import math
import pathlib
import re
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from mesaopt.model.errors import ScenarioError

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

_EMPTY = np.empty(0, dtype=np.int64)


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
        block_sizes: SBM block sizes (agents per principal); overrides ``cfg.blocks``.
        base_dir: Folder that a relative edge-list ``path`` is resolved against (the scenario
            file's folder); the working directory if None.

    Returns:
        The network, with ``positions`` and ``grid_shape`` set for grids and ``blocks`` for SBMs.

    Raises:
        ScenarioError: A parameter is out of range for the topology, or the edge list is missing
            or malformed. The error names the key (``network.k``, ``network.path``, ...).
    """
    topology = getattr(cfg, "topology", None)
    n = _int_param("network.n_agents", getattr(cfg, "n_agents", None), 1)
    positions = blocks = grid_shape = None
    if topology == "grid":
        adjacency, positions, grid_shape = _grid(cfg, n)
    elif topology == "watts_strogatz":
        k = _even_k(cfg, n, "watts_strogatz")
        p = _prob_param("network.p", getattr(cfg, "p", 0.0))
        adjacency = watts_strogatz(n, k, p, rng)
    elif topology == "ring":
        adjacency = watts_strogatz(n, _even_k(cfg, n, "ring"), 0.0, rng)
    elif topology == "barabasi_albert":
        m_raw = getattr(cfg, "m", None)
        if m_raw is None:
            k = _int_param("network.k", getattr(cfg, "k", None), 0)
            key, m = "network.k", max(1, k // 2)
        else:
            key, m = "network.m", _int_param("network.m", m_raw, 1)
        if m >= n:
            raise ScenarioError(key, f"barabasi_albert needs m = {m} < n_agents ({n})")
        adjacency = barabasi_albert(n, m, rng)
    elif topology == "erdos_renyi":
        k = _float_param("network.k", getattr(cfg, "k", None))
        if k < 0 or (k >= n and k > 0):
            raise ScenarioError("network.k", f"erdos_renyi needs 0 <= k < n_agents ({n}), got {k}")
        adjacency = erdos_renyi(n, k / (n - 1) if n > 1 else 0.0, rng)
    elif topology == "complete":
        if n > MAX_COMPLETE:
            raise ScenarioError(
                "network.n_agents", f"complete graph limited to {MAX_COMPLETE} nodes (got {n})"
            )
        adjacency = _complete(n)
    elif topology == "star":
        leaves = np.arange(1, n, dtype=np.int64)
        adjacency = _symmetric_csr(n, np.zeros_like(leaves), leaves, presorted=True)
    elif topology == "sbm":
        sizes = _block_sizes(cfg, n, block_sizes)
        p_in = _prob_param("network.p_in", getattr(cfg, "p_in", None))
        p_out = _prob_param("network.p_out", getattr(cfg, "p_out", None))
        adjacency = stochastic_block_model(sizes, p_in, p_out, rng)
        blocks = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    elif topology == "edgelist":
        adjacency = read_edgelist(getattr(cfg, "path", None), n, base_dir)
    else:
        raise ScenarioError(
            "network.topology", f"unknown topology {topology!r} (one of {', '.join(TOPOLOGIES)})"
        )
    if getattr(cfg, "normalize", False):
        adjacency = row_normalize(adjacency)
    return Network(adjacency, positions=positions, blocks=blocks, grid_shape=grid_shape)


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


# --------------------------------------------------------------------------------------------
# Random graph kernels (pure functions of their arguments and the generator)
# --------------------------------------------------------------------------------------------


def erdos_renyi(n: int, p: float, rng: np.random.Generator) -> sp.csr_matrix:
    """Gilbert's G(n, p) (Erdős & Rényi 1959; Gilbert 1959): each pair is an edge with prob. p.

    Same distribution as :func:`networkx.gnp_random_graph` / ``fast_gnp_random_graph``: the
    gaps between edges in the list of the n(n-1)/2 pairs are drawn as geometric variates
    (Batagelj & Brandes 2005), vectorised, so the cost is O(n + E).

    Args:
        n: Number of nodes.
        p: Edge probability in [0, 1].
        rng: Source of randomness.

    Returns:
        The symmetric 0/1 adjacency matrix.
    """
    i, j = _triangle_pairs(n, p, rng)
    return _symmetric_csr(n, i, j, presorted=True, lower=True)


def stochastic_block_model(
    sizes: list[int], p_in: float, p_out: float, rng: np.random.Generator
) -> sp.csr_matrix:
    """Stochastic block model (Holland, Laskey & Leinhardt 1983) with two probabilities.

    Nodes are numbered block by block (block 0 first), as in
    :func:`networkx.stochastic_block_model`; a pair in the same block is an edge with probability
    ``p_in``, a pair across blocks with ``p_out``, independently. Each block pair is sampled with
    geometric skipping (Batagelj & Brandes 2005), so the cost is O(n + E + B²) for B blocks.

    Args:
        sizes: Number of nodes in each block.
        p_in: Within-block edge probability.
        p_out: Between-block edge probability.
        rng: Source of randomness.

    Returns:
        The symmetric 0/1 adjacency matrix.
    """
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = int(offsets[-1])
    us, vs = [], []
    for r, size_r in enumerate(sizes):
        i, j = _triangle_pairs(int(size_r), p_in, rng)
        us.append(offsets[r] + j)
        vs.append(offsets[r] + i)
        for s in range(r + 1, len(sizes)):
            pos = _bernoulli_positions(int(size_r) * int(sizes[s]), p_out, rng)
            us.append(offsets[r] + pos // sizes[s])
            vs.append(offsets[s] + pos % sizes[s])
    u = np.concatenate(us) if us else _EMPTY
    v = np.concatenate(vs) if vs else _EMPTY
    return _symmetric_csr(n, u, v)


def watts_strogatz(n: int, k: int, p: float, rng: np.random.Generator) -> sp.csr_matrix:
    """Watts–Strogatz small world (Watts & Strogatz 1998), as :func:`networkx.watts_strogatz_graph`.

    Start from a ring where every node is joined to its k/2 nearest neighbours on each side, then
    rewire every lattice edge ``(u, u+j)`` with probability p to ``(u, w)``, w uniform among the
    nodes that would not make a self-loop or a multi-edge. Edges are rewired all at once: the
    proposals that clash (self-loop, an existing edge, or another proposal) are redrawn until all
    are placed, so the edge count stays exactly n·k/2.

    Deviation from networkx's sequential loop: a rewired edge never lands on a lattice pair
    (networkx allows a lattice pair whose edge was already rewired away, an O(p·k/n) event per
    rewiring), and an edge that finds no free target after 64 redraws stays where it was
    (networkx's "skip" when u is already joined to every node; only for nearly complete graphs).

    Args:
        n: Number of nodes.
        k: Even number of lattice neighbours, ``0 <= k < n``.
        p: Rewiring probability in [0, 1]; 0 gives the ring lattice.
        rng: Source of randomness (not drawn from when p = 0).

    Returns:
        The symmetric 0/1 adjacency matrix.
    """
    half = k // 2
    u = np.tile(np.arange(n, dtype=np.int64), half)  # networkx order: distance outer, node inner
    v = (u + np.repeat(np.arange(1, half + 1, dtype=np.int64), n)) % n
    if p > 0 and u.size and n - 1 - 2 * half > 0:
        moved = np.flatnonzero(rng.random(u.size) < p)
        v[moved] = _rewire(n, half, u[moved], v[moved], rng)
    return _symmetric_csr(n, u, v)


def barabasi_albert(n: int, m: int, rng: np.random.Generator) -> sp.csr_matrix:
    """Barabási–Albert preferential attachment (Barabási & Albert 1999), as networkx builds it.

    Same distribution as :func:`networkx.barabasi_albert_graph` (no approximation): a star on
    m + 1 nodes, then each new node ``s`` joins m *distinct* earlier nodes drawn with probability
    proportional to degree. As in Batagelj & Brandes (2005), degree-proportional draws are uniform
    draws from the list of edge endpoints, in which slot ``2m(s-m-1)+2m + j`` holds either ``s``
    (the m "source" slots) or s's j-th target (the m "target" slots). So each target is a uniform
    pointer into the list before ``s``; every pointer is drawn at once and the chains of pointers
    to target slots are followed, vectorised, until they reach a source slot (about two hops on
    average). A node whose m draws repeat a node redraws, like networkx's ``_random_subset``, from
    its own fixed stream of further pointers; since redraws change the values later pointers see,
    this is iterated to the (unique) fixed point, which is the sequential result for those streams.
    Repeats are rare (about ``m²(ln n)²/8`` nodes), so this takes a few rounds.

    Args:
        n: Number of nodes.
        m: Edges per new node, ``1 <= m < n``.
        rng: Source of randomness.

    Returns:
        The symmetric 0/1 adjacency matrix with ``m (n - m)`` edges.
    """
    star = np.arange(1, m + 1, dtype=np.int64)
    n_new = n - m - 1
    if n_new <= 0:
        return _symmetric_csr(n, np.zeros_like(star), star, presorted=True)
    # Pointer of row r (node s = m + 1 + r): uniform over the 2m(r + 1) slots before s, drawn as
    # a uniform block b <= r (block 0: the star's slots; block b: row b - 1) and a slot in it.
    rows = np.arange(n_new, dtype=np.int64)
    ptr = 2 * m * rng.integers(0, rows[:, None] + 1, size=(n_new, m), dtype=np.int64)
    ptr += rng.integers(0, 2 * m, size=(n_new, m), dtype=np.int64)
    attach = _Attachment(m, ptr)
    streams: dict[int, list[int]] = {}  # rows that ever repeated: their full pointer stream
    for _ in range(10_000):
        values = attach.resolve()
        repeated = _rows_with_repeats(values)
        changed = False
        for row in sorted(streams.keys() | set(repeated.tolist())):
            stream = streams.setdefault(row, ptr[row].tolist())
            chosen, nodes = attach.first_distinct(stream, values, 2 * m * (row + 1), rng)
            if chosen != ptr[row].tolist():
                attach.set_row(row, chosen)
                values[row] = nodes  # later rows of this pass see it; the rest next pass
                changed = True
        if not changed:
            break
    # Edges (s, target) with target < s: the lower triangle, row by row once each row is sorted.
    u = np.concatenate([star, np.repeat(rows + m + 1, m)])
    v = np.concatenate([np.zeros(m, dtype=np.int64), np.sort(values, axis=1).ravel()])
    return _symmetric_csr(n, u, v, presorted=True, lower=True)


def read_edgelist(path: str | None, n: int, base_dir: pathlib.Path | None = None) -> sp.csr_matrix:
    """Read an undirected edge list: one pair of integer node ids per line.

    Columns are separated by commas and/or whitespace; ``#`` starts a comment; blank lines are
    skipped; the first data line may be a header (if it is not two integers). Ids must lie in
    ``[0, n)``; self-loops are dropped, duplicate and reversed pairs merged.

    Args:
        path: File path; relative paths are resolved against ``base_dir``.
        n: Number of nodes.
        base_dir: Folder of the scenario file, or None for the working directory.

    Returns:
        The symmetric 0/1 adjacency matrix.

    Raises:
        ScenarioError: (key ``network.path``) no path, file missing or unreadable, a line that is
            not two integers, or a node id outside ``[0, n)``.
    """
    if not path:
        raise ScenarioError("network.path", "topology 'edgelist' needs a path")
    file = pathlib.Path(path).expanduser()
    if not file.is_absolute() and base_dir is not None:
        file = pathlib.Path(base_dir) / file
    if not file.is_file():
        raise ScenarioError("network.path", f"file not found: {path}")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError("network.path", f"cannot read {path}: {exc}") from None
    us: list[int] = []
    vs: list[int] = []
    split = re.compile(r"[,\s]+").split
    seen_data = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = split(line)
        try:
            a, b = (int(f) for f in fields)
        except ValueError:
            if not seen_data and not all(_is_int(f) for f in fields):
                seen_data = True  # a header line
                continue
            raise ScenarioError(
                "network.path", f"line {lineno}: expected two integer node ids, got {line!r}"
            ) from None
        seen_data = True
        for node in (a, b):
            if not 0 <= node < n:
                raise ScenarioError("network.path", f"line {lineno}: node {node} outside [0, {n})")
        us.append(a)
        vs.append(b)
    return _symmetric_csr(n, np.asarray(us, dtype=np.int64), np.asarray(vs, dtype=np.int64))


# --------------------------------------------------------------------------------------------
# Deterministic builders and helpers
# --------------------------------------------------------------------------------------------


def _grid(cfg: Any, n: int) -> tuple[sp.csr_matrix, np.ndarray, tuple[int, int]]:
    """Lattice with node ``y*width + x``; von Neumann (4) or Moore (8) neighbourhood."""
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
    neighborhood = getattr(cfg, "neighborhood", "von_neumann")
    offsets = {"von_neumann": [(1, 0), (0, 1)], "moore": [(1, 0), (0, 1), (1, 1), (-1, 1)]}
    if neighborhood not in offsets:
        raise ScenarioError(
            "network.neighborhood", f"expected 'von_neumann' or 'moore', got {neighborhood!r}"
        )
    torus = bool(getattr(cfg, "torus", False))
    y, x = np.divmod(np.arange(n, dtype=np.int64), width)
    us, vs = [], []
    for dx, dy in offsets[neighborhood]:
        x2, y2 = x + dx, y + dy
        if torus:
            keep = slice(None)
            x2, y2 = x2 % width, y2 % height
        else:
            keep = (x2 >= 0) & (x2 < width) & (y2 < height)
        us.append(np.arange(n, dtype=np.int64)[keep])
        vs.append((y2 * width + x2)[keep])
    # Each pair comes from one (node, offset) unless a torus side is 1 or 2 (then it wraps onto
    # itself): only then can there be self-loops and duplicates, which _symmetric_csr removes.
    adjacency = _symmetric_csr(n, np.concatenate(us), np.concatenate(vs))
    positions = np.column_stack([x, y]).astype(np.float64)
    return adjacency, positions, (width, height)


def _complete(n: int) -> sp.csr_matrix:
    """Complete graph K_n, built row by row without an edge list."""
    cols = np.arange(n - 1, dtype=np.int32)
    indices = (cols[None, :] + (cols[None, :] >= np.arange(n, dtype=np.int32)[:, None])).ravel()
    indptr = np.arange(0, n * (n - 1) + 1, max(n - 1, 1), dtype=np.int64)[: n + 1]
    if n == 1:
        indptr = np.zeros(2, dtype=np.int64)
    return sp.csr_matrix((np.ones(indices.size), indices, indptr), shape=(n, n))


def _symmetric_csr(
    n: int, u: np.ndarray, v: np.ndarray, *, presorted: bool = False, lower: bool = False
) -> sp.csr_matrix:
    """Symmetric 0/1 CSR matrix from undirected pairs, in O(E log E) (O(n + E) if presorted).

    Args:
        n: Number of nodes.
        u: One endpoint of each pair (int64).
        v: The other endpoint.
        presorted: The caller guarantees no duplicates, ``u < v`` (``u > v`` if ``lower``) and
            pairs sorted by ``(u, v)``: a triangle in CSR order, so no sort is needed.
        lower: See ``presorted``.

    Returns:
        CSR matrix with sorted indices, no self-loops and no duplicates.
    """
    if not presorted:
        a, b = np.minimum(u, v), np.maximum(u, v)
        keep = a != b
        key = a[keep] * n + b[keep]
        key.sort()
        if key.size:
            first = np.empty(key.size, dtype=bool)
            first[0] = True
            np.not_equal(key[1:], key[:-1], out=first[1:])
            key = key[first]
        u, v = np.divmod(key, n)
        lower = False
    index_type = np.int32 if max(n, 2 * u.size) < 2**31 else np.int64
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(u, minlength=n), out=ptr[1:])
    half = sp.csr_matrix((np.ones(u.size), v.astype(index_type), ptr), shape=(n, n))
    other = half.tocsc()  # the transpose, by SciPy's counting sort (indices come out sorted)
    other_ptr = other.indptr.astype(np.int64)
    lo_ptr, lo_idx, up_ptr, up_idx = (
        (ptr, v, other_ptr, other.indices) if lower else (other_ptr, other.indices, ptr, v)
    )
    # Row i of the result is its lower part (columns < i) followed by its upper part (> i).
    indices = np.empty(2 * u.size, dtype=index_type)
    rank = np.arange(u.size, dtype=np.int64)
    indices[rank + np.repeat(up_ptr[:-1], np.diff(lo_ptr))] = lo_idx
    indices[rank + np.repeat(lo_ptr[1:], np.diff(up_ptr))] = up_idx
    indptr = (lo_ptr + up_ptr).astype(index_type)
    return sp.csr_matrix((np.ones(indices.size), indices, indptr), shape=(n, n))


def _bernoulli_positions(total: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions in ``[0, total)``, each kept independently with probability p.

    Geometric skipping (Batagelj & Brandes 2005): the gaps between kept positions of a Bernoulli
    sequence are i.i.d. geometric, so the cost is O(expected count), drawn in vectorised chunks.
    """
    if total <= 0 or p <= 0:
        return _EMPTY
    if p >= 1:
        return np.arange(total, dtype=np.int64)
    chunks, last = [], -1
    while True:
        remaining = (total - 1 - last) * p
        size = int(remaining + 6 * math.sqrt(remaining) + 16)
        gaps = rng.geometric(p, size=size)
        beyond = np.flatnonzero(gaps >= total - last)  # huge gaps (tiny p) would overflow cumsum
        if beyond.size:
            gaps = gaps[: beyond[0] + 1]
        pos = last + np.cumsum(gaps)
        if pos[-1] >= total:
            chunks.append(pos[pos < total])
            return np.concatenate(chunks)
        chunks.append(pos)
        last = int(pos[-1])


def _triangle_pairs(n: int, p: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """G(n, p) edges as pairs ``i > j``, sorted by ``(i, j)``: positions in the lower triangle."""
    pos = _bernoulli_positions(n * (n - 1) // 2, p, rng)
    i = ((1 + np.sqrt(1 + 8 * pos.astype(np.float64))) // 2).astype(np.int64)
    i -= i * (i - 1) // 2 > pos  # correct the float estimate by one step either way
    i += (i + 1) * i // 2 <= pos
    return i, pos - i * (i - 1) // 2


def _rewire(
    n: int, half: int, u: np.ndarray, v: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """New far ends for the rewired Watts–Strogatz edges ``(u, v)`` (see watts_strogatz)."""
    target = v.copy()
    pending = np.arange(u.size)
    taken = _EMPTY  # sorted keys of the rewired edges placed so far
    for _ in range(64):
        if not pending.size:
            break
        uu = u[pending]
        w = rng.integers(0, n, size=pending.size, dtype=np.int64)
        dist = (w - uu) % n
        key = np.minimum(uu, w) * n + np.maximum(uu, w)
        ok = (dist > half) & (dist < n - half)  # neither u itself nor one of its lattice pairs
        ok &= ~_isin_sorted(key, taken)
        candidates = np.flatnonzero(ok)
        cand_keys = key[candidates]
        new_keys = np.sort(cand_keys)
        clash = new_keys[1:] == new_keys[:-1]
        if clash.any():  # proposals of the same new edge: the first one wins, the others redraw
            twice = np.unique(new_keys[1:][clash])
            dup = np.flatnonzero(_isin_sorted(cand_keys, twice))
            _, first = np.unique(cand_keys[dup], return_index=True)
            losers = np.setdiff1d(dup, dup[first], assume_unique=True)
            candidates = np.delete(candidates, losers)
            new_keys = np.sort(key[candidates])
        target[pending[candidates]] = w[candidates]
        taken = np.sort(np.concatenate([taken, new_keys]), kind="stable")  # merges two runs
        done = np.zeros(pending.size, dtype=bool)
        done[candidates] = True
        pending = pending[~done]
    return target  # edges still pending keep their lattice end


def _isin_sorted(values: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Membership of ``values`` in the sorted array ``sorted_keys``."""
    if not sorted_keys.size:
        return np.zeros(values.size, dtype=bool)
    idx = np.minimum(np.searchsorted(sorted_keys, values), sorted_keys.size - 1)
    return sorted_keys[idx] == values


class _Attachment:
    """Endpoint-list bookkeeping for :func:`barabasi_albert`.

    The endpoint list starts with the star's ``[0]*m + [1..m]`` (slots ``0 .. 2m-1``); new node
    ``s`` (row ``s - m - 1``) then appends m target slots and m source slots holding ``s``.
    ``ptr[row, j]`` is the slot that row's j-th target copies; ``link`` is the same pointer in a
    form that is cheap to follow: the flat index ``row * m + j`` of the target slot it points to,
    or ``-1 - node`` if it points to a slot whose node is known (star or source slot).
    """

    def __init__(self, m: int, ptr: np.ndarray) -> None:
        self.m = m
        self.ptr = ptr
        self.link = self._links(ptr.ravel())

    def _links(self, slot: np.ndarray) -> np.ndarray:
        m = self.m
        block, offset = np.divmod(slot, 2 * m)
        link = -1 - (m + block)  # a source slot of row block - 1 holds node m + block
        star = block == 0
        link[star] = -1 - np.maximum(offset[star] - m + 1, 0)  # star slots: [0]*m + [1..m]
        target = ~star & (offset < m)
        link[target] = (block[target] - 1) * m + offset[target]
        return link

    def set_row(self, row: int, slots: list[int]) -> None:
        """Point ``row``'s targets at ``slots``."""
        self.ptr[row] = slots
        self.link[row * self.m : (row + 1) * self.m] = self._links(np.asarray(slots))

    def resolve(self) -> np.ndarray:
        """Node in every target slot, ``(rows, m)``, by following the chains of links."""
        link = self.link
        cur = link.copy()
        idx = np.flatnonzero(cur >= 0)
        while idx.size:
            cur[idx] = link[cur[idx]]
            idx = idx[cur[idx] >= 0]
        return (-1 - cur).reshape(self.ptr.shape)

    def first_distinct(
        self, stream: list[int], values: np.ndarray, length: int, rng: np.random.Generator
    ) -> tuple[list[int], list[int]]:
        """Pointers and nodes of the first m distinct nodes in ``stream`` (extended as needed)."""
        chosen: list[int] = []
        nodes: list[int] = []
        i = 0
        while len(chosen) < self.m:
            if i == len(stream):
                stream.extend(rng.integers(0, length, size=2 * self.m).tolist())
            link = int(self._links(np.array([stream[i]]))[0])
            node = int(values.flat[link]) if link >= 0 else -1 - link
            if node not in nodes:
                nodes.append(node)
                chosen.append(stream[i])
            i += 1
        return chosen, nodes


def _rows_with_repeats(values: np.ndarray) -> np.ndarray:
    """Rows of ``values`` in which some node appears twice."""
    if values.shape[1] < 2:
        return _EMPTY
    s = np.sort(values, axis=1)
    return np.flatnonzero((s[:, 1:] == s[:, :-1]).any(axis=1))


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


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


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
    sizes = block_sizes if block_sizes is not None else getattr(cfg, "blocks", None)
    if sizes is None:
        return [n]
    sizes = [_int_param("network.blocks", s, 0) for s in sizes]
    if sum(sizes) != n:
        raise ScenarioError(
            "network.blocks", f"block sizes sum to {sum(sizes)}, not n_agents ({n})"
        )
    return sizes
