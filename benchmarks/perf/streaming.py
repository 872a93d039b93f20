"""Streamed vs tensor-resident ImageFolder: the cost of decoding per batch instead of once.

Builds an ImageFolder of JPEGs (Fashion-MNIST images upscaled, or synthetic ones when it is not
installed), then trains the same cell on it twice per repeat, alternated: once with the set
decoded into a resident uint8 tensor (``TLBENCH_STREAM=never``), once streamed
(``TLBENCH_STREAM=always``: DataLoader workers decode each batch ahead of the step). Reports
steady-state training images/s (epochs after the first) of both, their ratio, and both accuracies
(equal by construction: the same pixels reach the same augmentation in the same order).

    python benchmarks/perf/streaming.py [--device cuda] [--images 4000] [--workers 4]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from _common import device_name, make_cell
from PIL import Image

from tlbench.data import load_dataset
from tlbench.train import fit, pick_device


def write_folder(root: Path, n: int, stored: int) -> None:
    """``n`` JPEGs in ``root/{train,val,test}/CLASS/`` of ``stored``×``stored`` pixels."""
    try:
        src = load_dataset("fashion_mnist")
        x, y, classes = src.train.images.numpy(), src.train.labels.numpy(), src.classes
    except Exception:
        src = load_dataset("synthetic", params={"classes": 10, "train_per_class": n // 10 + 1})
        x, y, classes = src.train.images.numpy(), src.train.labels.numpy(), src.classes
    for i in range(n):
        split = "test" if i % 10 == 0 else "val" if i % 10 == 1 else "train"
        d = root / split / classes[int(y[i])].replace("/", "-")
        d.mkdir(parents=True, exist_ok=True)
        img = x[i].transpose(1, 2, 0)
        img = np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img
        Image.fromarray(img).resize((stored, stored), Image.BILINEAR).save(d / f"{i}.jpg", quality=90)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--images", type=int, default=4000)
    ap.add_argument("--stored", type=int, default=64, help="stored image size (imagefolder image_size)")
    ap.add_argument("--input", type=int, default=32, help="the backbone's input size")
    ap.add_argument("--backbone", default="test_resnet")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the streamed path")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    device = pick_device(args.device)
    print(f"# device: {device_name(device)}; streamed with {args.workers} loader workers")
    os.environ["TLBENCH_LOADER_WORKERS"] = str(args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "folder"
        write_folder(root, args.images, args.stored)
        params = {"path": str(root), "image_size": args.stored}
        cell = make_cell(
            dataset="imagefolder",
            params=params,
            backbone=args.backbone,
            image_size=args.input,
            epochs=args.epochs,
            batch_size=128,
        )
        rows: dict[str, list[dict[str, float]]] = {"tensor": [], "streamed": []}
        for _ in range(args.repeats):
            for mode, env in (("tensor", "never"), ("streamed", "always")):
                os.environ["TLBENCH_STREAM"] = env
                data = load_dataset("imagefolder", params=params, data_dir=Path(tmp) / "data")
                r = fit(cell, data, device=device)
                steady = r.history[1:] or r.history
                ips = sum(h["epoch_images_per_s"] for h in steady) / len(steady)
                rows[mode].append({"img_per_s": ips, "test_acc": r.test_acc})
    tensor = max(r["img_per_s"] for r in rows["tensor"])
    streamed = max(r["img_per_s"] for r in rows["streamed"])
    print(
        json.dumps(
            {
                "images": args.images,
                "stored": args.stored,
                "input": args.input,
                "backbone": args.backbone,
                "tensor_img_per_s": [round(r["img_per_s"]) for r in rows["tensor"]],
                "streamed_img_per_s": [round(r["img_per_s"]) for r in rows["streamed"]],
                "streamed_over_tensor": round(streamed / tensor, 3),
                "test_acc": {m: [round(r["test_acc"], 4) for r in v] for m, v in rows.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
