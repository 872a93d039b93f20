"""The inputs a grid needs (datasets, hub weights): where each is, and fetching them ahead of time.

On a cluster the GPU nodes often have no internet: ``tlbench prefetch`` runs on a login node and
puts every dataset into the data dir (and its tensor cache) and every hub weight into the Hugging
Face cache, which the nodes then read with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlbench.grid import Cell
from tlbench.hub import HUB_FILES as HUB_FILES  # re-exported: the hub helpers live in tlbench.hub
from tlbench.hub import check_hub_tag as check_hub_tag  # re-exported
from tlbench.hub import hub_model_name, hub_repo


@dataclass
class Input:
    kind: str  # "dataset" | "weights"
    name: str  # e.g. "cifar10" or "resnet18.a1_in1k"
    state: str  # "local" | "download" | "generated" | "bundled" | "fetched" | "failed"
    where: str = ""

    @property
    def ok(self) -> bool:
        return self.state != "failed"


def hub_name(cell: Cell) -> str | None:
    """``arch.tag`` of a cell's hub weights (timm's default tag when none is named), or None."""
    if cell.weights.kind != "hub" or cell.strategy.name == "scratch":
        return None
    return hub_model_name(cell.backbone.name, cell.weights.value)


def status(cells: list[Cell], data_dir: str | Path | None = None) -> list[Input]:
    """Where every input of these cells is: present locally, or to be downloaded."""
    from tlbench.data.datasets import DATASETS, data_root

    root = data_root(data_dir)
    out: list[Input] = []
    seen: set[Any] = set()
    for c in cells:
        key = ("dataset", c.dataset.name, repr(sorted(c.dataset.params.items())))
        if key in seen:
            continue
        seen.add(key)
        info = DATASETS.get(c.dataset.name)
        if c.dataset.name == "synthetic":
            out.append(Input("dataset", c.labels["dataset"], "generated"))
        elif info.fingerprint is None:
            out.append(Input("dataset", c.labels["dataset"], "bundled", "ships with a Python package"))
        else:
            fp = info.fingerprint(root, **{**info.params, **c.dataset.params})
            out.append(
                Input(
                    "dataset",
                    c.labels["dataset"],
                    "local" if fp else "download",
                    fp.split(":")[0] if fp else str(root),
                )
            )
    for c in cells:
        name = hub_name(c)
        if name is None or ("weights", name) in seen:
            continue
        seen.add(("weights", name))
        repo, path = hub_repo(name)
        out.append(Input("weights", name, "local" if path else "download", path or f"hf://{repo}"))
    return out


def fetch(cells: list[Cell], data_dir: str | Path | None = None) -> list[Input]:
    """Download every dataset and hub weight the cells need; one failure does not stop the rest."""
    from tlbench.data import load_dataset

    results: list[Input] = []
    for item in status(cells, data_dir):
        if item.state in ("generated", "bundled", "local"):
            results.append(item)
            continue
        try:
            if item.kind == "dataset":
                cell = next(c for c in cells if c.labels["dataset"] == item.name)
                d = load_dataset(
                    cell.dataset.name, params=cell.dataset.params, data_dir=data_dir, download=True
                )
                results.append(Input("dataset", item.name, "fetched", d.source))
            else:
                import timm

                timm.create_model(item.name, pretrained=True)
                results.append(Input("weights", item.name, "fetched", hub_repo(item.name)[1] or ""))
        except Exception as err:
            results.append(
                Input(item.kind, item.name, "failed", f"{type(err).__name__}: {str(err).splitlines()[0]}")
            )
    return results
