"""Unit tests of the principal's contract methods (agents/principal.py).

The principal designs under its own model: the channels it perceives, its belief v̂, its world
model's metric, costs and noise, its belief ḡ (agents.contract.design_len_contract; Holmström &
Milgrom 1987, 1991). These tests build a Principal on a bare Mesa model and check what it hands
to the kernel and what it keeps fixed.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import mesa
import numpy as np
import pytest

from mesaopt.agents.contract import design_len_contract
from mesaopt.agents.principal import Principal
from mesaopt.analysis.theory import hm87_beta
from mesaopt.model.channels import world_from_scenario
from mesaopt.model.noise import metric_noise_variance
from mesaopt.model.scenario_files import validate

RHO = 1.5
INTRINSIC = np.zeros(2)


def principal(
    contract: dict[str, Any], *, section: dict[str, Any] | None = None, **channel_overrides: Any
) -> Principal:
    """A capacity-1 principal over output (level 0) and a gaming channel it cannot see (level 2).

    ``section`` adds keys to the principal's scenario section (``train_on``, ``selection``).
    """
    gaming = {"name": "gaming", "value": -1.0, "metric": 1.0, "cost": 0.5, "level": 2}
    gaming |= channel_overrides
    data = {
        "network": {"topology": "ring", "n_agents": 10, "k": 2},
        "channels": [
            {"name": "output", "value": 1.0, "metric": 1.0, "cost": 2.0, "noise": {"scale": 0.5}},
            gaming,
        ],
        "principals": [{"name": "p", "capacity": 1, "contract": contract} | (section or {})],
        "agents": {"risk_aversion": RHO},
    }
    scenario = validate(data, "<test_principal>")
    world = world_from_scenario(scenario)
    return Principal(mesa.Model(), 0, scenario.principals[0], world.value.copy(), world, INTRINSIC)


def test_designs_over_its_own_model_only():
    lab = principal({})
    assert lab.perceived.tolist() == [True, False]
    design = lab.design_contract(RHO)
    # HM87 on the output channel alone (imprint · m on output is ḡ; α absorbs it).
    assert design.beta == pytest.approx(hm87_beta(RHO, 2.0, 0.25), rel=1e-12)
    assert (lab.alpha, lab.beta) == (design.alpha, design.beta)
    assert lab.contract_design is design
    assert design.rent == pytest.approx(0.0, abs=1e-12)
    # The unseen channel's noise and value do not enter its design.
    noisy = principal({}, noise={"scale": 10.0}, value=-50.0, cost=0.1)
    assert noisy.true_values[1] == -50.0
    assert noisy.design_contract(RHO) == principal({}).design_contract(RHO)


def test_hands_its_beliefs_to_the_kernel():
    lab = principal({"reservation": 0.4, "limited_liability": True})
    lab.mean_objective = np.array([0.8, 3.0])
    lab.value_belief = np.array([0.9, 0.0])
    world = lab.world_model
    want = design_len_contract(
        lab.value_belief,
        lab.mean_objective,
        world.metric,
        world.cost_matrix,
        RHO,
        metric_noise_variance(world.metric, world.noise_var, lab.perceived),
        lab.perceived,
        reservation=0.4,
        limited_liability=True,
    )
    assert lab.design_contract(RHO) == want


def test_mean_objective_moves_alpha_not_beta():
    lab = principal({})
    first = lab.design_contract(RHO)
    lab.mean_objective = lab.mean_objective + np.array([0.7, 0.0])
    second = lab.design_contract(RHO)
    assert second.beta == first.beta
    assert second.alpha < first.alpha  # a keener agent accepts less fixed pay


@pytest.mark.parametrize(
    ("contract", "fixed"),
    [
        ({"alpha": 0.25, "beta": 0.3}, ("alpha", "beta")),
        ({"alpha": 0.25}, ("alpha",)),
        ({"beta": 0.3}, ("beta",)),
    ],
)
def test_fixed_terms_stay_fixed(contract, fixed):
    lab = principal(contract)
    assert all(getattr(lab, key) == contract[key] for key in fixed)  # before any design
    lab.mean_objective = np.array([0.5, 0.0])
    design = lab.design_contract(RHO)
    for key in fixed:
        assert getattr(design, key) == getattr(lab, key) == contract[key]
    if "alpha" not in fixed:  # α from participation: the agents' expected CE is R
        assert design.rent == pytest.approx(0.0, abs=1e-12)


def test_designed_terms_start_at_zero_and_a_world_update_redesigns():
    lab = principal({})
    assert (lab.alpha, lab.beta, lab.contract_design) == (0.0, 0.0, None)
    before = lab.design_contract(RHO)
    # A federated update refits v̂ and refreshes its world model; the next design follows it.
    outputs = np.array([[1.0, 0.0], [2.0, 1.0]])
    lab.refit_values(outputs, 0.5 * outputs, lab.world_model)
    after = lab.design_contract(RHO)
    assert after.beta == pytest.approx(0.5 * before.beta, rel=1e-12)  # β* is linear in v̂
    assert math.isfinite(after.alpha)


# ------------------------------------------------------------------ beliefs and mechanisms


def test_signal_is_the_metric_or_the_value_belief_and_a_copy():
    """Guards against training on value leaking unperceived channels (v̂ is 0 there) and against
    returning the world model's own array (a caller's write would change the metric)."""
    on_metric = principal({})
    np.testing.assert_array_equal(on_metric.signal, [1.0, 1.0])  # measured on every channel
    on_metric.signal[:] = 5.0
    np.testing.assert_array_equal(on_metric.world_model.metric, [1.0, 1.0])
    on_value = principal({}, section={"train_on": "value"})
    np.testing.assert_array_equal(on_value.value_belief, [1.0, 0.0])  # gaming unseen: 0
    np.testing.assert_array_equal(on_value.signal, [1.0, 0.0])


def test_prior_mean_is_imprint_times_signal_plus_intrinsic_goals():
    """Guards against the imprint scaling the agents' own goals too, or being ignored."""
    lab = principal({}, section={"selection": {"imprint": 2.5}})
    lab.intrinsic_mean = np.array([0.1, -0.4])
    np.testing.assert_allclose(lab.prior_mean(), [2.5 + 0.1, 2.5 - 0.4])
    np.testing.assert_allclose(principal({}).mean_objective, [1.0, 1.0])  # imprint 1, no goals


def test_gaming_channels_are_perceived_paid_and_unvalued():
    """Guards against flagging channels the principal cannot see (it cannot call them gaming)."""
    assert not principal({}).gaming_channels().any()  # gaming sits above its capacity
    seen = principal({}, level=0)
    np.testing.assert_array_equal(seen.gaming_channels(), [False, True])
    unpaid = principal({}, level=0, metric=0.0)
    assert not unpaid.gaming_channels().any()  # not rewarded by the metric: not gaming


def test_selection_range_only_widens():
    """Guards against overwriting the range with the latest selection's (the extremal measure
    compares deployment with everything selection has ever shown)."""
    lab = principal({})
    assert np.all(np.isinf(lab.action_low)) and np.all(np.isinf(lab.action_high))
    lab.record_selection_range(np.array([0.5, 0.2]), np.array([1.0, 0.4]))
    lab.record_selection_range(np.array([0.7, 0.1]), np.array([0.9, 0.6]))
    np.testing.assert_array_equal(lab.action_low, [0.5, 0.1])
    np.testing.assert_array_equal(lab.action_high, [1.0, 0.6])


def test_refit_is_the_slope_through_the_origin_on_perceived_channels_only():
    """Guards against an intercept, a slope over unperceived channels, and a division by zero
    when nobody worked a channel (the old belief is kept there)."""
    lab = principal({}, level=0)  # both channels perceived
    outputs = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    reports = np.array([[0.4, 0.0], [1.1, 0.0], [1.4, 0.0]])
    belief = lab.refit_values(outputs, reports, lab.world_model)
    slope = (1.0 * 0.4 + 2.0 * 1.1 + 3.0 * 1.4) / (1.0 + 4.0 + 9.0)
    np.testing.assert_allclose(belief, [slope, -1.0])  # channel 2: no output, old v̂ = −1 kept
    assert lab.value_belief is belief
    blind = principal({})  # gaming unperceived: stays unknown whatever is reported
    np.testing.assert_array_equal(
        blind.refit_values(outputs + 1.0, reports + 1.0, blind.world_model)[1:], [0.0]
    )


def test_refit_adopts_the_new_world_model():
    """Guards against designing with a stale world after a federated update."""
    lab = principal({})
    world = replace(lab.world_model, epoch=lab.world_model.epoch + 1)
    lab.refit_values(np.ones((2, 2)), np.ones((2, 2)), world)
    assert lab.world_model is world
