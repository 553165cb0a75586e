"""The app's widgets without a browser: sliders that show their value, the page's parameters."""

from __future__ import annotations

import importlib

import ipyvuetify as v
import pytest
import solara
from mesa.visualization.solara_viz import ModelCreator, UserInputs


@pytest.fixture(scope="module")
def app():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MESAOPT_VIZ_AGENTS", "100")  # the module builds its page's model
        yield importlib.import_module("mesaopt.analysis.app")


def test_value_slider_label_follows_the_slider(app) -> None:
    slider = app.ValueSlider("audit rate", 0.02, 0.0, 0.2, 0.01)
    assert slider.is_float_slider and slider.get("value") == 0.02
    changes = []
    _box, rc = solara.render(
        UserInputs({"audit_rate": slider}, on_change=lambda *change: changes.append(change)),
        handle_error=False,
    )
    widget = rc.find(v.Slider).widget
    assert widget.label == "audit rate: 0.02"
    widget.v_model = 0.05
    assert changes == [("audit_rate", 0.05)]  # Mesa's handler still gets the value
    assert rc.find(v.Slider).widget.label == "audit rate: 0.05"
    assert slider.get("value") == 0.05
    rc.close()


def test_sliders_set_the_model_parameters(app) -> None:
    """Mesa's ModelCreator starts from each slider's plain value and follows the sliders."""
    params = {"selection_n": app.ValueSlider("selection n", 16, 1, 256, 1), "seed": 7}
    model_parameters = solara.reactive({})
    _box, rc = solara.render(
        ModelCreator(
            solara.reactive(app.VizModel(n_agents=100)), params, model_parameters=model_parameters
        ),
        handle_error=False,
    )
    assert model_parameters.value == {"seed": 7, "selection_n": 16}
    widget = rc.find(v.Slider).widget
    assert widget.label == "selection n: 16"
    widget.v_model = 64
    assert model_parameters.value == {"seed": 7, "selection_n": 64}
    assert rc.find(v.Slider).widget.label == "selection n: 64"
    rc.close()


def test_page_parameters_are_value_sliders(app) -> None:
    sliders = {k: p for k, p in app.MODEL_PARAMS.items() if isinstance(p, app.Slider)}
    assert set(sliders) == {"selection_n", "capacity_gap", "beta", "audit_rate", "regime_at"}
    assert all(isinstance(p, app.ValueSlider) for p in sliders.values())
    assert app.MODEL_PARAMS["beta"].label == "contract β (all principals): 0.30"
    assert app.MODEL_PARAMS["capacity_gap"].label.endswith(": 0")


def test_the_regime_slider_moves_simultaneous_changes_together(app) -> None:
    from pathlib import Path

    from mesaopt.model.scenario_files import load_scenario

    root = Path(__file__).resolve().parents[2]
    base = load_scenario(root / "scenarios" / "regime_change.toml")  # two changes at step 50
    out = app.scenario_overrides(
        base,
        selection_n=8,
        capacity_gap=0,
        beta=0.3,
        set_beta=False,
        audit_rate=0.0,
        regime_at=80,
        topology="ring",
        n_agents=100,
        seed=1,
    )
    assert out["regimes.0.at"] == out["regimes.1.at"] == 80
