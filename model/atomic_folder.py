"""Run folders that appear complete or not at all: build beside the target, swap in by a rename.

A run is written into a hidden sibling of its target, ``.<name>.tmp-<pid>`` (same parent, so
the same filesystem), manifest included; :func:`swap_in` then puts it in place:

* no target yet: one ``rename``;
* an existing run folder: on Linux one ``renameat2(RENAME_EXCHANGE)`` swaps the two folders in
  a single step, and the old one (now at the hidden name) is removed; where the kernel or the
  filesystem lacks the exchange, two renames (the old folder aside to ``.<name>.old-<pid>``,
  the new one in), so a kill between them leaves no folder at the target, never a mixed one.

:func:`prepare_target` runs before any step: it refuses (:class:`~model.errors.ScenarioError`,
nothing written or deleted) a parent (or, when parents are missing, the nearest existing
ancestor: the parents are made only at the swap) that is not a writable folder, a target that is
a file or a link, and an existing folder that is not one of ours (not empty and without a
mesaopt manifest), and it
removes the hidden siblings that killed runs into the same target left: their pid is not alive
and the folder is one of ours (a staging folder carries the mark :data:`STAGING_MARK` until its
swap; an old run folder moved aside has its manifest), so a user's own folder that happens to
have such a name is left alone. The whole folder is replaced, so whatever else was inside an
old run folder (a ``report/``) goes with it.

Test hook: with ``MESAOPT_TEST_KILL_AT=<point>`` set, the process kills itself (SIGKILL) when it
reaches that point of the write sequence (:data:`KILL_POINTS`); ``MESAOPT_TEST_SWAP=rename``
forces the two-rename swap. Unset (the normal case) they do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import json
import os
import re
import shutil
import signal
from pathlib import Path

from mesaopt.model.errors import ScenarioError

MANIFEST = "manifest.json"
#: The empty file that marks a staging folder as mesaopt's until :func:`swap_in` (see
#: :func:`clean_stale_siblings`); it never reaches the run folder.
STAGING_MARK = ".mesaopt-staging"
#: Names the crash-window test can stop the process at, in the order a run reaches them.
KILL_POINTS = (
    "before_tables",  # the staging folder exists, no table written yet
    "table_written",  # after each table file (killed at the first one)
    "before_manifest",  # every table written, no manifest
    "before_swap",  # the staging folder is complete, the target untouched
    "after_aside",  # two-rename swap only: the old folder moved aside, the new one not yet in
    "after_swap",  # the new folder in place, the old one not yet removed
)
KILL_ENV = "MESAOPT_TEST_KILL_AT"
SWAP_ENV = "MESAOPT_TEST_SWAP"
_SIBLING = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)$")
_RENAME_EXCHANGE = 2  # from <linux/fs.h>
_AT_FDCWD = -100


#: ``errno`` of a write that failed for want of space: a full device or an exhausted quota.
#: pyarrow's and pandas' writers set it on their ``OSError`` too.
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(err: BaseException) -> bool:
    """True when ``err`` is an ``OSError`` of a full disk (:data:`DISK_FULL`).

    Such a failure is the machine's, not the run's: a sweep stops (and resumes later) instead
    of recording the run as failed, and the command line reports it in one line.
    """
    return isinstance(err, OSError) and err.errno in DISK_FULL


def kill_hook(point: str) -> None:
    """Kill this process at ``point`` when ``MESAOPT_TEST_KILL_AT`` names it (tests only)."""
    if os.environ.get(KILL_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def _existing_ancestor(target: Path) -> Path:
    """The nearest ancestor of ``target`` that exists (its parent, unless that is to be made)."""
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def staging_path(target: Path) -> Path:
    """The hidden folder a run into ``target`` is built in (this process's).

    It sits beside the target, or in the nearest existing ancestor when the target's parent is
    still to be made (:func:`swap_in` makes it), so that nothing is created before the run ends.
    """
    return _existing_ancestor(target) / f".{target.name}.tmp-{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` may exist: its leftovers are then not ours to remove.

    One that belongs to another user counts as alive, and so does a number too large to be a
    pid (a folder named ``.out.tmp-99999999999999999999``, not a run's: it is kept).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def is_mesaopt_manifest(path: Path) -> bool:
    """Whether ``path`` is a manifest mesaopt wrote (complete or failed run)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "mesaopt_version" in data and "row_counts" in data


def run_status(folder: Path) -> str | None:
    """``"complete"`` or ``"failed"`` for a run folder, None for anything else.

    A manifest without ``status`` (written before runs recorded one, only ever on success)
    counts as complete.
    """
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return "failed" if data.get("status") == "failed" else "complete"


def run_is_complete(folder: Path) -> bool:
    """Whether ``folder`` holds a finished run (a manifest not marked ``failed``)."""
    return run_status(folder) == "complete"


def is_replaceable(folder: Path) -> bool:
    """Whether an existing ``folder`` may be replaced by a run: empty, or a mesaopt run folder.

    A run folder is one holding a mesaopt manifest; a folder that holds only what an
    interrupted run of an older mesaopt left (``.partial/``, ``.<table>.tmp-<pid>`` files) is one
    too. Anything else (a user's files, tables without a manifest) is not.
    """
    if is_mesaopt_manifest(folder / MANIFEST):
        return True
    leftovers = re.compile(r"^(\.partial|\..+\.tmp-\d+(\..+)?)$")
    return all(leftovers.match(entry.name) for entry in folder.iterdir())


def clean_stale_siblings(target: Path) -> list[Path]:
    """Remove ``.<name>.tmp-<pid>`` / ``.<name>.old-<pid>`` siblings of ``target`` of dead pids.

    Only folders that are mesaopt's: a staging folder (it holds :data:`STAGING_MARK`), or one
    that a run may replace (:func:`is_replaceable`: a run folder moved aside or swapped out,
    an empty folder). Anything else with such a name is a user's, and is kept.

    Args:
        target: The run folder.

    Returns:
        The paths removed.
    """
    removed: list[Path] = []
    parent = _existing_ancestor(target)
    if not parent.is_dir():
        return removed
    for entry in parent.iterdir():
        match = _SIBLING.match(entry.name)
        if not match or match["name"] != target.name:
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and pid_alive(pid):
            continue
        if entry.is_symlink() or not entry.is_dir():
            continue  # never made by a run
        try:
            ours = (entry / STAGING_MARK).is_file() or is_replaceable(entry)
        except OSError:  # unreadable: not ours to judge
            continue
        if ours:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _check_writable(target: Path, key: str) -> None:
    """Refuse a ``target`` folder whose nearest existing ancestor this process cannot write."""
    if not target.name or target.name in (".", ".."):
        raise ScenarioError(key, f"{target}: not a folder name a run can be written to")
    parent = _existing_ancestor(target)
    if not parent.is_dir():
        raise ScenarioError(key, f"{target}: {parent} is not a folder")
    missing = target.parent
    while missing != parent and missing != missing.parent:  # the folders the swap will make
        if missing.is_symlink():  # a link that leads nowhere (dangling, or a loop)
            raise ScenarioError(key, f"{target}: {missing} is a broken symbolic link")
        missing = missing.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ScenarioError(key, f"{target}: cannot write in {parent} (permission denied)")
    probe = staging_path(target)
    try:  # what access() cannot tell (root on a read-only or virtual filesystem such as /proc)
        probe.mkdir()
        probe.rmdir()
    except FileExistsError:
        pass  # this process's staging folder: writable
    except OSError as err:
        message = f"{target}: cannot create folders in {parent} ({err.strerror})"
        raise ScenarioError(key, message) from None
    if target.is_symlink():
        raise ScenarioError(key, f"{target} is a symbolic link: name the folder itself")
    if target.exists() and not target.is_dir():
        raise ScenarioError(key, f"{target} exists and is not a folder")


def _check_not_around_cwd(target: Path, key: str) -> None:
    """Refuse a folder to replace whole that is, or holds, the current folder (``""``, ``.``)."""
    try:
        here = Path.cwd().resolve()
        folder = target.resolve()
    except (OSError, RuntimeError):  # the current folder was removed, or a link loop
        return  # (Python 3.12's resolve raises RuntimeError): the writability checks name it
    if folder == here or folder in here.parents:
        raise ScenarioError(
            key,
            f"{target} is the current folder or holds it, and a run replaces its folder whole; "
            "name a folder inside it instead",
        )


def check_reused_folder(
    target: Path, marks: tuple[str, ...], what: str, key: str = "--out"
) -> None:
    """Refuse a folder that is reused (written into, never swapped) if it is someone else's.

    The folder may be absent, empty, or ours: it holds a file matching one of ``marks``.

    Args:
        target: The folder.
        marks: Glob patterns (relative to ``target``) of the files that mark it as ours; the first
            is the one named in the error.
        what: What the folder should be, for the error (``"a mesaopt sweep"``).
        key: What to name in the error (the CLI option).

    Raises:
        ScenarioError: As :func:`check_target`'s writability checks, or the folder is not empty
            and holds no mark (nothing is written then).
    """
    _check_writable(target, key)
    if not target.is_dir():
        return
    try:
        if not any(target.iterdir()) or any(p.is_file() for m in marks for p in target.glob(m)):
            return
    except OSError as err:
        raise ScenarioError(key, f"{target}: cannot read it ({err.strerror})") from None
    raise ScenarioError(
        key,
        f"{target} is a folder that is not {what} (no {marks[0]}); "
        "nothing was written: choose a new or empty folder",
    )


def check_sweep_folder(target: Path, key: str = "--out") -> None:
    """Refuse a sweep folder that cannot be written, or an existing folder that is not a sweep.

    A sweep folder is reused (it resumes), never swapped: it may be absent, empty, or hold a
    ``sweep.json``.

    Raises:
        ScenarioError: As :func:`check_reused_folder`, with ``sweep.json`` as the mark of ours.
    """
    check_reused_folder(target, ("sweep.json",), "a mesaopt sweep", key)


#: The mark of an experiments folder (:func:`analysis.experiments.run_experiments` writes it).
EXPERIMENTS_MARK = "experiments.json"


def check_experiments_folder(target: Path, key: str = "--out") -> None:
    """Refuse an experiments folder that cannot be written, or a folder that is someone else's.

    An experiments folder is reused (it resumes), never swapped: it may be absent, empty, or
    ours: it holds :data:`EXPERIMENTS_MARK`, or (folders written before the mark existed)
    ``verdicts.csv`` or an ``<experiment>/size.json``.

    Raises:
        ScenarioError: As :func:`check_reused_folder`, with the marks above as ours.
    """
    marks = (EXPERIMENTS_MARK, "verdicts.csv", "*/size.json")
    check_reused_folder(target, marks, "a mesaopt experiments folder", key)


def check_target(target: Path, key: str = "--out") -> None:
    """Refuse a target a run may not write, before anything is written.

    Args:
        target: The run folder.
        key: What to name in the error (the CLI option).

    Raises:
        ScenarioError: The nearest existing ancestor (the parent, or the folder missing parents
            will be made in) is not a folder or not writable; the target is a file or a link; it
            is the current folder or one holding it; or it is a folder that is not empty and not
            a run folder.
    """
    _check_writable(target, key)
    _check_not_around_cwd(target, key)
    if target.is_dir():
        try:
            replaceable = is_replaceable(target)
        except OSError as err:
            raise ScenarioError(key, f"{target}: cannot read it ({err.strerror})") from None
        if not replaceable:
            raise ScenarioError(
                key,
                f"{target} is a folder that is not a mesaopt run (no manifest.json); "
                "nothing was written: choose a new or empty folder",
            )


def prepare_target(target: Path, key: str = "--out") -> Path:
    """Check ``target`` (:func:`check_target`), clean stale siblings, create the staging folder.

    Args:
        target: The run folder.
        key: What to name in an error.

    Returns:
        The new staging folder, holding only :data:`STAGING_MARK`.

    Raises:
        ScenarioError: See :func:`check_target`; also when the staging folder cannot be made.
    """
    check_target(target, key)
    clean_stale_siblings(target)
    staging = staging_path(target)
    try:
        staging.mkdir()
        (staging / STAGING_MARK).touch()
    except OSError as err:
        raise ScenarioError(key, f"{target}: cannot create {staging} ({err.strerror})") from None
    return staging


@functools.cache  # loading libc once per process
def _libc_exchange():
    """The C library's ``renameat2`` (Linux, glibc 2.28 or later), else None."""
    if not os.uname().sysname == "Linux":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p] * 2 + [ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2``); False where that is not available."""
    if os.environ.get(SWAP_ENV) == "rename":
        return False
    function = _libc_exchange()
    if function is None:
        return False
    result = function(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # this kernel or filesystem has no exchange: two renames instead
    raise OSError(code, os.strerror(code), str(second))


def swap_in(staging: Path, target: Path) -> None:
    """Put the finished ``staging`` folder at ``target``, replacing a run folder there.

    Args:
        staging: The complete new folder (on the same filesystem as ``target``: beside it, in
            an ancestor of it, or in a sweep's scratch folder).
        target: Where it goes; absent, empty, or a run folder (checked by :func:`check_target`).
    """
    kill_hook("before_swap")
    # From here a leftover is recognised by its manifest (clean_stale_siblings)
    (staging / STAGING_MARK).unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)  # a missing parent is made only now
    if not target.exists():
        try:
            os.rename(staging, target)
            kill_hook("after_swap")
            return
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    if _exchange(staging, target):
        kill_hook("after_swap")
        shutil.rmtree(staging)  # the old folder, now at the hidden name
        return
    aside = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.rename(target, aside)
    kill_hook("after_aside")
    os.rename(staging, target)
    kill_hook("after_swap")
    shutil.rmtree(aside)
