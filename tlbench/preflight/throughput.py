"""What a cell will take, from what finished cells took: seconds per training image-epoch,
measured by finished runs in an MLflow store, per (backbone, input size, strategy, device).

``tlbench ls --tracking-uri`` uses it where the store has a match and the FLOP model
(``tlbench.preflight.estimate``) where it has none, and says which. A run's ``device_s`` (wall time on its
device, every attempt, evaluation included; ``train_time_s`` for runs older than it) over its
``train_size`` × ``epochs_trained`` is one measurement; a key's rate is the median of its runs.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from typing import Any

from tlbench.cells import Cell

Key = tuple[str, int, str, str]  # backbone, input size, strategy, device type


def run_key(params: Mapping[str, str], device: str) -> Key | None:
    """The key of a finished run's measurement (None when it lacks what the key needs)."""
    try:
        size = int(float(params["input_size"]))
    except (KeyError, ValueError):
        return None
    backbone, strategy = params.get("backbone.name"), params.get("strategy.name")
    if not backbone or not strategy:
        return None
    return backbone, size, strategy, device.split(":")[0] or "cpu"


def rates(runs: Iterable[tuple[Mapping[str, str], Mapping[str, float], str]]) -> dict[Key, float]:
    """(params, metrics, device) of finished runs -> median seconds per training image-epoch."""
    samples: dict[Key, list[float]] = {}
    for params, metrics, device in runs:
        key = run_key(params, device)
        # runs from before device_s (#18): their training time, without evaluation and setup
        seconds = metrics.get("device_s") or metrics.get("train_time_s")
        try:
            epochs = metrics.get("epochs_trained") or float(params["epochs"])
            images = float(params["train_size"])
        except (KeyError, ValueError):
            continue
        if key is None or not seconds or not epochs or images <= 0:
            continue
        samples.setdefault(key, []).append(seconds / (images * epochs))
    return {k: statistics.median(v) for k, v in samples.items()}


def cell_key(cell: Cell, device: str) -> Key:
    return cell.backbone.name, int(cell.train.image_size or 224), cell.strategy.name, device


def cell_seconds(cell: Cell, measured: Mapping[Key, float], device: str, images: int | None) -> float | None:
    """The cell's seconds at the measured rate of its key, or None (no match, or unknown size)."""
    rate = measured.get(cell_key(cell, device))
    if rate is None or images is None:
        return None
    return rate * images * cell.train.epochs


def store_runs(tracker: Any) -> list[tuple[dict[str, str], dict[str, float], str]]:
    """(params, metrics, device) of every finished tlbench cell run in the store, any grid."""
    from tlbench.tracking import tags

    exps = tracker.experiment_ids()
    out = []
    for exp in exps:
        for run in tracker.runs(exp, "FINISHED"):
            device = run.data.tags.get(tags.DEVICE, "")
            out.append((dict(run.data.params), dict(run.data.metrics), device))
    return out


def main_device(runs: list[tuple[dict[str, str], dict[str, float], str]]) -> str:
    """The device type most finished runs used (cpu when none)."""
    kinds = [d.split(":")[0] for _, _, d in runs if d]
    return max(set(kinds), key=kinds.count) if kinds else "cpu"
