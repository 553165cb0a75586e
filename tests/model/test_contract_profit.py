"""The designed LEN contract maximises the principal's realized profit in the simulation.

When the principal's model is right — it perceives every channel, knows the values, its agents
have no private goal noise (``goals.scale = 0``, ``selection.n = 1``, ``prior_scale = 0``: every
agent has objective ḡ), they are exact direct planners, and there are no network effects — its
expected profit Π(β) (agents.contract.design_len_contract) is the model's mean realized profit,
so the designed contract must beat fixed slopes on both sides of it (Holmström & Milgrom 1987,
1991; with limited liability, Laffont & Martimort 2002, ch. 3), and the agents' mean realized
utility must be the certainty equivalent the principal designed for.

Standard errors: realized profit per agent and step is ``v̂ᵀa − α − βmᵀa + (v − βm)ᵀε``; with
identical agents only the output noise ε varies, independently across agents and steps, so the
SE of a run's mean is ``sd / √(N·T)`` over its N·T agent-steps. The designed and the fixed-slope
runs share their seed, so they draw the same ε (common random numbers): the per-agent-step
profit difference is ``Δ + (β' − β*)mᵀε``, independent across agent-steps, and the SE of the mean
gap is the sample sd of those differences over √(N·T) — about 0.001 here, against an expected
gap ½·curvature·0.2² of 0.02–0.03. Gaps must exceed 4 such SE; model-vs-theory agreement must
lie within 4 SE.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mesaopt.model.errors import ScenarioError
from mesaopt.model.model import MesaOptModel
from mesaopt.model.scenario_files import load_scenario, validate

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"

AGENTS = 1000
STEPS = 10


def scenario(contract: dict[str, Any], goals: dict[str, float], seed: int = 1) -> dict[str, Any]:
    """Two substitutable channels, both perceived and valued, a right model, no network effects."""
    return {
        "run": {"steps": STEPS, "seed": seed, "agent_every": 0},
        "network": {"topology": "ring", "n_agents": AGENTS, "k": 2},
        "channels": [
            {"name": "x", "value": 1.0, "metric": 1.0, "cost": 1.0, "noise": {"scale": 0.5}},
            {"name": "y", "value": 0.6, "metric": 0.3, "cost": 1.5, "noise": {"scale": 0.5}},
        ],
        "principals": [
            {
                "name": "p",
                "capacity": 0,
                "train_on": "metric",
                "contract": contract,
                "selection": {
                    "n": 1,
                    "every": 0,
                    "fraction": 0.0,
                    "eval_samples": 1,
                    "prior_scale": 0.0,
                    "imprint": 0.0,
                },
            }
        ],
        "agents": {
            "capacity": 0,
            "optimizer": "direct",
            "power": "exact",
            "risk_aversion": 2.0,
            "effort_substitution": 0.3,
            "goals": {"mean": goals, "scale": 0.0},
        },
    }


def run(data: dict[str, Any]) -> tuple[MesaOptModel, np.ndarray, np.ndarray]:
    """Run STEPS steps; return the model and every agent-step's realized profit and utility."""
    model = MesaOptModel(validate(copy.deepcopy(data), "<test_contract_profit>"))
    profits, utilities = [], []
    for _ in range(STEPS):
        model.run_for(1)
        profits.append(model.last_agent_metrics["profit"].copy())
        utilities.append(model.last_agent_metrics["utility"].copy())
        (row,) = [r for r in model.last_steps if r["principal"] == "p"]
        # The steps table reports the same mean (its principal row).
        assert row["profit"] == pytest.approx(profits[-1].mean(), rel=1e-9, abs=1e-12)
    return model, np.concatenate(profits), np.concatenate(utilities)


def mean_se(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(x.size))


CASES = {
    # Participation binds: α = R − CE₀(β), β* = v̂ᵀK⁻¹m / (mᵀK⁻¹m + ρσ_M²).
    "participation": ({"alpha": "participation", "beta": "optimal", "reservation": 0.5}, {}),
    # Limited liability with intrinsically motivated agents: α = 0, participation slack (rent),
    # β maximises v̂ᵀa − βmᵀa over β ≥ 0, an interior optimum here.
    "limited_liability": (
        {"alpha": "participation", "beta": "optimal", "limited_liability": True},
        {"x": 0.3, "y": 0.4},
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_designed_contract_beats_fixed_slopes_on_both_sides(case):
    contract, goals = CASES[case]
    designed, profit, utility = run(scenario(contract, goals))
    p = designed.principals[0]
    design = p.contract_design
    assert design is not None
    assert design.beta > 0.25  # both fixed slopes below are admissible (β ≥ 0)
    if case == "limited_liability":
        assert design.alpha == 0.0 and design.rent > 0.05  # slack: agents earn a rent
    else:
        assert design.rent == pytest.approx(0.0, abs=1e-12)
    best, best_se = mean_se(profit)
    # Model vs theory: realized mean profit and utility are what the principal expected.
    assert abs(best - design.expected_profit) < 4 * best_se
    u, u_se = mean_se(utility)
    assert abs(u - design.certainty_equivalent) < 4 * u_se
    for shift in (-0.2, 0.2):
        fixed = contract | {"beta": round(design.beta + shift, 12)}
        other, other_profit, _ = run(scenario(fixed, goals))
        assert other.principals[0].beta == pytest.approx(design.beta + shift)
        gap, gap_se = mean_se(profit - other_profit)  # paired by agent and step (docstring)
        assert gap > 4 * gap_se, (case, shift, gap, gap_se)
        # The gap is the one the principal's model predicts, ½(mᵀK⁻¹m + ρσ²)·0.2² under
        # participation, within its SE.
        expected_gap = design.expected_profit - other.principals[0].contract_design.expected_profit
        assert abs(gap - expected_gap) < 4 * gap_se


def test_alpha_changes_are_contract_events():
    # Fixed β, α from participation; selection then moves ḡ from the prior centre to the mean
    # of what was selected (prior_scale > 0), so the principal redesigns α: an events row.
    data = scenario({"alpha": "participation", "beta": 0.5}, {"x": 0.3})
    data["principals"][0]["selection"]["prior_scale"] = 0.5
    rows: list[dict[str, Any]] = []

    def recorder(table: str, batch: Any) -> None:
        if table == "events" and isinstance(batch, list):
            rows.extend(batch)

    model = MesaOptModel(validate(data, "<test_contract_profit>"), recorder=recorder)
    events = [e for e in rows if e["kind"] == "contract"]
    assert {e["field"] for e in events} == {"alpha"}
    (event,) = events
    assert event["new"] == model.principals[0].alpha != event["old"]


@pytest.mark.parametrize(
    ("override", "key", "message"),
    [
        ("alpha=nan", "alpha", "finite"),
        ("alpha=inf", "alpha", "finite"),
        ('alpha="all"', "alpha", "'participation'"),
        ("beta=nan", "beta", "finite"),
        ("reservation=nan", "reservation", "finite"),
        ("reservation=-inf", "reservation", "finite"),
        ('limited_liability="maybe"', "limited_liability", "boolean"),
    ],
)
def test_bad_contract_keys_are_refused(override, key, message):
    with pytest.raises(ScenarioError) as info:
        load_scenario(None, [f"principals.0.contract.{override}"])
    assert info.value.key == f"principals.0.contract.{key}"
    assert message in info.value.message


@pytest.mark.parametrize("key", ["alpha", "beta"])
def test_limited_liability_refuses_negative_fixed_terms(key):
    overrides = [
        "principals.0.contract.limited_liability=true",
        f"principals.0.contract.{key}=-0.1",
    ]
    with pytest.raises(ScenarioError) as info:
        load_scenario(None, overrides)
    assert info.value.key == f"principals.0.contract.{key}"
    assert "limited_liability" in info.value.message
    # Zero is allowed, and so is any value without limited liability.
    load_scenario(None, [overrides[0], f"principals.0.contract.{key}=0"])
    load_scenario(None, [f"principals.0.contract.{key}=-0.1"])


def test_schema_defaults_are_participation_and_optimal():
    contract = validate(scenario({}, {}), "<test>").principals[0].contract
    assert (contract.alpha, contract.beta) == ("participation", "optimal")
    assert (contract.reservation, contract.limited_liability) == (0.0, False)


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_scenarios_load_and_design(path):
    """Every shipped scenario loads and builds; print what each "optimal" principal designs.

    Run with ``-s`` to see, per principal with ``beta = "optimal"``: the contract as shipped
    (``alpha`` as the file sets it) and with ``alpha = "participation"``.
    """
    small = ["network.n_agents=324", "run.steps=0"]  # 18², so that grids stay square
    config = load_scenario(path, small)
    optimal = [j for j, p in enumerate(config.principals) if p.contract.beta == "optimal"]
    model = MesaOptModel(config)
    participation = [f"principals.{j}.contract.alpha=participation" for j in optimal]
    designed = MesaOptModel(load_scenario(path, small + participation))
    for j in optimal:
        shipped, own = model.principals[j], designed.principals[j]
        assert np.isfinite([shipped.alpha, shipped.beta, own.alpha, own.beta]).all()
        assert own.contract_design.rent == pytest.approx(0.0, abs=1e-9)
        print(
            f"{path.name} {own.name}: as shipped alpha={shipped.alpha:.4f} "
            f"beta={shipped.beta:.4f}; participation alpha={own.alpha:.4f} beta={own.beta:.4f}"
        )
