"""Random and regular graphs drawn as symmetric SciPy CSR matrices from the run's generator.

One idea: turning graph parameters and a :class:`numpy.random.Generator` into a CSR adjacency
matrix. Every function here takes plain numbers (no scenario) and draws only from the generator it
is given, in a fixed order, so a seed fixes the graph. Its neighbour :mod:`model.network` reads
the scenario's ``[network]`` section, checks its parameters, calls one of these builders and wraps
the result in a :class:`~model.network.Network`; nothing here knows about scenarios except
:func:`read_edgelist`, whose errors name the ``network.path`` key.

The random builders are vectorised with NumPy so that graphs of 10^6 nodes build in about a
second, and each draws from the same distribution as the :mod:`networkx` generator named in its
docstring (tests/model/test_graphs.py compares them); the only deviations are documented where
they occur (Watts–Strogatz). Every matrix returned is float64 with sorted indices, no self-loops
and no duplicate entries, all weights 1.

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

import numpy as np
import scipy.sparse as sp

from mesaopt.model.errors import ScenarioError
from mesaopt.model.user_files import read_user_text

#: Lattice offsets ``(dx, dy)`` of each grid neighbourhood (each undirected pair once).
NEIGHBORHOODS = {
    "von_neumann": ((1, 0), (0, 1)),
    "moore": ((1, 0), (0, 1), (1, 1), (-1, 1)),
}

_EMPTY = np.empty(0, dtype=np.int64)


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
    skipped; the first data line may be a header if every column is a name starting with a
    letter of any script (``source,target``, ``källa,mål``, perhaps quoted; not ``0.5,1``,
    ``1,2x``, ``"0","1"`` or ``node 1,node 2``, which are errors); a trailing comma is ignored.
    Ids are ASCII digits and must lie in ``[0, n)``. A UTF-8 byte-order mark is dropped;
    self-loops are dropped, duplicate and reversed pairs merged. Errors quote a bad line only if
    it looks like data, and at most :data:`EXCERPT_CHARS` characters of it.

    Args:
        path: File path; relative paths are resolved against ``base_dir``.
        n: Number of nodes.
        base_dir: Folder of the scenario file, or None for the working directory.

    Returns:
        The symmetric 0/1 adjacency matrix.

    Raises:
        ScenarioError: (key ``network.path``) no path, file missing, a folder, pipe or device,
            unreadable, binary, not UTF-8 or too large to parse in memory, no edge line at all
            (empty, or only a header and comments), a line that is not two integers, or a node
            id outside ``[0, n)``.
    """
    if not path:
        raise ScenarioError("network.path", "topology 'edgelist' needs a path")
    file = pathlib.Path(path).expanduser()
    if not file.is_absolute() and base_dir is not None:
        file = pathlib.Path(base_dir) / file
    text = _edgelist_text(file, path)
    us: list[int] = []
    vs: list[int] = []
    split = re.compile(r"[,\s]+").split
    seen_data = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [field for field in split(line) if field]  # "0,1," has two: a trailing comma
        try:
            a, b = (_node_id(f) for f in fields)
        except ValueError:
            if not seen_data and all(_HEADER_FIELD.fullmatch(f) for f in fields):
                seen_data = True  # a header line: names, not numbers ("source,target")
                continue
            raise ScenarioError(
                "network.path",
                f"line {lineno}: expected two integer node ids{_excerpt(line)}",
            ) from None
        seen_data = True
        for node in (a, b):
            if not 0 <= node < n:
                shown = str(node) if len(str(node)) <= 20 else f"{str(node)[:20]}..."
                raise ScenarioError("network.path", f"line {lineno}: node {shown} outside [0, {n})")
        us.append(a)
        vs.append(b)
    if not us:  # an empty file, or a header and comments: almost surely the wrong file
        raise ScenarioError("network.path", "no edges (expected lines 'source,target')")
    return _symmetric_csr(n, np.asarray(us, dtype=np.int64), np.asarray(vs, dtype=np.int64))


#: Bytes of memory parsing needs per byte of edge list: a shortest line ("0,1\n", 4 bytes) becomes
#: two Python ints in lists (~72 bytes), and the text is held decoded (up to 4 bytes per char).
EDGELIST_BYTES_PER_BYTE = 24
#: Longest excerpt of a bad line an error quotes, and only of a line that looks like data.
EXCERPT_CHARS = 40
_DATA_LIKE = re.compile(r"^[0-9eE+\-.,;:\s]*$")
#: A column name of a header line: a word starting with a letter, perhaps quoted.
#: A column name of a header line: a word starting with a letter (any script) or ``_``, perhaps
#: quoted: ``source``, ``"target"``, ``källa``, ``node_id``.
_HEADER_FIELD = re.compile(r"[\"']?[^\W\d][\w.\-]*[\"']?")


def _node_id(field: str) -> int:
    """A node id as written: ASCII digits with an optional sign (not ``1_0``, not ``١``)."""
    if not re.fullmatch(r"[+-]?[0-9]+", field):
        raise ValueError(field)
    return int(field)


def _edgelist_text(file: pathlib.Path, path: str) -> str:
    """The text of an edge list, refusing one too large to parse in memory or not text."""
    from mesaopt.model.memory import available_bytes

    return read_user_text(
        file,
        key="network.path",
        what="a text edge list",
        limit=available_bytes() // EDGELIST_BYTES_PER_BYTE,
        shown=path,
        too_large=", more than this machine's memory can parse",
    )


def _excerpt(line: str) -> str:
    """A short, marked excerpt of a bad line if it looks like data (digits, separators), else ""."""
    if not _DATA_LIKE.match(line):
        return ""  # never quote what may be someone's file (a path can name any readable file)
    shown = line if len(line) <= EXCERPT_CHARS else line[:EXCERPT_CHARS] + "..."
    return f" (the line reads: {shown!r})"


# --------------------------------------------------------------------------------------------
# Deterministic graphs
# --------------------------------------------------------------------------------------------


def grid(
    width: int, height: int, *, torus: bool = False, neighborhood: str = "von_neumann"
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Lattice of ``width × height`` nodes, node ``y*width + x``, with 4 or 8 neighbours.

    The von Neumann grid is :func:`networkx.grid_2d_graph` relabelled to ``y*width + x``.

    Args:
        width: Columns (x), at least 1.
        height: Rows (y), at least 1.
        torus: Wrap around both sides.
        neighborhood: ``"von_neumann"`` (4 neighbours) or ``"moore"`` (8), a key of
            :data:`NEIGHBORHOODS`.

    Returns:
        The symmetric 0/1 adjacency matrix and the nodes' positions (:func:`grid_positions`).
    """
    n = width * height
    y, x = np.divmod(np.arange(n, dtype=np.int64), width)
    us, vs = [], []
    for dx, dy in NEIGHBORHOODS[neighborhood]:
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
    return adjacency, grid_positions(width, height)


def grid_positions(width: int, height: int) -> np.ndarray:
    """Lattice coordinates of the nodes of a ``width × height`` grid.

    Args:
        width: Columns (x).
        height: Rows (y).

    Returns:
        ``(width*height, 2)`` float64 array whose row ``y*width + x`` is ``(x, y)``.
    """
    y, x = np.divmod(np.arange(width * height, dtype=np.int64), width)
    return np.column_stack([x, y]).astype(np.float64)


def complete(n: int) -> sp.csr_matrix:
    """Complete graph K_n, built row by row without an edge list.

    Args:
        n: Number of nodes (the matrix stores ``n (n - 1)`` entries).

    Returns:
        The symmetric 0/1 adjacency matrix.
    """
    cols = np.arange(n - 1, dtype=np.int32)
    indices = (cols[None, :] + (cols[None, :] >= np.arange(n, dtype=np.int32)[:, None])).ravel()
    indptr = np.arange(0, n * (n - 1) + 1, max(n - 1, 1), dtype=np.int64)[: n + 1]
    if n == 1:
        indptr = np.zeros(2, dtype=np.int64)
    return sp.csr_matrix((np.ones(indices.size), indices, indptr), shape=(n, n))


def star(n: int) -> sp.csr_matrix:
    """Star: node 0 joined to each of the nodes ``1 .. n-1``.

    Args:
        n: Number of nodes.

    Returns:
        The symmetric 0/1 adjacency matrix with ``n - 1`` edges.
    """
    leaves = np.arange(1, n, dtype=np.int64)
    return _symmetric_csr(n, np.zeros_like(leaves), leaves, presorted=True)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


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
