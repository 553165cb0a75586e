"""The app without a browser: sliders, named page and tabs, and `run.py viz` stopping cleanly."""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import ipyvuetify as v
import numpy as np
import pandas as pd
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (Linux /proc), grandchildren included."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_viz_stops_its_solara_server_on_a_signal(tmp_path: Path, signum: int) -> None:
    """`kill PID` (or Ctrl-C) on `run.py viz` leaves no Solara server serving (issue 15)."""
    root = Path(__file__).resolve().parents[2]
    port = _free_port()
    env = dict(os.environ, SOLARA_TELEMETRY_MIXPANEL_ENABLE="False", MESAOPT_VIZ_AGENTS="100")
    log = tmp_path / "viz.log"
    with log.open("w") as out:
        viz = subprocess.Popen(
            [sys.executable, "run.py", "viz", "scenarios/heavy_tails.toml", "--port", str(port)],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while not _serving(port):
            assert viz.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        children = _descendants(viz.pid)
        assert children  # the Solara server runs as a child process
        viz.send_signal(signum)
        assert viz.wait(timeout=15) == 0
        deadline = time.monotonic() + 5
        while _port_open(port) or any(_alive(pid) for pid in children):
            assert time.monotonic() < deadline, f"still serving or alive: {children}"
            time.sleep(0.2)
        assert "heavy_tails" in log.read_text()  # the command names the scenario it serves
    finally:
        if viz.poll() is None:
            viz.kill()
        for pid in children | _descendants(viz.pid):  # never leave a server behind
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_page_names_its_scenario_and_its_tabs(app, monkeypatch) -> None:
    """Not Mesa's "Page 0": named tabs, the scenario's name and description on the page."""
    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("MESAOPT_VIZ_SCENARIO", str(root / "scenarios" / "heavy_tails.toml"))
    name, description = app.scenario_title()
    assert name == "heavy_tails" and description.startswith("Extremal Goodhart")
    _box, rc = solara.render(app.make_page(app.VizModel(n_agents=100)), handle_error=False)
    labels = [tab.widget.children for tab in rc.find(v.Tab)]
    assert labels == [[label] for label, _ in app.PAGES]
    assert labels[1] == ["Losses, misalignment and welfare"]
    texts = [w.widget.children for w in rc.find(v.Html)]
    assert ["Scenario: heavy_tails"] in texts
    assert any(t and isinstance(t[0], str) and "Extremal Goodhart" in t[0] for t in texts)
    rc.close()
    monkeypatch.delenv("MESAOPT_VIZ_SCENARIO")
    assert app.scenario_title()[0] == "default scenario"


def test_second_tab_plots_more_than_principal_loss(app) -> None:
    """Mesa loss, the loss parts, the Goodhart measures and welfare vs the first best."""
    model = app.VizModel(n_agents=100, topology="ring")
    model.step()
    model.step()
    history = pd.DataFrame(model.history)
    everyone = history[history["principal"] == "all"]

    def lines(fig):
        return {line.get_label(): line.get_ydata() for line in fig.axes[0].get_lines()}

    losses = lines(app.loss_figure(model))
    for principal in model.principals:
        rows = history[history["principal"] == principal.name]
        assert np.array_equal(losses[f"{principal.name}: mesa"], rows["mesa_loss"])
        assert np.array_equal(losses[f"{principal.name}: principal"], rows["principal_loss"])
    goodhart = lines(app.goodhart_figure(model))
    for column, label in app.GOODHART_COLUMNS.items():
        assert np.array_equal(goodhart[label], everyone[column].dropna())
    parts = lines(app.loss_parts_figure(model))
    for part, (label, _colour) in app.LOSS_PARTS.items():
        assert np.array_equal(parts[label], everyone[f"loss_{part}"])
    assert np.array_equal(parts["total"], everyone["principal_loss"])
    welfare = lines(app.welfare_figure(model))
    assert np.array_equal(welfare["welfare"], everyone["welfare"])
    assert np.array_equal(welfare["planner's first best"], everyone["welfare_planner"])
