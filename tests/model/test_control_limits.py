"""Tests for model/control_limits.py: a control law's stability limit on its network, both sides."""

from __future__ import annotations

import numpy as np
import pytest

from mesaopt import run_simulation
from mesaopt.model.control_limits import control_limit, extreme_eigenvalues
from mesaopt.model.finite import NonFiniteError
from mesaopt.model.model import MesaOptModel
from mesaopt.model.network import build_network
from mesaopt.model.scenario_files import validate

# One channel (cost 1, peer 0.2) on a 10 x 10 torus (λ(G) from -4 to 4): the lone law is stable
# for γ < 2, but the alternating mode of the bipartite torus is |1 − γ(c + 4δ)| = |1 − 1.8γ|,
# so on the network the limit is 2 / 1.8 = 1.111.
TORUS = {
    "run": {"steps": 300, "seed": 1, "agent_every": 0},
    "network": {"topology": "grid", "n_agents": 100, "torus": True},
    "channels": [
        {
            "name": "output",
            "value": 1.0,
            "metric": 1.0,
            "peer": 0.2,
            "noise": {"dist": "normal", "scale": 0.1},
        }
    ],
    "principals": [
        {"name": "lab", "contract": {"alpha": 0.0, "beta": 0.5}, "selection": {"every": 0}}
    ],
}


def _torus(gain: float, steps: int = 300) -> dict:
    data = {key: value for key, value in TORUS.items()}
    data["run"] = {**TORUS["run"], "steps": steps}
    data["agents"] = {"optimizer": "control", "gain": gain}
    return data


def test_the_limit_is_the_closed_form_on_a_torus():
    model = MesaOptModel(validate(_torus(1.0)))
    low, high = extreme_eigenvalues(model.adjacency)
    assert (low, high) == pytest.approx((-4.0, 4.0))
    world = model.world
    limit = control_limit(world.cost_matrix, world.peer, np.array([True]), low, high)
    assert limit == pytest.approx(2 / 1.8)
    # without peer effects the limit is the lone law's 2 / c
    assert control_limit(world.cost_matrix, np.zeros(1), np.array([True]), low, high) == 2.0


def test_eigenvalues_of_a_large_graph_match_the_dense_ones():
    network = build_network(
        type("Net", (), {"topology": "watts_strogatz", "n_agents": 2_500, "k": 6, "p": 0.1})(),
        np.random.default_rng(3),
    )
    dense = np.linalg.eigvalsh(network.adjacency.toarray())
    assert extreme_eigenvalues(network.adjacency) == pytest.approx(
        (dense.min(), dense.max()), rel=1e-6
    )


def test_arpack_is_bounded_on_a_clustered_spectrum_and_the_hint_tolerance_converges():
    """A long ring's extreme eigenvalues (2 cos(2πj/n)) cluster near ±2: at 1e-8 ARPACK fails
    in its bounded restarts instead of running for minutes; at the hint's 1e-3 it converges
    (Ritz values lie inside the spectrum, so within 1e-3 of ±2 from the inside)."""
    from scipy.sparse.linalg import ArpackNoConvergence

    from mesaopt.model.graphs import watts_strogatz

    ring = watts_strogatz(20_000, 2, 0.0, np.random.default_rng(0))
    with pytest.raises(ArpackNoConvergence):
        extreme_eigenvalues(ring, maxiter=30)
    low, high = extreme_eigenvalues(ring, tol=1e-3, maxiter=100)
    assert -2.0 <= low <= -2.0 + 2e-3 and 2.0 - 2e-3 <= high <= 2.0


def _peaks(gain: float, steps: int = 300) -> np.ndarray:
    model = MesaOptModel(validate(_torus(gain)))
    peaks = []
    for _ in range(steps):
        model.step()
        peaks.append(float(np.abs(model.population.action).max()))
    return np.array(peaks)


def test_gains_on_either_side_of_the_limit_settle_or_oscillate():
    """Below the limit (1.111) the efforts settle where a slow law's do; just above it (1.2)
    they keep swinging between the torus's two halves; far above it (1.5) they grow without
    bound. Every one of these gains is stable for a lone law (γc < 2)."""
    settled = _peaks(0.5)[-100:].max()
    assert _peaks(1.05)[-100:].max() == pytest.approx(settled, rel=0.1)
    assert _peaks(1.2)[-100:].min() > 3 * settled  # a cycle held by the bound a >= 0
    diverging = _peaks(1.5, steps=200)
    assert diverging[-1] > 1e9 * diverging[20]


def test_a_run_stopped_by_a_diverging_law_names_it(tmp_path):
    scenario = validate(_torus(1.5, steps=3_000))
    with pytest.raises(NonFiniteError) as caught:
        run_simulation(scenario, tmp_path / "run", progress=False)
    line = caught.value.one_line()
    assert "100 of 100 control agents have gains at or above their stability limit" in line
    assert "γ = 1.5 ≥ 2/λ_max(K − λΔ) = 1.111" in line and "\n" not in line


def test_a_run_that_stops_for_another_reason_names_no_control_law(tmp_path, monkeypatch):
    from mesaopt.model import measurement

    real = measurement.aggregate_steps

    def aggregate(**kwargs):
        rows = real(**kwargs)
        if kwargs["step"] == 2:
            rows[0]["value"] = float("inf")
        return rows

    monkeypatch.setattr(measurement, "aggregate_steps", aggregate)
    with pytest.raises(NonFiniteError) as caught:
        run_simulation(validate(_torus(0.5, steps=3)), tmp_path / "run", progress=False)
    assert caught.value.cause is None
