"""`run.py report`: figures and a self-contained report.html from a run or sweep folder."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from analysis.report import build_report
from run import main


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


def test_report_of_a_folder_that_is_not_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a run folder" in err
    assert not (tmp_path / "report").exists()
