"""Cells: a grid spec expanded into the experiments it declares (torch-free).

``cell`` (the ``Cell`` every later stage sees), ``expand`` (the cross product, ids with the recipe
version, ``cell:`` order), ``replicates`` (``seeds:``: one cell per seed, configuration ids, run
order), ``select`` (``--select`` globs and the sources a selection needs).
"""

from tlbench.cells.cell import Cell
from tlbench.cells.expansion import RECIPE, expand
from tlbench.cells.select import select, with_dependencies

__all__ = ["RECIPE", "Cell", "expand", "select", "with_dependencies"]
