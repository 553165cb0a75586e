"""The package as a user gets it: the sdist and the wheel, the wheel installed in a fresh venv.

The repository root is the package folder (``package-dir = {"mesaopt" = "."}``), so what lands
in the archives, what a non-editable install can find (the shipped scenarios) and what it must not
shadow (a user's own ``model.py``) are checked on real artefacts, not on the checkout.

The fresh venv gets the wheel with ``pip install --no-deps``; its dependencies come from this
environment's site-packages, named in a ``.pth`` file. A directory named in a ``.pth`` file is put
on ``sys.path`` but its own ``.pth`` files are not processed, so the editable install's finder
(``__editable__.mesaopt-*.pth``) stays out: the venv imports the wheel's mesaopt or none.
"""

from __future__ import annotations

import json
import os
import re
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from mesaopt.model import runner
from mesaopt.model.compile_notice import NOTICE

pytestmark = pytest.mark.slow  # about half a minute: a build, a venv and a compiled first run

ROOT = Path(__file__).resolve().parents[1]
STEMS = sorted(path.stem for path in (ROOT / "scenarios").glob("*.toml"))
SUBPACKAGES = ("model", "agents", "analysis")
REVISION = re.compile(r"[0-9a-f]{40}(\+dirty)?")
#: Folders of the checkout that are not the package.
NOT_PACKAGE = {"tests", "benchmarks", "docs", ".venv", ".git", "build", "out", "mesaopt-demo"}
#: The user's own model.py (the Mesa examples' convention): it leaves a mark when imported.
USER_MODEL = (
    "from pathlib import Path\n\n"
    "Path(__file__).with_name('imported.txt').write_text('the user model.py was imported')\n"
    "WHO = 'user'\n"
)


def run(
    *args: str | Path, cwd: Path, check: bool = True, terminal: bool = False
) -> subprocess.CompletedProcess:
    """Run a command with an environment that points at nothing of the checkout.

    ``terminal``: its stderr is a pseudo-terminal (what a user at a shell has), read back as
    text with its line ends as written.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "VIRTUAL_ENV", "GIT_"))
    }
    env["PYTHONNOUSERSITE"] = "1"
    command = [str(arg) for arg in args]
    if terminal:
        result = _run_on_a_terminal(command, cwd, env)
    else:
        result = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600
        )
    if check:
        assert result.returncode == 0, f"{args}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def _run_on_a_terminal(command: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """``command`` with stdout captured and stderr on a pseudo-terminal that is read back.

    Killed, as ``subprocess.run(timeout=600)`` would, if it has not finished within 600 s.
    """
    import pty
    import select
    import time

    reader, writer = pty.openpty()
    with subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=writer, text=True
    ) as process:
        os.close(writer)  # the child holds the only other end: reading ends when it exits
        written = bytearray()
        deadline = time.monotonic() + 600
        while True:
            ready, _, _ = select.select([reader], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                process.kill()
                pytest.fail(f"{command} did not finish within 600 s")
            try:
                chunk = os.read(reader, 4096)
            except OSError:  # EIO: the terminal's other end is closed (Linux)
                break
            if not chunk:
                break
            written += chunk
        os.close(reader)
        stdout = process.stdout.read()
        returncode = process.wait(timeout=600)
    stderr = written.decode("utf-8", "replace").replace("\r\n", "\n")
    return subprocess.CompletedProcess(command, returncode, stdout, stderr)


def git_repository(path: Path) -> Path:
    """Make ``path`` a git repository with one commit."""
    run("git", "init", "-q", path, cwd=path)
    run(
        *("git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"),
        *("commit", "-q", "--allow-empty", "-m", "a user's project"),
        cwd=path,
    )
    return path


def source_files() -> set[str]:
    """The package's modules, as paths inside the package folder."""
    found = {"__init__.py", "run.py"}
    for sub in SUBPACKAGES:
        found |= {
            path.relative_to(ROOT).as_posix()
            for path in (ROOT / sub).rglob("*.py")
            if "__pycache__" not in path.parts
        }
    return found


EXPERIMENT_STEMS = sorted(path.stem for path in (ROOT / "scenarios" / "experiments").glob("*.toml"))
DATA_FILES = (
    {f"scenarios/{stem}.toml" for stem in STEMS}
    | {f"scenarios/experiments/{stem}.toml" for stem in EXPERIMENT_STEMS}
    | {"model/default.toml"}
)


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path | str]:
    """The sdist and the wheel, the wheel built from the sdist (as ``python -m build`` does).

    Building from the sdist also keeps stale modules out: a wheel built in the checkout reuses
    ./build/lib/, where copies of moved or deleted modules would survive into the wheel.
    """
    out = tmp_path_factory.mktemp("dist")
    result = run(sys.executable, "-m", "build", "--outdir", out, ROOT, cwd=out)
    (sdist,) = out.glob("mesaopt-*.tar.gz")
    (wheel,) = out.glob("mesaopt-*.whl")
    return {"sdist": sdist, "wheel": wheel, "log": result.stdout + result.stderr}


@pytest.fixture(scope="module")
def installed(dists, tmp_path_factory) -> dict[str, Path]:
    """A fresh venv with the wheel installed, inside a git repository (a user's project)."""
    project = git_repository(tmp_path_factory.mktemp("project"))
    venv = project / ".venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=project)  # this pip installs
    python = venv / "bin" / "python"
    purelib = run(
        python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=project
    ).stdout.strip()
    # This environment's dependencies, without its editable mesaopt (see the module docstring).
    (Path(purelib) / "_mesaopt_test_dependencies.pth").write_text(
        "".join(f"{path}\n" for path in site.getsitepackages()), encoding="utf-8"
    )
    run(
        *(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps"),
        *("--no-index", "--ignore-installed", dists["wheel"]),  # never touch the other mesaopt
        cwd=project,
    )
    user = project / "my-model"  # a user's folder with a model.py of its own
    user.mkdir()
    (user / "model.py").write_text(USER_MODEL, encoding="utf-8")
    return {
        "python": python,
        "bin": venv / "bin",
        "package": Path(purelib) / "mesaopt",
        "user": user,
    }


def test_the_build_has_no_packaging_warnings(dists):
    log = dists["log"]
    assert "is absent from the `packages` configuration" not in log, log
    assert "would be ignored" not in log, log


def test_the_wheel_holds_the_package_its_data_and_nothing_else(dists):
    names = zipfile.ZipFile(dists["wheel"]).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"mesaopt", dists["wheel"].name.split("-py3")[0] + ".dist-info"}, top
    files = {name.removeprefix("mesaopt/") for name in names if name.startswith("mesaopt/")}
    junk = sorted(
        name
        for name in files
        if name.split("/")[0] in NOT_PACKAGE or "__pycache__" in name or name.endswith(".pyc")
    )
    assert not junk, f"not package files in the wheel: {junk}"
    assert {name for name in files if name.endswith(".py")} == source_files()
    assert {name for name in files if not name.endswith(".py")} == DATA_FILES


def test_the_sdist_holds_the_sources_and_data(dists):
    with tarfile.open(dists["sdist"]) as sdist:
        members = sdist.getnames()
    prefix = members[0].split("/")[0] + "/"
    files = {name.removeprefix(prefix) for name in members if name.startswith(prefix)}
    assert {"pyproject.toml", "README.md", "PKG-INFO"} <= files
    assert source_files() | DATA_FILES <= files, sorted(source_files() | DATA_FILES - files)
    # MANIFEST.in grafts the test suite, the benchmarks and the docs into the sdist (a
    # researcher checks a release from it); nothing built, cached or local goes in.
    for folder in ("tests", "benchmarks", "docs"):
        tracked = {str(p.relative_to(ROOT)) for p in (ROOT / folder).rglob("*") if p.is_file()}
        tracked = {name for name in tracked if "__pycache__" not in name}
        assert tracked <= files, sorted(tracked - files)[:5]
    junk = sorted(
        name
        for name in files
        if name.split("/")[0] in NOT_PACKAGE - {"tests", "benchmarks", "docs"}
        or "__pycache__" in name
        or name.endswith((".pyc", ".nbi", ".nbc"))
    )
    assert not junk, f"not package files in the sdist: {junk}"


def test_the_venv_imports_the_wheel_not_the_checkout(installed):
    result = run(
        installed["python"],
        "-c",
        "import json, mesaopt, importlib.metadata as m; "
        "d = m.distribution('mesaopt'); "
        "print(json.dumps([mesaopt.__file__, d.read_text('direct_url.json') or '{}']))",
        cwd=installed["user"],
    )
    module_file, direct_url = json.loads(result.stdout)
    print(f"mesaopt.__file__ in the test venv: {module_file}")
    assert Path(module_file) == installed["package"] / "__init__.py"
    assert not json.loads(direct_url).get("dir_info", {}).get("editable"), direct_url


def test_scenarios_lists_every_shipped_scenario(installed):
    result = run(installed["bin"] / "mesaopt", "scenarios", cwd=installed["user"])
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert set(STEMS) <= listed, result.stdout
    for stem in STEMS:
        assert (installed["package"] / "scenarios" / f"{stem}.toml").is_file()


def test_simulate_beside_a_user_model_py_outside_a_checkout(installed):
    user, package = installed["user"], installed["package"]
    scenario = package / "scenarios" / "baseline.toml"
    # The venv sits in a git repository: a revision from it would be the user's, not ours.
    assert REVISION.fullmatch(run("git", "-C", package, "rev-parse", "HEAD", cwd=user).stdout[:40])
    # On a terminal, as a newcomer runs it: a fresh install has no compiled kernels, and the
    # first run says once that it is compiling them; the next run loads them and says nothing.
    result = run(
        *(installed["bin"] / "mesaopt", "simulate", scenario),
        *("--set", "network.n_agents=60", "--steps", "3", "--out", "OUT"),
        cwd=user,
        terminal=True,
    )
    assert "wrote OUT" in result.stdout, result.stdout
    assert result.stderr.count(NOTICE) == 1, result.stderr
    again = run(
        *(installed["bin"] / "mesaopt", "simulate", scenario),
        *("--set", "network.n_agents=60", "--steps", "3", "--out", "AGAIN"),
        cwd=user,
        terminal=True,
    )
    assert "wrote AGAIN" in again.stdout and NOTICE not in again.stderr, again.stderr
    manifest = json.loads((user / "OUT" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["steps"] == 3 and manifest["scenario"]["network"]["n_agents"] == 60
    assert manifest["git_revision"] is None
    assert manifest["versions"]["mesaopt"]
    # `python -m` puts the working folder first on sys.path: still our model, not the user's.
    run(installed["python"], "-m", "mesaopt.run", "check", scenario, cwd=user)
    assert not (user / "imported.txt").exists(), "mesaopt imported the user's model.py"


def test_top_level_names_are_the_users(installed):
    user = installed["user"]
    result = run(installed["python"], "-c", "import model; print(model.WHO)", cwd=user)
    assert result.stdout.strip() == "user"
    assert (user / "imported.txt").exists()
    for name in ("model", "agents", "analysis", "run"):
        result = run(installed["python"], "-c", f"import {name}", cwd=user.parent, check=False)
        assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr, (name, result)


def test_git_revision_in_the_checkout():
    top = run("git", "-C", ROOT, "rev-parse", "--show-toplevel", cwd=ROOT, check=False)
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != ROOT:
        pytest.skip("not run from a git checkout of the project")
    head = run("git", "-C", ROOT, "rev-parse", "HEAD", cwd=ROOT).stdout.strip()
    runner.git_revision.cache_clear()
    try:
        revision = runner.git_revision()
    finally:
        runner.git_revision.cache_clear()
    assert revision is not None and REVISION.fullmatch(revision), revision
    assert revision.split("+")[0] == head


def test_git_revision_only_at_the_top_of_a_work_tree(tmp_path, monkeypatch):
    repository = git_repository(tmp_path)
    inside = repository / "lib" / "mesaopt"
    inside.mkdir(parents=True)
    head = run("git", "rev-parse", "HEAD", cwd=repository).stdout.strip()
    try:
        monkeypatch.setattr(runner, "PROJECT_ROOT", inside)
        runner.git_revision.cache_clear()
        assert runner.git_revision() is None
        monkeypatch.setattr(runner, "PROJECT_ROOT", repository)
        runner.git_revision.cache_clear()
        assert runner.git_revision() == head
        (repository / "tracked.txt").write_text("a")
        run("git", "add", "tracked.txt", cwd=repository)
        runner.git_revision.cache_clear()
        assert runner.git_revision() == f"{head}+dirty"
    finally:
        runner.git_revision.cache_clear()
