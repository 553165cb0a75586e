"""Errors raised on bad user input (scenario files, overrides, edge lists), and on SIGTERM.

Every error names the offending key (dotted path, e.g. ``network.k``) and, when known, the file
it came from, so that the command line can print it as one line and exit with status 2.
:func:`clean_message` words pydantic's messages for them (used by :mod:`model.scenario` and
:mod:`model.scenario_files`).
"""

from __future__ import annotations

import re

#: Characters kept at each end of a long word of an error line (:func:`clipped`).
CLIP_KEEP = 60
_LONG_WORD = re.compile(rf"\S{{{2 * CLIP_KEEP + 2},}}")


def clipped(text: str, keep: int = CLIP_KEEP) -> str:
    """``text`` shortened to its first and last ``keep`` characters, for an error line."""
    return text if len(text) <= 2 * keep + 1 else f"{text[:keep]}…{text[-keep:]}"


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a batch scheduler's time limit) raised where a Ctrl-C would be.

    A KeyboardInterrupt, so that everything a Ctrl-C cleans up (a run's staging folder, a
    sweep's cluster) is cleaned up the same way; the command line then says "terminated" and
    exits with 143 (128 + SIGTERM) instead of 130. Raised by ``run.py``'s SIGTERM handler only.
    """


def interruption(err: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C (or SIGTERM) behind ``err``, or None if there is none.

    An error raised because of an interruption, or while one was being handled, is that
    interruption. A signal that lands while a compiled kernel is being called raises its
    KeyboardInterrupt inside Numba's dispatcher, which then reports ``SystemError: ... returned
    a result with an exception set``, the interruption as its cause: that error is the
    interruption, not a failure of the run.
    """
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def raise_terminated(signum: int, frame: object) -> None:
    """The SIGTERM handler of the command line (``run.py``): raise :class:`Terminated`.

    Code that holds signals for a moment (an export's renames) holds SIGTERM only when this is
    its handler: another program's own handler is left to run as it is.
    """
    raise Terminated


class ScenarioError(ValueError):
    """A scenario value, override or referenced file is invalid.

    Args:
        key: Dotted path of the offending key (``principals.0.contract.beta``).
        message: What is wrong, in a few words.
        source: The file the value came from, if any.
    """

    def __init__(self, key: str, message: str, source: str | None = None) -> None:
        self.key = key
        self.message = message
        self.source = source
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """Return the error as a single line: ``file: key: message``.

        A word longer than 121 characters (a path of 300, a value pasted whole) keeps its first
        and last 60: the line stays one a terminal shows whole. The same line is the error's
        text, so a run's manifest (``error``) and a sweep's ``runs`` table keep it clipped too.
        """
        where = f"{self.source}: " if self.source else ""
        line = f"{where}{self.key}: {self.message}".replace("\n", " ")
        return _LONG_WORD.sub(lambda word: clipped(word[0]), line)

    def with_source(self, source: str) -> ScenarioError:
        """Return a copy of this error attributed to ``source`` (if it had none)."""
        return ScenarioError(self.key, self.message, self.source or source)


def clean_message(msg: str) -> str:
    """Return a pydantic error message as one plain line, without its type prefix or parse detail.

    Args:
        msg: The ``msg`` of one pydantic error (``"Value error, ..."``, ``"Input should be ..."``).

    Returns:
        The message without ``"Value error, "`` / ``"Assertion failed, "`` prefixes, without the
        ``", unable to parse ..."`` tail, and with newlines replaced by spaces.
    """
    msg = msg.split(", unable to parse", 1)[0]
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg.replace("\n", " ")
