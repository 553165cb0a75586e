"""Recorder: streamed parts, atomic final tables, crash leftovers, CSV."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mesaopt.model.recording import TABLES, Recorder


def rows(step: int, n: int = 3):
    return [{"step": step, "principal": f"p{i}", "value": float(step * i)} for i in range(n)]


def test_parts_are_flushed_and_merged_in_order(tmp_path):
    recorder = Recorder(tmp_path / "run", flush_rows=5)
    for step in range(10):
        recorder("steps", rows(step))
    parts = sorted((tmp_path / "run" / ".partial" / "steps").glob("part-*.parquet"))
    assert len(parts) == 5  # 30 rows in batches of 3: a part every 6 (>= 5) rows
    for part in parts:  # every flushed part is a complete, readable file
        assert pq.read_table(part).num_rows == 6
    manifest = recorder.close({"seed": 1})
    steps = pd.read_parquet(tmp_path / "run" / "steps.parquet")
    assert list(steps["step"]) == [s for s in range(10) for _ in range(3)]
    assert manifest["row_counts"]["steps"] == 30
    assert not (tmp_path / "run" / ".partial").exists()
    written = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert written["row_counts"] == manifest["row_counts"]
    assert set(written["files"]) == set(TABLES)


def test_a_buffer_is_flushed_when_it_holds_flush_bytes(tmp_path):
    columns = {"step": np.arange(1000, dtype=np.int64), "x": np.linspace(0, 1, 1000)}
    batch_bytes = 16 * 1000  # two 8-byte columns
    recorder = Recorder(tmp_path / "run", flush_bytes=3 * batch_bytes)
    for _ in range(7):
        recorder("agents", columns)
    parts = sorted((tmp_path / "run" / ".partial" / "agents").glob("part-*.parquet"))
    assert [pq.read_table(part).num_rows for part in parts] == [3000, 3000]
    recorder.close({})
    agents = pq.read_table(tmp_path / "run" / "agents.parquet")
    assert agents.num_rows == 7000
    assert agents["x"].to_numpy().tolist() == np.tile(columns["x"], 7).tolist()


def test_the_byte_budget_is_shared_and_the_fullest_buffer_is_flushed(tmp_path):
    recorder = Recorder(tmp_path / "run", flush_bytes=40_000)
    recorder("agents", {"step": np.arange(2000), "x": np.ones(2000)})  # 32,000 bytes
    recorder("selections", {"step": np.arange(300), "x": np.ones(300)})  # 4,800: under budget
    assert not (tmp_path / "run" / ".partial").exists()
    recorder("selections", {"step": np.arange(300), "x": np.ones(300)})  # total 41,600
    flushed = sorted(p.parent.name for p in (tmp_path / "run" / ".partial").rglob("*.parquet"))
    assert flushed == ["agents"]
    recorder.close({})
    assert recorder.row_counts["agents"] == 2000 and recorder.tables["selections"].num_rows == 600


def test_row_dicts_count_about_eight_bytes_per_column_and_flush_rows_still_applies(tmp_path):
    first = pa.Table.from_pylist(rows(0)).nbytes  # the first batch is converted: exact bytes
    budget = first + 8 * 3 * 9  # then 9 more rows of 3 columns, counted at 8 bytes a value
    recorder = Recorder(tmp_path / "a", flush_bytes=budget)
    for step in range(6):
        recorder("steps", rows(step))  # 3 rows per step
    parts = sorted((tmp_path / "a" / ".partial" / "steps").glob("part-*.parquet"))
    assert [pq.read_table(part).num_rows for part in parts] == [12]
    by_rows = Recorder(tmp_path / "b", flush_rows=6)  # the row limit, under the byte budget
    for step in range(4):
        by_rows("steps", rows(step))
    parts = sorted((tmp_path / "b" / ".partial" / "steps").glob("part-*.parquet"))
    assert [pq.read_table(part).num_rows for part in parts] == [6, 6]


def test_a_table_under_flush_bytes_is_written_once_from_memory(tmp_path):
    recorder = Recorder(tmp_path / "run")
    for step in range(50):
        recorder("selections", {"step": np.full(10_000, step), "x": np.ones(10_000)})
    assert not (tmp_path / "run" / ".partial").exists()
    recorder.close({})
    assert recorder.tables["selections"].num_rows == 500_000


def test_columnar_batches_and_empty_tables_keep_their_schema(tmp_path):
    recorder = Recorder(tmp_path)
    recorder("agents", {"step": np.empty(0, dtype=np.int64), "x": np.empty(0)})
    recorder("events", {"step": np.array([1, 2]), "kind": np.array(["a", "b"], dtype=object)})
    recorder.close({})
    agents = pq.read_table(tmp_path / "agents.parquet")
    assert agents.num_rows == 0 and agents.schema.names == ["step", "x"]
    assert pd.read_parquet(tmp_path / "events.parquet")["kind"].tolist() == ["a", "b"]


def test_csv_format(tmp_path):
    recorder = Recorder(tmp_path, "csv", flush_rows=2)
    for step in range(3):
        recorder("steps", rows(step))
    recorder.close({})
    frame = pd.read_csv(tmp_path / "steps.csv")
    assert len(frame) == 9 and list(frame.columns) == ["step", "principal", "value"]


def test_nothing_is_written_before_the_first_flush_and_discard_cleans_up(tmp_path):
    out = tmp_path / "run"
    recorder = Recorder(out, flush_rows=100)
    recorder("steps", rows(0))
    assert not out.exists()
    recorder = Recorder(out, flush_rows=1)
    recorder("steps", rows(0))
    assert (out / ".partial").exists()
    recorder.discard()
    assert not (out / ".partial").exists()


def test_a_crash_leaves_old_results_whole_and_new_parts_readable(tmp_path):
    first = Recorder(tmp_path, flush_rows=1)
    first("steps", rows(0))
    first.close({"run": 1})
    crashed = Recorder(tmp_path, flush_rows=1)
    crashed("steps", rows(1))
    # no close(): the previous complete run is untouched, the new rows sit in readable parts
    assert pd.read_parquet(tmp_path / "steps.parquet")["step"].tolist() == [0, 0, 0]
    part = next((tmp_path / ".partial" / "steps").glob("part-*.parquet"))
    assert pd.read_parquet(part)["step"].tolist() == [1, 1, 1]


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="format"):
        Recorder(tmp_path, "xlsx")


def test_a_folder_reused_in_another_format_holds_only_the_new_run(tmp_path):
    first = Recorder(tmp_path, "parquet")
    first("steps", rows(0))
    first.close({"run": 1})
    second = Recorder(tmp_path, "csv")
    second("steps", rows(1))
    manifest = second.close({"run": 2})
    assert not list(tmp_path.glob("*.parquet"))
    assert manifest["files"]["steps"] == "steps.csv"
    assert pd.read_csv(tmp_path / "steps.csv")["step"].tolist() == [1, 1, 1]


def test_network_is_a_table_written_in_both_formats_with_exact_weights(tmp_path):
    assert "network" in TABLES
    weights = 1.0 / np.array([3, 7, 3, 9, 6, 7])  # row-normalised weights do not round in CSV
    columns = {
        "source": np.array([0, 0, 1, 2, 2, 3], dtype=np.int64),
        "target": np.array([1, 2, 0, 0, 3, 2], dtype=np.int64),
        "weight": weights,
    }
    for fmt in ("parquet", "csv"):
        recorder = Recorder(tmp_path / fmt, fmt)
        recorder("network", columns)
        manifest = recorder.close({})
        assert manifest["files"]["network"] == f"network.{fmt}"
        assert manifest["row_counts"]["network"] == 6
        path = tmp_path / fmt / f"network.{fmt}"
        frame = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path)
        assert list(frame.columns) == ["source", "target", "weight"]
        assert frame["source"].dtype == frame["target"].dtype == np.int64
        assert frame["weight"].to_numpy().tolist() == weights.tolist()


def test_the_model_records_its_network_once_before_anything_else():
    from mesaopt.model.model import MesaOptModel
    from mesaopt.model.network import network_table

    batches: list[tuple[str, object]] = []
    model = MesaOptModel(
        network__n_agents=50, recorder=lambda table, rows: batches.append((table, rows))
    )
    model.step()
    names = [table for table, _ in batches]
    assert names[0] == "network" and names.count("network") == 1
    recorded = batches[0][1]
    expected = network_table(model.network)
    assert list(recorded) == list(expected)
    for name, column in expected.items():
        assert np.array_equal(recorded[name], column)
    assert len(recorded["source"]) == model.network.adjacency.nnz
