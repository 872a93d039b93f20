"""Telling live processes from dead ones: one heartbeat and one staleness rule for all.

A cell run, a claim and a tuning trial each carry a timestamp that a background thread of the
process working on it refreshes every ``heartbeat_interval()`` seconds. Whoever finds one older
than ``stale_after()`` takes its process as gone (SIGKILL, an OOM kill, a lost node) and may
clean up after it. Where the timestamp is stored differs (an MLflow tag, an Optuna user
attribute): the caller passes the function that writes it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from types import TracebackType


def heartbeat_interval() -> float:
    """Seconds between heartbeats (``TLBENCH_HEARTBEAT_S``, default 30)."""
    return max(0.2, float(os.environ.get("TLBENCH_HEARTBEAT_S", "30")))


def stale_after() -> float:
    """Seconds without a heartbeat after which a process is taken as gone: three missed beats
    plus a margin for a slow store (10 s, less for the sub-second beats of tests)."""
    beat = heartbeat_interval()
    return 3 * beat + min(10.0, 5 * beat)


def is_stale(last_beat: float, now: float | None = None, limit: float | None = None) -> bool:
    """Has the process behind a heartbeat written at ``last_beat`` (unix time) gone?"""
    now = time.time() if now is None else now
    return now - last_beat > (stale_after() if limit is None else limit)


class Heartbeat:
    """Calls ``beat()`` now and then every ``heartbeat_interval()`` seconds on a daemon thread,
    until stopped (``stop()`` or leaving the ``with`` block). A failing beat (a store hiccup) is
    ignored: the next one retries, and training is never killed by its bookkeeping."""

    def __init__(self, beat: Callable[[], None], name: str = "tlbench-heartbeat"):
        self._beat = beat
        self._stop = threading.Event()
        beat()  # the first one synchronously: a new run or claim is live before anyone looks
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(heartbeat_interval()):
            with contextlib.suppress(Exception):
                self._beat()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self, wait: bool = False) -> None:
        self._stop.set()
        if wait:
            self._thread.join(timeout=5)

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop(wait=True)
