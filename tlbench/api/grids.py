"""Grids from Python: a grid file loaded and expanded, a selection of its cells, what its inputs
need (validate) and fetching them (prefetch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlbench.cells import expand, select
from tlbench.errors import TlbenchError
from tlbench.preflight.adapters import check_adapters
from tlbench.spec import check_backbone_names, resolve_grid_path
from tlbench.spec import load_grid as load_spec

if TYPE_CHECKING:
    from rich.console import Console

    from tlbench.cells import Cell
    from tlbench.spec import GridSpec


class SelectionError(TlbenchError, ValueError):
    """A ``select`` that matches none of a grid's cells."""


@dataclass
class Grid:
    """A grid file, validated, with every cell it declares (in run order)."""

    spec: GridSpec
    path: Path
    cells: list[Cell]

    @property
    def name(self) -> str:
        return self.spec.name

    def select(self, patterns: list[str] | tuple[str, ...] | str | None = None) -> list[Cell]:
        """The cells matching any glob (a name, ``CONFIG@s1``, an id prefix); all without patterns."""
        patterns = [patterns] if isinstance(patterns, str) else list(patterns or ())
        chosen = select(self.cells, patterns)
        if patterns and not chosen:
            raise SelectionError(
                f"--select {' '.join(patterns)} matches none of the {len(self.cells)} cells of grid {self.name!r}"
            )
        return chosen


def load_grid(grid: str | Path | Grid, *, check_backbones: bool = False) -> Grid:
    """A grid by name (``benchmarks/grids/NAME.yaml`` here, else the shipped ones) or by path.
    ``check_backbones`` also checks backbone names and tags against timm, and LoRA targets and
    VPT against each model's structure (imports torch)."""
    if isinstance(grid, Grid):
        if check_backbones:
            check_backbone_names(grid.spec, grid.path)
            check_adapters(grid.spec, grid.cells, grid.path)
        return grid
    path = resolve_grid_path(str(grid))
    spec = load_spec(path, check_backbones=check_backbones)
    g = Grid(spec, path, expand(spec, path))
    if check_backbones:  # what only a model's structure tells: LoRA targets, VPT's tokens
        check_adapters(spec, g.cells, path)
    return g


def expand_grid(grid: str | Path | Grid, select: list[str] | tuple[str, ...] | None = None) -> list[Cell]:
    """The (selected) cells of a grid."""
    return load_grid(grid).select(select)


def validate_grid(
    grid: str | Path | Grid,
    *,
    select: list[str] | tuple[str, ...] | None = None,
    data_dir: str | None = None,
    build: bool = True,
    console: Console | None = None,
) -> tuple[list[Any], list[str]]:
    """Every input of the (selected) cells, local or to be downloaded, and every problem found
    without training (a missing file, a backbone that does not build, a setting that would fail)."""
    from tlbench.preflight.prefetch import status
    from tlbench.preflight.validate import validate_cells

    g = load_grid(grid, check_backbones=True)
    chosen = g.select(select)
    return status(chosen, data_dir), validate_cells(chosen, data_dir=data_dir, build=build, console=console)


def prefetch_grid(
    grid: str | Path | Grid, *, select: list[str] | tuple[str, ...] | None = None, data_dir: str | None = None
) -> list[Any]:
    """Download every dataset and pretrained weight the (selected) cells need; what happened to each."""
    from tlbench.preflight.prefetch import fetch

    g = load_grid(grid, check_backbones=True)
    return fetch(g.select(select), data_dir)
