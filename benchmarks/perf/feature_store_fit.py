"""The feature store inside ``fit`` on any device (issue #17's GPU measure): no MLflow, no Optuna.

``feature_store.py`` times the store as a user meets it (``tlbench tune`` / ``run`` processes,
tracking included) and needs the whole stack; this script times what the store itself saves on a
device, and checks exactness there, with ``train.fit`` alone:

1. ``--cells`` probe cells on one frozen backbone (sgd / adamw × lr), store off (today's per-run
   cache: every cell extracts) vs store cold (the first cell extracts, the others hit): wall
   time per cell and in all, test accuracy cell for cell (must be identical);
2. the stored train features vs a fresh extraction with the cell's own settings (bf16 autocast
   on CUDA: stored in bf16, compared bit for bit), and the entries' dtype and size on disk.

Workload (named, so the ratios can be checked): randomly initialised ``--backbone`` at ``--size``
px, ``synthetic`` 10 classes × ``--per-class`` train (+20 % val, 20 % test) images,
``linear_probe`` with ``none`` augmentation, ``--epochs`` epochs, batch 256.

    python benchmarks/perf/feature_store_fit.py [--device cuda] [--backbone resnet50 --size 128]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from _common import device_name, make_cell, sync

from tlbench.data import load_dataset
from tlbench.features import FeatureStore
from tlbench.train import extract_features, fit, pick_device
from tlbench.train.setup import prepare, to_device


class _Info:
    def __init__(self) -> None:
        self.info: dict = {}

    def on_start(self, info: dict) -> None:
        self.info = info

    def on_epoch(self, epoch: int, metrics: dict) -> None:
        pass


def _cells(args: argparse.Namespace) -> list:
    grid = [(opt, lr) for opt in ("sgd", "adamw") for lr in (0.3, 0.1, 0.03)][: args.cells]
    return [
        make_cell(
            backbone=args.backbone,
            strategy="linear_probe",
            augmentation="none",
            optimizer=opt,
            params={
                "classes": 10,
                "train_per_class": args.per_class,
                "val_per_class": args.per_class // 5,
                "test_per_class": args.per_class // 5,
                "image_size": args.size,
            },
            epochs=args.epochs,
            batch_size=256,
            lr=lr if opt == "sgd" else lr / 30,
        )
        for opt, lr in grid
    ]


def _run(cells: list, data, device: torch.device) -> list[dict]:
    out = []
    for cell in cells:
        rec = _Info()
        sync(device)
        t = time.perf_counter()
        result = fit(cell, data, reporter=rec, device=str(device))
        sync(device)
        out.append(
            {
                "s": round(time.perf_counter() - t, 2),
                "test_acc": result.test_acc,
                "store": rec.info.get("feature_store", "off"),
                "keys": dict(kv.split(":") for kv in rec.info.get("feature_store.key", "").split(",") if kv),
            }
        )
    return out


def _same(a: list[dict], b: list[dict]) -> bool:
    return [r["test_acc"] for r in a] == [r["test_acc"] for r in b]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--backbone", default="efficientnet_b0")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--per-class", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--cells", type=int, default=6)
    args = ap.parse_args()
    device = pick_device(args.device)
    cells = _cells(args)
    data = load_dataset("synthetic", params=cells[0].dataset.params, seed=0)
    root = Path(tempfile.mkdtemp(prefix="tlbench-fs-"))
    _run(cells[:1], data, device)  # warm-up: kernels, cudnn autotuning, allocator (store off)

    os.environ["TLBENCH_FEATURE_STORE"] = "off"
    off = _run(cells, data, device)
    off_again = _run(cells, data, device)  # is the device itself deterministic here?
    os.environ["TLBENCH_FEATURE_STORE"] = str(root)
    cold = _run(cells, data, device)
    warm = _run(cells, data, device)

    cell = cells[0]
    s = prepare(
        cell,
        data,
        weights_file=None,
        device=str(device),
        cache_features=True,
        compile=False,
        cudnn_benchmark=True,
    )
    fresh = extract_features(
        s.model,
        to_device(data.origin.train, s.device),
        s.eval_tf,
        batch_size=cell.train.eval_batch_size,
        autocast=s.autocast,
        channels_last=s.channels_last,
        keep_dtype=True,
    ).cpu()
    store = FeatureStore(root)
    entries = store.entries()
    stored = store.get(cold[0]["keys"]["train"])["features"]  # the key the first cell recorded
    t_off, t_cold = sum(r["s"] for r in off), sum(r["s"] for r in cold)
    print(
        json.dumps(
            {
                "device": device_name(device),
                "workload": f"{args.backbone}@{args.size}, synthetic 10x{args.per_class}, "
                f"linear_probe none, {args.epochs} epochs, {len(cells)} cells",
                "store_off_s": [r["s"] for r in off],
                "store_cold_s": [r["s"] for r in cold],
                "store_cold_kind": [r["store"] for r in cold],
                "total_off_s": round(t_off, 2),
                "total_cold_s": round(t_cold, 2),
                "speedup": round(t_off / t_cold, 2),
                "store_warm_s": [r["s"] for r in warm],
                "test_acc_identical": _same(off, cold),
                "test_acc_identical_off_vs_off": _same(off, off_again),
                "test_acc_identical_cold_vs_warm": _same(cold, warm),
                "test_acc": [r["test_acc"] for r in cold],
                "autocast": s.autocast,
                "stored_dtype": str(stored.dtype),
                "stored_equals_fresh": bool(torch.equal(stored, fresh)),
                "entries": len(entries),
                "disk_mb": round(sum(e.size for e in entries) / 2**20, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
