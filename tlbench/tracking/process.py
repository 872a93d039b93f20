"""What one process keeps across the cells it runs, and lets go of when it ends: the source
checkpoints it downloaded (a FINISHED run's never change) and its background artifact writers."""

from __future__ import annotations

import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CHECKPOINTS: dict[tuple[str, str], Path] = {}  # (store uri, run id) -> the downloaded best checkpoint
WRITERS: list[ThreadPoolExecutor] = []
_CACHE_DIR: list[tempfile.TemporaryDirectory] = []


def checkpoint_cache() -> Path:
    """This process's folder of downloaded source checkpoints, removed when the process exits."""
    if not _CACHE_DIR:
        _CACHE_DIR.append(tempfile.TemporaryDirectory(prefix="tlbench-sources-"))
    return Path(_CACHE_DIR[0].name)


def drop_process_caches() -> None:
    """Remove this process's downloaded source checkpoints now (a process about to ``os._exit``)."""
    CHECKPOINTS.clear()
    while _CACHE_DIR:
        _CACHE_DIR.pop().cleanup()


def stop_writers(timeout: float = 30.0) -> None:
    """End every background writer now, letting a write in progress finish (up to ``timeout``):
    an interrupted ``tlbench run`` was seen waiting forever at exit for an idle writer thread that
    the interpreter's own shutdown had not woken."""
    while WRITERS:
        WRITERS.pop().shutdown(wait=False)
    deadline = time.monotonic() + timeout
    for t in threading.enumerate():
        if t.name.startswith("tlbench-artifacts"):
            t.join(max(0.0, deadline - time.monotonic()))
