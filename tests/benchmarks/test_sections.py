"""Tests for benchmarks/sections.py: the per-part step timer runs and accounts for the step."""

from __future__ import annotations

import pytest

from benchmarks import sections


def test_the_parts_of_a_step_are_timed_and_fit_inside_it(capsys):
    total, parts = sections.measure(500, 14)
    assert total > 0
    top_level = [label for label in parts if not label.startswith(" ")]
    assert {"plan_actions (compiled)", "measure_step", "output noise"} <= set(top_level)
    # every step, a part fits inside the step and a nested part inside its parent (so do medians)
    assert all(parts[label] <= total for label in top_level)
    assert parts["  aggregate_steps"] <= parts["measure_step"]
    assert parts["plan_actions (compiled)"] > 0 and parts["  outcomes_and_measures (compiled)"] > 0
    sections.main(["300", "8"])
    assert "median ordinary step" in capsys.readouterr().out
    from mesaopt.model import measurement, metrics

    # the timers are gone: the model's functions are its own again
    assert measurement.aggregate_steps.__module__ == metrics.__name__
    assert metrics.parallel_map.__module__ == "mesaopt.model.parallel"


def test_after_counts_only_the_later_steps(capsys):
    """``--after`` leaves out the first steps (the baseline changes regime at step 100)."""
    sections.main(["300", "8", "--after", "5"])
    assert "median ordinary step" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stopped:
        sections.main(["300", "8", "--after", "8"])  # no step would be left to time
    assert stopped.value.code == 2
