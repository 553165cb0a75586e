"""Sweep designs: design points × replicates → one fully resolved scenario (and run id) per run.

A :class:`Design` is a list of *design points* (each a ``{dotted.key: value}`` assignment over
the swept parameters) and a list of replicate seeds. The full-factorial product of a grid
(:func:`grid_design`) is one way to get design points; a SALib sample
(:mod:`analysis.sensitivity`) is another. :func:`plan_runs` applies each point to the base
scenario, gives replicate ``r`` the ``r``-th seed, validates the result and names the run by a hash
of its fully resolved scenario (:func:`run_id`), so that the same run always has the same id,
whatever the sweep it belongs to. Execution is in :mod:`analysis.executors`; statistics in
:mod:`analysis.stats`.

Replicate seeds are spawned from the sweep seed with ``numpy.random.SeedSequence(seed).spawn(R)``;
replicate ``r`` uses the same seed at every design point (common random numbers), so differences
between design points are not blurred by different noise draws.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from mesaopt.agents.kinds import check_optimizer
from mesaopt.model.errors import ScenarioError
from mesaopt.model.network import check_network
from mesaopt.model.ranges import expand_values, parse_cli_values
from mesaopt.model.scenario import Scenario
from mesaopt.model.scenario_files import apply_override, to_toml_dict, validate

#: Length of a run id (hex digits of the SHA-256 of the resolved scenario).
RUN_ID_LENGTH = 16
#: Most runs one design may plan: each is a folder and a row of ``sweep.json`` (~300 bytes), and
#: planning resolves every one in memory first. Far above any sweep this machine finishes.
MAX_RUNS = 1_000_000


@dataclass(frozen=True)
class Design:
    """What to run: design points over the swept parameters and replicate seeds.

    Attributes:
        parameters: The swept dotted keys, in column order.
        points: One ``{key: value}`` assignment per design point (design id = index).
        seeds: One seed per replicate (replicate id = index).
        sweep_seed: The seed the replicate seeds were spawned from.
        kind: ``"grid"``, ``"sobol"`` or ``"morris"``.
    """

    parameters: list[str]
    points: list[dict[str, Any]]
    seeds: list[int]
    sweep_seed: int
    kind: str = "grid"


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: where it sits in the design and its resolved scenario.

    Attributes:
        run_id: Hash of the resolved scenario (seed included).
        design_id: Index of the design point.
        replicate: Index of the replicate.
        seed: The run's ``run.seed``.
        params: The design point's values of the swept parameters.
        scenario: The fully resolved scenario as plain data (``sweep`` removed).
    """

    run_id: str
    design_id: int
    replicate: int
    seed: int
    params: dict[str, Any]
    scenario: dict[str, Any] = field(repr=False)


def replicate_seeds(sweep_seed: int, replicates: int) -> list[int]:
    """Spawn one integer seed per replicate from the sweep seed.

    Args:
        sweep_seed: The sweep's seed.
        replicates: Number of replicates.

    Returns:
        ``replicates`` seeds in [0, 2⁶³): the first 64-bit word of each spawned child's state,
        shifted right by one so that it fits signed 64-bit columns and TOML integers.
    """
    children = np.random.SeedSequence(sweep_seed).spawn(replicates)
    return [int(child.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)) for child in children]


#: Why ``run.seed`` is not a grid key: every run's seed is its replicate's (it was overwritten,
#: so that its values gave design points with the same scenario).
SEED_NOT_SWEPT = (
    "each run's seed is its replicate's, spawned from the sweep's seed: "
    "use --replicates (and --seed), not run.seed as a swept parameter"
)


def parse_grid_arguments(assignments: list[str]) -> dict[str, list[Any]]:
    """Parse ``--grid key=v1,v2`` / ``--grid key=1:1024:log2`` arguments.

    Args:
        assignments: The texts given to ``--grid``.

    Returns:
        Values per dotted key, in the order given.

    Raises:
        ScenarioError: On a missing ``=``, a repeated key or a malformed range.
    """
    grid: dict[str, list[Any]] = {}
    for text in assignments:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ScenarioError(text or "--grid", "grid entries look like key=v1,v2 or key=1:8:1")
        if key in grid:
            raise ScenarioError(f"--grid {key}", "key given twice")
        if key == "run.seed":
            raise ScenarioError(f"--grid {key}", SEED_NOT_SWEPT)
        try:
            grid[key] = parse_cli_values(raw)
        except ValueError as err:
            raise ScenarioError(f"--grid {key}", str(err)) from None
    return grid


def grid_design(
    grid: dict[str, Any],
    replicates: int,
    sweep_seed: int,
    *,
    source: str = "--grid",
    too_many_key: str | None = None,
) -> Design:
    """The full-factorial design of a grid (last key varies fastest).

    Args:
        grid: Values (lists or range strings) per dotted key.
        replicates: Replicates per design point (≥ 1).
        sweep_seed: Seed the replicate seeds are spawned from.
        source: Where the grid came from, for error messages.
        too_many_key: The key to name if the design has too many runs (default ``--grid``, or
            ``--replicates`` for an empty grid).

    Returns:
        The design; an empty grid gives one design point with no parameters.

    Raises:
        ScenarioError: On a malformed value list, fewer than one replicate, or more than
            :data:`MAX_RUNS` runs.
    """
    if replicates < 1:
        raise ScenarioError("--replicates", "needs at least one replicate", source)
    values: dict[str, list[Any]] = {}
    for key, spec in grid.items():
        if key == "run.seed":
            raise ScenarioError(f"sweep.grid.{key}", SEED_NOT_SWEPT, source)
        try:
            values[key] = expand_values(spec)
        except ValueError as err:
            raise ScenarioError(f"sweep.grid.{key}", str(err), source) from None
    keys = list(values)
    runs = math.prod(len(v) for v in values.values()) * replicates
    if runs > MAX_RUNS:
        raise ScenarioError(
            too_many_key or ("--grid" if values else "--replicates"),
            f"the design has {runs:,} runs, more than {MAX_RUNS:,}",
            source,
        )
    points = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values.values())]
    return Design(keys, points, replicate_seeds(sweep_seed, replicates), sweep_seed, "grid")


def canonical_json(data: Any) -> str:
    """JSON text with sorted keys and no whitespace: the input of run ids."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def run_id(scenario: dict[str, Any]) -> str:
    """Return the id of a run: a hash of its fully resolved scenario (seed included).

    Args:
        scenario: The resolved scenario as plain data (:func:`model.scenario.to_toml_dict`).

    Returns:
        ``RUN_ID_LENGTH`` hex digits.
    """
    digest = hashlib.sha256(canonical_json(scenario).encode("utf-8")).hexdigest()
    return digest[:RUN_ID_LENGTH]


def resolve_point(
    base: dict[str, Any], point: dict[str, Any], seed: int, source: str
) -> dict[str, Any]:
    """Apply a design point and a seed to raw scenario data and validate the result.

    Args:
        base: Raw scenario data (overrides applied, not modified).
        point: ``{dotted.key: value}`` of the design point.
        seed: The run's seed.
        source: The scenario's file name, for error messages.

    Returns:
        The fully resolved scenario as plain data, without a ``sweep`` section.

    Raises:
        ScenarioError: If the point makes the scenario invalid (naming the key).
    """
    data = copy.deepcopy(base)
    data.pop("sweep", None)
    for key, value in point.items():
        try:
            apply_override(data, key, value)
        except ScenarioError as err:
            raise err.with_source(source) from None
    try:
        apply_override(data, "run.seed", seed)
    except ScenarioError:
        validate(data, source)  # a point made [run] a plain value: this names its key and file
        raise
    scenario: Scenario = validate(data, source)
    check_optimizer(scenario.agents.optimizer, source)  # a registry, not a schema enum
    resolved = to_toml_dict(scenario)
    resolved.pop("sweep", None)
    return resolved


def plan_runs(
    base: dict[str, Any], design: Design, source: str, base_dir: Path | None = None
) -> list[RunSpec]:
    """Resolve every run of a design (design-point major, replicate minor).

    Each distinct ``[network]`` is also checked as the run will build it
    (:func:`model.network.check_network`), so that a value no run can build is one error here
    rather than a failure of every run.

    Args:
        base: Raw scenario data with command-line overrides applied.
        design: The design.
        source: The scenario's file name, for error messages.
        base_dir: Folder a relative edge-list path resolves against (the scenario's).

    Returns:
        One :class:`RunSpec` per design point and replicate.

    Raises:
        ScenarioError: If a design point is invalid (its network included), or two design
            points resolve to the same scenario (e.g. ``1`` and ``1.0`` for a float key).
    """
    runs: list[RunSpec] = []
    seen: dict[str, int] = {}
    networks: set[str] = set()
    edge_lists: dict[tuple[str, int, str], Any] = {}  # each read once, whatever else varies
    stabilities: set[str] = set()
    graphs: dict[str, Any] = {}  # the graphs the stability check built, by their [network]
    for design_id, point in enumerate(design.points):
        for replicate, seed in enumerate(design.seeds):
            resolved = resolve_point(base, point, seed, source)
            network = canonical_json(resolved["network"])
            if network not in networks:
                networks.add(network)
                try:
                    check_network(
                        SimpleNamespace(**resolved["network"]),
                        base_dir=base_dir,
                        edge_lists_read=edge_lists,
                    )
                except ScenarioError as err:
                    raise err.with_source(source) from None
            stability = canonical_json(  # what check_peer_stability reads
                {key: resolved.get(key) for key in ("network", "channels", "regimes")}
                | {"substitution": resolved["agents"].get("effort_substitution")}
            )
            if stability not in stabilities:
                stabilities.add(stability)
                check_point_stability(resolved, source, base_dir, edge_lists, graphs)
            rid = run_id(resolved)
            if rid in seen and seen[rid] != design_id:
                raise ScenarioError(
                    "sweep.grid",
                    f"design points {seen[rid]} and {design_id} give the same scenario",
                    source,
                )
            seen[rid] = design_id
            runs.append(RunSpec(rid, design_id, replicate, seed, dict(point), resolved))
    return runs


#: Graphs :func:`check_point_stability` keeps for the design points after the one that built them.
GRAPHS_KEPT = 4

#: Topologies whose graph does not depend on the run's seed: one graph decides every run.
SEEDLESS_TOPOLOGIES = ("ring", "grid", "complete", "star", "edgelist")


def check_point_stability(
    resolved: dict[str, Any],
    source: str,
    base_dir: Path | None,
    edge_lists: dict[tuple[str, int, str], Any] | None = None,
    graphs: dict[str, Any] | None = None,
) -> None:
    """Refuse a design point whose peer effects no run of it could build stably.

    Each run refuses unstable peer effects when it builds its graph
    (:func:`model.stability.check_peer_stability`); a sweep checks before any run starts where
    one graph decides for every replicate: a topology that draws nothing (ring, grid, complete,
    star, an edge list) is built once and checked exactly; a Watts–Strogatz graph of mean degree
    k has ρ(G) ≥ k whatever its seed (the Rayleigh quotient of the all-ones vector), so a point
    unstable on the ring of degree k is unstable for every replicate. Other random graphs (and
    row-normalised Watts–Strogatz ones) are left to their runs, which may fail one by one.

    Args:
        resolved: The point's resolved scenario data.
        source: The scenario's file name, for the error.
        base_dir: Folder a relative edge-list path resolves against.
        edge_lists: Edge lists already read by :func:`model.network.check_network`, reused
            rather than read again.
        graphs: Adjacency matrices built by earlier calls, by canonical ``[network]``: a design
            point that varies other keys does not build its graph again. Updated in place.

    Raises:
        ScenarioError: Naming the key and the failed condition, with the file.
    """
    from mesaopt.model.network import build_network, edge_list_key, row_normalize
    from mesaopt.model.stability import check_peer_stability

    network = dict(resolved["network"])
    if not any(channel.get("peer") for channel in resolved["channels"]) and not any(
        "peer" in regime.get("set", {}) for regime in resolved.get("regimes") or []
    ):
        return
    note = ""
    if network["topology"] == "watts_strogatz" and not network.get("normalize"):
        network = {"topology": "ring", "n_agents": network["n_agents"], "k": network["k"]}
        note = f" (every watts_strogatz graph of mean degree {network['k']} has ρ(G) ≥ that)"
    elif network["topology"] not in SEEDLESS_TOPOLOGIES:
        return
    graphs = {} if graphs is None else graphs
    graph_key = canonical_json(network)
    read = (edge_lists or {}).get(edge_list_key(network.get("path"), network["n_agents"], base_dir))
    if graph_key in graphs:
        adjacency = graphs[graph_key]
    elif network["topology"] == "edgelist" and read is not None:
        adjacency = row_normalize(read) if network.get("normalize") else read
    else:
        cfg = SimpleNamespace(**network)
        adjacency = build_network(cfg, np.random.default_rng(0), base_dir=base_dir).adjacency
    if graph_key not in graphs and len(graphs) >= GRAPHS_KEPT:
        graphs.pop(next(iter(graphs)))  # the oldest: a 10^6-node graph holds ~100 MB
    graphs[graph_key] = adjacency
    try:
        check_peer_stability(validate(resolved, source), adjacency)
    except ScenarioError as err:
        raise ScenarioError(err.key, err.message + note, source) from None


def design_record(design: Design, runs: list[RunSpec], source: str) -> dict[str, Any]:
    """The content of ``sweep.json``: parameters, design points, seeds and run ids.

    Args:
        design: The design.
        runs: Its planned runs.
        source: The base scenario's file name.

    Returns:
        Plain, JSON-able data.
    """
    return {
        "kind": design.kind,
        "scenario_source": source,
        "parameters": design.parameters,
        "sweep_seed": design.sweep_seed,
        "replicates": len(design.seeds),
        "seeds": design.seeds,
        "design_points": [
            {"design_id": i, "params": point} for i, point in enumerate(design.points)
        ],
        "runs": [
            {
                "run_id": run.run_id,
                "design_id": run.design_id,
                "replicate": run.replicate,
                "seed": run.seed,
            }
            for run in runs
        ],
    }


def parameter_column_types(design: Design) -> dict[str, str]:
    """Column type of each swept parameter in the tidy tables.

    Numbers stay numbers (``int`` when every value is a whole int, else ``float``), booleans stay
    booleans; anything else, including a mix such as ``[0.3, "optimal"]``, becomes ``str``.

    Args:
        design: The design.

    Returns:
        ``"int"``, ``"float"``, ``"bool"`` or ``"str"`` per parameter.
    """
    types: dict[str, str] = {}
    for key in design.parameters:
        values = [point[key] for point in design.points]
        if all(isinstance(v, bool) for v in values):
            types[key] = "bool"
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            types[key] = "int"
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            types[key] = "float"
        else:
            types[key] = "str"
    return types


def column_value(value: Any, kind: str) -> Any:
    """Convert a parameter value to its tidy-table column type (see parameter_column_types)."""
    if kind == "float":
        return float(value)
    if kind == "str":
        return value if isinstance(value, str) else json.dumps(value)
    return value


def write_design(path: Path, record: dict[str, Any]) -> None:
    """Write ``sweep.json`` atomically."""
    from mesaopt.model.recording import write_json_atomic

    write_json_atomic(path, record)
