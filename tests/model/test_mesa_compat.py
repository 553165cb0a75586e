"""Mesa compatibility: the model is built from keyword parameters and runs under mesa.batch_run."""

from __future__ import annotations

import math

import mesa
import pandas as pd

from mesaopt.model.collect import REPORTED
from mesaopt.model.model import MesaOptModel


def test_batch_run_over_keyword_parameters():
    # rng= (one seed per replicate), not the `iterations` Mesa 4 removes
    results = mesa.batch_run(
        MesaOptModel,
        parameters={"network__n_agents": [40, 60], "principals__0__selection__n": 4},
        rng=[1, 2],
        max_steps=5,
        number_processes=1,
        display_progress=False,
    )
    table = pd.DataFrame(results)
    assert len(table) == 4
    assert set(table["network__n_agents"]) == {40, 60}
    assert (table["Step"] == 5).all()
    for name in REPORTED:
        assert name in table.columns
    assert table["value"].notna().all()


def test_datacollector_follows_the_all_row():
    model = MesaOptModel(network__n_agents=30, rng=3)
    model.step()
    model.step()
    frame = model.datacollector.get_model_vars_dataframe()
    assert len(frame) == 2
    row = next(r for r in model.last_steps if r["principal"] == "all")
    assert math.isclose(frame["value"].iloc[-1], row["value"])


def test_agent_sets_hold_every_agent_at_every_scale():
    """Views are created lazily, but every set Mesa exposes is complete, small or large."""
    from mesaopt.agents.optimizer import MesaOptimizer
    from mesaopt.agents.principal import Principal

    for n in (40, 25_000):
        model = MesaOptModel(network__n_agents=n, rng=1)
        optimizers = model.agents_by_type[MesaOptimizer]
        assert len(optimizers) == n
        assert [a.index for a in optimizers] == list(range(n))  # agent-id order
        assert len(model.agents_by_type[Principal]) == len(model.principals) == 2
        assert len(model.agents) == n + 2
        assert model.optimizers is optimizers
        assert model.optimizer(n - 1) is optimizers[n - 1]
    model.step()
    values = model.optimizers.get("value")
    assert len(values) == n and all(math.isfinite(v) for v in values)


def test_mesa_scenario_carries_the_sections_and_rebuilds_the_model():
    from mesa.experimental.scenarios import Scenario as MesaScenario

    model = MesaOptModel(network__n_agents=30, rng=5)
    assert isinstance(model.scenario, MesaScenario)
    assert model.scenario.network.n_agents == 30
    assert model.scenario.principals == model.config.principals
    again = MesaOptModel(scenario=model.scenario)
    assert again.config == model.config
    model.step()
    again.step()
    # same seed, same run (frames: NaN equals NaN there)
    pd.testing.assert_frame_equal(pd.DataFrame(model.last_steps), pd.DataFrame(again.last_steps))


def test_run_for_advances_mesa_time_one_step_per_unit():
    model = MesaOptModel(network__n_agents=30, rng=2)
    model.run_for(4)
    assert model.time == 4 and model.steps == 4
    assert {row["step"] for row in model.last_steps} == {4}


def test_editing_the_mesa_scenario_leaves_the_run_alone():
    model = MesaOptModel(network__n_agents=30, rng=5)
    model.scenario.network.n_agents = 10
    model.scenario.config.run.steps = 1
    assert model.config.network.n_agents == 30 and model.config.run.steps != 1
