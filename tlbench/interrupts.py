"""Ctrl-C and SIGTERM: where they may interrupt, and how the pool tells them apart.

Both end a grid the same way (runs KILLED, checkpoints kept, exit 130), but neither may land in
the middle of a tracking-store write: a KeyboardInterrupt raised inside SQLAlchemy's commit
leaves an SQLite store locked, and the run could then not even be marked KILLED. Store calls
therefore run ``uninterrupted``: a signal that arrives meanwhile is delivered right after.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

_HELD = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, ``kill``): like Ctrl-C, but it reached only this process, so a pool
    must pass it on to its workers at once (a terminal's Ctrl-C reaches them by itself)."""


def sigterm_as_interrupt() -> None:
    """Make SIGTERM end the current run like Ctrl-C does (marked KILLED, checkpoint kept)."""

    def handler(signum: int, frame: Any) -> None:
        raise Terminated

    signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold SIGINT / SIGTERM for the duration of the block, then deliver them (main thread only;
    other threads never receive signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = {s: signal.getsignal(s) for s in _HELD}
    for s in _HELD:
        signal.signal(s, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if got:
            _deliver(got[0], old[got[0]])


def _deliver(signum: int, handler: Any) -> None:
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        os.kill(os.getpid(), signum)  # the default action, now that it is back in place
