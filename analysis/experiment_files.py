"""Experiment files: a complete scenario (the treatment) plus an ``[experiment]`` table.

An experiment file is a scenario file with one more table, ``[experiment]``, that says which
control arms to run, over which replicates (and which swept parameter), and which claims to judge
on their tables. The scenario schema does not know ``[experiment]``: :func:`read_experiment` reads
the file with :mod:`tomllib`, takes the table off, checks it here and hands the rest, with each
arm's overrides applied, to the normal scenario validation. The format is in docs/scenarios.md,
section "Experiment files". Any bad entry is a :class:`~model.errors.ScenarioError` naming the
key (``experiment.claims.1.metric``) and the file, before anything runs.
"""

from __future__ import annotations

import copy
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesaopt.analysis.sweep_design import MAX_RUNS, Design, grid_design, plan_runs
from mesaopt.analysis.sweep_runner import BaseScenario
from mesaopt.model.atomic_folder import EXPERIMENTS_MARK
from mesaopt.model.errors import ScenarioError
from mesaopt.model.scenario import MAX_INT
from mesaopt.model.scenario_files import (
    apply_override,
    check_data_nesting,
    check_file_paths,
    check_text_nesting,
    parse_override,
    validate,
)
from mesaopt.model.user_files import MAX_SCENARIO_BYTES, read_user_text

#: The arm the experiment file itself describes (no overrides).
TREATMENT = "treatment"
#: What an experiment's name (its file's stem) and an arm's name may be: each becomes a folder
#: name under ``--out``, so one path component of letters, digits, ``_``, ``-`` and ``.`` that
#: does not start with a dot (never ``..``, ``/`` or an absolute path).
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")  # used with fullmatch
#: Names the experiments folder and an experiment's folder use for their own files.
RESERVED_EXPERIMENT_NAMES = frozenset(
    {"report", "verdicts.csv", "verdicts.parquet", EXPERIMENTS_MARK}
)
RESERVED_ARM_NAMES = frozenset({"size.json"})
#: Most replicates a size may ask for (each is one run per arm and swept value).
MAX_REPLICATES = 100_000
SIZES = ("quick", "full")
_EXPERIMENT_KEYS = {"title", "seed", "sweep", "quick", "full", "arms", "claims"}
_SIZE_KEYS = {"replicates", "n_agents", "steps"}
_CLAIM_KEYS = {
    "claim",
    "metric",
    "arm",
    "control",
    "expected_sign",
    "principal",
    "steps",
    "versus_principal",
    "versus_steps",
    "along",
    "at",
}


@dataclass(frozen=True)
class Size:
    """How big an experiment's runs are.

    Attributes:
        replicates: Replicate seeds per arm (and per swept value).
        n_agents: ``network.n_agents`` of every run (None: the file's).
        steps: ``run.steps`` of every run (None: the file's).
    """

    replicates: int
    n_agents: int | None = None
    steps: int | None = None

    def overrides(self) -> list[str]:
        """The ``--set`` overrides that give a scenario this size."""
        out = []
        if self.n_agents is not None:
            out.append(f"network.n_agents={self.n_agents}")
        if self.steps is not None:
            out.append(f"run.steps={self.steps}")
        return out


@dataclass(frozen=True)
class Claim:
    """One claim of an experiment: a per-run quantity, two arms and the expected sign.

    The per-run quantity is the mean of ``metric`` (a ``steps`` column) over the steps in
    ``steps`` for ``principal``, minus the same for ``versus_principal`` if given, minus the mean
    over ``versus_steps`` if given. With a swept parameter it is taken at the value ``at``, or as
    the difference between the values ``along = [from, to]`` (to minus from). The effect is the
    arm's quantity minus the control arm's, paired by replicate seed; without a control arm
    (only with ``along``) it is the difference along the sweep in the arm alone.

    Attributes:
        claim: The claim, one sentence.
        metric: The ``steps`` column.
        arm: The treatment arm.
        control: The control arm, or None (a curve claim within one arm).
        expected_sign: +1 or −1: the sign of the effect the claim predicts.
        principal: The principal (or ``all``).
        steps: First and last step of the window (None: every step).
        versus_principal: A principal whose same quantity is subtracted.
        versus_steps: A window whose mean is subtracted (before vs after).
        along: Swept values ``(from, to)``.
        at: A swept value.
    """

    claim: str
    metric: str
    arm: str
    control: str | None
    expected_sign: int
    principal: str = "all"
    steps: tuple[int, int] | None = None
    versus_principal: str | None = None
    versus_steps: tuple[int, int] | None = None
    along: tuple[Any, Any] | None = None
    at: Any = None

    def describe(self, sweep_key: str | None = None) -> str:
        """The quantity in words, e.g. ``principal_loss (controllers − planners), steps 51–100``."""
        who = (
            self.principal
            if self.versus_principal is None
            else (f"{self.principal} − {self.versus_principal}")
        )
        text = f"{self.metric} ({who})"
        text += f", steps {self.steps[0]}–{self.steps[1]}" if self.steps else ", all steps"
        if self.versus_steps:
            text += f" − steps {self.versus_steps[0]}–{self.versus_steps[1]}"
        short = (sweep_key or "").rsplit(".", 1)[-1]
        if self.along is not None:
            text += f"; {short} = {self.along[1]} − {short} = {self.along[0]}"
        elif self.at is not None:
            text += f"; at {short} = {self.at}"
        return text

    def arms_text(self) -> str:
        """``arm − control`` or, for a curve claim within one arm, ``arm``."""
        return self.arm if self.control is None else f"{self.arm} − {self.control}"


@dataclass(frozen=True)
class Experiment:
    """A parsed experiment file.

    Attributes:
        name: Short, stable name (the file's stem).
        title: One line.
        path: The file.
        scenario: Raw scenario data (the treatment arm), without ``[experiment]``.
        arms: Overrides per arm name; ``treatment`` has none.
        claims: The claims.
        seed: The sweep seed every arm's replicate seeds are spawned from.
        sweep_key: The swept dotted key, or None.
        sweep_values: Its values.
        sizes: ``quick`` and ``full`` sizes.
    """

    name: str
    title: str
    path: Path
    scenario: dict[str, Any] = field(repr=False)
    arms: dict[str, list[str]]
    claims: list[Claim]
    seed: int
    sweep_key: str | None
    sweep_values: list[Any]
    sizes: dict[str, Size]

    @property
    def source(self) -> str:
        """The file name used in messages."""
        return str(self.path)

    def arm_base(self, arm: str, size: Size) -> BaseScenario:
        """The raw scenario of an arm at a size (arm overrides first, then the size's).

        Args:
            arm: An arm name.
            size: The size.

        Returns:
            The base scenario the sweep engine runs.

        Raises:
            ScenarioError: If an override does not apply.
        """
        data = copy.deepcopy(self.scenario)
        for assignment in [*self.arms[arm], *size.overrides()]:
            key, value = parse_override(assignment)
            try:
                apply_override(data, key, value)
            except ScenarioError as err:
                raise err.with_source(self.source) from None
        return BaseScenario(data, self.source, self.path.parent)

    def design(self, size: Size) -> Design:
        """The design every arm runs: the swept values (if any) × the size's replicates."""
        grid = {self.sweep_key: list(self.sweep_values)} if self.sweep_key else {}
        return grid_design(grid, size.replicates, self.seed, source=self.source)

    def arms_used(self) -> list[str]:
        """The arms the claims need, in the order the file names them."""
        used = {name for claim in self.claims for name in (claim.arm, claim.control) if name}
        return [name for name in self.arms if name in used]


def _bad(key: str, message: str, source: str) -> ScenarioError:
    return ScenarioError(key, message, source)


def _int(value: Any, key: str, source: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_INT:
        message = f"expected a whole number >= {low} (at most 2**63 - 1), got {value!r:.40}"
        raise _bad(key, message, source)
    return value


def _window(value: Any, key: str, source: str) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2):
        raise _bad(key, f"expected [first, last] steps, got {value!r}", source)
    first, last = (_int(v, key, source, 1) for v in value)
    if first > last:
        raise _bad(key, f"first step {first} is after last step {last}", source)
    return first, last


def _size(value: Any, key: str, source: str) -> Size:
    if not isinstance(value, dict):
        raise _bad(
            key, "expected a table { replicates = ..., n_agents = ..., steps = ... }", source
        )
    for name in value:
        if name not in _SIZE_KEYS:
            raise _bad(
                f"{key}.{name}", f"unknown key (one of {', '.join(sorted(_SIZE_KEYS))})", source
            )
    if "replicates" not in value:
        raise _bad(f"{key}.replicates", "missing", source)
    replicates = _int(value["replicates"], f"{key}.replicates", source, 2)
    if replicates > MAX_REPLICATES:
        raise _bad(
            f"{key}.replicates", f"expected at most {MAX_REPLICATES:,}, got {replicates:,}", source
        )
    n_agents = value.get("n_agents")
    steps = value.get("steps")
    return Size(
        replicates,
        None if n_agents is None else _int(n_agents, f"{key}.n_agents", source, 1),
        None if steps is None else _int(steps, f"{key}.steps", source, 1),
    )


def _sweep_value(value: Any, values: list[Any], key: str, source: str) -> Any:
    """The swept value ``value`` names, by equality; ``true`` never stands for ``1``.

    ``1.0`` names a swept ``1`` (the same number; :func:`_claim` refuses ``1.0`` only for
    ``expected_sign``, a sign rather than a value), but a bool never names a number, nor a
    number a bool.
    """
    for swept in values:
        if swept == value and isinstance(swept, bool) == isinstance(value, bool):
            return swept
    raise _bad(key, f"{value!r} is not a swept value (one of {values})", source)


def _claim(
    raw: Any, key: str, source: str, arms: dict[str, list[str]], sweep_values: list[Any] | None
) -> Claim:
    if not isinstance(raw, dict):
        raise _bad(key, "expected a table ([[experiment.claims]])", source)
    for name in raw:
        if name not in _CLAIM_KEYS:
            raise _bad(
                f"{key}.{name}", f"unknown key (one of {', '.join(sorted(_CLAIM_KEYS))})", source
            )
    for name in ("claim", "metric", "expected_sign"):
        if name not in raw:
            raise _bad(f"{key}.{name}", "missing", source)
    for name in ("claim", "metric", "principal", "versus_principal"):
        if name in raw and not (isinstance(raw[name], str) and raw[name].strip()):
            raise _bad(f"{key}.{name}", f"expected a non-empty text, got {raw[name]!r}", source)
    sign = raw["expected_sign"]
    if type(sign) is not int or sign not in (1, -1):  # neither true nor 1.0
        raise _bad(f"{key}.expected_sign", f"expected 1 or -1, got {sign!r}", source)
    arm = raw.get("arm", TREATMENT)
    control = raw.get("control")
    for name, value in (("arm", arm), ("control", control)):
        if value is not None and value not in arms:
            raise _bad(f"{key}.{name}", f"no arm {value!r} (one of {', '.join(arms)})", source)
    if control == arm:
        raise _bad(f"{key}.control", "the control arm is the treatment arm", source)
    along = raw.get("along")
    at = raw.get("at")
    if sweep_values is None:
        for name in ("along", "at"):
            if name in raw:
                raise _bad(f"{key}.{name}", "the experiment has no sweep", source)
    else:
        if (along is None) == (at is None):
            raise _bad(f"{key}.along", "a claim of a swept experiment needs along or at", source)
        if along is not None:
            if not (isinstance(along, list) and len(along) == 2) or along[0] == along[1]:
                raise _bad(
                    f"{key}.along", f"expected [from, to] swept values, got {along!r}", source
                )
            along = tuple(_sweep_value(v, sweep_values, f"{key}.along", source) for v in along)
        if at is not None:
            at = _sweep_value(at, sweep_values, f"{key}.at", source)
    if control is None and along is None:
        raise _bad(f"{key}.control", "missing (only a claim along a sweep may omit it)", source)
    return Claim(
        claim=raw["claim"].strip(),
        metric=raw["metric"],
        arm=arm,
        control=control,
        expected_sign=sign,
        principal=raw.get("principal", "all"),
        steps=_window(raw["steps"], f"{key}.steps", source) if "steps" in raw else None,
        versus_principal=raw.get("versus_principal"),
        versus_steps=(
            _window(raw["versus_steps"], f"{key}.versus_steps", source)
            if "versus_steps" in raw
            else None
        ),
        along=along,
        at=at,
    )


def _shown_name(name: str) -> str:
    """A name as shown in a message: printable, at most 40 characters."""
    shown = name.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= 40 else shown[:40] + "..."


def parse_experiment(data: dict[str, Any], path: Path) -> Experiment:
    """Check the ``[experiment]`` table of raw file data (the scenario itself is not validated).

    Args:
        data: The file's data as parsed from TOML.
        path: The file (its stem is the experiment's name).

    Returns:
        The experiment.

    Raises:
        ScenarioError: On a missing, unknown or malformed ``experiment`` key.
    """
    source = str(path)
    if not NAME_PATTERN.fullmatch(path.stem):
        raise _bad(
            "experiment",
            f"the file's name {_shown_name(path.stem)!r} becomes the experiment's folder name: "
            "use up to 64 letters, digits, _, - and . (not starting with a dot) before .toml",
            source,
        )
    if path.stem.lower() in RESERVED_EXPERIMENT_NAMES:  # some file systems ignore case
        raise _bad("experiment", f"{path.stem!r} is a name the experiments folder uses", source)
    data = copy.deepcopy(data)
    table = data.pop("experiment", None)
    if not isinstance(table, dict):
        raise _bad("experiment", "missing: an experiment file needs an [experiment] table", source)
    for name in table:
        if name not in _EXPERIMENT_KEYS:
            raise _bad(
                f"experiment.{name}",
                f"unknown key (one of {', '.join(sorted(_EXPERIMENT_KEYS))})",
                source,
            )
    if "sweep" in data:
        raise _bad("sweep", "an experiment file sweeps with experiment.sweep, not [sweep]", source)
    title = table.get("title", path.stem)
    if not isinstance(title, str):
        raise _bad("experiment.title", f"expected a text, got {title!r}", source)
    run_seed = data.get("run", {}).get("seed", 0) if isinstance(data.get("run"), dict) else 0
    seed = _int(table.get("seed", run_seed), "experiment.seed", source)
    sweep_key: str | None = None
    sweep_values: list[Any] | None = None
    if "sweep" in table:
        sweep = table["sweep"]
        if not isinstance(sweep, dict) or set(sweep) != {"key", "values"}:
            raise _bad(
                "experiment.sweep", 'expected { key = "dotted.key", values = [...] }', source
            )
        sweep_key, sweep_values = sweep["key"], sweep["values"]
        if not isinstance(sweep_key, str) or not sweep_key:
            raise _bad("experiment.sweep.key", f"expected a dotted key, got {sweep_key!r}", source)
        if not isinstance(sweep_values, list) or len(sweep_values) < 2:
            raise _bad("experiment.sweep.values", "expected a list of at least two values", source)
    sizes = {}
    for name in SIZES:
        if name not in table:
            raise _bad(f"experiment.{name}", "missing", source)
        sizes[name] = _size(table[name], f"experiment.{name}", source)
    arms_raw = table.get("arms", {})
    if not isinstance(arms_raw, dict):
        raise _bad("experiment.arms", 'expected a table of arm = ["key=value", ...]', source)
    arms: dict[str, list[str]] = {TREATMENT: []}
    for name, overrides in arms_raw.items():
        if name.lower() == TREATMENT:
            raise _bad(f"experiment.arms.{name}", "the treatment arm is the file itself", source)
        if name.lower() in RESERVED_ARM_NAMES:
            raise _bad(f"experiment.arms.{name}", "a name the experiment folder uses", source)
        same = next((arm for arm in arms if arm.lower() == name.lower()), None)
        if same is not None:  # one folder on a file system that ignores case (macOS, Windows)
            raise _bad(f"experiment.arms.{name}", f"differs from arm {same!r} only by case", source)
        if not NAME_PATTERN.fullmatch(name):
            raise _bad(
                f"experiment.arms.{_shown_name(name)}",
                "an arm's name becomes a folder name: use up to 64 letters, digits, _, - and . "
                "(not starting with a dot)",
                source,
            )
        if not (
            isinstance(overrides, list) and overrides and all(isinstance(o, str) for o in overrides)
        ):
            raise _bad(
                f"experiment.arms.{name}", 'expected a list of "key=value" overrides', source
            )
        for assignment in overrides:
            if "=" not in assignment:
                raise _bad(f"experiment.arms.{name}", f"{assignment!r} is not key=value", source)
        arms[name] = list(overrides)
    claims_raw = table.get("claims")
    if not isinstance(claims_raw, list) or not claims_raw:
        raise _bad("experiment.claims", "missing: at least one [[experiment.claims]]", source)
    claims = [
        _claim(raw, f"experiment.claims.{i}", source, arms, sweep_values)
        for i, raw in enumerate(claims_raw)
    ]
    return Experiment(
        name=path.stem,
        title=title,
        path=path,
        scenario=data,
        arms=arms,
        claims=claims,
        seed=seed,
        sweep_key=sweep_key,
        sweep_values=list(sweep_values or []),
        sizes=sizes,
    )


def read_experiment(path: str | Path) -> Experiment:
    """Read an experiment file and check its ``[experiment]`` table (not yet its arms).

    Args:
        path: The TOML file.

    Returns:
        The experiment.

    Raises:
        ScenarioError: If the file is missing, not a regular UTF-8 text file of at most
            :data:`~model.user_files.MAX_SCENARIO_BYTES`, not TOML, or its ``[experiment]``
            table or name is bad.
    """
    path = Path(path)
    source = str(path)
    text = read_user_text(
        path, key="experiment", what="an experiment file", limit=MAX_SCENARIO_BYTES, source=source
    )
    check_text_nesting(text, "experiment", source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError("experiment", f"not valid TOML: {err}", source) from None
    check_data_nesting(data, source)
    experiment = parse_experiment(data, path)
    check_experiment_paths(experiment)
    return experiment


def check_experiment_paths(experiment: Experiment) -> None:
    """Refuse edge-list paths written in an experiment file that lead outside its folder.

    The file is someone's scenario with arms and a sweep: its own ``[network]``, every arm's
    overrides and the swept values are held to the rule of a scenario file
    (:func:`model.scenario_files.check_file_paths`).

    Raises:
        ScenarioError: Naming the key (and the arm) and the file.
    """
    for arm in experiment.arms:
        data = experiment.arm_base(arm, Size(2)).data
        if experiment.sweep_key:
            data["sweep"] = {"grid": {experiment.sweep_key: list(experiment.sweep_values)}}
        try:
            check_file_paths(data, experiment.path.parent, experiment.source)
        except ScenarioError as err:
            where = "" if arm == TREATMENT else f" (arm {arm})"
            raise ScenarioError(err.key, err.message + where, experiment.source) from None


def _principals_own(metric: str) -> bool:
    """True for the ``steps`` columns of one principal's own (NaN in the ``all`` row)."""
    return metric in ("alpha", "beta") or metric.startswith("belief_")


def steps_columns(scenario_data: dict[str, Any], source: str) -> list[str]:
    """The ``steps`` columns a scenario records (:func:`model.runner.probe_steps`)."""
    from mesaopt.model.runner import probe_steps

    rows = probe_steps(validate(scenario_data, source), source)
    return [c for c in rows[0] if c not in ("step", "principal")]


def check_experiment(experiment: Experiment, sizes: dict[str, Size] | None = None) -> None:
    """Validate every arm the claims use at every size, and the claims against the scenario.

    Every run of every arm is resolved as the sweep engine will resolve it (so a bad override
    or swept value fails here, naming the key), the metrics must be ``steps`` columns, the
    principals must exist and the step windows must lie within ``run.steps``.

    Args:
        experiment: The experiment.
        sizes: The sizes to check, by a name for messages (default: the file's quick and full).

    Raises:
        ScenarioError: On the first problem, naming the key and the file.
    """
    source = experiment.source
    columns: dict[str, list[str]] = {}  # per arm: an arm may add or drop channels
    for size_name, size in (sizes or experiment.sizes).items():
        runs = len(experiment.sweep_values or [None]) * size.replicates
        if runs > MAX_RUNS:  # checked here: the arms are planned with one replicate below
            key = f"experiment.{size_name}.replicates" if size_name in SIZES else "replicates"
            raise _bad(
                key,
                f"{size.replicates:,} replicates make {runs:,} runs per arm ({size_name} size), "
                f"more than {MAX_RUNS:,}",
                source,
            )
        design = grid_design(
            {experiment.sweep_key: list(experiment.sweep_values)} if experiment.sweep_key else {},
            1,
            experiment.seed,
            source=source,
        )
        for arm in experiment.arms_used():
            try:
                base = experiment.arm_base(arm, size)
                runs = plan_runs(base.data, design, source, base.base_dir)
                scenario = runs[0].scenario
                if arm not in columns:
                    columns[arm] = steps_columns(scenario, source)
            except ScenarioError as err:  # which arm, at which size, and always the file
                where = f"arm {arm}, {size_name} size"
                message = f"{err.message} ({where})"
                raise ScenarioError(err.key, message, err.source or source) from None
            names = [p["name"] for p in scenario["principals"]] + ["all"]
            steps = int(scenario["run"]["steps"])
            for i, claim in enumerate(experiment.claims):
                key = f"experiment.claims.{i}"
                if arm in (claim.arm, claim.control) and claim.metric not in columns[arm]:
                    raise _bad(
                        f"{key}.metric", f"no steps column {claim.metric!r} (arm {arm})", source
                    )
                for field_name in ("principal", "versus_principal"):
                    who = getattr(claim, field_name)
                    if who is not None and who not in names:
                        raise _bad(
                            f"{key}.{field_name}",
                            f"no principal {who!r} (one of {', '.join(names)})",
                            source,
                        )
                    if who == "all" and _principals_own(claim.metric):
                        raise _bad(
                            f"{key}.{field_name}",
                            f"{claim.metric} is a principal's own column, NaN for 'all': name "
                            f"one of {', '.join(names[:-1])}",
                            source,
                        )
                for field_name in ("steps", "versus_steps"):
                    window = getattr(claim, field_name)
                    if window is not None and window[1] > steps:
                        raise _bad(
                            f"{key}.{field_name}",
                            f"last step {window[1]} is beyond run.steps = {steps} "
                            f"({size_name} size, arm {arm})",
                            source,
                        )
