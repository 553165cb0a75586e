"""The essay's claims as experiments: verdict logic, the shipped files, the command end to end.

The verdict tests use synthetic replicates with fixed seeds whose effects are many standard
errors away from the verdict's boundary (stated per test), so that they test the logic, not luck.
The end-to-end test runs every shipped experiment at a tiny size through ``run.py experiments``
(``MESAOPT_EXPERIMENT_SIZE``, serial engine) and again to check that it resumes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mesaopt.analysis.experiment_files import Size, check_experiment, read_experiment
from mesaopt.analysis.experiments import (
    EXPERIMENT_DIR,
    EXPERIMENTS,
    ORDER,
    SIZE_ENV,
    VERDICT_COLUMNS,
    parse_size,
    run_experiments,
)
from mesaopt.analysis.verdicts import decide, paired_verdict
from mesaopt.model.errors import ScenarioError

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ["experiment", "claim", "metric", "effect", "ci_low", "ci_high", "n", "verdict"]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=300,
    )


# ------------------------------------------------------------------------- verdict logic


def _replicates(seed: int, n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """A control arm with a large spread between replicates and a small paired noise."""
    rng = np.random.default_rng(seed)
    control = rng.normal(0.0, 10.0, n)
    return control, rng.normal(0.0, 0.01, n)


def test_supported_refuted_and_inconclusive_with_a_positive_claim():
    control, noise = _replicates(1)
    # A shift of ±1 is ~450 paired standard errors (0.01/√20) from zero: no seed flips it.
    assert paired_verdict(control + 1 + noise, control, +1).verdict == "supported"
    assert paired_verdict(control - 1 + noise, control, +1).verdict == "refuted"
    # No shift: the interval is about ±0.005 around the mean paired noise, which is itself
    # N(0, 0.01/√20): it contains zero unless the t interval misses (5%); this seed is one where
    # it does not, and the two tests below need no luck.
    verdict = paired_verdict(control + noise, control, +1)
    assert verdict.verdict == "inconclusive"
    assert verdict.ci_low < 0 < verdict.ci_high
    assert verdict.n == 20


def test_a_negative_claim_flips_supported_and_refuted():
    control, noise = _replicates(2)
    lower = paired_verdict(control - 1 + noise, control, -1)
    assert lower.verdict == "supported"
    assert lower.effect == pytest.approx(-1, abs=0.02)  # 0.02 = 9 standard errors of the mean
    assert paired_verdict(control + 1 + noise, control, -1).verdict == "refuted"


def test_pairing_by_seed_matters():
    control, noise = _replicates(3)
    treatment = control + 0.1 + noise
    assert paired_verdict(treatment, control, +1).verdict == "supported"  # 0.1 = 45 SE
    # Shuffled, the pairs no longer share their replicate's draw: the differences have sd ≈ 14,
    # the interval ±6.6 around the same mean 0.1 — far wider than 0.1.
    shuffled = np.random.default_rng(4).permutation(control)
    unpaired = paired_verdict(treatment, shuffled, +1)
    assert unpaired.effect == pytest.approx(0.1 + np.mean(noise))
    assert unpaired.verdict == "inconclusive"
    assert unpaired.ci_high - unpaired.ci_low > 5


def test_no_interval_and_no_difference_are_inconclusive():
    assert paired_verdict(np.array([1.0]), np.array([0.0]), 1).verdict == "inconclusive"
    same = paired_verdict(np.ones(5), np.ones(5), 1)
    assert (same.effect, same.ci_low, same.ci_high, same.verdict) == (0, 0, 0, "inconclusive")
    nan_pair = paired_verdict(np.array([1.0, np.nan, 2.0]), np.array([0.0, 0.0, 0.5]), 1)
    assert nan_pair.n == 2
    with pytest.raises(ValueError, match="equal length"):
        paired_verdict(np.ones(3), np.ones(4), 1)
    with pytest.raises(ValueError, match="expected_sign"):
        decide(0.1, 0.2, 0)


# ------------------------------------------------------------------------- experiment files


def test_every_shipped_experiment_validates_at_both_sizes():
    assert list(EXPERIMENTS) == list(ORDER)
    assert sorted(p.stem for p in EXPERIMENT_DIR.glob("*.toml")) == sorted(ORDER)
    for name, experiment in EXPERIMENTS.items():
        check_experiment(experiment)  # every arm a claim uses, quick and full
        assert experiment.arms_used()[0] == "treatment", name
        assert experiment.sizes["full"].replicates > experiment.sizes["quick"].replicates


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (("[experiment]\n", "[experiment]\ncolour = 1\n"), "experiment.colour"),
        (("expected_sign = 1\n", "expected_sign = 2\n"), "experiment.claims.0.expected_sign"),
        # taken as written: 1.0 and true are not the integer 1 (fuzzing, issue 15)
        (("expected_sign = 1\n", "expected_sign = 1.0\n"), "experiment.claims.0.expected_sign"),
        (("expected_sign = 1\n", "expected_sign = true\n"), "experiment.claims.0.expected_sign"),
        (("seed = 103\n", f"seed = {2**63}\n"), "experiment.seed"),
        (('control = "equal"\n', 'control = "nope"\n'), "experiment.claims.0.control"),
        (('metric = "principal_loss"\n', 'metric = "nope"\n'), "experiment.claims.0.metric"),
        (('principal = "lab"\n', 'principal = "nobody"\n'), "experiment.claims.0.principal"),
        # beta is lab's own: NaN for "all", so a claim on it could never be decided
        (
            (
                'metric = "principal_loss"\nprincipal = "lab"\n',
                'metric = "beta"\nprincipal = "all"\n',
            ),
            "experiment.claims.0.principal",
        ),
        (
            ("quick = { replicates = 20,", "quick = { replicates = 1,"),
            "experiment.quick.replicates",
        ),
    ],
)
def test_a_bad_experiment_key_is_named(tmp_path, edit, key):
    text = (EXPERIMENT_DIR / "superoptimizer.toml").read_text(encoding="utf-8")
    assert edit[0] in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(edit[0], edit[1], 1), encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        check_experiment(read_experiment(path))
    assert err.value.key == key
    assert err.value.source == str(path)


def test_true_is_not_the_swept_value_1(tmp_path):
    """`at = true` once matched a swept 1 (True == 1 in Python); it is refused, naming the key."""
    text = (EXPERIMENT_DIR / "network.toml").read_text(encoding="utf-8")
    for old, new in (("values = [2, 8]", "values = [1, 8]"), ("along = [2, 8]", "along = [1, 8]")):
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / "one.toml"
    path.write_text(text.replace("at = 8\n", "at = 1\n", 1), encoding="utf-8")
    assert read_experiment(path).claims[1].at == 1  # the integer 1 is a swept value
    path.write_text(text.replace("at = 8\n", "at = true\n", 1), encoding="utf-8")
    with pytest.raises(ScenarioError, match="True is not a swept value") as err:
        read_experiment(path)
    assert err.value.key == "experiment.claims.1.at"


@pytest.mark.parametrize(
    "arm",
    [
        "../../../escaped",
        "/tmp/escaped",
        "a/b",
        "..",
        ".hidden",
        "",
        "ctl\nx",
        "equal\n",
        "a" * 65,
        "size.json",
        "Size.JSON",
        "Treatment",
        "EQUAL",
    ],
)
def test_an_arm_name_that_is_not_one_safe_folder_name_is_refused(tmp_path, arm):
    """Arm names become folders under --out: a path, a dot name or a reserved name is refused."""
    text = (EXPERIMENT_DIR / "superoptimizer.toml").read_text(encoding="utf-8")
    path = tmp_path / "bad.toml"
    path.write_text(
        text.replace(
            "[experiment.arms]\n", f'[experiment.arms]\n{json.dumps(arm)} = ["run.steps=5"]\n', 1
        ),
        encoding="utf-8",
    )
    with pytest.raises(ScenarioError, match="arms") as err:
        read_experiment(path)
    assert err.value.source == str(path)


@pytest.mark.parametrize(
    "stem", ["..", ".", ".hidden", "report", "Report", "verdicts.csv", "a b", "x\n"]
)
def test_an_experiment_file_whose_name_is_not_a_safe_folder_name_is_refused(tmp_path, stem):
    path = tmp_path / f"{stem}.toml"
    path.write_bytes((EXPERIMENT_DIR / "superoptimizer.toml").read_bytes())
    with pytest.raises(ScenarioError) as err:
        read_experiment(path)
    assert err.value.key == "experiment" and "name" in err.value.message


def test_an_arm_whose_network_cannot_be_built_is_refused_before_any_run(tmp_path):
    """The arm's overrides are valid alone; only building its network finds k odd on a ring."""
    text = (EXPERIMENT_DIR / "superoptimizer.toml").read_text(encoding="utf-8")
    path = tmp_path / "ring.toml"
    arm = 'equal = ["agents.capacity=1", "network.topology=ring", "network.k=39"]'
    path.write_text(text.replace('equal = ["agents.capacity=1"]', arm, 1), encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        check_experiment(read_experiment(path))
    assert err.value.key == "network.k" and "even k" in err.value.message
    assert err.value.source == str(path)


def test_too_many_replicates_are_refused_before_anything_is_planned(tmp_path):
    text = (EXPERIMENT_DIR / "superoptimizer.toml").read_text(encoding="utf-8")
    path = tmp_path / "big.toml"
    path.write_text(
        text.replace(
            "quick = { replicates = 20,",
            "quick = { replicates = 10**8,".replace("10**8", "100_000_000"),
            1,
        ),
        encoding="utf-8",
    )
    with pytest.raises(ScenarioError, match="at most 100,000") as err:
        read_experiment(path)
    assert err.value.key == "experiment.quick.replicates"


def test_parse_size():
    size = parse_size("replicates=3, n_agents=40")
    assert (size.replicates, size.n_agents, size.steps) == (3, 40, None)
    assert size.overrides() == ["network.n_agents=40"]
    for text in (
        "replicates=1",
        "n_agents=40",
        "replicates=two",
        "colour=3,replicates=2",
        "replicates=100001",
        "replicates=2,replicates=3",  # once taken as 3 without a word (fuzzing pass)
    ):
        with pytest.raises(ScenarioError):
            parse_size(text)
    with pytest.raises(ScenarioError) as err:
        parse_size("replicates=2, n_agents=9, replicates=3")
    assert err.value.key == "MESAOPT_EXPERIMENT_SIZE replicates" and "twice" in err.value.message


def test_a_size_of_more_than_a_million_runs_is_refused_before_anything_is_written(tmp_path):
    """The arms are checked with one replicate; the size's run count is checked on its own, and
    named as the given size (not the file's), before the experiments folder is made."""
    out = tmp_path / "out"
    with pytest.raises(ScenarioError, match=r"more than 1,000,000") as err:
        run_experiments(["trans"], out, engine="serial", size=Size(2_000_000, 24, 5))
    assert err.value.key == "replicates" and "given size" in err.value.message
    assert not out.exists()


# ------------------------------------------------------------------------- the command


def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path):
    text = (EXPERIMENT_DIR / "federated.toml").read_text(encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("[experiment]\n", "[experiment]\ncolour = 1\n"), encoding="utf-8")
    escape = tmp_path / "escape.toml"
    arms = '[experiment.arms]\n"../../escaped" = ["run.steps=5"]\n'
    escape.write_text(text.replace("[experiment.arms]\n", arms, 1), encoding="utf-8")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\x7fELF\x02\x01\x00\x00")
    inputs = sorted(tmp_path.iterdir())
    out = tmp_path / "out"
    for args in (
        [str(bad)],
        [str(escape)],
        [str(binary)],
        [str(tmp_path)],  # a folder
        ["no_such_experiment"],
        ["trans", "--workers=0"],
    ):
        result = cli("experiments", *args, f"--out={out}", "--engine=serial")
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert sorted(tmp_path.iterdir()) == inputs
        assert not (tmp_path.parent / "escaped").exists()
    result = cli("experiments", str(bad), f"--out={out}")
    assert "experiment.colour" in result.stderr and str(bad) in result.stderr


def test_a_folder_that_is_not_ours_is_refused_and_ours_is_resumed(tmp_path):
    """--out holding someone else's files: one line, exit 2, nothing written into it. An empty
    folder, a folder with the mark, and one written before the mark existed are used."""
    env = {SIZE_ENV: "replicates=2,n_agents=24"}
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "verdicts.txt").write_text("my notes", encoding="utf-8")
    result = cli("experiments", "overoptimization", f"--out={theirs}", "--engine=serial", env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"mesaopt: error: --out: {theirs} is a folder that is not a mesaopt experiments folder "
        "(no experiments.json); nothing was written: choose a new or empty folder"
    ]
    assert [p.name for p in theirs.iterdir()] == ["verdicts.txt"]

    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("experiments", "overoptimization", f"--out={empty}", "--engine=serial", env=env)
    assert result.returncode == 0, result.stderr
    mark = json.loads((empty / "experiments.json").read_text(encoding="utf-8"))
    assert mark["experiments"] == ["overoptimization"]
    (empty / "experiments.json").unlink()  # as written before the mark existed: verdicts.csv
    result = cli("experiments", "overoptimization", f"--out={empty}", "--engine=serial", env=env)
    assert result.returncode == 0, result.stderr
    assert (empty / "experiments.json").is_file()


def test_all_experiments_end_to_end_then_resume(tmp_path):
    out = tmp_path / "exp"
    env = {SIZE_ENV: "replicates=2,n_agents=24"}
    result = cli("experiments", f"--out={out}", "--engine=serial", env=env)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out / "verdicts.csv")
    assert list(table.columns) == list(VERDICT_COLUMNS)
    assert list(table.columns[: len(REQUIRED)]) == REQUIRED
    assert pd.read_parquet(out / "verdicts.parquet").shape == table.shape
    claims = sum(len(e.claims) for e in EXPERIMENTS.values())
    assert len(table) == claims and list(dict.fromkeys(table["experiment"])) == list(ORDER)
    assert set(table["verdict"]) <= {"supported", "refuted", "inconclusive"}
    assert (table["n"] == 2).all()
    for verdict in table["verdict"].unique():
        assert verdict in result.stdout
    page = (out / "report" / "index.html").read_text(encoding="utf-8")
    for name in ORDER:
        assert (out / "report" / f"{name}.png").stat().st_size > 10_000
        assert f"src='{name}.png'" in page
    first = {
        arm.name: pd.read_parquet(arm / "runs.parquet")
        for arm in (out / "overoptimization").iterdir()
        if arm.is_dir()
    }
    assert all((runs["status"] == "ok").all() for runs in first.values())
    again = cli("experiments", "overoptimization", f"--out={out}", "--engine=serial", env=env)
    assert again.returncode == 0, again.stderr
    for arm, runs in first.items():
        resumed = pd.read_parquet(out / "overoptimization" / arm / "runs.parquet")
        assert list(resumed["run_id"]) == list(runs["run_id"])
        assert (resumed["status"] == "skipped").all()  # the engine's own record: nothing reran
    rerun = pd.read_csv(out / "verdicts.csv")
    pd.testing.assert_frame_equal(rerun, table[table["experiment"] == "overoptimization"])
    # The report describes this call only: no figure of an experiment it did not run is left.
    assert sorted(p.name for p in (out / "report").iterdir()) == [
        "index.html",
        "overoptimization.png",
    ]


def test_an_arm_whose_every_run_fails_is_inconclusive_and_still_drawn(tmp_path, monkeypatch):
    """Every run of the control arm stops on a non-finite number: its claims are inconclusive
    with n = 0, the failures are counted, and the report and its figure are still written."""
    from mesaopt.model import model as model_module
    from mesaopt.model.finite import NonFiniteError

    original = model_module.MesaOptModel.step

    def step(self):
        if self.scenario.agents.capacity == 1 and self.scenario.run.steps > 1:  # the control arm
            raise NonFiniteError("steps", "profit", float("inf"), 1)
        return original(self)

    monkeypatch.setattr(model_module.MesaOptModel, "step", step)
    out = tmp_path / "out"
    table = run_experiments(
        ["superoptimizer"], out, engine="serial", size=Size(2, 30, 5), progress=False
    )
    assert set(table["verdict"]) == {"inconclusive"} and set(table["n"]) == {0}
    assert table.attrs["failed_runs"] == 2
    assert (out / "report" / "index.html").is_file()
    assert (out / "report" / "superoptimizer.png").stat().st_size > 0


def test_the_experiments_cluster_workers_leave_ctrl_c_to_the_driver() -> None:
    """The experiments' one LocalCluster is configured as a sweep's: its workers ignore SIGINT
    (a terminal's Ctrl-C reaches them too; the driver says one line and stops them)."""
    import signal

    from distributed import Client

    from mesaopt.analysis.experiments import _engine

    with _engine("local", None, 1, "fork") as address, Client(address) as client:
        handlers = client.run(lambda: signal.getsignal(signal.SIGINT))
    assert list(handlers.values()) == [signal.SIG_IGN]


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        # the file's own [network]
        (
            lambda t: t.replace(
                'topology = "barabasi_albert"', 'topology = "edgelist"\npath = "../secret/e.csv"'
            ),
            "network.path",
        ),
        # an arm's override written in the file
        (
            lambda t: t.replace(
                "[experiment.arms]\n",
                "[experiment.arms]\nout = [\"network.topology='edgelist'\", "
                "\"network.path='/etc/passwd'\"]\n",
                1,
            ),
            "network.path",
        ),
    ],
    ids=["own-network", "arm-override"],
)
def test_an_experiment_file_cannot_name_files_outside_its_folder(tmp_path, edit, key):
    """An experiment file is a scenario file with arms: its paths obey the same rule."""
    folder = tmp_path / "exp"
    folder.mkdir()
    text = (EXPERIMENT_DIR / "superoptimizer.toml").read_text(encoding="utf-8")
    path = folder / "paths.toml"
    path.write_text(edit(text), encoding="utf-8")
    with pytest.raises(ScenarioError, match="outside the scenario's folder") as err:
        read_experiment(path)
    assert err.value.key == key and err.value.source == str(path)


def test_a_sweep_through_zero_steps_is_inconclusive_without_warnings(tmp_path):
    """run.steps = 0 is a valid design point: its runs record no step, so every claim along it
    has no pairs (n = 0, inconclusive), with no traceback and no NumPy warning."""
    import warnings

    text = (ROOT / "scenarios" / "experiments" / "overoptimization.toml").read_text("utf-8")
    text = text.replace(
        'sweep = { key = "principals.0.selection.n", values = [1, 4, 16, 64] }',
        'sweep = { key = "run.steps", values = [0, 3] }',
    ).replace("along = [1, 64]", "along = [0, 3]")
    path = tmp_path / "steps0.toml"
    path.write_text(text, encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        table = run_experiments(
            [str(path)], tmp_path / "out", engine="serial", size=Size(2, 30, 3), progress=False
        )
    assert set(table["verdict"]) == {"inconclusive"} and set(table["n"]) == {0}
    assert table["treatment_mean"].isna().all()
