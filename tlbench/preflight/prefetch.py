"""The inputs a grid needs (datasets, hub weights): where each is, and fetching them ahead of time.

On a cluster the GPU nodes often have no internet: ``tlbench prefetch`` runs on a login node and
puts every dataset into the data dir (and its tensor cache) and every hub weight into the Hugging
Face cache, which the nodes then read with ``HF_HUB_OFFLINE=1``. Downloads go where the run's
would: ``HF_ENDPOINT`` (a hub mirror), the dataset URL overrides, ``HTTP(S)_PROXY`` / ``NO_PROXY``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlbench.catalog.backbones import check_hub_tag as check_hub_tag
from tlbench.catalog.backbones import hub_model_name
from tlbench.cells import Cell
from tlbench.models.hub import HUB_FILES as HUB_FILES
from tlbench.models.hub import fail_fast_if_unreachable, hub_repo, hub_route


@dataclass
class Input:
    kind: str  # "dataset" | "weights"
    name: str  # e.g. "cifar10" or "resnet18.a1_in1k"
    state: str  # "local" | "download" | "generated" | "bundled" | "fetched" | "failed"
    where: str = ""

    @property
    def ok(self) -> bool:
        return self.state not in ("failed", "manual")  # manual: must be placed by hand first


def hub_name(cell: Cell) -> str | None:
    """``arch.tag`` of a cell's hub weights (timm's default tag when none is named), or None."""
    if cell.weights.kind != "hub" or cell.strategy.name == "scratch":
        return None
    return hub_model_name(cell.backbone.name, cell.weights.value)


def status(cells: list[Cell], data_dir: str | Path | None = None) -> list[Input]:
    """Where every input of these cells is: present locally, to be downloaded, or to place by hand."""
    from tlbench.data.datasets import data_root

    root = data_root(data_dir)
    out: list[Input] = []
    seen: set[Any] = set()
    for c in cells:
        key = ("dataset", c.dataset.name, repr(sorted(c.dataset.params.items())))
        if key in seen:
            continue
        seen.add(key)
        out.append(dataset_status(c, root))
    for c in cells:
        name = hub_name(c)
        if name is None or ("weights", name) in seen:
            continue
        seen.add(("weights", name))
        repo, path = hub_repo(name)
        out.append(Input("weights", name, "local" if path else "download", path or hub_route(repo)))
    return out


_FETCH_NOTES = {"md5": "torchvision checks its MD5", "unchecked": "torchvision has no checksum for it"}


def dataset_status(cell: Cell, root: Path) -> Input:
    """One dataset: generated, bundled, local, to be downloaded (and how it is checked) or manual."""
    from tlbench.catalog.datasets import dataset_meta
    from tlbench.catalog.torchvision import tv_set
    from tlbench.data.datasets import dataset_info
    from tlbench.data.tvsets import tv_root

    name, label = cell.dataset.name, cell.labels["dataset"]
    info, meta = dataset_info(name), dataset_meta(name)
    if name == "synthetic":
        return Input("dataset", label, "generated")
    local = cell.dataset.params.get("path")  # imagefolder: exists only where it was put
    if local and not Path(local).expanduser().exists():
        return Input("dataset", label, "missing", f"{local} does not exist (local only: nothing to download)")
    if info.fingerprint is None:
        return Input("dataset", label, "bundled", "ships with a Python package")
    fp = info.fingerprint(root, **{**info.params, **cell.dataset.params})
    tv = tv_set(name)
    folder = tv_root(root, tv) if tv else root
    if fp or (tv and folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))):  # streamed: no fp
        return Input("dataset", label, "local", fp.split(":")[0] if fp else str(folder))
    if meta.fetch == "manual":
        return Input(
            "dataset", label, "manual", f"place it by hand in {folder}/: torchvision cannot download it"
        )
    note = _FETCH_NOTES.get(meta.fetch)
    return Input("dataset", label, "download", f"{folder} ({note})" if note else str(folder))


def fetch(cells: list[Cell], data_dir: str | Path | None = None) -> list[Input]:
    """Download every dataset and hub weight the cells need; one failure does not stop the rest."""
    from tlbench.data import load_dataset

    results: list[Input] = []
    for item in status(cells, data_dir):
        if item.state in ("generated", "bundled", "local", "manual"):
            results.append(item)
            continue
        if item.state == "missing":  # local only (an imagefolder path): nothing to download
            results.append(Input(item.kind, item.name, "failed", item.where))
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

                fail_fast_if_unreachable(item.name)  # seconds, and the endpoint and proxy it tried
                timm.create_model(item.name, pretrained=True)
                results.append(Input("weights", item.name, "fetched", hub_repo(item.name)[1] or ""))
        except Exception as err:
            results.append(
                Input(item.kind, item.name, "failed", f"{type(err).__name__}: {str(err).splitlines()[0]}")
            )
    return results
