"""model/errors.py: which errors are an interruption."""

from __future__ import annotations

from mesaopt.model.errors import Terminated, interruption


def _raised(make):
    try:
        make()
    except BaseException as err:  # the test looks at whatever was raised
        return err
    raise AssertionError("nothing raised")


def _because_of(stop: type[KeyboardInterrupt]):
    def make():
        try:
            raise stop
        except KeyboardInterrupt as err:
            raise SystemError("returned a result with an exception set") from err

    return make


def _while_handling():
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise OSError("clean-up failed")  # noqa: B904 - chained implicitly, as a clean-up failing


def test_an_error_caused_by_a_ctrl_c_or_sigterm_is_that_interruption():
    for stop in (KeyboardInterrupt, Terminated):
        err = _raised(_because_of(stop))
        assert isinstance(err, SystemError)
        assert type(interruption(err)) is stop


def test_an_error_raised_while_an_interruption_is_handled_is_the_interruption():
    assert isinstance(interruption(_raised(_while_handling)), KeyboardInterrupt)


def test_an_ordinary_error_is_not_an_interruption_even_in_a_cycle():
    err = ValueError("bad")
    other = RuntimeError("worse")
    err.__context__, other.__context__ = other, err
    assert interruption(err) is None
    assert interruption(ValueError("plain")) is None
