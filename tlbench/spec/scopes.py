"""The grid and each of its blocks as expansion sees them: merged axes, settings, and the key
path prefix each axis's entries were declared under (for errors that name one). Torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tlbench.spec.schema import AXES, Axes, GridSpec


@dataclass(frozen=True)
class Scope:
    """The grid itself, or one of its blocks, as expansion sees it."""

    block: str  # "" for the grid
    axes: Axes
    train: dict[str, Any]
    tune: dict[str, Any]
    seeds: Any
    excludes: tuple[dict[str, str], ...]
    metric: str
    where: dict[str, str]  # axis -> key path prefix of its entries (``blocks[1].strategies``)


def scopes(spec: GridSpec) -> list[Scope]:
    """The grid, or each of its blocks with the axes it inherits."""
    if not spec.blocks:
        return [Scope("", spec, {}, {}, None, spec.exclude, spec.metric, {a: a for a in AXES})]
    out = []
    for i, block in enumerate(spec.blocks):
        merged = {a: getattr(block, a) if getattr(block, a) is not None else getattr(spec, a) for a in AXES}
        where = {a: f"blocks[{i}].{a}" if getattr(block, a) is not None else a for a in AXES}
        out.append(
            Scope(
                block.name,
                Axes(**merged),
                block.train,
                block.tune,
                block.seeds,
                spec.exclude + block.exclude,
                block.metric or spec.metric,
                where,
            )
        )
    return out
