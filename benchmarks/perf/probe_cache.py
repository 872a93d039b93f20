"""Cached vs online linear probe: same cell (frozen backbone, `none` augmentation), 10 epochs.

Online: every epoch runs the frozen backbone over every image. Cached: features computed once
per split, then the head trains on them. Prints wall time of each, the speed-up and both
accuracies. The backbone is first trained briefly on the same task so its features mean
something (the same weights file feeds both probes).

    python benchmarks/perf/probe_cache.py [--device cuda] [--backbone resnet18 --size 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import device_name, make_cell, timed

from tlbench.data import load_dataset
from tlbench.models.weights import save_weights_dict
from tlbench.spec import WeightsSpec
from tlbench.train import fit, pick_device


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--backbone", default="test_resnet")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--subset", type=float, default=0.25)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    device = pick_device(args.device)
    print(f"# device: {device_name(device)}")
    data = load_dataset("fashion_mnist", subset=args.subset)
    common = dict(dataset="fashion_mnist", backbone=args.backbone, image_size=args.size, subset=args.subset)
    source = fit(make_cell(**common, strategy="scratch", augmentation="basic", epochs=2), data, device=device)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "backbone.safetensors"
        save_weights_dict(source.best_state, weights)
        probe = make_cell(**common, strategy="linear_probe", augmentation="none", epochs=args.epochs, lr=0.1)
        probe = probe.__class__(**{**probe.__dict__, "weights": WeightsSpec(kind="file", value=str(weights))})
        t_online, online = timed(lambda: fit(probe, data, device=device, cache_features=False), device)
        t_cached, cached = timed(lambda: fit(probe, data, device=device, cache_features=True), device)
    print(
        json.dumps(
            {
                "backbone": args.backbone,
                "size": args.size,
                "train_images": len(data.train),
                "epochs": args.epochs,
                "online_s": round(t_online, 2),
                "cached_s": round(t_cached, 2),
                "speedup": round(t_online / t_cached, 2),
                "online_test_acc": round(online.test_acc, 4),
                "cached_test_acc": round(cached.test_acc, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
