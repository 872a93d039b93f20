"""Cells whose settings coincide: differently named cells with one id, said before anything runs.

A cell's id is the hash of what determines its result, so two cells whose merged settings are
identical (a strategy entry copied under a second label, an L-BFGS probe under each optimizer,
which it ignores) get one id; tlbench trains one run and reports the other as the same cell. That
is right, but a user counting 16 cells and finding 14 runs must be told which coincide and why:
``ls``, ``validate`` and the run summary say it from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tlbench.cells.cell import Cell


@dataclass(frozen=True)
class SameSettings:
    """Cells with one id: the first (the one that runs) and the others it serves."""

    cells: tuple[Cell, ...]

    @property
    def kept(self) -> Cell:
        return self.cells[0]

    @property
    def others(self) -> tuple[Cell, ...]:
        return self.cells[1:]

    def why(self) -> str:
        """Which labels differ, and why that changes nothing (settings a strategy ignores)."""
        axes = [a for a in self.kept.labels if len({c.labels.get(a) for c in self.cells}) > 1]
        ignored = set().union(*(c.ignored for c in self.cells))
        if axes and all(a in ignored for a in axes):
            return f"the strategy ignores the {' and '.join(axes)}"
        if axes:
            return f"their {' and '.join(axes)} entries differ in label only"
        return "identical settings"

    def sentence(self) -> str:
        """``a = b: one run serves both (why)``."""
        serves = "both" if len(self.cells) == 2 else f"all {len(self.cells)}"
        return f"{' = '.join(c.name for c in self.cells)}: one run serves {serves} ({self.why()})"


def same_settings(cells: Iterable[Cell]) -> list[SameSettings]:
    """Every group of two or more cells sharing an id, in run order."""
    by_id: dict[str, list[Cell]] = {}
    for c in cells:
        by_id.setdefault(c.id, []).append(c)
    return [SameSettings(tuple(group)) for group in by_id.values() if len(group) > 1]


def runs_needed(cells: Iterable[Cell]) -> int:
    """How many runs the cells make: one per id."""
    return len({c.id for c in cells})


def runs_text(n: int) -> str:
    """``1 run`` / ``3 runs``."""
    return f"{n} run" + ("" if n == 1 else "s")


def said(groups: list[SameSettings], limit: int = 10) -> list[str]:
    """The lines a command prints: one per group, the first ``limit`` of them, then a count."""
    lines = [g.sentence() for g in groups[:limit]]
    if len(groups) > limit:
        lines.append(f"... and {len(groups) - limit} more groups of cells with identical settings")
    return lines
