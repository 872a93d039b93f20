"""Reading a grid: a name or path to a file, YAML to a checked ``GridSpec``.

Every failure is a ``SpecError`` naming the file, the key path and the valid choices, so the CLI
can print one clear message and exit 2 without a traceback.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tlbench.spec.check import check_spec, spec_error_from_validation
from tlbench.spec.schema import GridSpec, SpecError

GRIDS_DIR = Path("benchmarks") / "grids"


def packaged_grids_dir() -> Path:
    """The grids shipped inside the package (``tlbench/grids``, package data): found with
    importlib.resources, so a wheel or a non-editable install has them from any folder."""
    from importlib.resources import files

    return Path(str(files("tlbench") / "grids"))


def shipped_grids() -> dict[str, Path]:
    """name -> file of every grid shipped with tlbench."""
    folder = packaged_grids_dir()
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def resolve_grid_path(grid: str | Path, root: Path | None = None) -> Path:
    """``smoke`` -> ``benchmarks/grids/smoke.yaml`` in the cwd (a checkout's own grids first),
    else the grid shipped with the package; a path to a .yaml file is taken as is."""
    p = Path(grid)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise SpecError(p, "", "grid file not found")
        return p
    base = (root or Path.cwd()) / GRIDS_DIR
    candidate = base / f"{grid}.yaml"
    if candidate.exists():
        return candidate
    shipped = shipped_grids() if root is None else {}
    if str(grid) in shipped:
        return shipped[str(grid)]
    known = sorted({q.stem for q in base.glob("*.yaml")} | set(shipped)) if base.exists() else sorted(shipped)
    hint = difflib.get_close_matches(str(grid), known, n=1)
    msg = f"no grid named {str(grid)!r} in {base} or among the shipped grids"
    if hint:
        msg += f"; did you mean {hint[0]!r}?"
    if known:
        msg += f" (available: {', '.join(known)}; `tlbench grids` lists them)"
    raise SpecError(candidate, "", msg)


def load_grid(grid: str | Path, *, check_backbones: bool = False, root: Path | None = None) -> GridSpec:
    """Read, parse and check a grid file; every failure is a ``SpecError``.

    Needs no torch. ``check_backbones`` also checks backbone names and hub tags against timm
    (``check_backbone_names``, which imports it), for the commands that go on to build models.
    """
    path = resolve_grid_path(grid, root)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(path, where, f"not valid YAML: {getattr(err, 'problem', err)}") from None
    spec = parse_grid(raw, file=path, check_backbones=check_backbones)
    if not spec.name:
        spec = spec.model_copy(update={"name": path.stem})
    return spec


def parse_grid(raw: Any, *, file: Path | str | None = None, check_backbones: bool = False) -> GridSpec:
    """A grid from its parsed YAML: validated, every name checked (backbones too with ``check_backbones``)."""
    if not isinstance(raw, dict):
        raise SpecError(file, "", f"a grid must be a mapping at top level, got {type(raw).__name__}")
    try:
        spec = GridSpec.model_validate(raw)
    except ValidationError as err:
        raise spec_error_from_validation(err, file) from None
    check_spec(spec, file, check_backbones=check_backbones)
    return spec
