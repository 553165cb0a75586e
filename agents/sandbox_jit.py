"""The compiled sandbox (best-of-n): every candidate of every slot scored in one parallel pass.

:func:`agents.sandbox.select_best_of_n` draws the random numbers (candidate objectives and
sandbox noise) and hands them to :func:`score_candidates`, which plays each candidate in the
sandbox by its mode (exact best response, :func:`agents.response_jit.water_fill`; a control law
run over the episodes; or an effort its kind computed), scores it, keeps the best and the
statistics of all ``n``, without the (slots × n × d) temporaries of the NumPy reference
:func:`agents.sandbox.score_candidates` (profiled: at 1e6 slots those passes took 2.7 s of
a 5.4 s initial selection). Slots are independent, so results do not depend on how they are
shared out among threads.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from mesaopt.agents.response_jit import water_fill
from mesaopt.model.kernel_arrays import (
    CandidateArrays,
    ChosenArrays,
    SandboxArrays,
    check_layout,
)
from mesaopt.model.parallel import parallel_map, row_ranges

__all__ = ["score_candidates"]


#: The fields of :mod:`model.kernel_arrays` these kernels were written for (see
#: :func:`model.kernel_arrays.check_layout`: Numba's cache cannot tell reordered fields apart).
KERNEL_ARRAYS_LAYOUT = "353e5d478d3f"
check_layout(KERNEL_ARRAYS_LAYOUT, __name__)


def score_candidates(
    candidates: CandidateArrays, sandbox: SandboxArrays, chosen: ChosenArrays
) -> tuple[np.ndarray, np.ndarray]:
    """Best of ``n`` candidates for every slot, each played by its own mode.

    The NumPy reference is :func:`agents.sandbox.score_candidates`, which defines every mode
    (exact planner, control law run for the episodes, or an effort given by the candidate's
    kind). Candidate c of slot i is column ``i·n + c`` of the draws. Its measured score is
    ``wᵀ(shown + ε̄)``, expected score ``wᵀshown`` and true value ``vᵀshown``. The chosen
    candidate has the highest measured score (the first one on a tie, as ``np.argmax``).

    Args:
        candidates: The candidates' draws, traits and modes.
        sandbox: The prior, incentive, costs and scores of the principal's sandbox.
        chosen: Receives per slot the chosen objective, carried and shown actions, its index
            and the statistics.

    Returns:
        The smallest and the largest shown action of any candidate, per channel, (d,) each.
    """
    slots = len(chosen.index)
    d = candidates.perceive.shape[1]
    ranges = row_ranges(slots, minimum=64)
    low = np.full((len(ranges), d), np.inf)
    high = np.full((len(ranges), d), -np.inf)
    kernel = _SCORE_SLOTS.get(d, _score_slots)
    parallel_map(
        lambda part: kernel(*ranges[part], candidates, sandbox, chosen, low[part], high[part]),
        range(len(ranges)),
    )
    return low.min(axis=0), high.max(axis=0)


@nb.njit(inline="always", error_model="numpy")
def _score_body(
    lo: int,
    hi: int,
    d: int,
    candidates: CandidateArrays,
    sandbox: SandboxArrays,
    chosen: ChosenArrays,
    low: np.ndarray,
    high: np.ndarray,
) -> None:
    """:func:`score_candidates` for slots ``lo..hi`` with ``d`` channels (inlined below).

    low/high receive their action range.
    """
    draws, noise, perceive = candidates.draws, candidates.noise, candidates.perceive
    mode, gain, episode_row = candidates.mode, candidates.gain, candidates.episode_row
    episodes, given_shown, given_carried = (
        candidates.episodes, candidates.given_shown, candidates.given_carried
    )  # fmt: skip
    n = candidates.n
    prior_mean, prior_scale = sandbox.prior_mean, sandbox.prior_scale
    pay_push, root, s = sandbox.pay_push, sandbox.root, sandbox.substitution
    score_weights, true_values = sandbox.score_weights, sandbox.true_values
    theta_out, action_out, stats = chosen.theta, chosen.action, chosen.stats
    index_out, shown_out = chosen.index, chosen.shown
    n_episodes = episodes.shape[0]
    theta = np.empty(d)
    reward = np.empty(d)
    action = np.empty(d)
    shown = np.empty(d)
    mean_noise = np.empty(d)
    scaled = np.empty(d)
    ranked = np.empty(d)
    mask = np.empty(d, dtype=np.bool_)  # a row copied out: no row views in the loop (see below)
    trues = np.empty(n)
    # The action range in locals, written out once: low and high of the threads are rows of one
    # small array, and writing them per candidate made the two cores fight over a cache line.
    lowest = low.copy()
    highest = high.copy()
    for i in range(lo, hi):
        best_score = -np.inf
        best = -1
        sum_true = 0.0
        max_true = -np.inf
        sum_score = 0.0
        sum_expected = 0.0
        for c in range(n):
            column = i * n + c
            for k in range(d):
                theta[k] = prior_mean[k] + prior_scale * draws[k, column]
                reward[k] = theta[k] + pay_push[k]
                mean_noise[k] = noise[k, column]
            if mode[column] == 0:  # exact planner
                # Copied, not viewed (perceive[column]): each view Numba makes costs an atomic
                # reference-count increment and decrement, which threads contend for.
                for k in range(d):
                    mask[k] = perceive[column, k]
                water_fill(reward, root, s, mask, scaled, ranked, action)
                for k in range(d):
                    shown[k] = action[k]
            elif mode[column] == 1:  # control law from rest over the episodes
                row = episode_row[column]
                for k in range(d):
                    action[k] = 0.0
                    shown[k] = 0.0
                    mean_noise[k] = 0.0
                for e in range(n_episodes):
                    # (K y)_k = root_k((1 − s) root_k y_k + s Σ_l root_l y_l), y = a + ε
                    total = 0.0
                    for k in range(d):
                        shown[k] += action[k]
                        mean_noise[k] += episodes[e, row, k]
                        total += root[k] * (action[k] + episodes[e, row, k])
                    for k in range(d):
                        y = action[k] + episodes[e, row, k]
                        pushed = root[k] * ((1.0 - s) * root[k] * y + s * total)
                        stepped = max(action[k] + gain[column] * (reward[k] - pushed), 0.0)
                        scaled[k] = stepped if perceive[column, k] else 0.0
                    for k in range(d):
                        action[k] = scaled[k]
                for k in range(d):
                    shown[k] /= n_episodes
                    mean_noise[k] /= n_episodes
            else:  # played by its kind outside the kernel
                for k in range(d):
                    shown[k] = given_shown[column, k]
                    action[k] = given_carried[column, k]
            score = 0.0
            expected = 0.0
            true = 0.0
            for k in range(d):
                score += (shown[k] + mean_noise[k]) * score_weights[k]
                expected += shown[k] * score_weights[k]
                true += shown[k] * true_values[k]
                lowest[k] = min(lowest[k], shown[k])
                highest[k] = max(highest[k], shown[k])
            trues[c] = true
            sum_true += true
            max_true = max(max_true, true)
            sum_score += score
            sum_expected += expected
            if best < 0 or score > best_score:
                best = c
                best_score = score
                stats[i, 1] = expected
                stats[i, 2] = true
                index_out[i] = c
                for k in range(d):
                    theta_out[i, k] = theta[k]
                    action_out[i, k] = action[k]
                    shown_out[i, k] = shown[k]
        mean_true = sum_true / n
        spread = 0.0
        for c in range(n):
            # dev * dev, not dev ** 2: compiled they are the same multiply, but in pure Python
            # (NUMBA_DISABLE_JIT=1) ** goes through pow(), which may round differently.
            dev = trues[c] - mean_true
            spread += dev * dev
        stats[i, 0] = best_score
        stats[i, 3] = mean_true
        stats[i, 4] = np.sqrt(spread / n)
        stats[i, 5] = max_true
        stats[i, 6] = sum_score / n
        stats[i, 7] = sum_expected / n
    for k in range(d):
        low[k] = lowest[k]
        high[k] = highest[k]


# One kernel per small channel count, as agents.response_jit._PLAN_ROWS: with d a constant the
# inlined water filling is unrolled, and the compiler drops the reference counts of the scratch
# vectors it is handed (with d at run time they cost an atomic pair per call;
# docs/performance.md). Written out: Numba's on-disk cache keys a function by its name.
@nb.njit(cache=True, nogil=True, error_model="numpy")
def _score_slots(lo, hi, candidates, sandbox, chosen, low, high):
    """:func:`score_candidates` for slots ``lo..hi``, any d (compiled; runs without the GIL)."""
    _score_body(lo, hi, candidates.perceive.shape[1], candidates, sandbox, chosen, low, high)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _score_slots_1(lo, hi, candidates, sandbox, chosen, low, high):
    _score_body(lo, hi, 1, candidates, sandbox, chosen, low, high)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _score_slots_2(lo, hi, candidates, sandbox, chosen, low, high):
    _score_body(lo, hi, 2, candidates, sandbox, chosen, low, high)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _score_slots_3(lo, hi, candidates, sandbox, chosen, low, high):
    _score_body(lo, hi, 3, candidates, sandbox, chosen, low, high)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _score_slots_4(lo, hi, candidates, sandbox, chosen, low, high):
    _score_body(lo, hi, 4, candidates, sandbox, chosen, low, high)


_SCORE_SLOTS = {1: _score_slots_1, 2: _score_slots_2, 3: _score_slots_3, 4: _score_slots_4}
