"""``tlbench.grid``: kept for scripts written against it; the cells live in ``tlbench.cells``."""

from tlbench.cells import RECIPE, Cell, expand, select, with_dependencies

__all__ = ["RECIPE", "Cell", "expand", "select", "with_dependencies"]
