"""Reading a file a user names (scenario, experiment file, edge list): bounded, regular, UTF-8.

A path in a scenario or on the command line can name anything: a folder, a named pipe (opening
it waits for a writer forever), ``/dev/zero`` (reading it never ends), a binary file or a huge
one. :func:`read_user_text` refuses each of those with one :class:`~model.errors.ScenarioError`
before (or instead of) reading: only a regular file of at most ``limit`` bytes of UTF-8 text is
read. A UTF-8 byte-order mark, which some editors write, is dropped.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mesaopt.model.errors import ScenarioError

#: Largest scenario or experiment file read: far above any real one (a few kB), far below memory.
MAX_SCENARIO_BYTES = 16 * 2**20


def expanded_path(text: str) -> Path:
    """A path a user wrote, with ``~`` expanded, refused if no file could ever have that name.

    Args:
        text: The path as written.

    Returns:
        The path, ``~`` and ``~user`` expanded.

    Raises:
        ValueError: If it holds a NUL byte (no file name can), or it starts with ``~user`` for
            a user that does not exist (or ``~`` with no home folder).
    """
    if "\x00" in text:
        raise ValueError("a file name cannot hold a NUL byte")
    try:
        return Path(text).expanduser()
    except RuntimeError:  # pathlib's "Could not determine home directory"
        user = text.split("/", 1)[0]
        raise ValueError(f"{user[:40]!r}: no such user's home folder to expand") from None


def read_user_text(
    file: Path,
    *,
    key: str,
    what: str,
    limit: int,
    source: str | None = None,
    shown: str = "",
    too_large: str = "",
) -> str:
    """Read a regular file of at most ``limit`` bytes as UTF-8 text.

    Args:
        file: The file (links are followed).
        key: The key errors name (``scenario``, ``network.path``).
        what: What the file should be, for messages (``"a text edge list"``).
        limit: Most bytes read.
        source: The file errors are attributed to, if any.
        shown: The name messages use for the file ("" when ``source`` already names it).
        too_large: Words added to the too-large message (why the limit is what it is).

    Returns:
        The text, without a leading byte-order mark.

    Raises:
        ScenarioError: If the file is missing, a folder, a pipe, device or socket, unreadable,
            larger than ``limit`` bytes, binary (holds a NUL byte), or not UTF-8.
    """
    name = shown or "the file"
    try:
        # opened without blocking and checked on the open file (not the path, which could be
        # swapped between a check and the open): a named pipe with no writer never hangs here
        descriptor = os.open(file, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ScenarioError(key, f"file not found{': ' + shown if shown else ''}", source) from None
    except IsADirectoryError:
        raise ScenarioError(key, f"{name} is a folder, not {what}", source) from None
    except OSError as err:
        raise ScenarioError(key, f"cannot read {name}: {err.strerror}", source) from None
    try:
        mode = os.fstat(descriptor).st_mode
        if stat.S_ISDIR(mode):
            raise ScenarioError(key, f"{name} is a folder, not {what}", source)
        if not stat.S_ISREG(mode):
            kind = "a named pipe" if stat.S_ISFIFO(mode) else "a device or socket"
            raise ScenarioError(key, f"{name} is {kind}, not {what}", source)
        chunks: list[bytes] = []
        wanted = limit + 1
        while wanted > 0 and (chunk := os.read(descriptor, wanted)):  # a read may be short
            chunks.append(chunk)
            wanted -= len(chunk)
        data = b"".join(chunks)
    except OSError as err:
        raise ScenarioError(key, f"cannot read {name}: {err.strerror}", source) from None
    finally:
        os.close(descriptor)
    if len(data) > limit:
        size = f"{limit / 2**20:,.0f} MiB" if limit >= 2**20 else f"{limit:,} bytes"
        raise ScenarioError(key, f"{name} is larger than {size}{too_large}", source)
    if b"\0" in data:
        raise ScenarioError(key, f"{name} is a binary file, not {what}", source)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ScenarioError(key, f"{name} is not UTF-8 text", source) from None
