"""The layering of the package: import-linter contracts in pyproject.toml [tool.importlinter].

Bottom up: the world's data, behaviour and measures, the model core, analysis, the command line;
each layer imports only layers below it, and nothing below analysis imports analysis. A broken
contract fails the test with import-linter's report (each illegal import with its chain and line).
Also what the layers pull in at import: every command pays for it before it does anything.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
from importlinter import api

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"


def _lint_imports() -> list[str]:
    script = Path(sys.executable).with_name("lint-imports")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"]


def _layer_modules() -> list[str]:
    """Every module named in the layers contract (optional ones included)."""
    contracts = api.read_configuration(str(PYPROJECT))["contracts_options"]
    (layers,) = [c for c in contracts if c["type"] == "layers"]
    return [
        name.strip().strip("()") for layer in layers["layers"] for name in re.split(r"[|:]", layer)
    ]


def test_import_contracts_are_kept():
    result = subprocess.run(
        [*_lint_imports(), "--no-cache"],
        cwd=ROOT,  # lint-imports reads ./pyproject.toml
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        pytest.fail(f"lint-imports: contracts broken\n{result.stdout}\n{result.stderr}")
    assert "0 broken" in result.stdout, result.stdout


def test_every_module_has_a_layer():
    """A new module is placed in the layers, so that the contract constrains it."""
    placed = _layer_modules()
    graph = grimp.build_graph("mesaopt", cache_dir=None)
    unplaced = sorted(
        module
        for module in graph.modules
        if module not in ("mesaopt", "mesaopt.model")  # packages whose __init__ is not a layer
        and module.split(".")[1] not in ("tests", "benchmarks")
        and not any(module == m or module.startswith(m + ".") for m in placed)
    )
    assert not unplaced, f"modules in no layer of [tool.importlinter]: {', '.join(unplaced)}"
    # mesaopt.model's __init__ sits outside the layers, so it must import nothing of ours.
    assert not graph.find_modules_directly_imported_by("mesaopt.model")


def _imported(modules: list[str], heavy: list[str]) -> list[str]:
    """Which of ``heavy`` a fresh interpreter has loaded after importing ``modules``."""
    code = f"import sys, {', '.join(modules)}; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    return ast.literal_eval(result.stdout.strip())


def test_a_run_imports_no_plotting_statistics_or_cluster_library():
    """``check`` and ``simulate`` import the model and the runner: neither may pull in
    matplotlib, scipy.stats, Dask or SALib, each of which costs every command a second or so
    (scipy.stats alone took ``check`` from 3.0 to 4.8 s)."""
    heavy = ["matplotlib", "scipy.stats", "dask", "distributed", "SALib", "solara"]
    modules = ["mesaopt.run", "mesaopt.model.runner", "mesaopt.model.model"]
    assert _imported(modules, heavy) == []


def test_analysis_takes_its_t_and_normal_quantiles_from_scipy_special():
    """Reports, experiments and sweeps use ``analysis.stats.t_quantile`` (scipy.special), not
    scipy.stats, whose import costs each of those commands about a second."""
    modules = [
        "mesaopt.analysis.report",
        "mesaopt.analysis.experiments",
        "mesaopt.analysis.experiment_report",
        "mesaopt.analysis.sweep_runner",
        "mesaopt.analysis.validation",
    ]
    assert _imported(modules, ["scipy.stats"]) == []


def _refused(tmp_path, argv: list[str], heavy: tuple[str, ...]) -> tuple[int, list[str], str]:
    """Run ``main(argv)`` in a fresh interpreter in ``tmp_path``: its exit status, which of
    ``heavy`` it imported, and its stderr."""
    code = (
        f"import sys; from mesaopt.run import main\n"
        f"try:\n    status = main({argv!r})\nexcept SystemExit as exit:\n    status = exit.code\n"
        f"print([status, [m for m in {heavy!r} if m in sys.modules]])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        cwd=tmp_path,
    )
    status, imported = ast.literal_eval(result.stdout.strip())
    return status, imported, result.stderr


def test_report_refuses_a_folder_that_is_no_run_before_importing_the_tables_or_plots(tmp_path):
    """``report nosuchdir`` answers at once: the folder is checked (analysis.folder_kinds)
    before matplotlib, pandas or the report module are imported (it took 3.8 s before)."""
    heavy = ("matplotlib", "pandas", "mesaopt.analysis.report")
    status, imported, stderr = _refused(tmp_path, ["report", "nosuchdir"], heavy)
    assert (status, imported) == (2, []), stderr
    assert "mesaopt: error: nosuchdir: no such folder" in stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["simulate", "baseline", "--set", "netwrok.n_agents=3", "--out", "o"], "netwrok"),
        (["simulate", "nosuch.toml", "--out", "o"], "nosuch.toml: scenario: file not found"),
        (["check", "nosuch.toml"], "nosuch.toml: scenario: file not found"),
        (["simulate", "--steps", "-1", "--out", "o"], "argument --steps"),
    ],
)
def test_simulate_and_check_refuse_bad_input_before_importing_mesa(tmp_path, argv, line):
    """A scenario's errors are found before the model (Mesa, the kernels: ~1.5 s) is imported."""
    status, imported, stderr = _refused(tmp_path, argv, ("mesa", "mesaopt.model.model"))
    assert (status, imported) == (2, []), stderr
    assert line in stderr and len(stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing written
