"""Output noise of the channels: the families, their draws and their variances.

Each channel's realized output is ``y_k = a_k + ε_k`` with ``ε_k`` normal, Laplace or Student-t
(scaled). :func:`draw_in_blocks` draws large arrays in fixed blocks, each from a generator seeded
from the run's generator, so that draws are identical whatever the number of threads;
:func:`noise_variance` and :func:`metric_noise_variance` give the variances that the contract
(risk premium ``½ρβ²σ_M²``) and the measures use. Part of the world's data: it imports nothing
of the model but the thread pool.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from mesaopt.model.parallel import parallel_map

#: Integer code of each noise family, as stored in the world's arrays.
NOISE_CODES = {"normal": 0, "laplace": 1, "student_t": 2}
#: The family of each code.
NOISE_NAMES = {code: name for name, code in NOISE_CODES.items()}

#: Rows of output noise drawn from one generator (see :func:`draw_in_blocks`).
NOISE_BLOCK = 1 << 15


def noise_variance(dist: str, scale: float, df: float) -> float:
    """Variance of one channel's output noise.

    ``normal``: scale²; ``laplace``: 2·scale² (``scale`` is numpy's b); ``student_t``:
    scale²·df/(df − 2) for df > 2, else ``inf`` (``scale`` multiplies a standard t variate).

    Args:
        dist: ``"normal"``, ``"laplace"`` or ``"student_t"``.
        scale: Scale parameter, at least 0.
        df: Degrees of freedom (used by ``student_t`` only).

    Returns:
        The variance (possibly ``inf``).

    Raises:
        ValueError: On an unknown distribution, a negative scale, or ``df ≤ 0`` for
            ``student_t``.
    """
    if not scale >= 0.0:
        raise ValueError(f"scale must be non-negative, got {scale}")
    if dist == "normal":
        return float(scale) ** 2
    if dist == "laplace":
        return 2.0 * float(scale) ** 2
    if dist == "student_t":
        if not df > 0.0:
            raise ValueError(f"student_t needs df > 0, got {df}")
        if df <= 2.0:
            return math.inf if scale > 0.0 else 0.0
        return float(scale) ** 2 * df / (df - 2.0)
    raise ValueError(f"unknown noise distribution {dist!r}; use normal, laplace or student_t")


def metric_noise_variance(
    metric: np.ndarray, noise_variances: np.ndarray, perceived: np.ndarray
) -> float:
    """Variance of the proxy noise ``mᵀε`` over the perceived channels (independent noise).

    ``σ_M² = Σ_{k∈P} m_k² Var(ε_k)``; channels with ``m_k = 0`` contribute nothing even if
    their noise variance is infinite.

    Args:
        metric: Proxy weights m, shape (d,).
        noise_variances: Var(ε_k) per channel, shape (d,); entries may be ``inf``.
        perceived: Boolean mask of the perceived channels, shape (d,).

    Returns:
        σ_M² (possibly ``inf``).

    Raises:
        ValueError: On shape mismatch or a negative variance.
    """
    m = np.asarray(metric, dtype=float)
    var = np.asarray(noise_variances, dtype=float)
    p = np.asarray(perceived, dtype=bool)
    if m.ndim != 1 or var.shape != m.shape or p.shape != m.shape:
        raise ValueError(
            f"metric, noise_variances and perceived must share a 1-d shape, "
            f"got {m.shape}, {var.shape}, {p.shape}"
        )
    if np.any(var < 0.0):
        raise ValueError("noise variances must be non-negative")
    used = p & (m != 0.0)
    return float(np.sum(m[used] ** 2 * var[used]))


def standard_t(rng: np.random.Generator, df: float, size: int | tuple[int, ...]) -> np.ndarray:
    """Student-t draws with ``df`` degrees of freedom: ``Z / sqrt(χ²_df / df)``.

    For an even integer ``df`` up to 16, χ²_df is drawn exactly as twice a sum of df/2 standard
    exponentials, which is faster than NumPy's gamma draw (measured at 1e5 draws and df = 4:
    2.1 ms instead of 3.1 ms for ``rng.standard_t``); otherwise ``rng.standard_t``.
    """
    if df != int(df) or int(df) % 2 or not 2 <= df <= 16:
        return rng.standard_t(df, size)
    z = rng.standard_normal(size)
    chi2 = rng.standard_exponential(size)
    for _ in range(int(df) // 2 - 1):
        chi2 += rng.standard_exponential(size)
    chi2 *= 2.0 / df
    np.sqrt(chi2, out=chi2)
    z /= chi2
    return z


def draw_in_blocks(
    rng: np.random.Generator,
    out: np.ndarray,
    fill: Callable[[np.random.Generator, np.ndarray], None],
) -> None:
    """Fill ``out`` (d, rows) with random draws, in blocks of :data:`NOISE_BLOCK` rows.

    Up to one block, ``fill(rng, out)`` draws from ``rng`` itself. Beyond, one seed per block is
    drawn from ``rng`` and each block filled from its own generator, so that blocks can be drawn
    on several threads (NumPy releases the GIL while it fills an array) and the draws do not
    depend on how many threads there are (:func:`model.parallel.parallel_map`).

    Args:
        rng: The run's generator.
        out: Array to fill, (d, rows): one row per channel.
        fill: ``fill(generator, block)`` fills a (d, m) block.
    """
    rows = out.shape[1]
    if rows <= NOISE_BLOCK:
        fill(rng, out)
        return
    starts = range(0, rows, NOISE_BLOCK)
    seeds = rng.integers(0, 2**63, size=len(starts))
    blocks = [
        (np.random.default_rng(seed), out[:, lo : lo + NOISE_BLOCK])
        for seed, lo in zip(seeds, starts, strict=True)
    ]
    parallel_map(lambda block: fill(*block), blocks)
