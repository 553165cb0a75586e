"""The principal's sandbox: best-of-n search over whole candidate mesa-optimizers.

This is how a slot is filled; when slots are filled and what the winner carries into
deployment is :mod:`model.selection`. For each agent slot to (re)fill, the principal draws ``n``
candidates from its pool (:mod:`agents.candidates`): each an objective θ ~ N(prior_mean,
prior_scale²·I) together with a kind, power, capacity and control gain. It runs each candidate
*with its own kind* for ``eval_samples`` noisy episodes in a side-effect-free sandbox with no
network, scores it by the training signal on the *measured* mean outcome, and keeps the best.
log2 n is the base optimizer's power in bits.

The sandbox (:class:`Sandbox`) is the principal's model of the world by default
(``selection.sandbox = "model"``): the channel parameters of its world epoch (its last federated
update), and only the channels within its capacity exist there. With ``"world"`` it is the true
current mechanics with each candidate's own capacity (training in the real environment). A
principal that has missed a regime change therefore selects agents fitted to the old world, and
one that cannot perceive a gaming channel cannot select for or against gaming.

The simulator also records what the principal never sees: every candidate's expected true value
(of what it showed in the sandbox), from which the regressional Goodhart measure (winner's curse,
shrinkage) is computed. With Gaussian objectives, Gaussian noise and exact planners this is the
classical best-of-n result E[true of chosen] − E[true] = σ_θ²/√(σ_θ² + σ_ε²)·E[max of n N(0,1)]
(``analysis.theory.regressional_selection_gain``).

:func:`select_best_of_n` draws the random numbers, lets kinds the compiled kernel does not know
play their candidates (:meth:`agents.kinds.OptimizerKind.sandbox_actions`), and scores every
candidate with the compiled :func:`agents.sandbox_jit.score_candidates`; :func:`score_candidates`
here is its NumPy reference, which the tests hold it to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mesaopt.agents.candidates import CandidateTraits, Pool, draw_candidates
from mesaopt.agents.kinds import KINDS, Control, Direct, SandboxTrial
from mesaopt.agents.response import best_response, control_episodes
from mesaopt.agents.sandbox_jit import score_candidates as score_candidates_jit
from mesaopt.model.channels import World, substitution_cost_matrix
from mesaopt.model.kernel_arrays import CandidateArrays, ChosenArrays, SandboxArrays
from mesaopt.model.noise import NOISE_CODES, draw_in_blocks, standard_t

#: How the compiled kernel plays a candidate (``CandidateArrays.mode``).
EXACT, CONTROL, GIVEN = 0, 1, 2


@dataclass(frozen=True)
class Sandbox:
    """Where a principal runs its candidates: a world, and which of its channels exist.

    Attributes:
        world: The channel parameters the sandbox runs (the principal's world model with
            ``selection.sandbox = "model"``, the true current world with ``"world"``).
        capacity: With ``"model"``, the principal's capacity: channels above it do not exist in
            the sandbox, whatever a candidate could perceive. None with ``"world"``.
        beta: The contract slope the candidates are paid under.
        score_weights: The training signal applied to the measured mean outcome, (d,).
        true_values: The principal's true values, (d,), for the recorded true value.
        eval_samples: Noisy episodes per candidate.
        model_noise: Scoring noise of best-of-k planners (``agents.model_noise``).
    """

    world: World
    capacity: int | None
    beta: float
    score_weights: np.ndarray
    true_values: np.ndarray
    eval_samples: int
    model_noise: float

    def perceive(self, capacity: np.ndarray) -> np.ndarray:
        """Channels candidates of ``capacity`` can act on in this sandbox, (C, d) bool."""
        if self.capacity is not None:
            capacity = np.minimum(capacity, self.capacity)
        return self.world.perceives(capacity)


@dataclass(frozen=True)
class SelectionResult:
    """What a round of best-of-n selection produced, one row per filled slot.

    Attributes:
        theta: Chosen objectives as the sandbox saw them (what selection put there), (M, d).
        own_theta: The objective each pursues once deployed: ``theta``, except that a
            deceptive candidate drops the part selection imprinted, (M, d).
        action: The effort each carries into deployment, (M, d).
        shown: Its mean effort over the sandbox episodes (what the principal scored), (M, d).
        traits: The chosen candidates' kind, power, capacity, gain and deception.
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
    own_theta: np.ndarray
    action: np.ndarray
    shown: np.ndarray
    traits: CandidateTraits
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
    sandbox: Sandbox,
    pool: Pool,
    slots: int,
    prior_mean: np.ndarray,
    prior_scale: float,
    imprinted: np.ndarray,
    n: int,
    rng: np.random.Generator,
    chunk: int = 8192,
) -> SelectionResult:
    """Fill ``slots`` agent slots by best-of-n selection of whole optimizers in ``sandbox``.

    Random numbers, per chunk of slots, in this order: the candidates' standard normal
    objective draws; their traits (:func:`agents.candidates.draw_candidates`); the mean
    sandbox noise of the candidates that are not control laws; the per-episode noise of the
    control laws (one draw of ``eval_samples × controls`` rows, episode by episode); whatever a
    kind the compiled kernel does not play draws in its ``sandbox_actions``. The rest is
    :func:`agents.sandbox_jit.score_candidates` (reference: :func:`score_candidates`).

    Args:
        sandbox: The principal's sandbox.
        pool: The pool candidates are drawn from.
        slots: Number of slots to fill.
        prior_mean: Centre of the candidate objectives, (d,).
        prior_scale: Standard deviation of candidate objectives per channel.
        imprinted: The part of ``prior_mean`` that training imprints (``imprint · signal``),
            which a deceptive candidate drops once deployed, (d,).
        n: Number of candidates per slot (log2 n bits of selection).
        rng: The run's generator (every draw comes from it).
        chunk: Slots processed at once (bounds memory to chunk·n·d floats).

    Returns:
        The chosen optimizers, their sandbox behaviour and the selection statistics.
    """
    world = sandbox.world
    d = world.d
    chosen = ChosenArrays.empty(slots, d, len(_STATS))
    traits: list[CandidateTraits] = []
    low = np.full(d, np.inf)
    high = np.full(d, -np.inf)
    arrays = SandboxArrays(
        prior_mean=np.asarray(prior_mean, dtype=float),
        prior_scale=float(prior_scale),
        pay_push=sandbox.beta * world.metric,
        root=np.sqrt(world.costs),
        substitution=float(world.substitution),
        score_weights=np.asarray(sandbox.score_weights, dtype=float),
        true_values=np.asarray(sandbox.true_values, dtype=float),
    )
    for start in range(0, slots, chunk):
        stop = min(start + chunk, slots)
        count = (stop - start) * n
        draws = np.empty((d, count))
        draw_in_blocks(rng, draws, _standard_normal)
        drawn = draw_candidates(pool, count, rng)
        candidates = play_candidates(sandbox, arrays, drawn, draws, n, rng)
        chunk_low, chunk_high = score_candidates_jit(
            candidates, arrays, ChosenArrays(*(out[start:stop] for out in chosen))
        )
        low = np.minimum(low, chunk_low)
        high = np.maximum(high, chunk_high)
        rows = np.arange(stop - start) * n + chosen.index[start:stop]
        traits.append(drawn.take(rows))
    stats = chosen.stats
    fields = {name: np.ascontiguousarray(stats[:, q]) for q, name in enumerate(_STATS)}
    kept = (
        CandidateTraits(
            *(
                np.concatenate([getattr(t, f) for t in traits])
                for f in CandidateTraits.__dataclass_fields__
            )
        )
        if traits
        else draw_candidates(pool, 0, rng)
    )
    own = chosen.theta - np.where(kept.deceptive[:, None], np.asarray(imprinted, float), 0.0)
    return SelectionResult(
        theta=chosen.theta,
        own_theta=own,
        action=chosen.action,
        shown=chosen.shown,
        traits=kept,
        action_low=low,
        action_high=high,
        **fields,
    )


def play_candidates(
    sandbox: Sandbox,
    arrays: SandboxArrays,
    drawn: CandidateTraits,
    draws: np.ndarray,
    n: int,
    rng: np.random.Generator,
) -> CandidateArrays:
    """Prepare a chunk of candidates for the kernel: modes, sandbox noise, kinds' own plays.

    Direct planners of power ``exact`` (mode 0) and control laws (mode 1) are played by the
    compiled kernel; every other candidate (best-of-k planners, registered kinds) is played
    here by its kind's :meth:`~agents.kinds.OptimizerKind.sandbox_actions` (mode 2). A control
    law feels each episode's own noise, so only the other candidates get a mean episode noise
    (:func:`mean_episode_noise`; the control laws' column stays 0, the kernel averages their
    episodes instead).

    Args:
        sandbox: The sandbox.
        arrays: The sandbox's kernel arrays (prior, incentive, costs, scores).
        drawn: The candidates' traits, (C,) each.
        draws: Their standard normal objective draws, (d, C).
        n: Candidates per slot.
        rng: The run's generator.

    Returns:
        The kernel's candidate arrays.
    """
    world = sandbox.world
    d, count = draws.shape
    episodes_per = sandbox.eval_samples
    perceive = sandbox.perceive(drawn.capacity)
    mode = np.full(count, GIVEN, dtype=np.int8)
    mode[(drawn.kind == Direct.code) & (drawn.power == 0)] = EXACT
    mode[drawn.kind == Control.code] = CONTROL
    control = np.flatnonzero(mode == CONTROL)
    noise = np.zeros((d, count))
    if len(control) < count:
        noise[:, mode != CONTROL] = mean_episode_noise(
            world, rng, count - len(control), episodes_per
        )
    episode_row = np.full(count, -1, dtype=np.int64)
    episode_row[control] = np.arange(len(control))
    # One draw for every episode of every control law (in blocks that can go to two threads),
    # episode e taking rows e·controls .. (e + 1)·controls − 1.
    episodes = world.sample_noise(rng, episodes_per * len(control))
    episodes = episodes.reshape(episodes_per, len(control), d)
    other = np.flatnonzero(mode == GIVEN)
    shown = carried = np.zeros((1, d))
    if len(other):
        theta = arrays.prior_mean + arrays.prior_scale * draws[:, other].T
        trial = SandboxTrial(
            world=world,
            reward=theta + arrays.pay_push,
            perceive=perceive[other],
            power=drawn.power[other],
            gain=drawn.gain[other],
            episodes=sandbox.eval_samples,
            model_noise=sandbox.model_noise,
            rng=rng,
        )
        shown = np.zeros((count, d))
        carried = np.zeros((count, d))
        codes = drawn.kind[other]
        for kind in KINDS.values():  # registration order
            mine = np.flatnonzero(codes == kind.code)
            if len(mine):
                s_, c_ = kind.sandbox_actions(trial, mine)
                shown[other[mine]] = s_
                carried[other[mine]] = c_
    return CandidateArrays(
        draws=draws,
        noise=noise,
        perceive=np.ascontiguousarray(perceive),
        n=int(n),
        mode=mode,
        gain=np.ascontiguousarray(drawn.gain, dtype=float),
        episode_row=episode_row,
        episodes=np.ascontiguousarray(episodes),
        given_shown=shown,
        given_carried=carried,
    )


def score_candidates(
    candidates: CandidateArrays, sandbox: SandboxArrays
) -> tuple[ChosenArrays, np.ndarray, np.ndarray]:
    """Best of ``n`` candidates for every slot: the reference of the compiled kernel.

    Defines :func:`agents.sandbox_jit.score_candidates`. Candidate c of slot i (column
    ``i·n + c`` of the draws) has the objective ``θ_ic = μ + σ·z_ic`` (``prior_mean``,
    ``prior_scale``) and the marginal reward ``r_ic = θ_ic + βm`` in the sandbox, with K the
    shared-budget matrix of ``root`` and ``substitution``. It is played by its mode:

    * exact planner: ``a = argmax_{a ≥ 0, perceived} rᵀa − ½aᵀKa``
      (:func:`agents.response.best_response`) in every episode; shown = carried = a;
    * control law (:meth:`agents.kinds.Control.sandbox_actions`): from a_0 = 0,
      ``a_{e+1} = max(0, a_e + γ(r − K(a_e + ε_e)))`` on the perceived channels for the E
      episodes; shown = mean of a_0..a_{E−1}, carried = a_E, and its mean noise is the mean of
      its own episodes' noise;
    * any other: shown and carried as its kind played them.

    Its measured score is ``S_ic = wᵀ(shown_ic + ε̄_ic)``, its expected score ``wᵀshown_ic`` and
    its true value ``T_ic = vᵀshown_ic``. The slot keeps ``c* = argmax_c S_ic`` (the first on a
    tie): best-of-n selection, whose winner's curse ``S_ic* − wᵀshown_ic*`` (the chosen
    candidate's lucky noise) is regressional Goodhart (Manheim & Garrabrant 2018, "Categorizing
    Variants of Goodhart's Law"; Gao, Schulman & Hilton 2023).

    Args:
        candidates: The candidates' draws, traits and modes.
        sandbox: The prior, incentive, costs and scores of the principal's sandbox.

    Returns:
        The chosen objectives, carried and shown actions, indices and statistics (columns as
        :class:`model.kernel_arrays.ChosenArrays`), and the smallest and largest shown action
        of any candidate per channel, (d,) each.
    """
    count, d = candidates.perceive.shape
    n = candidates.n
    slots = count // n
    theta = sandbox.prior_mean + sandbox.prior_scale * candidates.draws.T
    reward = theta + sandbox.pay_push
    cost = substitution_cost_matrix(sandbox.root**2, sandbox.substitution)
    noise = candidates.noise.T.copy()
    shown = np.zeros((count, d))
    carried = np.zeros((count, d))
    exact = candidates.mode == EXACT
    shown[exact] = carried[exact] = best_response(reward[exact], cost, candidates.perceive[exact])
    control = np.flatnonzero(candidates.mode == CONTROL)
    if len(control):
        episodes = candidates.episodes[:, candidates.episode_row[control]]
        shown[control], carried[control] = control_episodes(
            reward[control],
            cost,
            candidates.perceive[control],
            candidates.gain[control],
            episodes,
        )
        noise[control] = episodes.mean(axis=0)
    given = candidates.mode == GIVEN
    if given.any():
        shown[given] = candidates.given_shown[given]
        carried[given] = candidates.given_carried[given]
    score = ((shown + noise) @ sandbox.score_weights).reshape(slots, n)
    expected = (shown @ sandbox.score_weights).reshape(slots, n)
    true = (shown @ sandbox.true_values).reshape(slots, n)
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
    pick = rows * n + best
    chosen = ChosenArrays(theta[pick], carried[pick], stats, best.astype(np.int64), shown[pick])
    return chosen, shown.min(axis=0), shown.max(axis=0)


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
