"""What ``tlbench rank`` scores: every (dataset, backbone) of a grid that adapts a backbone,
per seed where the seed changes what is scored, each through one of the grid's own cells.

The representative cell gives the data (its subset, shots, val carve: a replicate resamples
them), the weights (a replicated ``cell:`` source loads the replicate with its seed) and the input
size and normalisation, so the features scored are the ones the grid's probes see. Frozen-backbone
cells are preferred (their feature-store entries are shared); cells that add modules to the
backbone (LoRA, VPT) are never used, and neither are ``scratch`` cells: their backbone is not the
one being ranked.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlbench.catalog.strategies import STRATEGIES
from tlbench.cells import Cell

PREFERENCE = ("linear_probe", "lp_ft", "wise_ft", "partial", "finetune", "l2sp", "bitfit", "norm_tune")


@dataclass(frozen=True)
class Target:
    """One (dataset, backbone, seed) to score, and the cell it is scored through."""

    dataset: str  # the dataset's label in the grid
    backbone: str  # the backbone's label
    seed: int
    cell: Cell

    @property
    def key(self) -> tuple[str, str]:
        return self.dataset, self.backbone


def _usable(cell: Cell) -> bool:
    return STRATEGIES.get(cell.strategy.name).pretrained and cell.strategy.name in PREFERENCE


def _preference(cell: Cell) -> tuple[int, str]:
    return PREFERENCE.index(cell.strategy.name), cell.name


def targets(cells: list[Cell]) -> list[Target]:
    """One target per (dataset, backbone, seed) of the cells that adapt a pretrained backbone,
    in the grid's order of datasets and backbones."""
    groups: dict[tuple[str, str, int], list[Cell]] = {}
    for c in cells:
        if _usable(c):
            groups.setdefault((c.labels["dataset"], c.labels["backbone"], c.train.seed), []).append(c)
    first: dict[tuple[str, str], int] = {}
    for i, c in enumerate(cells):
        first.setdefault((c.labels["dataset"], c.labels["backbone"]), i)
    return [
        Target(dataset, backbone, seed, min(found, key=_preference))
        for (dataset, backbone, seed), found in sorted(
            groups.items(), key=lambda kv: (first[kv[0][:2]], kv[0][2])
        )
    ]


def unfinished_sources(found: list[Target], finished: set[str]) -> list[str]:
    """The ``cell:`` sources the targets load that have no FINISHED run yet (names, in order)."""
    out: list[str] = []
    for t in found:
        c = t.cell
        if c.weights.kind == "cell" and (c.depends_on_id or "") not in finished and c.depends_on not in out:
            out.append(c.depends_on or c.weights.value)
    return out
