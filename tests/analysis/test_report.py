"""`run.py report`: figures and a self-contained report.html from a run or sweep folder."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from mesaopt.analysis.report import build_report
from mesaopt.analysis.sweep_figures import read_sweep
from mesaopt.run import main
from tests.analysis.conftest import small_run


def _self_contained(page: str) -> None:
    for attribute in re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]*)['"]""", page):
        assert attribute.startswith("data:"), attribute
    assert "<link" not in page and "<script" not in page


def test_report_of_a_run(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    assert main(["report", str(run)]) == 0
    out = run / "report"
    for name in ("proxy_vs_value", "failure_map", "goodhart", "agent_map", "agent_effort"):
        assert (out / f"{name}.png").stat().st_size > 1000
        assert (out / f"{name}.svg").stat().st_size > 1000
    page = (out / "report.html").read_text(encoding="utf-8")
    _self_contained(page)
    assert page.count("data:image/png;base64,") == 5
    assert "Key numbers" in page and "watts_strogatz" in page
    assert "report.html" in capsys.readouterr().out


def test_report_with_animation(grid_run_dir: Path, tmp_path: Path) -> None:
    report = build_report(grid_run_dir, tmp_path / "rep", animate=True)
    assert report.animations[0].suffix == ".gif"
    page = report.html.read_text(encoding="utf-8")
    _self_contained(page)
    assert "data:image/gif;base64," in page


def test_report_of_a_sweep(sweep_dir: Path, tmp_path: Path) -> None:
    assert main(["report", str(sweep_dir), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "overoptimization_regulated.png").is_file()
    assert (tmp_path / "rep" / "sweep_principals_1_selection_n.svg").is_file()
    _self_contained((tmp_path / "rep" / "report.html").read_text(encoding="utf-8"))


def test_report_of_a_sweep_ignores_stale_runs(sweep_dir: Path, tmp_path: Path) -> None:
    """runs/ keeps runs of an earlier design; only the runs sweep.json lists are reported."""
    sweep = tmp_path / "sweep"
    shutil.copytree(sweep_dir, sweep)
    listed = [r["run_id"] for r in json.loads((sweep / "sweep.json").read_text())["runs"]]
    key = "principals.1.selection.n"
    small_run(sweep / "runs" / "stale0123456789ab", [f"{key}=64", "run.steps=12"])
    (sweep / "runs" / "failedfedcba9876").mkdir()  # listed below, but never completed
    record = json.loads((sweep / "sweep.json").read_text())
    record["runs"].append({"run_id": "failedfedcba9876", "design_id": 2, "replicate": 2})
    (sweep / "sweep.json").write_text(json.dumps(record), encoding="utf-8")

    runs = read_sweep(sweep)
    assert sorted(runs.runs["run_id"].unique()) == sorted(listed)
    assert sorted(runs.runs[key].unique()) == [1, 4, 16]  # not the stale run's 64
    assert runs.missing == ["failedfedcba9876"]

    report = build_report(sweep, tmp_path / "rep")
    page = report.html.read_text(encoding="utf-8")
    assert "stale0123456789ab" not in page
    assert all(run_id in page for run_id in listed)
    assert "6 complete runs of the 7 listed in sweep.json" in page
    assert "failedfedcba9876" in page  # named as left out


def test_report_of_a_folder_that_is_not_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a run folder" in err
    assert not (tmp_path / "report").exists()
