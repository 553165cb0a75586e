"""Tests for model.user_files: only a bounded, regular UTF-8 file is read."""

from __future__ import annotations

import os
import pathlib

import pytest

from mesaopt.model.errors import ScenarioError
from mesaopt.model.scenario_files import load_raw
from mesaopt.model.user_files import read_user_text


def _read(file: pathlib.Path, limit: int = 1000) -> str:
    return read_user_text(file, key="scenario", what="a scenario file", limit=limit, source="s")


def test_a_regular_file_is_read_without_its_byte_order_mark(tmp_path: pathlib.Path) -> None:
    (tmp_path / "s.toml").write_bytes(b"\xef\xbb\xbf[run]\nsteps = 3\n")
    assert _read(tmp_path / "s.toml") == "[run]\nsteps = 3\n"
    assert load_raw(tmp_path / "s.toml")[0] == {"run": {"steps": 3}}


def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path: pathlib.Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ScenarioError, match="the file is a named pipe, not a scenario file"):
        _read(tmp_path / "pipe")


def test_a_device_that_never_ends_is_refused_without_reading_it() -> None:
    with pytest.raises(ScenarioError, match="is a device or socket"):
        _read(pathlib.Path("/dev/zero"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "is a folder, not a scenario file"),
        (b"x" * 1001, "is larger than 1,000 bytes"),
        (b"a = 1\0", "is a binary file"),
        (b"a = '\xff'", "is not UTF-8 text"),
    ],
    ids=["folder", "too-large", "binary", "not-utf8"],
)
def test_what_is_not_a_small_text_file_is_one_error(
    tmp_path: pathlib.Path, content: bytes | None, message: str
) -> None:
    file = tmp_path / "s.toml"
    if content is None:
        file.mkdir()
    else:
        file.write_bytes(content)
    with pytest.raises(ScenarioError) as err:
        _read(file)
    assert err.value.key == "scenario" and message in err.value.message
    assert str(err.value).startswith("s: scenario: the file ")


def test_a_missing_file_is_named() -> None:
    with pytest.raises(ScenarioError, match=r"^s: scenario: file not found$"):
        _read(pathlib.Path("/no/such/file.toml"))
