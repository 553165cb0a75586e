"""What kind of folder a user names: a run's, a sweep's, or neither (no table is read).

Only the standard library, so that a command refuses a wrong folder before it imports the
tables, figure and plotting libraries (``run.py report nosuchdir`` answers in well under a
second instead of after matplotlib's import). :mod:`analysis.run_folder` reads the tables.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "FailedRunError",
    "NotARunError",
    "check_run_or_sweep",
    "is_run_folder",
    "is_sweep_folder",
]


class NotARunError(ValueError):
    """Raised when a folder holds neither a run nor a sweep."""


class FailedRunError(NotARunError):
    """Raised when a run folder holds a run stopped by an error (``"status": "failed"``)."""


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` holds a run: a ``manifest.json`` and a ``steps`` table."""
    path = Path(path)
    return (path / "manifest.json").is_file() and any(
        (path / f"steps.{ext}").is_file() for ext in ("parquet", "csv")
    )


def is_sweep_folder(path: str | Path) -> bool:
    """Whether ``path`` holds a sweep: a ``sweep.json`` next to a ``runs/`` folder."""
    path = Path(path)
    return (path / "sweep.json").is_file() and (path / "runs").is_dir()


def check_run_or_sweep(path: str | Path) -> None:
    """Refuse, with one line, a folder that is neither a run's nor a sweep's.

    Args:
        path: The folder.

    Raises:
        NotARunError: If ``path`` does not exist, or holds neither a run nor a sweep.
    """
    if not Path(path).exists():
        raise NotARunError(f"{path}: no such folder")
    if not (is_run_folder(path) or is_sweep_folder(path)):
        raise NotARunError(
            f"{path} is not a run folder (manifest.json + steps) "
            "or a sweep folder (sweep.json + runs/)"
        )
