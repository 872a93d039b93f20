"""Fine-tuning from a weights file: tlbench vs a plain PyTorch loop, same data and settings.

The guard that keeps tlbench's training path honest (issue #13). A backbone is pretrained on
Fashion-MNIST (real, offline) and saved as a ``.pth`` state dict *without* BatchNorm's
``num_batches_tracked`` buffers, as many published files are. Then it is fine-tuned on
scikit-learn's digits at the same size, optimizer, schedule, epochs and batch size:

- ``plain``: timm's own loader (``pretrained_cfg_overlay=dict(file=...)``), a hand-written loop
  with ``torch.optim.SGD`` + ``CosineAnnealingLR`` per update, best-val epoch's weights on test;
  the new head as the architecture initialises it (what tlbench did before #13) or zeroed.
- ``tlbench``: ``train.fit`` on the same cell spelled as a grid, for each head init.

It also prints what chose two defaults: the head init (zero / normal / pytorch) and LP-FT's
BatchNorm mode (train / frozen: val accuracy after the probe and after the first fine-tune epoch).

    python benchmarks/perf/transfer_reference.py [--backbone test_efficientnet] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Callable
from functools import partial
from pathlib import Path

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from _common import device_name, make_cell

from tlbench.data import load_dataset
from tlbench.data.augment import resize
from tlbench.train import NonFiniteLossError, fit, pick_device, seed_everything

SIZE = 32


def pretrain(backbone: str, path: Path, epochs: int, device: torch.device) -> float:
    """The source model: scratch on a quarter of Fashion-MNIST, saved without num_batches_tracked."""
    cell = make_cell(
        dataset="fashion_mnist",
        backbone=backbone,
        strategy="scratch",
        augmentation="basic",
        epochs=epochs,
        batch_size=128,
        lr=0.05,
        weight_decay=5e-4,
        image_size=SIZE,
        subset=0.25,
    )
    result = fit(cell, load_dataset("fashion_mnist", subset=0.25, seed=0), device=device)
    state = {k: v for k, v in result.best_state.items() if not k.endswith("num_batches_tracked")}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return result.test_acc


def _normalize(images: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    x = images.float().div(255).expand(-1, 3, -1, -1)
    x = resize(x, (SIZE, SIZE))
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def plain_loop(
    backbone: str, weights: Path, data, args: argparse.Namespace, seed: int, zero_head: bool
) -> dict[str, float]:
    """A textbook fine-tuning loop; only the data splits come from tlbench."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = timm.create_model(
        backbone,
        pretrained=True,
        num_classes=data.num_classes,
        pretrained_cfg_overlay=dict(file=str(weights)),
    )
    if zero_head:
        nn.init.zeros_(model.get_classifier().weight)
        nn.init.zeros_(model.get_classifier().bias)
    cfg = model.pretrained_cfg
    xs = {k: _normalize(getattr(data, k).images, cfg["mean"], cfg["std"]) for k in ("train", "val", "test")}
    ys = {k: getattr(data, k).labels for k in ("train", "val", "test")}
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        momentum=0.9,
    )
    n = len(ys["train"])
    steps = math.ceil(n / args.batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * steps)

    def accuracy(split: str) -> float:
        model.eval()
        with torch.no_grad():
            return (model(xs[split]).argmax(1) == ys[split]).float().mean().item()

    first_loss = None
    best, best_state = -1.0, None
    for _ in range(args.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, args.batch):
            idx = perm[i : i + args.batch]
            if len(idx) < 2:
                continue
            loss = F.cross_entropy(model(xs["train"][idx]), ys["train"][idx])
            first_loss = loss.item() if first_loss is None else first_loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        val = accuracy("val")
        if val > best:
            best, best_state = val, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return {"test_acc": accuracy("test"), "best_val_acc": best, "first_loss": first_loss}


def tlbench_fit(backbone: str, weights: Path, data, args, seed: int, strategy: str, **extra) -> dict:
    params = extra.pop("params", {})
    cell = make_cell(
        dataset="digits",
        backbone=backbone,
        strategy=strategy,
        augmentation="none",
        epochs=args.epochs,
        batch_size=args.batch,
        lr=args.lr,
        weight_decay=args.wd,
        image_size=SIZE,
        seed=seed,
        schedule="cosine",
        **extra,
    )
    cell = cell.__class__(
        **{
            **cell.__dict__,
            "weights": cell.weights.model_copy(update={"kind": "file", "value": str(weights)}),
            "strategy": cell.strategy.model_copy(update={"params": params}),
        }
    )
    seed_everything(seed)
    val_accs: list = []

    class ValByEpoch:
        def on_start(self, info):
            pass

        def on_epoch(self, epoch, metrics):
            val_accs.append(metrics["val_acc"])

    try:
        result = fit(cell, data, reporter=ValByEpoch(), device=args.device_obj)
    except NonFiniteLossError:  # a diverged run is a result too: count it as chance
        return {"test_acc": float("nan"), "best_val_acc": float("nan"), "val_by_epoch": val_accs + ["nan"]}
    return {
        "test_acc": result.test_acc,
        "best_val_acc": result.best_val_acc,
        "val_by_epoch": [round(v, 4) for v in val_accs],
    }


def _runs(args: argparse.Namespace, weights: Path, data, seed: int) -> dict[str, Callable[[], dict]]:
    """Every run of one seed, by name; each trains only when called."""
    extra = {"subset": args.subset} if args.subset else {}
    bb = args.backbone
    out: dict[str, Callable[[], dict]] = {
        "plain, model's own head init": lambda: plain_loop(bb, weights, data, args, seed, zero_head=False),
        "plain, zero head": lambda: plain_loop(bb, weights, data, args, seed, zero_head=True),
    }
    for init in ("zero", "normal", "pytorch"):
        out[f"tlbench finetune, head {init}"] = partial(
            tlbench_fit, bb, weights, data, args, seed, "finetune", head={"init": init}, **extra
        )
    out["tlbench scratch (no transfer)"] = partial(
        tlbench_fit, bb, weights, data, args, seed, "scratch", **extra
    )
    if args.lp_ft:  # the probe at 4x the lr, the fine-tune at a quarter of it (transfer_offline's settings)
        modes = [("train", "zero"), ("frozen", "zero"), ("adapt", "zero"), ("train", "pytorch")]
        for bn, init in modes:
            out[f"tlbench lp_ft, bn {bn}, head {init}"] = partial(
                tlbench_fit,
                bb,
                weights,
                data,
                args,
                seed,
                "lp_ft",
                params={"bn": bn, "ft_lr_scale": 0.25},
                lr_scale=4,
                head={"init": init},
                **extra,
            )
    return out


def _summary(rows: list[dict[str, float]], key: str) -> str:
    vals = [r[key] for r in rows if not math.isnan(r[key])]
    failed = f" ({len(rows) - len(vals)} diverged)" if len(vals) < len(rows) else ""
    if not vals:
        return "diverged"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.4f} ± {sd:.4f}{failed}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backbone", default="test_efficientnet")
    ap.add_argument("--weights", type=Path, default=None, help="reuse a source file instead of pretraining")
    ap.add_argument("--pretrain-epochs", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--subset", type=float, default=None, help="stratified fraction of digits' train")
    ap.add_argument("--lp-ft", action="store_true", help="also compare LP-FT's BatchNorm modes")
    ap.add_argument("--only", default="", help="comma list: only runs whose name contains one of these")
    args = ap.parse_args()
    args.device_obj = pick_device(args.device)
    print(f"# device: {device_name(args.device_obj)}")
    weights = args.weights or Path.home() / ".cache" / "tlbench" / "reference" / f"{args.backbone}_fmnist.pth"
    if not weights.exists():
        acc = pretrain(args.backbone, weights, args.pretrain_epochs, args.device_obj)
        print(f"# pretrained {args.backbone} on 25% of Fashion-MNIST: test acc {acc:.4f} -> {weights}")
    runs: dict[str, list[dict]] = {}
    for seed in range(args.seeds):
        data = load_dataset("digits", seed=seed, subset=args.subset)
        for name, run in _runs(args, weights, data, seed).items():
            if not args.only or any(part in name for part in args.only.split(",")):
                runs.setdefault(name, []).append(run())
    for name, rows in runs.items():
        out = {"run": name, "seeds": len(rows), "test_acc": _summary(rows, "test_acc")}
        out["best_val_acc"] = _summary(rows, "best_val_acc")
        if "first_loss" in rows[0]:
            out["first_batch_loss"] = _summary(rows, "first_loss")
        if "val_by_epoch" in rows[0]:
            out["val_by_epoch"] = [r["val_by_epoch"] for r in rows]
        print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
