"""Where a cell's wall time went, phase by phase: logged as run metrics ``time.<phase>_s``.

A cell is mostly fixed cost when it is small (a probe, a few-shot cell, a tuning trial): building
the model, MLflow writes, checkpoints, evaluation passes. ``CellTimes`` splits one attempt's wall
time into disjoint phases so a user sees where a slow cell went and ``benchmarks/perf/
grid_efficiency.py`` can add them up over a grid. Phases nest: time spent in an inner phase is
counted there and not in the outer one, so the phases plus ``other`` add up to ``wall``.

The clock is found through a context variable (``timing``) rather than passed through every
training function: code that is timed says ``with timed("eval"):`` and costs nothing when no
clock is running (a bare ``fit`` call, a benchmark).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

PHASES = (
    "claim",
    "open",
    "data",
    "weights",
    "build",
    "features",
    "train",
    "eval",
    "checkpoint",
    "track",
    "finish",
)


class CellTimes:
    """Seconds per phase of one cell attempt, disjoint (an inner phase pauses the outer one)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.spent: dict[str, float] = {}
        self._stack: list[tuple[str, float]] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        now = time.perf_counter()
        if self._stack:  # the outer phase stops counting while this one runs
            outer, since = self._stack[-1]
            self.spent[outer] = self.spent.get(outer, 0.0) + now - since
        self._stack.append((name, now))
        try:
            yield
        finally:
            end = time.perf_counter()
            _, since = self._stack.pop()
            self.spent[name] = self.spent.get(name, 0.0) + end - since
            if self._stack:
                self._stack[-1] = (self._stack[-1][0], end)

    def metrics(self) -> dict[str, float]:
        """``time.<phase>_s`` for every phase seen, ``time.other_s`` (the rest) and ``time.wall_s``."""
        now = time.perf_counter()
        wall = now - self.started
        spent = dict(self.spent)
        if self._stack:  # asked from inside a phase (the run's end is logged while finishing)
            name, since = self._stack[-1]
            spent[name] = spent.get(name, 0.0) + now - since
        out = {f"time.{k}_s": v for k, v in spent.items()}
        out["time.other_s"] = max(0.0, wall - sum(spent.values()))
        out["time.wall_s"] = wall
        return out


_current: ContextVar[CellTimes | None] = ContextVar("tlbench_cell_times", default=None)


@contextmanager
def timing(times: CellTimes | None) -> Iterator[CellTimes | None]:
    """Make ``times`` the clock that ``timed`` adds to, for the duration of the block."""
    token = _current.set(times)
    try:
        yield times
    finally:
        _current.reset(token)


@contextmanager
def timed(name: str) -> Iterator[None]:
    """Count the block as phase ``name`` of the running cell's clock (nothing without one)."""
    times = _current.get()
    if times is None:
        yield
        return
    with times.phase(name):
        yield
