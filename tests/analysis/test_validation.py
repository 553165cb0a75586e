"""`run.py validate` (analysis/validation.py): the model meets its limits, and a miss is caught.

The first test is the one that holds the model to every closed form (about 10 s once the Numba
kernels are cached). The others break one closed form at a time, so that the check built on it
must fail and the command must exit 1, and exercise ``run.py check FILE...``.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from mesaopt import run
from mesaopt.analysis import theory, validation


@pytest.fixture(scope="module")
def table() -> list[validation.Row]:
    return validation.run_checks()


def test_the_model_meets_every_closed_form_limit(table):
    failed = [(r.quantity, r.theory, r.simulation, r.se) for r in table if not r.passed]
    assert not failed, failed
    assert {r.check for r in table} == set(validation.CHECKS)


def test_the_false_failure_budget_counts_the_stochastic_rows(table):
    """A new stochastic row must be counted, or the stated suite-wide rate is wrong."""
    stochastic = [r for r in table if math.isfinite(r.se)]
    assert len(stochastic) == validation.STOCHASTIC_ROWS
    assert all(r.se > 0 and r.tolerance == pytest.approx(validation.Z * r.se) for r in stochastic)
    assert validation.family_false_failure() < 1e-3
    # The count × 2(1 − Φ(z)) Bonferroni bound, checked against a known normal tail.
    assert validation.family_false_failure(1, 4.0) == pytest.approx(6.334e-5, rel=1e-3)
    deterministic = [r for r in table if not math.isfinite(r.se)]
    assert all(r.tolerance < 1e-5 for r in deterministic)  # solver precision, not slack


def test_a_check_is_reproducible_and_a_seed_shift_draws_afresh():
    one = validation.run_checks(["regressional"])
    two = validation.run_checks(["regressional"])
    shifted = validation.run_checks(["regressional"], seed=1000)
    assert [r.simulation for r in one] == [r.simulation for r in two]
    assert [r.simulation for r in one] != [r.simulation for r in shifted]


def _sigma_not_squared(n, sigma_theta, sigma_eps):
    """The σθ-for-σθ² slip the mutation audit asked about."""
    total = math.hypot(sigma_theta, sigma_eps)
    return sigma_theta / total * theory.expected_max_std_normal(n)


_ORIGINAL_CURVE = theory.student_t_selection_curve


def _no_hump(ns, sigma_theta, scale, df, reps, rng):
    """A reference that ignores the heavy tail (t with df → ∞, Gaussian noise): no hump."""
    return _ORIGINAL_CURVE(ns, sigma_theta, scale, 1e9, reps, rng)


BROKEN = {
    # check: (closed form, broken version)
    "regressional": ("regressional_selection_gain", _sigma_not_squared),
    "heavy_tail": ("student_t_selection_curve", _no_hump),
    "hm87": ("hm87_beta", lambda rho, c, var: 1.0 / (1.0 + rho * c * math.sqrt(var))),
    "hm91": ("hm91_beta", lambda v1, v2, c11, c12, c22, rho, var: theory.hm87_beta(rho, c11, var)),
    "len_goals": ("len_beta_numeric", lambda v, g, m, k, rho, var: 1.01 * float(v @ m / (m @ m))),
    "bcz": ("bcz_equilibrium", lambda g, delta, th: th / (1.0 - delta * 4.0)),  # mean-field
}


@pytest.mark.parametrize("check", list(BROKEN))
def test_a_broken_closed_form_fails_its_check(monkeypatch, check):
    name, broken = BROKEN[check]
    monkeypatch.setattr(theory, name, broken)
    rows = validation.run_checks([check])
    assert not all(r.passed for r in rows), [(r.quantity, r.theory, r.simulation) for r in rows]


def test_the_sigma_slip_is_caught_only_where_sigma_differs_from_its_square(monkeypatch):
    monkeypatch.setattr(theory, "regressional_selection_gain", _sigma_not_squared)
    rows = [r for r in validation.run_checks(["regressional"]) if "gain" in r.quantity]
    assert rows and not any(r.passed for r in rows)  # σθ = 0.5 and 2 both expose it


def test_the_command_prints_the_table_and_exits_1_on_a_miss(monkeypatch, capsys):
    assert run.main(["validate", "--only", "hm87"]) == 0
    out = capsys.readouterr().out
    assert "HM87" in out and "1/1 passed" in out and "FAIL" not in out
    monkeypatch.setattr(theory, "hm87_beta", lambda rho, c, var: 0.5)
    assert run.main(["validate", "--only", "hm87", "--only", "hm91"]) == 1
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("HM87")]
    assert len(lines) == 1 and lines[0].endswith("FAIL")
    assert "2/3 passed" in out  # the HM91 rows still pass


def test_the_command_writes_a_csv_without_nans(tmp_path, capsys):
    path = tmp_path / "table.csv"
    assert run.main(["validate", "--only", "len_goals", "--only", "hm87", "--csv", str(path)]) == 0
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["check"] for r in rows] == ["hm87", "len_goals", "len_goals"]  # table order
    assert all(r["passed"] == "True" and r["se"] == "" for r in rows)  # deterministic: no SE
    assert "nan" not in path.read_text(encoding="utf-8").lower()
    assert np.isclose(float(rows[0]["theory"]), theory.hm87_beta(1.5, 2.0, 0.25))


@pytest.mark.parametrize(
    ("argv", "key"),
    [
        (["validate", "--only", "nonsense"], "--only"),
        (["validate", "--only", "hm87", "--csv", "no/such/folder/t.csv"], "--csv"),
        (["validate", "baseline"], "baseline: validate takes no scenario file"),
    ],
)
def test_bad_validate_arguments_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys, argv, key):
    monkeypatch.chdir(tmp_path)
    assert run.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert line.startswith(f"mesaopt: error: {key}")
    assert not any(tmp_path.iterdir())  # nothing written


def test_check_reports_every_file_and_exits_2_if_any_is_bad(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[channels]]\nname = 'x'\ncost = -1.0\n", encoding="utf-8")
    small = ["--set", "network.n_agents=40"]
    assert run.main(["check", "baseline", "heavy_tails", *small]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and all(line.startswith("ok: ") for line in out)
    assert run.main(["check", str(bad), "baseline", *small]) == 2
    captured = capsys.readouterr()
    (ok,) = captured.out.splitlines()  # the good file after the bad one is still checked
    assert ok.startswith("ok: ") and "baseline" in ok
    (error,) = captured.err.strip().splitlines()
    assert error.startswith(f"mesaopt: error: {bad}: channels.0.cost:")
