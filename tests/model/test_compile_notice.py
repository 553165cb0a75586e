"""The one line a command writes when the model's kernels compile (model.compile_notice)."""

from __future__ import annotations

import types

import numba
import pytest

from mesaopt.model.compile_notice import NOTICE, compile_notice


def _fresh_kernel(module: str):
    """A new, never compiled Numba function that says it lives in ``module``."""
    source = compile("def kernel(x):\n    return x + 1\n", f"<{module}>", "exec")
    namespace: dict = {}
    exec(source, {"__name__": module}, namespace)
    function = namespace["kernel"]
    assert isinstance(function, types.FunctionType) and function.__module__ == module
    return numba.njit(function)  # no cache: it compiles on its first call, every time


def test_the_first_compilation_of_a_package_kernel_writes_the_notice_once():
    lines: list[str] = []
    with compile_notice(lines.append):
        assert _fresh_kernel("mesaopt.model.fake_kernels")(1) == 2
        assert _fresh_kernel("mesaopt.agents.fake_kernels")(1.5) == 2.5
    assert lines == [NOTICE]


def test_a_compilation_outside_the_package_or_outside_the_block_writes_nothing():
    lines: list[str] = []
    with compile_notice(lines.append):
        assert _fresh_kernel("users_own_kernels")(1) == 2
        assert _fresh_kernel("mesaoptimizer_lookalike")(1) == 2
    assert _fresh_kernel("mesaopt.model.fake_kernels")(1) == 2  # the listener is gone
    assert lines == []


def test_a_compiled_kernel_called_again_writes_nothing():
    kernel = _fresh_kernel("mesaopt.model.fake_kernels")
    assert kernel(1) == 2  # compiled here, before the block
    lines: list[str] = []
    with compile_notice(lines.append):
        assert kernel(2) == 3
    assert lines == []


def test_disabled_it_listens_to_nothing():
    lines: list[str] = []
    with compile_notice(lines.append, enabled=False):
        assert _fresh_kernel("mesaopt.model.fake_kernels")(1) == 2
    assert lines == []


def test_the_notice_is_written_once_when_the_block_raises():
    lines: list[str] = []
    with pytest.raises(ZeroDivisionError), compile_notice(lines.append):
        _fresh_kernel("mesaopt.model.fake_kernels")(1)
        raise ZeroDivisionError
    assert lines == [NOTICE]
    _fresh_kernel("mesaopt.model.fake_kernels")(1)
    assert lines == [NOTICE]
