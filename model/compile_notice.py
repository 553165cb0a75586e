"""One line when the model's kernels are compiled rather than loaded from Numba's cache.

The first run on a machine (or after an upgrade) compiles the model's Numba kernels, which takes
tens of seconds before the first step; later runs load them from Numba's on-disk cache in well
under a second. Without a word, a newcomer's first command looks hung.
:func:`compile_notice` listens to Numba's documented ``"numba:compile"`` event
(``numba.core.event``), which Numba broadcasts only when it really compiles a function (a cache
hit loads the function without it), and writes one line the first time one of mesaopt's own
kernels starts compiling. Numba is imported only when the first command that runs the model
enters the context, so the commands that never compile pay nothing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

__all__ = ["NOTICE", "compile_notice"]

#: The line written on the first compilation of one of the package's kernels.
NOTICE = (
    "mesaopt: compiling the model's kernels for this machine (once: up to a minute; later "
    "commands load them from the cache)"
)

#: Modules whose kernels count: the package's own (a user's Numba code is theirs to time).
_PACKAGE = "mesaopt."


def _compiled_module(event: object) -> str:
    """The module of the function an ``numba:compile`` event compiles ('' if it cannot tell)."""
    data = getattr(event, "data", None)
    dispatcher = data.get("dispatcher") if isinstance(data, dict) else None
    function = getattr(dispatcher, "py_func", None)
    return str(getattr(function, "__module__", "") or "")


@contextlib.contextmanager
def compile_notice(write: Callable[[str], None], enabled: bool = True) -> Iterator[None]:
    """Write :data:`NOTICE` once, the first time a mesaopt kernel compiles inside the block.

    Compilation may start on any kernel thread (Numba serialises it under its compiler lock);
    the line is written at most once per block whichever thread starts it.

    Args:
        write: Writes one line (a progress-bar-aware writer on the command line).
        enabled: False: do nothing (``--quiet``), and do not import Numba.

    Yields:
        Nothing; the listener is removed when the block ends.
    """
    if not enabled:
        yield
        return
    from numba.core import event

    written = threading.Event()
    lock = threading.Lock()

    class _FirstCompile(event.Listener):
        def on_start(self, started: event.Event) -> None:
            if written.is_set() or not _compiled_module(started).startswith(_PACKAGE):
                return
            with lock:
                if not written.is_set():
                    written.set()
                    write(NOTICE)

        def on_end(self, ended: event.Event) -> None:
            pass

    with event.install_listener("numba:compile", _FirstCompile()):
        yield
