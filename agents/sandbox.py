"""The principal's sandbox: best-of-n search over candidate mesa-objectives.

This is how a slot is filled; when slots are filled and what the winner carries into
deployment is :mod:`model.selection`. For each agent slot to (re)fill, the principal draws ``n``
candidate objectives θ ~ N(prior_mean, prior_scale²·I), deploys each in a side-effect-free
sandbox (true mechanics of the current world, the slot's own capacity, no network), watches
``eval_samples`` noisy episodes, scores each candidate by its training signal on the *measured*
mean outcome, and keeps the best. log2 n is the optimization power in bits. The simulator also
records what the principal never sees: every candidate's expected true value, which is what the
regressional Goodhart measure (winner's curse, shrinkage) is computed from. With Gaussian
objectives and Gaussian noise this is the classical best-of-n result:
E[true of chosen] − E[true] = σ_θ²/√(σ_θ² + σ_ε²)·E[max of n N(0,1)]
(see ``analysis.theory.regressional_selection_gain``).

:func:`select_best_of_n` draws the random numbers and scores the candidates with the compiled
:func:`agents.sandbox_jit.score_candidates`; :func:`score_candidates` here is its NumPy
reference (the same definition, with (slots × n × d) temporaries), which the tests hold it to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mesaopt.agents.response import best_response
from mesaopt.agents.sandbox_jit import score_candidates as score_candidates_jit
from mesaopt.model.channels import World, substitution_cost_matrix
from mesaopt.model.kernel_arrays import CandidateArrays, ChosenArrays, SandboxArrays
from mesaopt.model.noise import NOISE_CODES, draw_in_blocks, standard_t


@dataclass(frozen=True)
class SelectionResult:
    """What a round of best-of-n selection produced, one row per filled slot.

    Attributes:
        theta: Chosen objectives, (M, d).
        action: The chosen candidates' sandbox actions, (M, d).
        chosen_score: Measured score of the chosen candidate (mean over episodes), (M,).
        chosen_expected_score: Its noise-free expected score, (M,).
        chosen_true: Its expected true value to the principal, (M,).
        candidates_mean_true: Mean expected true value over the n candidates, (M,).
        candidates_sd_true: Their standard deviation (ddof=0), (M,).
        candidates_max_true: The best true value among the candidates, (M,).
        candidates_mean_score: Mean measured score over the candidates, (M,).
        candidates_mean_expected_score: Mean expected score over the candidates, (M,).
        action_low: Smallest sandbox action seen per channel, (d,).
        action_high: Largest sandbox action seen per channel, (d,).
    """

    theta: np.ndarray
    action: np.ndarray
    chosen_score: np.ndarray
    chosen_expected_score: np.ndarray
    chosen_true: np.ndarray
    candidates_mean_true: np.ndarray
    candidates_sd_true: np.ndarray
    candidates_max_true: np.ndarray
    candidates_mean_score: np.ndarray
    candidates_mean_expected_score: np.ndarray
    action_low: np.ndarray
    action_high: np.ndarray


def mean_episode_noise(
    world: World, rng: np.random.Generator, candidates: int, episodes: int
) -> np.ndarray:
    """Draw the mean of ``episodes`` iid output-noise draws, per channel and candidate.

    Gaussian channels draw the mean directly (scale/√episodes), and so do Laplace channels: a sum
    of k Laplace(0, 1) draws is the difference of two Gamma(k, 1) draws, since each Laplace is a
    difference of two Exp(1). Student-t channels average their draws. Candidates are drawn in
    blocks (:func:`model.channels.draw_in_blocks`).

    Args:
        world: The world whose noise distributions apply.
        rng: The run's generator.
        candidates: Number of candidates.
        episodes: Number of episodes averaged.

    Returns:
        Mean noise, (d, candidates).
    """

    def fill(generator: np.random.Generator, out: np.ndarray) -> None:
        m = out.shape[1]
        for k in range(world.d):
            scale = world.noise_scale[k]
            code = world.noise_dist[k]
            if code == NOISE_CODES["normal"]:
                generator.standard_normal(out=out[k])
                out[k] *= scale / np.sqrt(episodes)
            elif code == NOISE_CODES["laplace"]:
                total = generator.standard_gamma(episodes, m)
                total -= generator.standard_gamma(episodes, m)
                out[k] = total * (scale / episodes)
            else:
                draws = standard_t(generator, world.noise_df[k], (m, episodes))
                # Column by column: NumPy's mean over a short inner axis costs ~8× these adds
                # (and for fewer than 8 episodes it adds in this order, so the result is equal).
                total = draws[:, 0].copy()
                for e in range(1, episodes):
                    total += draws[:, e]
                out[k] = total / episodes * scale

    out = np.empty((world.d, candidates))
    draw_in_blocks(rng, out, fill)
    return out


def _standard_normal(generator: np.random.Generator, out: np.ndarray) -> None:
    for row in out:
        generator.standard_normal(out=row)


def select_best_of_n(
    *,
    world: World,
    capacity: np.ndarray,
    prior_mean: np.ndarray,
    prior_scale: float,
    n: int,
    eval_samples: int,
    beta: float,
    score_weights: np.ndarray,
    true_values: np.ndarray,
    rng: np.random.Generator,
    chunk: int = 8192,
) -> SelectionResult:
    """Fill ``len(capacity)`` agent slots by best-of-n selection in the sandbox.

    Random numbers, per chunk of slots: the candidates' standard normal objective draws, then
    their mean sandbox noise (both :func:`model.channels.draw_in_blocks`); the rest is
    :func:`agents.sandbox_jit.score_candidates` (reference: :func:`score_candidates`).

    Args:
        world: Current true mechanics (the sandbox runs the real world).
        capacity: Capacity of each slot's mesa-optimizer, (M,).
        prior_mean: Centre of the candidate objectives, (d,).
        prior_scale: Standard deviation of candidate objectives per channel.
        n: Number of candidates per slot (log2 n bits of selection).
        eval_samples: Noisy sandbox episodes per candidate.
        beta: Contract slope the candidates are paid under in the sandbox.
        score_weights: The training signal applied to the measured mean outcome, (d,):
            the metric m when training on the metric, the value belief v̂ otherwise.
        true_values: The principal's true values, (d,), for the recorded true value.
        rng: The run's generator (every draw comes from it).
        chunk: Slots processed at once (bounds memory to chunk·n·d floats).

    Returns:
        The chosen objectives, their sandbox actions and the selection statistics.
    """
    m_slots = len(capacity)
    d = world.d
    chosen = ChosenArrays.empty(m_slots, d, len(_STATS))
    low = np.full(d, np.inf)
    high = np.full(d, -np.inf)
    sandbox = SandboxArrays(
        prior_mean=np.asarray(prior_mean, dtype=float),
        prior_scale=float(prior_scale),
        pay_push=beta * world.metric,
        root=np.sqrt(world.costs),
        substitution=float(world.substitution),
        score_weights=np.asarray(score_weights, dtype=float),
        true_values=np.asarray(true_values, dtype=float),
    )
    for start in range(0, m_slots, chunk):
        stop = min(start + chunk, m_slots)
        count = (stop - start) * n
        draws = np.empty((d, count))
        draw_in_blocks(rng, draws, _standard_normal)
        noise = mean_episode_noise(world, rng, count, eval_samples)
        chunk_low, chunk_high = score_candidates_jit(
            CandidateArrays(
                draws=draws, noise=noise, perceive=world.perceives(capacity[start:stop]), n=int(n)
            ),
            sandbox,
            ChosenArrays(*(out[start:stop] for out in chosen)),
        )
        low = np.minimum(low, chunk_low)
        high = np.maximum(high, chunk_high)
    stats = chosen.stats
    fields = {name: np.ascontiguousarray(stats[:, q]) for q, name in enumerate(_STATS)}
    return SelectionResult(
        theta=chosen.theta, action=chosen.action, action_low=low, action_high=high, **fields
    )


def score_candidates(
    candidates: CandidateArrays, sandbox: SandboxArrays
) -> tuple[ChosenArrays, np.ndarray, np.ndarray]:
    """Best of ``n`` candidates for every slot: the reference of the compiled kernel.

    Defines :func:`agents.sandbox_jit.score_candidates`. Candidate c of slot i (column
    ``i·n + c`` of the draws) has the objective ``θ_ic = μ + σ·z_ic`` (``prior_mean``,
    ``prior_scale``) and plays the exact best response (:func:`agents.response.best_response`)
    ``a_ic = argmax_{a ≥ 0, perceived} (θ_ic + βm)ᵀa − ½aᵀKa`` in the sandbox, with K the
    shared-budget matrix of ``root`` and ``substitution``. Its measured score is
    ``S_ic = wᵀ(a_ic + ε̄_ic)`` (ε̄ the mean noise of the evaluation episodes), its expected score
    ``wᵀa_ic`` and its true value ``T_ic = vᵀa_ic``. The slot keeps ``c* = argmax_c S_ic`` (the
    first on a tie): best-of-n selection, whose winner's curse ``S_ic* − wᵀa_ic*`` (the chosen
    candidate's lucky noise) is regressional Goodhart (Manheim & Garrabrant 2018, "Categorizing
    Variants of Goodhart's Law"; Gao, Schulman & Hilton 2023).

    Args:
        candidates: The candidates' draws and the slots' perception masks.
        sandbox: The prior, incentive, costs and scores of the principal's sandbox.

    Returns:
        The chosen objectives, actions and statistics (columns as
        :class:`model.kernel_arrays.ChosenArrays`), and the smallest and largest action of any
        candidate per channel, (d,) each.
    """
    slots, d = candidates.perceive.shape
    n = candidates.n
    theta = (sandbox.prior_mean + sandbox.prior_scale * candidates.draws.T).reshape(slots, n, d)
    cost = substitution_cost_matrix(sandbox.root**2, sandbox.substitution)
    perceive = np.repeat(candidates.perceive, n, axis=0)
    action = best_response((theta + sandbox.pay_push).reshape(-1, d), cost, perceive)
    action = action.reshape(slots, n, d)
    score = (action + candidates.noise.T.reshape(slots, n, d)) @ sandbox.score_weights
    expected = action @ sandbox.score_weights
    true = action @ sandbox.true_values
    best = np.argmax(score, axis=1)
    rows = np.arange(slots)
    stats = np.column_stack(
        [
            score[rows, best],
            expected[rows, best],
            true[rows, best],
            true.mean(axis=1),
            true.std(axis=1),
            true.max(axis=1),
            score.mean(axis=1),
            expected.mean(axis=1),
        ]
    )
    chosen = ChosenArrays(theta[rows, best], action[rows, best], stats)
    return chosen, action.min(axis=(0, 1)), action.max(axis=(0, 1))


#: Columns of the statistics the kernel returns, in its order.
_STATS = (
    "chosen_score",
    "chosen_expected_score",
    "chosen_true",
    "candidates_mean_true",
    "candidates_sd_true",
    "candidates_max_true",
    "candidates_mean_score",
    "candidates_mean_expected_score",
)
