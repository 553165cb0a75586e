"""The kind registry: what each kind declares is what the model does, and a new kind is one class.

The toy kind here is defined in the test folder alone, as a user would add one: a
"half-hearted" planner that plays half its exact best response in the current world.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mesaopt.agents.kinds import (
    KINDS,
    Control,
    Direct,
    OptimizerKind,
    Planning,
    codes_that_can_go_stale,
    kind_names,
    kind_of,
    register_kind,
    unregister_kind,
)
from mesaopt.agents.response import best_response
from mesaopt.model.model import MesaOptModel
from mesaopt.model.scenario_files import load_scenario

SMALL = ["network.n_agents=80", "run.agent_every=1"]


@pytest.fixture
def halfhearted():
    class HalfHearted(OptimizerKind):
        """Plays half of its exact best response to the current world's reward."""

        name = "halfhearted"
        perceives = "the current world's reward"
        carries = ("theta",)
        can_go_stale = ()

        @classmethod
        def replan(cls, planning: Planning, rows: np.ndarray) -> None:
            world = planning.world
            perceive = world.perceives(planning.population.capacity[rows])
            planning.action[rows] = 0.5 * best_response(
                planning.reward[rows], world.cost_matrix, perceive
            )

        @classmethod
        def sandbox_actions(cls, trial, rows):
            half = 0.5 * best_response(
                trial.reward[rows], trial.world.cost_matrix, trial.perceive[rows]
            )
            return half, half

    register_kind(HalfHearted)
    yield HalfHearted
    unregister_kind(HalfHearted.name)


class _Tables:
    def __init__(self) -> None:
        self.parts: dict[str, list] = {}

    def __call__(self, table, rows) -> None:
        self.parts.setdefault(table, []).append(pd.DataFrame(rows))

    def __getitem__(self, table: str) -> pd.DataFrame:
        return pd.concat(self.parts[table], ignore_index=True)


def test_builtin_kinds_declare_codes_and_what_goes_stale():
    assert (Direct.code, Control.code) == (0, 1)
    assert kind_of("control") is Control
    assert list(codes_that_can_go_stale("world_model")) == [Direct.code]
    with pytest.raises(KeyError, match="registered: direct, control"):
        kind_of("learned")
    with pytest.raises(ValueError, match="registered already"):
        register_kind(Direct)
    with pytest.raises(ValueError, match="built in"):
        unregister_kind("direct")


def test_a_new_kind_cannot_claim_the_compiled_kernel_and_codes_never_collide():
    class Claims(OptimizerKind):
        name, perceives, carries, compiled = "claims", "-", (), True

    with pytest.raises(ValueError, match="compiled = False"):
        register_kind(Claims)

    class First(OptimizerKind):
        name, perceives, carries = "first", "-", ()

    class Second(OptimizerKind):
        name, perceives, carries = "second", "-", ()

    register_kind(First)
    register_kind(Second)
    try:
        unregister_kind("first")

        class Third(OptimizerKind):
            name, perceives, carries = "third", "-", ()

        register_kind(Third)
        try:
            assert len({k.code for k in KINDS.values()}) == len(KINDS)
            assert list(kind_names()[[Second.code, Third.code]]) == ["second", "third"]
        finally:
            unregister_kind("third")
    finally:
        unregister_kind("second")
    assert list(KINDS) == ["direct", "control"]


def test_a_kind_added_from_the_test_folder_runs_and_is_recorded(halfhearted):
    tables = _Tables()
    model = MesaOptModel(
        load_scenario(None, [*SMALL, "agents.optimizer='halfhearted'"]), recorder=tables
    )
    assert (model.population.kind == halfhearted.code).all()
    model.run_for(2)
    previous = model.population.action.copy()
    model.step()
    # Its effort is what its replan says, given the reward the step computed.
    pop, world = model.population, model.world
    rows = np.arange(pop.size)
    beta_of = np.array([p.beta for p in model.principals])[pop.principal]
    neighbour = model.adjacency @ previous
    reward = pop.theta + beta_of[:, None] * world.metric + world.peer * neighbour
    expected = 0.5 * best_response(reward, world.cost_matrix, world.perceives(pop.capacity[rows]))
    np.testing.assert_allclose(pop.action, expected, rtol=1e-12, atol=1e-12)
    snapshots = tables["agents"]
    assert set(snapshots["optimizer"]) == {"halfhearted"}
    assert model.optimizer(0).kind == "halfhearted"


def test_a_kind_that_declares_no_stale_world_model_is_never_stale(halfhearted):
    shift = ["regimes.0.at=2"]  # the default scenario's regime change, moved early
    for kind, expect_stale in (("direct", True), ("halfhearted", False)):
        tables = _Tables()
        model = MesaOptModel(
            load_scenario(None, [*SMALL, *shift, f"agents.optimizer='{kind}'"]), recorder=tables
        )
        model.run_for(4)
        steps = tables["steps"].query("principal == 'all' and step >= 2")
        assert (steps["share_stale"] > 0).any() == expect_stale, kind


def test_an_unknown_kind_is_a_one_line_scenario_error():
    from mesaopt.model.errors import ScenarioError

    with pytest.raises(ScenarioError) as info:
        MesaOptModel(load_scenario(None, [*SMALL, "agents.optimizer='learned'"]))
    assert info.value.key == "agents.optimizer"
    assert "registered: direct, control, mixed" in str(info.value)


def test_a_sweep_with_an_unknown_kind_fails_before_writing_anything(tmp_path):
    from mesaopt.analysis.sweep_runner import run_sweep
    from mesaopt.model.errors import ScenarioError

    with pytest.raises(ScenarioError) as info:
        run_sweep(None, tmp_path / "sweep", overrides=[*SMALL, "agents.optimizer='learnd'"])
    assert info.value.key == "agents.optimizer"
    assert not (tmp_path / "sweep").exists()


def test_a_kind_added_from_the_test_folder_is_selected_by_its_sandbox_score(halfhearted):
    """In a pool with direct planners, half-hearted candidates show half the effort, so they win
    half the slots without selection (n = 1) and far fewer with n = 8 (the proxy pays effort;
    sandbox noise lets some through).
    """
    shares = {}
    for n in (1, 8):
        tables = _Tables()
        model = MesaOptModel(
            load_scenario(
                None,
                [
                    "network.n_agents=400",
                    "run.agent_every=1",
                    "agents.optimizer={values=['direct', 'halfhearted']}",
                    "agents.capacity=2",
                    "agents.goals.scale=0",
                    f"principals.0.selection.n={n}",
                    f"principals.1.selection.n={n}",
                ],
            ),
            recorder=tables,
        )
        mine = model.population.kind == halfhearted.code
        shares[n] = mine.mean()
        rows = tables["selections"]
        assert (
            rows["kind"].to_numpy()[np.argsort(rows["agent_id"])]
            == kind_names()[model.population.kind]
        ).all()
        model.step()
        snapshot = tables["agents"].query("step == 1")
        assert set(snapshot["optimizer"]) == (
            {"direct", "halfhearted"} if mine.any() else {"direct"}
        )
    se = np.sqrt(0.25 / 400)
    assert abs(shares[1] - 0.5) < 4 * se
    assert shares[1] - shares[8] > 4 * np.hypot(se, np.sqrt(shares[8] * (1 - shares[8]) / 400))


@pytest.mark.parametrize(
    ("substitution", "channels"),
    [
        (0.2, None),  # a shared effort budget, d = 4
        (0.0, None),  # a diagonal K
        (0.2, "five"),  # the kernel for any number of channels
    ],
)
def test_stale_planners_compiled_plans_equal_the_numpy_definition(
    monkeypatch, substitution, channels, five_channels
):
    """Direct.exact_plans (compiled) against exact_plans_numpy, bit for bit: stale planners of two
    old world models, after two regime changes (cost, then the metric and a channel's level)."""
    captured = []
    real = Direct.replan

    def capture(planning, rows):
        captured.append((planning, np.array(rows)))
        real(planning, rows)

    monkeypatch.setattr(Direct, "replan", capture)
    scenario = load_scenario(
        None,
        [
            "network.n_agents=3000",
            "run.agent_snapshots=off",
            'regimes=[{at=3, channel="gaming", set={cost=2.5}}, '
            '{at=6, channel="quality", set={metric=0.6, level=2}}]',
            # agents retrained in the true world between the changes plan in epoch 1
            'principals.lab.selection.sandbox="world"',
            "principals.lab.selection.every=2",
            "principals.lab.selection.fraction=0.3",
            f"agents.effort_substitution={substitution}",
            *([five_channels] if channels == "five" else []),
        ],
    )
    model = MesaOptModel(scenario)
    model.run_for(8)
    planning, rows = captured[-1]
    pop = planning.population
    stale = rows[(pop.power[rows] == 0) & (pop.epoch[rows] != planning.world.epoch)]
    assert len(np.unique(pop.epoch[stale])) == 2 and len(stale) > 1000
    got = Direct.exact_plans(planning, stale)
    expected = Direct.exact_plans_numpy(planning, stale)
    assert np.array_equal(got, expected)  # the s best_response reads off K; r⁺/c if diagonal
    assert (got > 0).any() and (got == 0).any()
    assert Direct.exact_plans(planning, stale[:0]).shape == (0, planning.world.d)
    into = np.full_like(planning.action, -1.0)  # written straight into the agents' rows
    assert Direct.exact_plans(planning, stale, into=into) is into
    assert np.array_equal(into[stale], expected)
    assert (np.delete(into, stale, axis=0) == -1.0).all()
