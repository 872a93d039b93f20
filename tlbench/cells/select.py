"""``--select``: cells by glob, id or configuration, and the ``cell:`` sources a selection needs."""

from __future__ import annotations

import fnmatch

from tlbench.cells.cell import Cell


def select(cells: list[Cell], patterns: list[str] | tuple[str, ...] | None) -> list[Cell]:
    """Cells whose name matches any glob (``CONFIG`` or ``CONFIG@s*``: every replicate, ``CONFIG@s1``:
    one), or whose id or configuration id starts with it; no patterns selects everything."""
    if not patterns:
        return list(cells)

    def hit(c: Cell, p: str) -> bool:
        names = (c.name, c.config_name)
        return (
            any(fnmatch.fnmatchcase(n, p) for n in names) or c.id.startswith(p) or c.config_id.startswith(p)
        )

    return [c for c in cells if any(hit(c, p) for p in patterns)]


def with_dependencies(selected: list[Cell], all_cells: list[Cell]) -> list[Cell]:
    """Add the ``cell:`` sources the selection needs, keeping run order."""
    by_name = {c.name: c for c in all_cells}
    needed = {c.name for c in selected}
    stack = [c for c in selected]
    while stack:
        c = stack.pop()
        if c.depends_on and c.depends_on not in needed:
            needed.add(c.depends_on)
            stack.append(by_name[c.depends_on])
    return [c for c in all_cells if c.name in needed]
