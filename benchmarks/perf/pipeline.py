"""Pipeline efficiency C/S: a cell's steady training images/s vs the bare model's.

C = ``train.fit``'s steady-state epoch throughput (uint8 data on the device, batched
augmentation, loss bookkeeping, scheduler): mean of epochs 2..n.
S = the bare model: forward + backward + optimizer step on a normalized float batch already on
the device, same batch size, optimizer, autocast and memory format. S is measured before and
after C and averaged, so drift on a noisy machine hits both.

    python benchmarks/perf/pipeline.py                 # CPU defaults
    python benchmarks/perf/pipeline.py --device cuda   # GPU defaults
"""

from __future__ import annotations

import argparse
import json
import time

import timm
import torch
import torch.nn.functional as F
from _common import device_name, make_cell, sync

from tlbench.data import load_dataset
from tlbench.train import fit, pick_device
from tlbench.train.optim import build_optimizer

CPU_CASES = [
    ("test_resnet", 32, 128),
    ("test_resnet", 64, 128),
    ("test_efficientnet", 32, 128),
    ("resnet18", 32, 128),
]
GPU_CASES = [
    ("resnet18", 64, 256),
    ("resnet50", 128, 256),
    ("resnet50", 224, 128),
    ("vit_small_patch16_224", 224, 128),
]


def bare_throughput(
    backbone: str, size: int, batch: int, device: torch.device, steps: int, amp: bool, compile: bool = False
) -> float:
    model = timm.create_model(backbone, num_classes=10).to(device).to(memory_format=torch.channels_last)
    model.train()
    forward = torch.compile(model) if compile else model
    opt = build_optimizer(model, "sgd", {}, lr=0.01, weight_decay=0.0, layer_decay=None)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(forward(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument(
        "--per-class", type=int, default=300, help="synthetic train images per class (10 classes)"
    )
    ap.add_argument("--compile", action="store_true", help="torch.compile the model, in C and in S")
    ap.add_argument("--case", action="append", default=[], help="backbone:size:batch (repeatable)")
    args = ap.parse_args()
    device = pick_device(args.device)
    cases = GPU_CASES if device.type == "cuda" else CPU_CASES
    if args.case:
        cases = [(b, int(z), int(n)) for b, z, n in (c.split(":") for c in args.case)]
    amp = device.type == "cuda"
    print(f"# device: {device_name(device)}; torch {torch.__version__}; timm {timm.__version__}")
    for backbone, size, batch in cases:
        params = {
            "classes": 10,
            "train_per_class": args.per_class,
            "val_per_class": 10,
            "test_per_class": 10,
            "image_size": 32,
        }
        data = load_dataset("synthetic", params=params)
        n = len(data.train)
        steps = max(5, min(50, n // batch))
        s1 = bare_throughput(backbone, size, batch, device, steps, amp, args.compile)
        cell = make_cell(
            params=params, backbone=backbone, image_size=size, batch_size=batch, epochs=args.epochs
        )
        result = fit(cell, data, device=device, compile=args.compile)
        c = sum(h["epoch_images_per_s"] for h in result.history[1:]) / (len(result.history) - 1)
        s2 = bare_throughput(backbone, size, batch, device, steps, amp, args.compile)
        s = (s1 + s2) / 2
        print(
            json.dumps(
                {
                    "backbone": backbone,
                    "size": size,
                    "batch": batch,
                    "compile": args.compile,
                    "C_img_s": round(c, 1),
                    "S_img_s": round(s, 1),
                    "S_before_after": [round(s1, 1), round(s2, 1)],
                    "C_over_S": round(c / s, 3),
                }
            )
        )


if __name__ == "__main__":
    main()
