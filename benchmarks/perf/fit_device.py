"""Train one cell with ``train.fit`` on a device and print what it measured.

Checks the device paths of the training loop (CUDA: bf16 autocast, channels_last, cudnn.benchmark,
peak memory) on real data without MLflow, so it runs anywhere torch + timm do:

    python benchmarks/perf/fit_device.py --device cuda --backbone resnet18 --size 64 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from tlbench.cells import expand
from tlbench.data import load_dataset
from tlbench.spec import parse_grid
from tlbench.train import fit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--params", default='{"classes": 10, "train_per_class": 500, "image_size": 32}')
    ap.add_argument("--backbone", default="test_resnet")
    ap.add_argument("--strategy", default="scratch")
    ap.add_argument("--augmentation", default="basic")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--amp", type=int, default=1)
    ap.add_argument("--channels-last", type=int, default=1)
    ap.add_argument("--cudnn-benchmark", type=int, default=1)
    args = ap.parse_args()

    params = json.loads(args.params) if args.dataset == "synthetic" else {}
    raw = {
        "name": "perf",
        "train": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "image_size": args.size,
            "lr": args.lr,
            "amp": bool(args.amp),
            "channels_last": bool(args.channels_last),
        },
        "datasets": [{"name": args.dataset, "params": params}],
        "backbones": [{"name": args.backbone, "weights": "none"}],
        "strategies": [args.strategy],
        "optimizers": ["sgd"],
        "augmentations": [args.augmentation],
    }
    cell = expand(parse_grid(raw, check_backbones=False))[0]
    data = load_dataset(args.dataset, params=params)
    t0 = time.perf_counter()
    result = fit(cell, data, device=args.device, cudnn_benchmark=bool(args.cudnn_benchmark))
    wall = time.perf_counter() - t0
    steady = [h["epoch_images_per_s"] for h in result.history[1:]] or [result.images_per_s]
    print(
        json.dumps(
            {
                "device": result.device,
                "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                "cell": cell.name,
                "size": args.size,
                "amp": bool(args.amp),
                "channels_last": bool(args.channels_last),
                "test_acc": round(result.test_acc, 4),
                "best_val_acc": round(result.best_val_acc, 4),
                "steady_images_per_s": round(sum(steady) / len(steady), 1),
                "wall_s": round(wall, 2),
                "epoch_s": [round(h["epoch_time_s"], 2) for h in result.history],
                "outside_epochs_s": round(wall - sum(h["epoch_time_s"] for h in result.history), 2),
                "cudnn_benchmark": bool(args.cudnn_benchmark),
                "peak_mem_mb": round(result.info.get("peak_mem_mb", 0.0), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
