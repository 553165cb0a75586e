"""The principal-loss decomposition (model/decomposition.py): exact Shapley parts, in the model too.

Oracles: a brute-force Shapley value over all 5! orders of the players, with every counterfactual
plan solved row by row; the null-player property (an attribute equal to the benchmark's has a
zero part); efficiency (the parts sum to the principal loss); and, through the model, causal
Goodhart after a regime change, an aligned agent's zero loss, welfare under gaming and the
sampled ``steps`` means against the full ``agents`` snapshot.
"""

from __future__ import annotations

from itertools import permutations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mesaopt.agents.response import best_response
from mesaopt.model import decomposition as dec
from mesaopt.model.channels import substitution_cost_matrix
from mesaopt.model.decomposition import (
    CAPACITY,
    GOALS,
    WORLD_MODEL,
    Attributes,
    decompose,
    fixed_sample,
    shapley,
    surplus,
)
from mesaopt.model.measures import CATEGORIES, FLAGS, PARTS, primary_category
from mesaopt.model.model import MesaOptModel
from mesaopt.model.scenario_files import load_scenario

D = 4


def _random_agents(n: int, seed: int, **same_as_benchmark: bool) -> Attributes:
    """Random agents in a two-epoch world; ``goals=True`` etc. give that attribute the benchmark's.

    About 60 % of the rows have a world model of the old epoch; the rest plan in the current one.
    """
    rng = np.random.default_rng(seed)
    now = substitution_cost_matrix(rng.uniform(0.5, 2.0, D), 0.3)
    old = substitution_cost_matrix(rng.uniform(0.5, 2.0, D), 0.3)
    values = rng.normal(size=(n, D))
    values[:, 2] = -np.abs(values[:, 2])  # a channel the principal punishes
    model = (rng.random(n) < 0.6).astype(np.int64)
    reward = rng.normal(0.5, 1.0, (n, D))
    model_reward = np.where(model[:, None] == 1, rng.normal(0.5, 1.0, (n, D)), reward)
    perceive = rng.random((n, D)) < 0.7
    model_perceive = np.where(model[:, None] == 1, rng.random((n, D)) < 0.7, perceive)
    if same_as_benchmark.get("goals"):
        reward, model_reward = values.copy(), values.copy()
    if same_as_benchmark.get("capacity"):
        perceive = model_perceive = np.ones((n, D), dtype=bool)
    if same_as_benchmark.get("world_model"):
        model = np.zeros(n, dtype=np.int64)
        model_reward, model_perceive = reward.copy(), perceive.copy()
    costs = np.stack([now, old])
    exact = np.empty((n, D))
    for e in (0, 1):
        rows = model == e
        exact[rows] = best_response(model_reward[rows], costs[e], model_perceive[rows])
    action = exact if same_as_benchmark.get("kind") else np.abs(rng.normal(0.5, 0.5, (n, D)))
    noise = np.zeros((n, D)) if same_as_benchmark.get("noise") else rng.standard_t(4, (n, D))
    return Attributes(
        values=values,
        reward=reward,
        model_reward=model_reward,
        perceive=perceive,
        model_perceive=model_perceive,
        model=model,
        costs=costs,
        action=action,
        noise=noise,
    )


def _row_plan(x: Attributes, i: int, coalition: int) -> np.ndarray:
    """The counterfactual plan of row i for a coalition of the planning players, on its own."""
    world = WORLD_MODEL & coalition
    if GOALS & coalition:
        reward = x.model_reward[i] if world else x.reward[i]
    else:
        reward = x.values[i]
    if CAPACITY & coalition:
        perceive = x.model_perceive[i] if world else x.perceive[i]
    else:
        perceive = np.ones(D, dtype=bool)
    cost = x.costs[x.model[i]] if world else x.costs[0]
    return best_response(reward[None], cost, perceive[None])[0]


def _brute_force(x: Attributes, i: int) -> np.ndarray:
    """Shapley parts of row i: average marginal contributions over all 120 orders of the players."""
    k_now = x.costs[0]
    v = x.values[i]

    def s(a: np.ndarray) -> float:
        return float(v @ a - 0.5 * a @ k_now @ a)

    worth = {c: s(_row_plan(x, i, c)) for c in range(8)}
    kind = worth[7] - s(x.action[i])
    noise = -float(v @ x.noise[i])

    def loss(players: frozenset) -> float:
        bits = zip("gcw", (GOALS, CAPACITY, WORLD_MODEL), strict=True)
        coalition = sum(bit for p, bit in bits if p in players)
        return worth[0] - worth[coalition] + kind * ("k" in players) + noise * ("e" in players)

    total = dict.fromkeys("gcwke", 0.0)
    orders = list(permutations("gcwke"))
    for order in orders:
        joined: frozenset = frozenset()
        for player in order:
            total[player] += loss(joined | {player}) - loss(joined)
            joined = joined | {player}
    return np.array([total[p] / len(orders) for p in "gcwke"])


def test_parts_equal_a_brute_force_shapley_over_all_orders_and_sum_to_the_loss():
    x = _random_agents(30, seed=1)
    parts = decompose(x)
    assert parts.shape == (len(PARTS), 30)
    for i in range(30):
        np.testing.assert_allclose(parts[:, i], _brute_force(x, i), rtol=1e-10, atol=1e-10)
    benchmark = surplus(x.values, x.costs[0], best_response(x.values, x.costs[0], np.ones((30, D))))
    loss = benchmark - (surplus(x.values, x.costs[0], x.action) + np.sum(x.values * x.noise, 1))
    np.testing.assert_allclose(parts.sum(axis=0), loss, rtol=1e-12, atol=1e-12)
    assert (np.abs(parts) > 1e-3).all(axis=1).sum() >= 3  # the random game moves most parts


def test_grouped_benchmark_plans_and_given_plans_change_nothing():
    x = _random_agents(60, seed=2)
    plain = decompose(x)
    exact = np.empty_like(x.action)
    for e in (0, 1):
        rows = x.model == e
        exact[rows] = best_response(x.model_reward[rows], x.costs[e], x.model_perceive[rows])
    # Rows sharing values, masks and world model may share their benchmark-goal plans.
    shared = Attributes(
        **{
            **x.__dict__,
            "values": np.repeat(x.values[:6], 10, axis=0),
            "perceive": np.repeat(x.perceive[:6], 10, axis=0),
            "model_perceive": np.repeat(x.model_perceive[:6], 10, axis=0),
            "model": np.repeat(x.model[:6], 10),
            "reward": np.repeat(x.reward[:6], 10, axis=0),
            "model_reward": np.repeat(x.model_reward[:6], 10, axis=0),
        }
    )
    grouped = Attributes(**{**shared.__dict__, "group": np.repeat(np.arange(6), 10)})
    np.testing.assert_allclose(decompose(grouped), decompose(shared), rtol=0, atol=1e-12)
    given = Attributes(**{**x.__dict__, "plan": exact, "has_plan": np.arange(60) % 2 == 0})
    np.testing.assert_allclose(decompose(given), plain, rtol=0, atol=1e-12)


@pytest.mark.parametrize("attribute", ["goals", "capacity", "world_model", "kind", "noise"])
def test_a_part_is_zero_when_its_attribute_is_the_benchmarks(attribute):
    x = _random_agents(200, seed=3, **{attribute: True})
    parts = decompose(x)
    p = PARTS.index(attribute)
    assert np.abs(parts[p]).max() < 1e-12, attribute
    others = np.delete(parts, p, axis=0)
    assert (np.abs(others).max(axis=1) > 1e-3).all()  # the other attributes still cost something
    if attribute == "world_model":
        assert (parts[p] == 0).all()  # exactly: its coalitions are the others'


def test_shapley_of_known_games():
    # Additive game: each player gets its own term. Pure synergy (unanimity): equal shares.
    terms = np.array([1.0, -2.0, 0.5])
    additive = np.array([[sum(terms[i] for i in range(3) if c >> i & 1)] for c in range(8)])
    np.testing.assert_allclose(shapley(additive)[:, 0], terms)
    unanimity = np.zeros((8, 1))
    unanimity[7] = 3.0
    np.testing.assert_allclose(shapley(unanimity)[:, 0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="2\\^k"):
        shapley(np.zeros((6, 1)))


def test_primary_category_is_the_largest_cause_and_noise_names_none():
    parts = np.array(
        [
            [2.0, 0.1, 0.1, 0.1, 0.0, -1.0, 0.1],  # goals
            [0.1, 2.0, 2.0, 0.1, 0.0, -1.0, 0.2],  # capacity
            [0.1, 0.1, 0.1, 2.0, 0.0, -1.0, 0.3],  # world model
            [0.1, 0.1, 0.1, 0.1, 1e-12, -1.0, 0.4],  # kind
            [9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 0.0],  # noise (never a cause)
        ]
    )
    agent = np.array([1, 3, 0, 1, 1, 1, 1])
    principal = np.array([1, 1, 1, 1, 1, 1, 1])
    codes = primary_category(parts, agent, principal, np.ones(7))
    names = [CATEGORIES[c] for c in codes]
    assert names == ["trans", "super", "sub", "stale", "aligned", "aligned", "kind"]


def test_the_fixed_sample_is_stratified_and_seeded():
    principal_of = np.repeat([0, 1, 2], [9000, 900, 40])
    one = fixed_sample(np.random.default_rng(5), principal_of, 3, 4096)
    two = fixed_sample(np.random.default_rng(5), principal_of, 3, 4096)
    np.testing.assert_array_equal(one, two)
    counts = np.bincount(principal_of[one], minlength=3)
    assert counts[0] == round(4096 * 9000 / 9940) and counts[1] == round(4096 * 900 / 9940)
    assert counts[2] == 32  # the floor for a small principal
    assert len(np.unique(one)) == len(one) and (np.diff(one) > 0).all()
    np.testing.assert_array_equal(fixed_sample(None, principal_of[:100], 3, 4096), np.arange(100))


def test_spawning_the_sample_generator_leaves_the_run_stream_alone():
    """NumPy: Generator.spawn derives a child SeedSequence; the parent's stream is untouched."""
    spawned, untouched = np.random.default_rng(42), np.random.default_rng(42)
    spawned.spawn(1)
    np.testing.assert_array_equal(spawned.random(5), untouched.random(5))


# ------------------------------------------------------------------------------ in the model


@pytest.mark.parametrize(
    ("scenario", "overrides", "d"),
    [
        (None, ["agents.power={values=['exact', 4], weights=[2, 1]}"], 4),
        (None, ["agents.effort_substitution=0", "agents.optimizer='direct'"], 4),
        ("regime_change", [], 2),  # the kernel compiled for two channels
        (None, ["five channels"], 5),  # the kernel for any number of channels
    ],
)
def test_the_compiled_decomposition_equals_its_numpy_definition(
    monkeypatch, scenario, overrides, d, five_channels
):
    """decomposition_jit.decompose_agents against decompose(agent_attributes(...)), in a run."""
    import mesaopt.model.measurement as measurement
    from mesaopt.model.decomposition import agent_attributes
    from mesaopt.model.decomposition_jit import decompose_agents

    compared = []

    def both(planning, rows, values, noise, has_world_model, plans_exactly):
        got = decompose_agents(planning, rows, values, noise, has_world_model, plans_exactly)
        of = planning.population.principal[rows]
        attributes = agent_attributes(
            planning, rows, values[of], noise[rows], has_world_model, plans_exactly
        )
        # Same plans and sums in another order (water filling per row vs vectorised NumPy,
        # Shapley terms f(T) − f(T ∪ i) vs (f(∅) − f(T ∪ i)) − (f(∅) − f(T))): rounding only.
        np.testing.assert_allclose(got, decompose(attributes), rtol=1e-12, atol=1e-11)
        world = PARTS.index("world_model")
        assert (got[world, attributes.model == 0] == 0).all()
        compared.append(int((attributes.model != 0).sum()))
        return got

    monkeypatch.setattr(measurement, "decompose_agents", both)
    overrides = [five_channels if o == "five channels" else o for o in overrides]
    model, _ = run(
        ["network.n_agents=300", "regimes.0.at=3", "run.agent_every=2", *overrides],
        steps=5,
        path=scenario and SCENARIOS / f"{scenario}.toml",
    )
    assert model.d == d
    assert len(compared) == 5 and max(compared) > 50  # stale rows were compared


SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


class Tables:
    def __init__(self) -> None:
        self.parts: dict[str, list[pd.DataFrame]] = {}

    def __call__(self, table, rows) -> None:
        self.parts.setdefault(table, []).append(pd.DataFrame(rows))

    def __getitem__(self, table: str) -> pd.DataFrame:
        return pd.concat(self.parts[table], ignore_index=True)


def run(overrides, steps, path=None):
    tables = Tables()
    model = MesaOptModel(load_scenario(path, list(overrides)), recorder=tables)
    model.run_for(steps)
    return model, tables


def _mean_and_se(x: pd.Series) -> tuple[float, float]:
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))


def test_after_an_unannounced_change_stale_planners_world_model_part_is_causal_goodhart():
    _, tables = run(
        [
            "network.n_agents=400",
            "agents.optimizer='direct'",
            "run.agent_every=1",
            "regimes.0.at=4",
            "regimes.0.set={cost=0.3, metric=1.0}",
        ],
        steps=6,
    )
    agents = tables["agents"]
    after = agents[agents["step"] >= 4]
    stale, fresh = after[after["stale"]], after[~after["stale"]]
    assert len(stale) > 300
    np.testing.assert_array_equal(stale["loss_world_model"], stale["goodhart_causal"])
    assert (fresh["loss_world_model"] == 0).all() and (fresh["goodhart_causal"] == 0).all()
    assert (agents.loc[agents["step"] < 4, "loss_world_model"] == 0).all()
    mean, se = _mean_and_se(stale.loc[stale["step"] == 4, "loss_world_model"])  # SE over agents
    assert mean > 4 * se, (mean, se)
    # Efficiency in the model: the parts add up to the principal loss, row by row.
    total = agents[[f"loss_{p}" for p in PARTS]].sum(axis=1)
    np.testing.assert_allclose(total, agents["principal_loss"], rtol=1e-9, atol=1e-9)
    steps = tables["steps"].query("principal == 'all'").set_index("step")
    assert steps.loc[5, "goodhart_causal"] > 0
    assert steps.loc[5, "n_stale"] > 0 and steps.loc[3, "n_stale"] == 0


def test_an_aligned_exact_agent_with_full_capacity_and_no_noise_loses_nothing():
    overrides = [
        "network.n_agents=200",
        "agents.optimizer='direct'",
        "agents.capacity=5",
        "channels.0.peer=0",
        "principals.0.contract={alpha=0.0, beta=0.0}",
        "principals.1.contract={alpha=0.0, beta=0.0}",
        "run.agent_every=1",
    ]
    overrides += [f"channels.{k}.noise.scale=0" for k in range(4)]
    model = MesaOptModel(load_scenario(None, overrides), recorder=(tables := Tables()))
    pop = model.population
    values = np.stack([p.true_values for p in model.principals])
    pop.theta[:] = values[pop.principal]  # goals = the principal's true values
    model.step()
    agents = tables["agents"]
    for column in ["principal_loss", *(f"loss_{p}" for p in PARTS)]:
        assert agents[column].abs().max() < 1e-9, column
    assert set(agents["category"]) == {"aligned"}
    # Flags compare with the principal, not the benchmark: capacity 5 flags every agent super
    # (its principals see less), yet that costs nothing here: flags are not causes.
    assert agents["is_super"].all() and not agents["is_trans"].any()
    steps = tables["steps"].query("principal == 'all'").iloc[0]
    assert steps["n_aligned"] == 200 and steps["principal_loss_aligned"] == pytest.approx(0)


def _welfare(overrides: list[str]) -> np.ndarray:
    _, tables = run(["network.n_agents=400", *overrides], steps=20)
    return tables["steps"].query("principal == 'lab'")["welfare"].to_numpy()


def test_gaming_lowers_welfare():
    """Paid on a channel its principal's values punish, an agent games; welfare must fall.

    The runs differ only in the gaming channel's metric weight (the lab, which cannot perceive
    the channel, designs the same contract either way; its agents' selected goals follow the
    metric). The SE is that of the mean over steps of the paired difference. Counting the
    agents' goals as social value (the old definition) hides much of that loss: the goals that
    selection imprinted reward the gaming itself.
    """
    gaming = ["agents.capacity=2"]
    paid, unpaid = _welfare(gaming), _welfare([*gaming, "channels.2.metric=0"])
    diff = paid - unpaid
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    assert diff.mean() < -4 * se, diff
    goals = ["metrics.welfare_counts_agent_goals=true"]
    counted = _welfare([*gaming, *goals]) - _welfare([*gaming, "channels.2.metric=0", *goals])
    assert counted.mean() > diff.mean() + 4 * se, (counted.mean(), diff.mean())


def test_welfare_counts_agent_goals_only_when_asked():
    base = ["network.n_agents=200", "run.agent_every=1"]
    _, off = run(base, steps=3)
    _, on = run([*base, "metrics.welfare_counts_agent_goals=true"], steps=3)
    a, b = off["agents"], on["agents"]
    np.testing.assert_allclose(b["welfare"], a["welfare"] + a["agent_goal_payoff"], atol=1e-12)
    np.testing.assert_allclose(
        a["welfare"],
        a["value"] + a["private_payoff"] - a["agent_goal_payoff"] + a["externality_received"],
        atol=1e-9,
    )
    np.testing.assert_allclose(a["profit"] + a["utility"], a["welfare"] + a["agent_goal_payoff"])
    pd.testing.assert_series_equal(a["value"], b["value"])  # welfare feeds nothing back


@pytest.fixture(scope="module")
def large():
    """More agents than the sample: steps means from the sample, snapshots of every agent."""
    return run(
        [
            "network.n_agents=6000",
            "run.agent_snapshots='on'",
            "run.agent_every=2",
            "regimes.0.at=2",
        ],
        steps=4,
    )


def test_sampled_step_means_agree_with_the_full_snapshot_within_their_se(large):
    _, tables = large
    steps = tables["steps"].set_index(["step", "principal"])
    agents = tables["agents"]
    assert 4096 <= steps.xs("all", level="principal")["n_decomposed"].iloc[0] < 4200
    groups = [(key, group) for key, group in agents.groupby(["step", "principal"])]
    groups += [((step, "all"), group) for step, group in agents.groupby("step")]
    checked = 0
    for (step, principal), group in groups:
        row = steps.loc[(step, principal)]
        assert row["n_decomposed"] < row["n_agents"] == len(group)
        for part in PARTS:
            se = row[f"loss_{part}_se"]
            assert se > 0, (step, principal, part)
            z = (row[f"loss_{part}"] - group[f"loss_{part}"].mean()) / se
            assert abs(z) < 4, (step, principal, part, z)
            checked += 1
    assert checked == 2 * 3 * len(PARTS)  # two snapshots, two principals and all, five parts


def test_the_sample_does_not_move_the_run_stream(large, monkeypatch):
    _, sampled = large
    monkeypatch.setattr(dec, "DECOMPOSITION_SAMPLE", 10**9)
    import mesaopt.model.measurement as measurement

    monkeypatch.setattr(measurement, "DECOMPOSITION_SAMPLE", 10**9)
    _, census = run(
        [
            "network.n_agents=6000",
            "run.agent_snapshots='on'",
            "run.agent_every=2",
            "regimes.0.at=2",
        ],
        steps=4,
    )
    for column in ("value", "proxy", "principal_loss", "welfare", "goodhart_causal"):
        pd.testing.assert_series_equal(sampled["steps"][column], census["steps"][column])
    pd.testing.assert_frame_equal(sampled["agents"], census["agents"])
    everyone = census["steps"].query("principal == 'all'")
    assert (everyone["n_decomposed"] == 6000).all() and (everyone["loss_goals_se"] == 0).all()


def test_losses_per_flag_and_per_primary_category_match_the_snapshot():
    _, tables = run(["network.n_agents=300", "run.agent_every=1"], steps=3)
    agents, steps = tables["agents"], tables["steps"].set_index(["step", "principal"])
    for (step, principal), group in agents.groupby(["step", "principal"]):
        row = steps.loc[(step, principal)]
        for flag in FLAGS:
            flagged = group[group[f"is_{flag}"]]
            assert row[f"flagged_{flag}"] == len(flagged)
            expected = flagged["principal_loss"].mean() if len(flagged) else 0.0
            assert row[f"principal_loss_flagged_{flag}"] == pytest.approx(expected, abs=1e-9)
        for category in CATEGORIES:
            members = group[group["category"] == category]
            assert row[f"n_{category}"] == len(members)
            expected = members["mesa_loss"].mean() if len(members) else 0.0
            assert row[f"mesa_loss_{category}"] == pytest.approx(expected, abs=1e-9)
    written = tables["steps"].drop(columns=["alpha", "beta"]).filter(regex="^(?!belief_)")
    assert (
        not written.select_dtypes("number")
        # Documented NaNs: no selection this step; the price of anarchy where welfare <= 0.
        .drop(columns=["goodhart_regressional", "selection_shrinkage", "price_of_anarchy"])
        .isna()
        .any()
        .any()
    )


def test_the_benchmark_table_is_remembered_only_for_the_same_inputs(monkeypatch):
    """decompose_agents' table of benchmark plans, served from memory, equals a fresh one; a
    regime change (another K, another level) is a new entry, not a stale one."""
    from mesaopt.model import decomposition_jit

    model, _ = run(["network.n_agents=300", "regimes.0.at=3"], steps=4)
    worlds = [model.world, model.worlds[0]]
    values = np.stack([p.true_values for p in model.principals])
    present = np.arange(2 * 3 * 2)  # every (principal, capacity < 3, world model) code
    monkeypatch.setattr(decomposition_jit, "_TABLES", {})
    first = decomposition_jit._benchmark_table(values, present, 3, worlds)
    again = decomposition_jit._benchmark_table(values, present, 3, worlds)
    assert again is first
    monkeypatch.setattr(decomposition_jit, "_TABLES", {})
    assert np.array_equal(decomposition_jit._benchmark_table(values, present, 3, worlds), first)
    before = decomposition_jit._benchmark_table(values, present, 3, worlds[::-1])
    assert len(decomposition_jit._TABLES) == 2 and not np.array_equal(before, first)
