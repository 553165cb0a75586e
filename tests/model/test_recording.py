"""Recorder: row groups streamed in fixed sizes, bounded buffers, the non-finite guard, CSV."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mesaopt.model.finite import NonFiniteError
from mesaopt.model.recording import SETTLE_ROWS, TABLES, Recorder


def rows(step: int, n: int = 3):
    return [{"step": step, "principal": f"p{i}", "value": float(step * i)} for i in range(n)]


def groups(path) -> list[int]:
    """Rows of each row group of a Parquet file."""
    meta = pq.ParquetFile(path).metadata
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def test_full_row_groups_are_written_during_the_run_and_the_rest_at_close(tmp_path):
    recorder = Recorder(tmp_path / "run", group_rows=5)
    for step in range(10):
        recorder("steps", rows(step))
    # 30 rows in batches of 3: whenever 5 or more are buffered, the whole groups go to the file
    assert recorder._buffered["steps"] < 5
    manifest = recorder.close({"seed": 1})
    steps = pd.read_parquet(tmp_path / "run" / "steps.parquet")
    assert list(steps["step"]) == [s for s in range(10) for _ in range(3)]
    assert groups(tmp_path / "run" / "steps.parquet") == [5] * 6
    assert manifest["row_counts"]["steps"] == 30
    written = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert written["row_counts"] == manifest["row_counts"]
    assert set(written["files"]) == set(TABLES)
    assert "steps" not in recorder.tables  # part of it was written before close: not kept


def test_row_groups_depend_on_the_rows_only_so_files_are_byte_identical(tmp_path):
    """Batches of any size give the same file: boundaries fall every group_rows rows."""
    values = np.linspace(0.0, 1.0, 1000)
    for name, batch in (("one", 1000), ("small", 7), ("odd", 333)):
        recorder = Recorder(tmp_path / name, group_rows=128)
        for start in range(0, 1000, batch):
            chunk = slice(start, start + batch)
            recorder("agents", {"step": np.arange(1000)[chunk], "x": values[chunk]})
        recorder.close({})
    first = (tmp_path / "one" / "agents.parquet").read_bytes()
    assert groups(tmp_path / "one" / "agents.parquet") == [128] * 7 + [104]
    for name in ("small", "odd"):
        assert (tmp_path / name / "agents.parquet").read_bytes() == first


def test_group_rows_come_from_the_byte_budget_and_the_columns(tmp_path):
    recorder = Recorder(tmp_path, row_group_bytes=16 * 1024 * 8)  # 16 Ki values
    recorder("agents", {f"c{i}": np.zeros(1) for i in range(4)})
    assert recorder.group_rows("agents") == 4096  # 16 Ki values / 4 columns
    recorder("steps", [{f"c{i}": 0.0 for i in range(64)}])
    assert recorder.group_rows("steps") == 1024  # at least 1,024 rows
    assert Recorder(tmp_path).row_group_bytes == 16 * 1024 * 1024


def test_memory_holds_at_most_one_row_group_per_table(tmp_path):
    recorder = Recorder(tmp_path / "run", group_rows=1000)
    for step in range(100):
        recorder("selections", {"step": np.full(70, step), "x": np.ones(70)})
        recorder("steps", rows(step))
        assert all(n < 1000 for n in recorder._buffered.values())
        assert sum(len(batch) for batch in recorder._pending["steps"]) < SETTLE_ROWS
    recorder.close({})
    assert pq.read_table(tmp_path / "run" / "selections.parquet").num_rows == 7000


def test_row_dicts_are_converted_to_arrow_every_settle_rows(tmp_path):
    recorder = Recorder(tmp_path)
    recorder("steps", rows(0))  # the first batch sets the schema
    for step in range(1, SETTLE_ROWS):
        recorder("steps", rows(step, 1))
        assert recorder._pending_rows["steps"] < SETTLE_ROWS
    recorder.close({})
    frame = pd.read_parquet(tmp_path / "steps.parquet")
    assert frame["step"].tolist() == [0, 0, 0, *range(1, SETTLE_ROWS)]


def test_a_table_that_fits_one_group_is_written_once_from_memory(tmp_path):
    recorder = Recorder(tmp_path / "run")
    for step in range(50):
        recorder("selections", {"step": np.full(10_000, step), "x": np.ones(10_000)})
    assert not (tmp_path / "run").exists()  # nothing touches the disk before a group is full
    recorder.close({})
    assert recorder.tables["selections"].num_rows == 500_000
    assert groups(tmp_path / "run" / "selections.parquet") == [500_000]


def test_a_non_finite_value_is_refused_before_the_batch_is_kept(tmp_path):
    recorder = Recorder(tmp_path)
    recorder("steps", rows(1))
    bad = rows(2)
    bad[1]["value"] = float("inf")
    with pytest.raises(NonFiniteError, match=r"step 2: steps.value \(principal p1\) is inf"):
        recorder("steps", bad)
    with pytest.raises(NonFiniteError, match=r"step 3: agents\.x is nan"):
        recorder("agents", {"step": np.array([3, 3]), "x": np.array([0.0, np.nan])})
    recorder.close({})
    assert pd.read_parquet(tmp_path / "steps.parquet")["step"].tolist() == [1, 1, 1]
    assert recorder.row_counts["agents"] == 0


def test_columnar_batches_and_empty_tables_keep_their_schema(tmp_path):
    recorder = Recorder(tmp_path)
    recorder("agents", {"step": np.empty(0, dtype=np.int64), "x": np.empty(0)})
    recorder("events", {"step": np.array([1, 2]), "kind": np.array(["a", "b"], dtype=object)})
    recorder.close({})
    agents = pq.read_table(tmp_path / "agents.parquet")
    assert agents.num_rows == 0 and agents.schema.names == ["step", "x"]
    assert pd.read_parquet(tmp_path / "events.parquet")["kind"].tolist() == ["a", "b"]


def test_csv_format(tmp_path):
    recorder = Recorder(tmp_path, "csv", group_rows=2)
    for step in range(3):
        recorder("steps", rows(step))
    recorder.close({})
    frame = pd.read_csv(tmp_path / "steps.csv")
    assert len(frame) == 9 and list(frame.columns) == ["step", "principal", "value"]


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="format"):
        Recorder(tmp_path, "xlsx")


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


def test_parquet_dictionary_encodes_every_column_but_the_floats(tmp_path):
    """Labels and integers go into dictionaries; measured floats are written plain."""
    n = 5000
    recorder = Recorder(tmp_path / "run")
    recorder(
        "selections",
        {
            "step": np.repeat(np.arange(5), n // 5),
            "principal": np.array(["lab", "firm"] * (n // 2), dtype=object),
            "deceptive": np.arange(n) % 7 == 0,
            "chosen_true": np.random.default_rng(1).standard_normal(n),
        },
    )
    recorder.close({})
    path = tmp_path / "run" / "selections.parquet"
    chunks = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {
        chunks.column(i).path_in_schema: set(chunks.column(i).encodings)
        for i in range(chunks.num_columns)
    }
    for name in ("step", "principal"):
        assert "RLE_DICTIONARY" in encodings[name], name
    assert not encodings["chosen_true"] & {"RLE_DICTIONARY", "PLAIN_DICTIONARY"}
    back = pd.read_parquet(path)
    assert back["chosen_true"].to_numpy().tobytes() == (
        np.random.default_rng(1).standard_normal(n).tobytes()
    )
    assert list(back["principal"][:2]) == ["lab", "firm"]
    assert back["deceptive"].sum() == len(range(0, n, 7))
