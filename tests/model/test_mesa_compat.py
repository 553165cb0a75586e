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
