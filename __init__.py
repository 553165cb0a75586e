"""mesaopt: principals, the mesa-optimizers they build, and every way the proxy comes apart.

The public API, importable as ``import mesaopt``::

    import mesaopt

    scenario = mesaopt.load_scenario("scenarios/baseline.toml", ["network.n_agents=500"])
    model = mesaopt.MesaOptModel(scenario)        # a mesa.Model: step() / run_for(n)
    result = mesaopt.run_simulation(scenario, "out/")          # tables + manifest.json
    run = mesaopt.read_run("out/")                             # .steps, .agents, ...
    sweep = mesaopt.run_sweep("scenarios/baseline.toml", "sweep/",
                              grid={"principals.0.selection.n": [1, 4, 16]}, replicates=3)
    mesaopt.read_sweep("sweep/").summary
    verdicts = mesaopt.run_experiments(["trans"], "experiments/")  # the essay's claims judged
    model.agents_by_type[mesaopt.MesaOptimizer]   # Mesa agent sets, complete at every scale

A new mesa-optimizer kind is a subclass of ``mesaopt.OptimizerKind`` passed to
``mesaopt.register_kind`` (docs/architecture.md, "Adding a mesa-optimizer kind").

The names are imported on first use (PEP 562), so that ``import mesaopt`` and the command line
stay fast and a bad scenario file is reported before the model's libraries load. The packages
are ``mesaopt.model`` (the world and one run), ``mesaopt.agents`` (principals and the
mesa-optimizer kinds), ``mesaopt.analysis`` (theory, sweeps, figures, reports, the app) and the
command line ``mesaopt.run``; docs/architecture.md maps every concept to its module.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import TYPE_CHECKING, Any

try:
    __version__ = metadata.version("mesaopt")
except metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

#: Public name → the module that defines it.
_EXPORTS = {
    "MesaOptModel": "mesaopt.model.model",
    "Scenario": "mesaopt.model.scenario",
    "load_scenario": "mesaopt.model.scenario_files",
    "ScenarioError": "mesaopt.model.errors",
    "run_simulation": "mesaopt.model.runner",
    "RunResult": "mesaopt.model.runner",
    "run_sweep": "mesaopt.analysis.sweep_runner",
    "SweepResult": "mesaopt.analysis.sweep_runner",
    "read_run": "mesaopt.analysis.run_folder",
    "RunTables": "mesaopt.analysis.run_folder",
    "read_sweep": "mesaopt.analysis.run_folder",
    "SweepTables": "mesaopt.analysis.run_folder",
    "run_experiments": "mesaopt.analysis.experiments",
    "paired_verdict": "mesaopt.analysis.verdicts",
    "Verdict": "mesaopt.analysis.verdicts",
    "MesaOptimizer": "mesaopt.agents.optimizer",
    "Principal": "mesaopt.agents.principal",
    "OptimizerKind": "mesaopt.agents.kinds",
    "Planning": "mesaopt.agents.kinds",
    "register_kind": "mesaopt.agents.kinds",
    "unregister_kind": "mesaopt.agents.kinds",
}

__all__ = [  # noqa: RUF022  (the order of _EXPORTS: model, scenario, runs, sweeps, readers)
    "MesaOptModel",
    "Scenario",
    "load_scenario",
    "ScenarioError",
    "run_simulation",
    "RunResult",
    "run_sweep",
    "SweepResult",
    "read_run",
    "RunTables",
    "read_sweep",
    "SweepTables",
    "run_experiments",
    "paired_verdict",
    "Verdict",
    "MesaOptimizer",
    "Principal",
    "OptimizerKind",
    "Planning",
    "register_kind",
    "unregister_kind",
    "__version__",
]

if TYPE_CHECKING:
    from mesaopt.agents.kinds import OptimizerKind, Planning, register_kind, unregister_kind
    from mesaopt.agents.optimizer import MesaOptimizer
    from mesaopt.agents.principal import Principal
    from mesaopt.analysis.experiments import run_experiments
    from mesaopt.analysis.run_folder import RunTables, SweepTables, read_run, read_sweep
    from mesaopt.analysis.sweep_runner import SweepResult, run_sweep
    from mesaopt.analysis.verdicts import Verdict, paired_verdict
    from mesaopt.model.errors import ScenarioError
    from mesaopt.model.model import MesaOptModel
    from mesaopt.model.runner import RunResult, run_simulation
    from mesaopt.model.scenario import Scenario
    from mesaopt.model.scenario_files import load_scenario


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mesaopt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
