"""Values of one swept parameter: explicit lists and range strings (``1:1024:log2``, ``0:1:0.25``).

A sweep grid (the ``[sweep]`` section of a scenario, or ``run.py sweep --grid``) gives each swept
key either a list of values or a range string ``start:stop:step``:

* ``start:stop:step`` (linear) — ``start, start + step, …`` up to and including ``stop`` (within a
  relative tolerance of 1e-9); integers when start and step are whole numbers (``1:10:3`` →
  1, 4, 7, 10), floats otherwise (``0:1:0.25`` → 0.0, 0.25, 0.5, 0.75, 1.0);
* ``start:stop:logB`` (geometric) — ``start, start·B, start·B², …`` up to and including ``stop``
  (``1:1024:log2`` → 1, 2, 4, …, 1024; ``0.001:1:log10`` → 0.001, 0.01, 0.1, 1.0); integers when
  start and B are whole numbers.

The module lives in :mod:`model` because the scenario schema validates sweep sections with it;
:mod:`analysis.sweep_design` builds designs from the expanded values.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from typing import Any

#: Refuse ranges that would expand to more values than this (a typo such as ``0:1e6:1``).
MAX_VALUES = 100_000
_TOL = 1e-9


def _number(text: str, what: str) -> int | float:
    text = text.strip()
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = None
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise ValueError(f"range {what} must fit a 64-bit integer, got {text[:40]!r}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"range {what} must be a finite number, got {text[:40]!r}")
    return value


def _whole(value: float) -> bool:
    return float(value).is_integer()


def _check_count(count: int, text: str) -> None:
    if count > MAX_VALUES:
        # (a step of 1e-300 gives a count of 301 digits: its size is what matters)
        shown = f"{count:,}" if count < 10**12 else f"about {float(count):.1e}"
        raise ValueError(f"range {text[:40]!r} has {shown} values (at most {MAX_VALUES:,})")


def _count(ratio: Callable[[], float], text: str) -> int:
    """Return ``floor(ratio() + tol) + 1``; a count too large for a float is refused."""
    try:
        return math.floor(ratio() + _TOL) + 1
    except OverflowError:
        raise ValueError(f"range {text!r} has too many values (at most {MAX_VALUES})") from None


def is_range(value: Any) -> bool:
    """Return True if ``value`` is a range string (two colons)."""
    return isinstance(value, str) and value.count(":") == 2


def expand_range(text: str) -> list[int | float]:
    """Expand a range string into its values.

    Args:
        text: ``start:stop:step`` or ``start:stop:logB``.

    Returns:
        The values, in increasing order from ``start``.

    Raises:
        ValueError: If the string is malformed or the range is empty, infinite or too long.
    """
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f"a range looks like start:stop:step or start:stop:log2, got {text!r}")
    start = _number(parts[0], "start")
    stop = _number(parts[1], "stop")
    how = parts[2].strip()
    if how.startswith("log"):
        base = _number(how[3:] or "10", "log base")
        if base <= 1:
            raise ValueError(f"log base must be > 1, got {how!r}")
        if start <= 0 or stop < start:
            raise ValueError(f"a log range needs 0 < start <= stop, got {text!r}")
        count = _count(lambda: math.log(stop / start, base), text)
        integral = isinstance(start, int) and _whole(base)
        factor = int(base) if integral else base
        _check_count(count, text)
        values = [start * factor**i for i in range(count)]
    else:
        step = _number(how, "step")
        if step <= 0 or stop < start:
            raise ValueError(f"a linear range needs step > 0 and start <= stop, got {text!r}")
        count = _count(lambda: (stop - start) / step * (1 + _TOL), text)
        integral = isinstance(start, int) and isinstance(step, int)
        _check_count(count, text)
        values = [start + i * step for i in range(count)]
    if not integral:
        values = [float(round(v, 12)) for v in values]
    return values


def expand_values(spec: Any) -> list[Any]:
    """Return the list of values a grid entry stands for.

    Args:
        spec: A list of values, a range string, or a single value.

    Returns:
        The values (a single value becomes a one-item list).

    Raises:
        ValueError: On a malformed range or an empty list.
    """
    if is_range(spec):
        return expand_range(spec)
    if isinstance(spec, list | tuple):
        if not spec:
            raise ValueError("needs at least one value")
        return list(spec)
    return [spec]


def parse_cli_values(text: str) -> list[Any]:
    """Parse the value part of ``--grid key=...``: a range string or comma-separated TOML literals.

    Args:
        text: ``1:1024:log2`` or ``0.1,0.3,"optimal"`` (bare words are strings).

    Returns:
        The values.

    Raises:
        ValueError: On a malformed range or an empty list.
    """
    text = text.strip()
    if is_range(text):
        return expand_range(text)
    values: list[Any] = []
    for raw in _top_level_items(text):
        raw = raw.strip()
        if not raw:
            raise ValueError(f"empty value in {text[:40]!r}")
        if _looks_like_a_range(raw):
            raise ValueError(
                f"a range looks like start:stop:step or start:stop:log2, got {raw[:40]!r}"
            )
        try:
            values.append(tomllib.loads(f"v = {raw}")["v"])
        except tomllib.TOMLDecodeError:
            values.append(raw)
    return values


def _looks_like_a_range(text: str) -> bool:
    """Numbers joined by one colon or by more than two (``0:10``, ``1:2:3:4``): a mistyped range.

    Checked for each value of a list on the command line; a file's ``[sweep.grid]`` value is
    TOML, where a range is a string and a list is an array, so ``"0:10"`` there is the string.

    Taken as a word, such text became one string value, which a string key, or a key that the
    sweep then overwrites (the seed), accepted without a word.
    """
    parts = text.split(":")
    if len(parts) < 2 or len(parts) == 3:
        return False
    for part in parts:
        try:
            _number(part, "part")
        except ValueError:
            return False
    return True


def _top_level_items(text: str) -> list[str]:
    """Split ``text`` at the commas outside brackets, braces and quotes (``[1,2],[3,4]``: two).

    A quote opens a TOML string only where a value or an element starts (after a comma, a
    bracket, an ``=`` or spaces): the apostrophe of a bare word (``don't``) is a letter. In a
    basic string (``"..."``) a backslash escapes the next character; a literal string
    (``'...'``) has no escapes.
    """
    items, start, depth, quote, escaped = [], 0, 0, "", False
    for i, char in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            if not text[start:i].strip() or text[:i].rstrip()[-1:] in "[{,=":
                quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return items
