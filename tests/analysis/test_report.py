"""`run.py report`: figures and a self-contained report.html from a run or sweep folder."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mesaopt.analysis.agent_maps import (
    NODE_LINK_MAX_AGENTS,
    agent_groups,
    group_edge_counts,
    prefers_group_view,
)
from mesaopt.analysis.figures import failure_table
from mesaopt.analysis.report import build_report, design_summary, key_numbers, safe_file_stem
from mesaopt.analysis.run_folder import read_run
from mesaopt.analysis.sweep_figures import read_sweep
from mesaopt.model.measures import CATEGORIES, FLAGS
from mesaopt.run import main
from tests.analysis.conftest import small_run

ESCAPE = "x/../../../ESCAPED"


def _self_contained(page: str) -> None:
    for attribute in re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]*)['"]""", page):
        assert attribute.startswith("data:"), attribute
    assert "<link" not in page and "<script" not in page


def test_report_of_a_run(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A 120-agent Watts–Strogatz run (mean degree 8): the agents are shown by group."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    assert main(["report", str(run)]) == 0
    out = run / "report"
    for name in ("proxy_vs_value", "failure_map", "loss_parts", "goodhart", "agent_groups"):
        assert (out / f"{name}.png").stat().st_size > 1000
        assert (out / f"{name}.svg").stat().st_size > 1000
    assert not (out / "agent_map.png").exists()  # no hairball
    page = (out / "report.html").read_text(encoding="utf-8")
    _self_contained(page)
    assert page.count("data:image/png;base64,") == 5
    assert "Key numbers" in page and "watts_strogatz" in page
    assert "report.html" in capsys.readouterr().out


def test_report_counts_are_integers(run_dir: Path, tmp_path: Path) -> None:
    """Agent counts read 60, not 60.000 (issue 15); other numbers keep three decimals."""
    report = build_report(run_dir, tmp_path / "rep")
    page = report.html.read_text(encoding="utf-8")
    rows = re.findall(r"<tr><td>((?:n|flagged)_\w+)</td>(.*?)</tr>", page)
    assert {name for name, _ in rows} >= {"n_trans", "n_aligned", "n_decomposed"}
    assert {f"flagged_{flag}" for flag in FLAGS} <= {name for name, _ in rows}
    for _name, cells in rows:
        for cell in re.findall(r"<td>([^<]*)</td>", cells):
            assert re.fullmatch(r"\d+", cell), cell
    assert re.search(r"<tr><td>proxy \(final\)</td><td>-?\d+\.\d{3}</td>", page)
    assert re.search(r"<tr><td>loss_goals \(last quarter\)</td><td>-?\d+\.\d{3}</td>", page)


def test_a_run_without_steps_gets_a_report_that_says_so(tmp_path: Path) -> None:
    """run.steps = 0: nothing to draw over time; the page names the scenario and says why."""
    run = small_run(tmp_path / "zero", ["run.steps=0"])
    report = build_report(run, tmp_path / "rep")
    assert report.figures == []
    assert any("recorded no step" in note for note in report.notes)
    page = report.html.read_text(encoding="utf-8")
    assert "recorded no step" in page and "Scenario" in page


def test_small_sparse_networks_keep_their_node_maps(tmp_path: Path) -> None:
    ring = small_run(
        tmp_path / "ring", ["network.topology=ring", "network.n_agents=60", "network.k=2"]
    )
    assert not prefers_group_view(read_run(ring).network)
    report = build_report(ring, tmp_path / "rep")
    assert (tmp_path / "rep" / "agent_map.png").is_file()
    assert (tmp_path / "rep" / "agent_effort.png").is_file()
    assert not (tmp_path / "rep" / "agent_groups.png").exists()
    assert len(report.figures) == 6


def test_group_view_counts_every_edge_once(run_dir: Path) -> None:
    run = read_run(run_dir)
    network = run.network
    assert network.n_nodes <= NODE_LINK_MAX_AGENTS and prefers_group_view(network)  # dense
    snapshot = run.agents[run.agents["step"] == run.agents["step"].max()]
    labels, groups = agent_groups(snapshot, run.principals)
    counts = group_edge_counts(network, snapshot["node"].to_numpy(), groups)
    assert counts.shape == (len(labels), len(labels))
    assert (counts == counts.T).all()
    assert np.triu(counts).sum() == network.n_edges
    # the diagonal: edges with both ends in the group, counted by brute force
    adjacency = network.adjacency.toarray() != 0
    nodes = snapshot["node"].to_numpy()
    for g in range(len(labels)):
        members = nodes[groups == g]
        assert counts[g, g] == adjacency[np.ix_(members, members)].sum() // 2


def test_failure_map_counts_distinct_agents_with_intervals(run_dir: Path) -> None:
    """n is the number of distinct agents of the category; below two agents, no interval."""
    run = read_run(run_dir)
    table = failure_table(run.steps, run.agents).set_index(["principal", "category"])
    distinct = run.agents.groupby(["principal", "category"])["agent_id"].nunique()
    for key, n in distinct.items():
        assert table.loc[key, "n"] == n
        for loss in ("principal_loss", "mesa_loss"):
            half = table.loc[key, f"{loss}_half"]
            assert np.isnan(half) if n < 2 else half > 0
    absent = table[~table.index.isin(distinct.index)]
    assert absent["n"].isna().all()
    plain = failure_table(run.steps)  # without snapshots: no n, no intervals
    assert plain["n"].isna().all() and plain["principal_loss_half"].isna().all()


def test_one_agent_has_no_interval() -> None:
    agents = pd.DataFrame(
        {
            "agent_id": [0, 0, 1, 2],
            "step": [10, 20, 20, 20],
            "principal": ["p"] * 4,
            "category": ["kind", "kind", "trans", "trans"],
            "principal_loss": [1.0, 3.0, 1.0, 2.0],
            "mesa_loss": [0.0, 0.0, 0.5, 0.5],
        }
    )
    steps = pd.DataFrame(
        {"step": [20], "principal": ["p"]}
        | {f"n_{c}": [1 if c in ("kind", "trans") else 0] for c in ("super", "sub", "trans")}
        | {f"n_{c}": [1 if c == "kind" else 0] for c in ("stale", "kind", "aligned")}
        | {
            f"{loss}_{c}": [1.0]
            for loss in ("principal_loss", "mesa_loss")
            for c in ("super", "sub", "trans", "stale", "kind", "aligned")
        }
    )
    table = failure_table(steps, agents).set_index("category")
    assert table.loc["kind", "n"] == 1  # one agent seen twice is one agent
    assert np.isnan(table.loc["kind", "principal_loss_half"])
    # two agents (means 1 and 2): t(0.975, 1) · sd / √2 = 12.706 · 0.7071 / 1.4142
    assert table.loc["trans", "principal_loss_half"] == pytest.approx(12.7062 * 0.5, rel=1e-3)


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
    assert (tmp_path / "rep" / "sweep_principals_1_selection_n_loss_parts.png").is_file()
    page = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    _self_contained(page)
    # one row per design point (3), not one per run (6); every run in runs.csv
    assert "Design points" in page and "runs.csv" in page
    body = page.split("Design points", 1)[1].split("</table>", 1)[0]
    assert body.count("<tr><td>") == 3
    runs = pd.read_csv(tmp_path / "rep" / "runs.csv")
    assert len(runs) == 6 and set(runs["design_id"]) == {0, 1, 2}


def test_a_sweep_of_runs_without_steps_gets_a_report_that_says_so(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = ["--set", "run.steps=0", "--set", "network.n_agents=30", "--replicates", "2"]
    grid = ["--grid", "principals.0.selection.n=1,4", "--engine", "serial", "--out", str(sweep)]
    baseline = str(Path(__file__).resolve().parents[2] / "scenarios" / "baseline.toml")
    assert main(["sweep", baseline, *args, *grid]) == 0
    assert main(["report", str(sweep), "--out", str(tmp_path / "rep")]) == 0
    page = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert "no sweep figures and no design summary" in page and "recorded no step" in page


def test_design_summary_gives_replicates_and_intervals(sweep_dir: Path) -> None:
    sweep = read_sweep(sweep_dir)
    summary = design_summary(sweep.runs, sweep.parameters)
    key = "principals.1.selection.n"
    assert list(summary[key]) == [1, 4, 16] and (summary["replicates"] == 2).all()
    everyone = sweep.runs[sweep.runs["principal"] == "all"]
    for _, row in summary.iterrows():
        values = everyone.loc[everyone[key] == row[key], "value"]
        assert row["value"] == pytest.approx(values.mean())
        low, high = (float(x) for x in row["value 95% CI"].split(" … "))
        half = 12.7062 * values.std(ddof=1) / np.sqrt(2)  # t(0.975, 1) with two replicates
        assert (high - low) / 2 == pytest.approx(half, abs=1e-3)


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
    listing = pd.read_csv(tmp_path / "rep" / "runs.csv")
    assert "stale0123456789ab" not in page and "stale0123456789ab" not in set(listing["run_id"])
    assert sorted(listing["run_id"]) == sorted(listed)
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


def test_safe_file_stem() -> None:
    assert safe_file_stem(ESCAPE) == "x_.._.._.._ESCAPED"
    assert "/" not in safe_file_stem("a/b\\c") and safe_file_stem("../..") == "_.."
    assert safe_file_stem("") == "unnamed" and safe_file_stem(".hidden") == "hidden"
    used: set[str] = set()
    assert [safe_file_stem(n, used) for n in ("a/b", "a_b", "a:b")] == ["a_b", "a_b_2", "a_b_3"]


def _rename_principal(sweep: Path, old: str, new: str) -> None:
    """Hand-edit every run of a sweep so that principal ``old`` is called ``new``."""
    for run in (sweep / "runs").iterdir():
        manifest = json.loads((run / "manifest.json").read_text())
        for principal in manifest["scenario"]["principals"]:
            if principal["name"] == old:
                principal["name"] = new
        (run / "manifest.json").write_text(json.dumps(manifest))
        for table in ("steps", "selections", "agents", "events"):
            file = run / f"{table}.parquet"
            if file.is_file():
                frame = pd.read_parquet(file)
                if "principal" in frame:
                    frame["principal"] = frame["principal"].replace(old, new)
                    frame.to_parquet(file, index=False)


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_a_hand_edited_principal_name_cannot_escape_the_report(
    sweep_dir: Path, tmp_path: Path
) -> None:
    """A principal called x/../../../ESCAPED in the manifests: every file stays in the folder."""
    box = tmp_path / "a" / "b" / "c"
    sweep = box / "sweep"
    shutil.copytree(sweep_dir, sweep)
    _rename_principal(sweep, "regulated", ESCAPE)
    before = _files(tmp_path)
    assert main(["report", str(sweep)]) == 0
    written = _files(tmp_path) - before
    report = (sweep / "report").resolve()
    assert written and all(p.resolve().is_relative_to(report) for p in written)
    assert not any("ESCAPED" in p.name for p in tmp_path.rglob("*") if p.parent != report)
    assert (report / "overoptimization_x_.._.._.._ESCAPED.png").is_file()
    page = (report / "report.html").read_text(encoding="utf-8")
    assert "x/../../../ESCAPED" in page  # the caption names it as it is (escaped HTML)


def test_an_unsafe_run_id_in_sweep_json_is_refused(
    sweep_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    sweep = tmp_path / "sweep"
    shutil.copytree(sweep_dir, sweep)
    record = json.loads((sweep / "sweep.json").read_text())
    record["runs"][0]["run_id"] = "../../../ESCAPED"
    (sweep / "sweep.json").write_text(json.dumps(record))
    assert main(["report", str(sweep)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unsafe run_id" in err
    assert not (sweep / "report").exists()


@pytest.mark.parametrize("content", ["", '{"scenario": {"run"', "{}", "[]", '{"seed": 1}'])
def test_an_empty_or_truncated_manifest_is_one_line(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, content: str
) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "manifest.json").write_text(content, encoding="utf-8")
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "manifest.json" in err
    assert not (run / "report").exists()


@pytest.mark.parametrize("content", ["", '{"runs": [', "[1, 2]"])
def test_an_empty_or_truncated_sweep_json_is_one_line(
    sweep_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, content: str
) -> None:
    sweep = tmp_path / "sweep"
    shutil.copytree(sweep_dir, sweep)
    (sweep / "sweep.json").write_text(content, encoding="utf-8")
    assert main(["report", str(sweep)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sweep.json" in err
    assert not (sweep / "report").exists()


def test_report_out_on_someone_elses_folder_is_refused(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`--out /` or a folder of one's own files: one line, exit 2, nothing written into it; an
    earlier report folder is written again."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine", encoding="utf-8")
    for out, reason in ((theirs, "not a mesaopt report folder"), (Path("/"), "not a folder name")):
        assert main(["report", str(run_dir), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("mesaopt: error: --out: "), err
        assert reason in err, err
    assert [p.name for p in theirs.iterdir()] == ["notes.txt"]
    ours = tmp_path / "ours"
    assert main(["report", str(run_dir), "--out", str(ours)]) == 0
    assert main(["report", str(run_dir), "--out", str(ours)]) == 0
    assert (ours / "report.html").is_file()


def test_a_report_stopped_half_way_is_drawn_again(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Ctrl-C while the figures are drawn leaves figures and no report.html: the folder is still
    the report's own (its hidden mark is written first), and the next report draws it whole."""
    from mesaopt.analysis import report

    out = tmp_path / "report"
    draw = report._figure_html

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "_figure_html", interrupted)
    assert main(["report", str(run_dir), "--out", str(out)]) == 130
    assert any(out.glob("*.png")) and not (out / "report.html").exists()
    monkeypatch.setattr(report, "_figure_html", draw)
    capsys.readouterr()
    assert main(["report", str(run_dir), "--out", str(out)]) == 0, capsys.readouterr().err
    assert (out / "report.html").is_file()


def test_a_corrupt_table_is_one_line(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "steps.parquet").write_bytes(b"not parquet")
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"mesaopt: error: {run}: a table cannot be read"), err
    assert not (run / "report").exists()


def test_key_numbers_count_agents_by_flag_as_well_as_by_primary_category(run_dir: Path) -> None:
    """Primary categories partition the decomposed agents; flags overlap and count everyone."""
    run = read_run(run_dir)
    numbers = key_numbers(run).set_index("principal")
    final = run.steps[run.steps["step"] == run.steps["step"].max()].set_index("principal")
    for name, row in numbers.iterrows():
        for flag in FLAGS:
            assert row[f"flagged_{flag}"] == final.loc[name, f"flagged_{flag}"]
        primary = sum(row[f"n_{category}"] for category in CATEGORIES)
        assert primary == row["n_decomposed"] == final.loc[name, "n_decomposed"]
