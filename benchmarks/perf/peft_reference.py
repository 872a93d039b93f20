"""LoRA and BitFit: tlbench's strategies vs Hugging Face peft + timm in a plain PyTorch loop.

The guard that keeps the parameter-efficient path honest (#26). A tiny ViT (timm's ``test_vit``,
32 px as 8 x 8 patches of 4) is pretrained from scratch on a quarter of Fashion-MNIST (real,
offline) with AdamW, or taken from ``--weights`` (e.g. the ``peft_offline`` grid's source cell's
``checkpoint/best.safetensors``). Then it is adapted to scikit-learn's digits (25 %, as that
grid) with the same data splits, optimizer (AdamW, lr 1e-3, weight decay 1e-4 on the matrices
only), cosine schedule per update, epochs, batch size and zero-initialised head, best-val
epoch's weights on test:

- ``plain lora``: ``peft.get_peft_model`` with ``LoraConfig(target_modules=[qkv, proj, fc1, fc2],
  modules_to_save=[head])`` (peft's own wrapper, not the tuner tlbench uses), a hand-written loop,
  then ``merge_and_unload`` and test;
- ``plain bitfit``: ``requires_grad`` on every ``*.bias`` and the head only, the same loop;
- ``tlbench lora`` / ``tlbench bitfit``: ``train.fit`` on the same cell spelled as a grid.

    python benchmarks/perf/peft_reference.py [--seeds 3] [--epochs 20] [--weights FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from _common import device_name
from transfer_reference import _normalize  # the same pixels as that reference's plain loop

from tlbench.cells import expand
from tlbench.data import load_dataset
from tlbench.models.weights import read_state_dict
from tlbench.spec import parse_grid
from tlbench.train import fit, pick_device, seed_everything

SIZE = 32
VIT = {"img_size": SIZE, "patch_size": 4}
TARGETS = ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"]


def cell(dataset: str, strategy: str, weights: str, seed: int, args, **train):
    raw = {
        "name": "perf",
        "train": {
            "epochs": args.epochs,
            "batch_size": args.batch,
            "lr": args.lr,
            "weight_decay": args.wd,
            "image_size": SIZE,
            "schedule": "cosine",
            "seed": seed,
            **train,
        },
        "datasets": [{"name": dataset}],
        "backbones": [{"name": "test_vit", "weights": weights, "model_kwargs": VIT}],
        "strategies": [strategy],
        "optimizers": ["adamw"],
        "augmentations": ["none" if dataset == "digits" else "basic"],
    }
    return expand(parse_grid(raw, check_backbones=False))[0]


def pretrain(path: Path, args) -> float:
    c = cell(
        "fashion_mnist", "scratch", "none", 0, args, epochs=6, batch_size=128, weight_decay=0.05, subset=0.5
    )
    result = fit(c, load_dataset("fashion_mnist", subset=0.5, seed=0), device=args.device_obj)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(result.best_state, path)
    return result.test_acc


def plain(method: str, weights: Path, data, args, seed: int) -> dict[str, float]:
    """A textbook loop; only the data splits come from tlbench."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = timm.create_model("test_vit", num_classes=data.num_classes, **VIT)
    state = read_state_dict(weights)
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")}, strict=False)
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, modules_to_save=["head"])
        net: nn.Module = get_peft_model(model, config)
    else:
        for n, p in model.named_parameters():
            p.requires_grad_(n.endswith(".bias") or n.startswith("head."))
        net = model
    trained = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    cfg = model.pretrained_cfg
    xs = {k: _normalize(getattr(data, k).images, cfg["mean"], cfg["std"]) for k in ("train", "val", "test")}
    ys = {k: getattr(data, k).labels for k in ("train", "val", "test")}
    opt = torch.optim.AdamW(
        [
            {"params": [p for _, p in trained if p.ndim > 1], "weight_decay": args.wd},
            {"params": [p for _, p in trained if p.ndim <= 1], "weight_decay": 0.0},
        ],
        lr=args.lr,
    )
    n = len(ys["train"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * math.ceil(n / args.batch))

    def accuracy(split: str) -> float:
        net.eval()
        with torch.no_grad():
            return (net(xs[split]).argmax(1) == ys[split]).float().mean().item()

    best, best_state = -1.0, None
    for _ in range(args.epochs):
        net.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, args.batch):
            idx = perm[i : i + args.batch]
            if len(idx) < 2:
                continue
            loss = F.cross_entropy(net(xs["train"][idx]), ys["train"][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        val = accuracy("val")
        if val > best:
            best, best_state = val, {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    if method == "lora":
        net = net.merge_and_unload()
    return {
        "test_acc": accuracy("test"),
        "best_val_acc": best,
        "trainable": sum(p.numel() for _, p in trained),
    }


def ours(method: str, weights: Path, data, args, seed: int) -> dict[str, float]:
    seed_everything(seed)
    r = fit(cell("digits", method, f"file:{weights}", seed, args, subset=0.25), data, device=args.device_obj)
    return {"test_acc": r.test_acc, "best_val_acc": r.best_val_acc, "trainable": r.params_trainable}


def _ci(xs: list[float]) -> str:
    if len(xs) < 2:
        return f"{xs[0]:.4f}"
    from scipy import stats

    half = stats.t.ppf(0.975, len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
    return f"{statistics.mean(xs):.4f} ± {half:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=1e-4)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--weights", type=Path, default=Path("/tmp/tlbench-perf/test_vit_fashion.pth"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    args.device_obj = pick_device(args.device)
    print(f"device: {device_name(args.device_obj)}")
    if not args.weights.exists():
        print(f"source: test_vit pretrained on Fashion-MNIST, test acc {pretrain(args.weights, args):.4f}")
    data = load_dataset("digits", subset=0.25, seed=0)
    rows: dict[str, list[dict]] = {}
    for seed in range(args.seeds):
        for method in ("lora", "bitfit"):
            for who, run in (("plain", plain), ("tlbench", ours)):
                out = run(method, args.weights, data, args, seed)
                rows.setdefault(f"{who} {method}", []).append(out)
                print(
                    f"seed {seed} {who:7s} {method:6s} test {out['test_acc']:.4f} val {out['best_val_acc']:.4f}"
                )
    print(f"\n{'run':16s} {'test acc (mean ± 95% CI)':>26s} {'trainable':>10s}")
    for name, outs in rows.items():
        print(f"{name:16s} {_ci([o['test_acc'] for o in outs]):>26s} {int(outs[0]['trainable']):>10d}")
    for method in ("lora", "bitfit"):
        diffs = [
            t["test_acc"] - p["test_acc"]
            for p, t in zip(rows[f"plain {method}"], rows[f"tlbench {method}"], strict=True)
        ]
        print(f"tlbench − plain, {method}, paired: {_ci(diffs)}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
