"""Order statistics of a step per group: Gini of utility, proxy–value correlations (compiled).

These are the ``steps`` columns that need a sort: ``gini_utility`` (sorted utilities) and
``corr_proxy_value_top`` (the proxy quantile of each group). One sort of the whole population,
carrying each entry's group (:func:`sort_by_group`), serves every group and the overall ``all``
row: walking the sorted values with one rank counter per group gives each group's sorted sequence
without gathering it. The NumPy reference of each public function here is the same-named function of
:mod:`model.group_stats` (built on :func:`model.group_stats.gini`,
:func:`model.group_stats.correlation` and ``np.quantile``); the tests hold these to it. The sorts
release the GIL, so that the two sorts of a step can run on two threads
(:func:`model.parallel.parallel_map`); the correlation sums run on the kernel threads in fixed
blocks of rows, added in block order (results do not depend on the number of threads).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from mesaopt.model.group_stats import clearly_positive
from mesaopt.model.measures_jit import BLOCK
from mesaopt.model.parallel import block_ranges, parallel_map

__all__ = [
    "group_correlations",
    "group_ginis",
    "radix_argsort",
    "smallest",
    "sort_by_group",
]

# Byte digits: 256 counters and write positions stay in L1 (measured: twice as fast as 11-bit
# digits at 1e6 keys and 1.5x at 1e5, docs/performance.md).
_DIGIT_BITS = 8
_BUCKETS = 1 << _DIGIT_BITS


@nb.njit(cache=True, nogil=True)
def _radix_sort(x: np.ndarray, payload: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stable ascending sort of float64 ``x`` carrying ``payload`` (LSD radix, byte digits).

    Keys are the IEEE-754 bit patterns mapped so that unsigned order is float order (negatives
    have every bit flipped, positives the sign bit); eight linear passes, a pass skipped when every
    key shares its digit. NaNs sort last, as in NumPy; -0.0 before 0.0.

    Returns:
        The sorted values and the payload in the same order.
    """
    n = x.shape[0]
    keys = np.empty(n, dtype=np.uint64)
    bits = x.view(np.uint64)
    sign = np.uint64(1) << np.uint64(63)
    for i in range(n):
        k = bits[i]
        keys[i] = ~k if k & sign else k | sign
        if x[i] != x[i]:  # every NaN after +inf, whatever its sign bit
            keys[i] = ~np.uint64(0)
    carried = payload.copy()
    other_keys = np.empty_like(keys)
    other_carried = np.empty_like(carried)
    mask = np.uint64(_BUCKETS - 1)
    digits = (64 + _DIGIT_BITS - 1) // _DIGIT_BITS
    # Every digit's histogram in one pass over the keys (the digits of a key never change).
    counts = np.zeros((digits, _BUCKETS + 1), dtype=np.int64)
    for i in range(n):
        k = keys[i]
        for digit in range(digits):
            counts[digit, ((k >> np.uint64(digit * _DIGIT_BITS)) & mask) + 1] += 1
    for digit in range(digits):
        starts = counts[digit]
        if starts.max() == n:  # every key shares this digit: nothing to move
            continue
        for b in range(_BUCKETS):
            starts[b + 1] += starts[b]
        s = np.uint64(digit * _DIGIT_BITS)
        for i in range(n):
            b = (keys[i] >> s) & mask
            at = starts[b]
            other_keys[at] = keys[i]
            other_carried[at] = carried[i]
            starts[b] = at + 1
        keys, other_keys = other_keys, keys
        carried, other_carried = other_carried, carried
    for i in range(n):  # back from keys to values (a NaN key maps back to a NaN)
        k = keys[i]
        keys[i] = k ^ sign if k & sign else ~k
    return keys.view(np.float64), carried


def radix_argsort(x: np.ndarray) -> np.ndarray:
    """Stable ascending argsort of float64 ``x`` (radix sort, about twice ``np.argsort``'s speed).

    Args:
        x: Values, (N,).

    Returns:
        The permutation, (N,) int64.
    """
    return _radix_sort(np.ascontiguousarray(x, dtype=float), np.arange(len(x)))[1]


def smallest(x: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` first entries of :func:`radix_argsort`'s order, ascending.

    The same set as ``np.sort(radix_argsort(x)[:count])`` (ties by index, -0.0 before 0.0, NaNs
    last), found in linear time: a partition finds the count-th smallest value, and only the
    entries up to it (about ``count`` of them) are radix sorted. Retraining takes each
    principal's worst agents this way at every selection step (measured on 50,000 agents: 0.3 ms
    against 2.2–6.4 ms for the full sort; docs/performance.md).

    Args:
        x: Values, (N,).
        count: How many (clipped to 0..N).

    Returns:
        The indices, (min(count, N),) int64, in ascending order.
    """
    x = np.ascontiguousarray(x, dtype=float)
    if count <= 0:
        return np.arange(0)
    if count >= len(x):
        return np.arange(len(x))
    kth = np.partition(x, count - 1)[count - 1]
    # Every entry of the first count is at most kth (-0.0 and 0.0 compare equal here; NaNs
    # come last, so a NaN kth takes everyone).
    candidates = np.arange(len(x)) if np.isnan(kth) else np.flatnonzero(x <= kth)
    order = radix_argsort(x[candidates])  # stable: candidates are in index order
    return np.sort(candidates[order[:count]])


def n_groups_fit(group: np.ndarray) -> bool:
    """True when every group index fits in an int8."""
    return len(group) == 0 or (int(group.min()) >= 0 and int(group.max()) < 128)


def sort_by_group(x: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` in ascending order and the group of each of its entries.

    Ties between groups come in group order (the reference, :func:`model.group_stats.
    sort_by_group`, is a lexicographic sort by value, then group); -0.0 and 0.0 compare equal.
    What the walks compute from it depends only on each group's sorted values and on the
    sorted whole, which any correct sort gives alike. Three linear steps: the values gathered
    group by group (a counting sort on the group), each group's run sorted by NumPy (vectorised
    on CPUs with AVX2 or AVX-512), then the runs merged, carrying their group: at 10^6 values a
    third faster than the radix sort that carried the group along (docs/performance.md,
    "Sorts"). NumPy's sort and both compiled steps release the GIL, so
    the two sorts of a step still run on two threads.

    Args:
        x: Values, (N,).
        group: Group index per entry, (N,), at least 0.

    Returns:
        ``(ordered, groups)``: what :func:`group_ginis` and :func:`group_correlations` walk.
    """
    # The group rides along as one byte where principals are few.
    small = np.int8 if n_groups_fit(group) else np.int64
    x = np.ascontiguousarray(x, dtype=float)
    group = np.ascontiguousarray(group, dtype=small)
    if len(group) and int(group.min()) < 0:  # the compiled gather indexes by group unchecked
        raise ValueError(f"group indices must be at least 0, got {int(group.min())}")
    n_groups = int(group.max()) + 1 if len(group) else 0
    values, bounds = _gather_by_group(x, group, n_groups)
    for g in range(n_groups):
        values[bounds[g] : bounds[g + 1]].sort()
    return _merge_runs(values, bounds, np.zeros(0, dtype=small))


@nb.njit(cache=True, nogil=True)
def _gather_by_group(
    x: np.ndarray, group: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """``x`` with group 0's entries first, then group 1's, …, and where each group starts.

    Returns:
        The gathered values, (N,), and the run bounds, (n_groups + 1,): group g is
        ``bounds[g]:bounds[g + 1]``.
    """
    bounds = np.zeros(n_groups + 1, dtype=np.int64)
    for i in range(group.shape[0]):
        bounds[group[i] + 1] += 1
    for g in range(n_groups):
        bounds[g + 1] += bounds[g]
    at = bounds[:n_groups].copy()
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        g = group[i]
        out[at[g]] = x[i]
        at[g] += 1
    return out, bounds


@nb.njit(cache=True, nogil=True)
def _merge_runs(
    values: np.ndarray, bounds: np.ndarray, label_type: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Merge sorted runs ``bounds[g]:bounds[g + 1]`` into one order, labelling each entry g.

    Adjacent runs are merged pairwise until one is left (log2 of the number of groups
    rounds); on a tie the earlier run's entry comes first, and NaNs (sorted last in each run)
    come after every number.

    Args:
        values: The runs, each ascending, (N,).
        bounds: Their bounds, (runs + 1,).
        label_type: An empty array of the labels' dtype.

    Returns:
        The merged values and each one's run, (N,) each.
    """
    n = values.shape[0]
    labels = np.empty(n, dtype=label_type.dtype)
    for g in range(bounds.shape[0] - 1):
        for i in range(bounds[g], bounds[g + 1]):
            labels[i] = g
    source, source_labels = values, labels
    target, target_labels = np.empty_like(values), np.empty_like(labels)
    runs = bounds
    while runs.shape[0] > 2:
        count = runs.shape[0] - 1
        merged = np.empty((count + 1) // 2 + 1, dtype=np.int64)
        merged[0] = 0
        for pair in range(0, count, 2):
            lo, mid = runs[pair], runs[pair + 1]
            hi = runs[pair + 2] if pair + 1 < count else mid
            i, j, out = lo, mid, lo
            while i < mid and j < hi:
                a, b = source[i], source[j]
                if a <= b or b != b:  # ties to the earlier run; a NaN b after every a
                    target[out] = a
                    target_labels[out] = source_labels[i]
                    i += 1
                else:
                    target[out] = b
                    target_labels[out] = source_labels[j]
                    j += 1
                out += 1
            for rest in range(i, mid):
                target[out] = source[rest]
                target_labels[out] = source_labels[rest]
                out += 1
            for rest in range(j, hi):
                target[out] = source[rest]
                target_labels[out] = source_labels[rest]
                out += 1
            merged[pair // 2 + 1] = hi
        runs = merged
        source, target = target, source
        source_labels, target_labels = target_labels, source_labels
    return source, source_labels


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _gini_sums(
    ordered: np.ndarray, groups: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per group (the last one = all): count, Σx, Σ|x|, and Σ(2i − n − 1)·x_(i) in sorted order."""
    counts = np.zeros(n_groups + 1, dtype=np.int64)
    for i in range(groups.shape[0]):
        counts[groups[i]] += 1
    counts[n_groups] = groups.shape[0]
    total = np.zeros(n_groups + 1)
    absolute = np.zeros(n_groups + 1)
    weighted = np.zeros(n_groups + 1)
    rank = np.zeros(n_groups + 1, dtype=np.int64)
    for i in range(ordered.shape[0]):
        v = ordered[i]
        for g in (np.int64(groups[i]), np.int64(n_groups)):
            rank[g] += 1
            total[g] += v
            absolute[g] += abs(v)
            weighted[g] += (2 * rank[g] - counts[g] - 1) * v
    return counts, total, absolute, weighted


def group_ginis(
    x: np.ndarray,
    group: np.ndarray,
    n_groups: int,
    ordered: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[float]:
    """Gini of ``x`` within each group ``0..n_groups-1``, then over all entries.

    Same definition as :func:`model.group_stats.gini`: the mean absolute difference over twice
    the mean, ``Σ(2i − n − 1)·x_(i) / (n²·mean)``; NaN for an empty group or a mean that is not
    clearly positive (rounding noise of values summing to about zero).

    Args:
        x: Values, (N,).
        group: Group index per entry, (N,).
        n_groups: Number of groups.
        ordered: ``sort_by_group(x, group)`` if already computed.

    Returns:
        ``n_groups + 1`` coefficients.
    """
    values, groups = sort_by_group(x, group) if ordered is None else ordered
    counts, total, absolute, weighted = _gini_sums(values, groups, n_groups)
    out = []
    for n, s, a, w in zip(counts, total, absolute, weighted, strict=True):
        clear = n > 0 and clearly_positive(s / n, a / n)
        out.append(float(w / (n * n * (s / n))) if clear else float("nan"))
    return out


def _correlation_sums(
    x: np.ndarray, y: np.ndarray, group: np.ndarray, cuts: np.ndarray
) -> np.ndarray:
    """Per cut set c and group g (last = all): n, then centred Σxx, Σyy, Σxy (two passes).

    Row i counts for its group g under cut set c if ``x_i ≥ cuts[c, g]`` and for the last, overall
    entry if ``x_i ≥ cuts[c, -1]``; a cut of −∞ takes every row (NaNs included). Each pass sums
    fixed blocks of :data:`model.measures_jit.BLOCK` rows on the kernel threads and adds the
    blocks' partial sums in block order, so the result does not depend on the number of threads.

    Returns:
        The sums, (len(cuts), n_groups + 1, 4).
    """
    blocks = (x.shape[0] + BLOCK - 1) // BLOCK
    shape = (blocks, *cuts.shape, 3)
    first = np.zeros(shape)
    spans = block_ranges(blocks)
    parallel_map(
        lambda span: _first_moments(x, y, group, cuts, BLOCK, span[0], span[1], first), spans
    )
    totals = first.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = totals[..., 1:] / totals[..., :1]
    second = np.zeros(shape)
    parallel_map(
        lambda span: _second_moments(x, y, group, cuts, means, BLOCK, span[0], span[1], second),
        spans,
    )
    out = np.empty((*cuts.shape, 4))
    out[..., 0] = totals[..., 0]
    out[..., 1:] = second.sum(axis=0)
    return out


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _first_moments(
    x: np.ndarray,
    y: np.ndarray,
    group: np.ndarray,
    cuts: np.ndarray,
    block_rows: int,
    first_block: int,
    last_block: int,
    partial: np.ndarray,
) -> None:
    """n, Σx, Σy of blocks ``first_block..last_block`` into ``partial[block]`` (no GIL).

    The block size is an argument, not the global: Numba freezes a global's value into the
    cached code, and an edit of ``BLOCK`` in another file would not invalidate this cache.
    """
    n = x.shape[0]
    overall = cuts.shape[1] - 1
    for block in range(first_block, last_block):
        for i in range(block * block_rows, min(n, (block + 1) * block_rows)):
            for c in range(cuts.shape[0]):
                # Indexed, not viewed (partial[block, c]): a view per row costs an atomic
                # reference-count pair, which the threads contend for.
                for g in (np.int64(group[i]), np.int64(overall)):
                    if cuts[c, g] == -np.inf or x[i] >= cuts[c, g]:
                        partial[block, c, g, 0] += 1
                        partial[block, c, g, 1] += x[i]
                        partial[block, c, g, 2] += y[i]


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _second_moments(
    x: np.ndarray,
    y: np.ndarray,
    group: np.ndarray,
    cuts: np.ndarray,
    means: np.ndarray,
    block_rows: int,
    first_block: int,
    last_block: int,
    partial: np.ndarray,
) -> None:
    """Centred Σxx, Σyy, Σxy of blocks ``first_block..last_block`` into ``partial[block]``."""
    n = x.shape[0]
    overall = cuts.shape[1] - 1
    for block in range(first_block, last_block):
        for i in range(block * block_rows, min(n, (block + 1) * block_rows)):
            for c in range(cuts.shape[0]):
                for g in (np.int64(group[i]), np.int64(overall)):
                    if cuts[c, g] == -np.inf or x[i] >= cuts[c, g]:
                        dx = x[i] - means[c, g, 0]
                        dy = y[i] - means[c, g, 1]
                        partial[block, c, g, 0] += dx * dx
                        partial[block, c, g, 1] += dy * dy
                        partial[block, c, g, 2] += dx * dy


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _quantile_cuts(ordered: np.ndarray, groups: np.ndarray, n_groups: int, q: float) -> np.ndarray:
    """Per group (last = all): the q-quantile, linear interpolation as ``np.quantile``."""
    counts = np.zeros(n_groups + 1, dtype=np.int64)
    for i in range(groups.shape[0]):
        counts[groups[i]] += 1
    counts[n_groups] = groups.shape[0]
    low_rank = np.zeros(n_groups + 1, dtype=np.int64)
    frac = np.zeros(n_groups + 1)
    for g in range(n_groups + 1):
        h = (counts[g] - 1) * q
        low_rank[g] = int(np.floor(h))
        frac[g] = h - low_rank[g]
    low = np.full(n_groups + 1, np.nan)
    high = np.full(n_groups + 1, np.nan)
    rank = np.zeros(n_groups + 1, dtype=np.int64)
    for i in range(ordered.shape[0]):
        for g in (np.int64(groups[i]), np.int64(n_groups)):
            if rank[g] == low_rank[g]:
                low[g] = ordered[i]
            if rank[g] == min(low_rank[g] + 1, counts[g] - 1):
                high[g] = ordered[i]
            rank[g] += 1
    cuts = np.empty(n_groups + 1)
    for g in range(n_groups + 1):
        # NumPy's lerp, including its choice of end for a fraction ≥ ½ (exact at the ends).
        diff = high[g] - low[g]
        cuts[g] = high[g] - diff * (1 - frac[g]) if frac[g] >= 0.5 else low[g] + diff * frac[g]
    return cuts


def _correlation(sums: np.ndarray) -> np.ndarray:
    """Pearson correlation from rows of (n, Σxx, Σyy, Σxy); NaN below 3 points or no variance."""
    n, sxx, syy, sxy = sums.T
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = sxy / np.sqrt(sxx * syy)
    return np.where((n >= 3) & (sxx > 0) & (syy > 0), corr, np.nan)


def group_correlations(
    x: np.ndarray,
    y: np.ndarray,
    group: np.ndarray,
    n_groups: int,
    top_quantile: float,
    ordered: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Correlation of x and y per group and overall, and among each group's top x.

    The top of a group are its entries with ``x ≥ np.quantile(x_group, top_quantile)`` (for the
    last, overall entry: the quantile over all).

    Args:
        x: First variable (the proxy), (N,).
        y: Second variable (true value), (N,).
        group: Group index per entry, (N,).
        n_groups: Number of groups.
        top_quantile: Quantile of x that starts the top.
        ordered: ``sort_by_group(x, group)`` if already computed.

    Returns:
        ``(corr, corr_top)``, each ``n_groups + 1`` long (NaN where undefined).
    """
    x = np.ascontiguousarray(x, dtype=float)
    y = np.ascontiguousarray(y, dtype=float)
    values, groups = sort_by_group(x, group) if ordered is None else ordered
    everyone = np.full(n_groups + 1, -np.inf)
    cuts = np.stack([everyone, _quantile_cuts(values, groups, n_groups, top_quantile)])
    sums = _correlation_sums(x, y, group, cuts)  # both cut sets in the same two passes
    return _correlation(sums[0]), _correlation(sums[1])
