"""The seed reports' loop vs tlbench, same model, data, epochs, optimizer: wall time and accuracy.

Seed style (shared/seeds/*): a torchvision dataset, PIL transforms per sample, a DataLoader with
workers, and ``.item()`` after every batch. tlbench: ``train.fit`` on the uint8 tensor cache
with batched on-device augmentation. Both train timm's test_resnet on Fashion-MNIST (a stratified
subset of train, the full 10k test set) at 32x32 with random crop + flip, SGD, a cosine schedule.

    python benchmarks/perf/seed_loop.py [--device cuda] [--subset 0.2] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from _common import device_name, make_cell, sync
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from tlbench.data import load_dataset
from tlbench.data.datasets import FASHION_FILES, _find_fashion, data_root, read_idx
from tlbench.train import fit, pick_device
from tlbench.train.optim import build_optimizer


def torchvision_root(tmp: Path) -> Path:
    """torchvision's FashionMNIST layout (root/FashionMNIST/raw) linked to the files tlbench found."""
    files = _find_fashion(data_root())
    if not files:
        raise SystemExit("Fashion-MNIST not found: apt-get install dataset-fashion-mnist")
    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for key, stem in FASHION_FILES.items():
        src = files[key]
        (raw / (stem + (".gz" if src.suffix == ".gz" else ""))).symlink_to(src)
        if src.suffix == ".gz":  # torchvision reads the extracted file
            import gzip

            with gzip.open(src) as f:
                (raw / stem).write_bytes(f.read())
    return tmp


def seed_style(root: Path, train_idx: np.ndarray, args: argparse.Namespace, device: torch.device) -> float:
    epochs, batch, lr, workers, size = args.epochs, args.batch, args.lr, args.workers, args.size
    tf_train = transforms.Compose(
        [
            transforms.Grayscale(num_output_channels=3),
            transforms.RandomCrop(28, padding=4),
            transforms.Resize(size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ]
    )
    tf_test = transforms.Compose(
        [
            transforms.Grayscale(num_output_channels=3),
            transforms.Resize(size),
            transforms.ToTensor(),
            transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ]
    )
    train_set = Subset(datasets.FashionMNIST(str(root), train=True, transform=tf_train), train_idx.tolist())
    test_set = datasets.FashionMNIST(str(root), train=False, transform=tf_test)
    train_loader = DataLoader(
        train_set, batch_size=batch, shuffle=True, num_workers=workers, pin_memory=device.type == "cuda"
    )
    test_loader = DataLoader(test_set, batch_size=512, num_workers=workers)
    torch.manual_seed(0)
    model = timm.create_model(args.backbone, num_classes=10).to(device)
    opt = build_optimizer(model, "sgd", {}, lr=lr, weight_decay=5e-4, layer_decay=None)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(train_loader))
    for _ in range(epochs):
        model.train()
        running_loss, correct = 0.0, 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            opt.zero_grad()
            out = model(x)
            loss = F.cross_entropy(out, y)
            loss.backward()
            opt.step()
            sched.step()
            running_loss += loss.item() * x.size(0)  # the seeds' per-batch host syncs
            correct += (out.argmax(1) == y).sum().item()
    model.eval()
    hits = 0
    with torch.no_grad():
        for x, y in test_loader:
            hits += (model(x.to(device)).argmax(1) == y.to(device)).sum().item()
    return hits / len(test_set)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--subset", type=float, default=0.2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1, help="run both paths once on a few batches first")
    ap.add_argument(
        "--only",
        choices=["both", "seed", "tlbench"],
        default="both",
        help="time one path (run each in a fresh process for the fairest comparison)",
    )
    ap.add_argument("--backbone", default="test_resnet")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--amp", type=int, default=1, help="tlbench's bf16 autocast on CUDA (the seeds ran fp32)")
    args = ap.parse_args()
    device = pick_device(args.device)
    print(f"# device: {device_name(device)}")
    data = load_dataset("fashion_mnist", subset=args.subset, val_fraction=0.1, seed=0)
    cell = make_cell(
        dataset="fashion_mnist",
        backbone=args.backbone,
        augmentation="basic",
        image_size=args.size,
        amp=bool(args.amp),
        epochs=args.epochs,
        batch_size=args.batch,
        lr=args.lr,
        weight_decay=5e-4,
        subset=args.subset,
    )
    # the same training images for both: the tlbench subset, as indices into the original train set
    files = _find_fashion(data_root())
    orig = read_idx(files["train_images"])
    orig_index = {img.tobytes(): i for i, img in enumerate(orig)}
    train_idx = np.array([orig_index[img[0].numpy().tobytes()] for img in data.train.images])
    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_root(Path(tmp))
        if args.warmup:  # one-time costs (CUDA/cuDNN init, kernel loading, autotuning) out of both timings
            tiny = argparse.Namespace(**{**vars(args), "epochs": 1})
            if args.only in ("both", "seed"):
                seed_style(root, train_idx[: 4 * args.batch], tiny, device)
            if args.only in ("both", "tlbench"):
                one_epoch = cell.train.model_copy(update={"epochs": 1})
                fit(
                    cell.__class__(**{**cell.__dict__, "train": one_epoch}),
                    load_dataset("fashion_mnist", subset=0.01),
                    device=device,
                )
        seed_s, seed_acc = float("nan"), float("nan")
        if args.only in ("both", "seed"):
            sync(device)
            t0 = time.perf_counter()
            seed_acc = seed_style(root, train_idx, args, device)
            sync(device)
            seed_s = time.perf_counter() - t0
    tl_s, tl_acc = float("nan"), float("nan")
    if args.only in ("both", "tlbench"):
        sync(device)
        t0 = time.perf_counter()
        tl_acc = fit(cell, data, device=device).test_acc
        sync(device)
        tl_s = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "backbone": args.backbone,
                "size": args.size,
                "amp": bool(args.amp),
                "train_images": len(train_idx),
                "epochs": args.epochs,
                "seed_style_s": round(seed_s, 2),
                "tlbench_s": round(tl_s, 2),
                "speedup": round(seed_s / tl_s, 2),
                "seed_style_test_acc": round(seed_acc, 4),
                "tlbench_test_acc": round(tl_acc, 4),
                "note": "after a warm-up of both; tlbench also runs a val pass per epoch, the seed loop does not",
            }
        )
    )


if __name__ == "__main__":
    main()
