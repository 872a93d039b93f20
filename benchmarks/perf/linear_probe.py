"""The linear-evaluation protocol: tlbench's L-BFGS probe vs its SGD probe, and vs scikit-learn.

A real pretrained source (a timm tiny model trained from scratch on a quarter of Fashion-MNIST, as
``transfer_reference.py`` makes it), frozen; targets scikit-learn's digits and Fashion-MNIST (a
fraction of its train split, another draw per seed; its full 10k test split), 32 px, no
augmentation. Per seed and target, on the **same stored features** (tlbench's feature store):

- ``sgd``: ``linear_probe`` as the shipped grids train it (transfer_offline's probe: SGD momentum
  0.9, lr 0.2, weight decay 5e-4, batch 64, cosine, 10 epochs; the best-val epoch tested);
- ``lbfgs``: ``linear_probe`` with ``solver: lbfgs`` (45 λ in [1e-6, 1e5], chosen on val by
  accuracy, refit on train + val, test once);
- ``sklearn``: ``LogisticRegression(solver="lbfgs", C=1 / (λ n_train))`` on the cell's own train
  / val / test features, the same grid, chosen the same way (ties: the strongest penalty), refit
  on train + val: the chosen C's grid index beside tlbench's, the test accuracy difference, the
  training objective of both at every λ, and the test accuracy of scikit-learn run to
  convergence (tol 1e-8) at tlbench's C: the two solvers alone, without a selection tie.

Prints test accuracy (mean ± 95 % t interval over seeds), the paired L-BFGS - SGD difference, wall
time of each cell's fit and of the λ sweep alone. ``--scale N,D,C``: the sweep alone on random
features of that shape on ``--device`` (the GPU target: 50000,2048,100 in seconds).

    python benchmarks/perf/linear_probe.py [--backbone test_resnet] [--seeds 5] [--targets digits,fashion_mnist]
    python benchmarks/perf/linear_probe.py --scale 50000,2048,100 --device cuda
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import device_name, make_cell
from transfer_reference import pretrain

from tlbench.data import load_dataset
from tlbench.stats import summarize
from tlbench.train import fit, pick_device
from tlbench.train.features import open_store
from tlbench.train.logreg import DEFAULT_GRID, objective, sweep
from tlbench.train.setup import prepare

SIZE = 32
SGD = dict(epochs=10, batch_size=64, lr=0.2, weight_decay=5e-4, schedule="cosine")  # transfer_offline's probe


def _cell(backbone: str, weights: Path, target: str, seed: int, subset: float | None, solver: str) -> Any:
    extra = {"subset": subset} if subset else {}
    cell = make_cell(
        dataset=target,
        backbone=backbone,
        strategy="linear_probe",
        augmentation="none",
        image_size=SIZE,
        seed=seed,
        **SGD,
        **extra,
    )
    params = {"solver": solver} if solver == "lbfgs" else {}
    if solver == "lbfgs":  # as the grid expansion does: one pass
        cell = cell.__class__(**{**cell.__dict__, "train": cell.train.model_copy(update={"epochs": 1})})
    return cell.__class__(
        **{
            **cell.__dict__,
            "weights": cell.weights.model_copy(update={"kind": "file", "value": str(weights)}),
            "strategy": cell.strategy.model_copy(update={"params": params}),
        }
    )


def _stored_features(cell: Any, data: Any, device: torch.device) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The cell's train / val / test features exactly as the store hands them to its probe."""
    s = prepare(
        cell, data, weights_file=None, device=device, cache_features=True, compile=False, cudnn_benchmark=True
    )
    stored = open_store(cell, s, data, enabled=True)
    assert stored is not None, "the feature store is off ($TLBENCH_FEATURE_STORE)"
    try:
        out = {}
        for split in ("train", "val", "test"):
            feats = stored.split(split, s, cell.train.eval_batch_size)
            out[split] = (feats.double().cpu().numpy(), getattr(s, split).labels.cpu().numpy())
        return out
    finally:
        stored.close()


def _sklearn(
    feats: dict[str, tuple[np.ndarray, np.ndarray]], grid: tuple[float, ...], theirs: int
) -> dict[str, Any]:
    """scikit-learn's protocol on the same features: C per λ, chosen on val, refit on train + val."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    (xt, yt), (xv, yv), (xs, ys) = feats["train"], feats["val"], feats["test"]
    t0 = time.perf_counter()
    vals, objectives, unconverged = [], [], 0
    for lam in grid:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            clf = LogisticRegression(C=1 / (lam * len(yt)), max_iter=1000).fit(xt, yt)
        unconverged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
        vals.append(clf.score(xv, yv))
        w, b = torch.tensor(clf.coef_), torch.tensor(clf.intercept_)
        objectives.append(float(objective(torch.tensor(xt), torch.tensor(yt), w, b, lam)))
    best = max(vals)
    chosen = max(i for i, v in enumerate(vals) if v == best)  # ties: the strongest penalty, as tlbench
    xa, ya = np.concatenate([xt, xv]), np.concatenate([yt, yv])
    refit = LogisticRegression(C=1 / (grid[chosen] * len(ya)), max_iter=1000).fit(xa, ya)
    # the solvers alone: tlbench's C, scikit-learn run to convergence (its default tol=1e-4 on
    # C·ΣCE + ½|W|² stops short of the optimum: a higher objective than tlbench's at every λ)
    tight = LogisticRegression(C=1 / (grid[theirs] * len(ya)), max_iter=20_000, tol=1e-8).fit(xa, ya)
    return {
        "test_acc_at_tlbench_C": tight.score(xs, ys),
        "chosen": chosen,
        "val": vals,
        "objective": objectives,
        "test_acc": refit.score(xs, ys),
        "seconds": time.perf_counter() - t0,
        "unconverged": unconverged,
    }


def _interval(values: list[float]) -> str:
    s = summarize(values)
    half = (s.ci_high - s.ci_low) / 2 if s.n > 1 else float("nan")
    return f"{s.mean:.4f} ± {half:.4f} (n={s.n})"


def compare(args: argparse.Namespace, device: torch.device, weights: Path) -> None:
    grid = DEFAULT_GRID
    for target in args.targets.split(","):
        subset = args.fashion_subset if target == "fashion_mnist" else args.digits_subset
        rows: list[dict[str, Any]] = []
        for seed in range(args.seeds):
            data = load_dataset(target, seed=seed, subset=subset)
            row: dict[str, Any] = {"seed": seed}
            for solver in ("sgd", "lbfgs"):
                cell = _cell(args.backbone, weights, target, seed, subset, solver)
                t0 = time.perf_counter()
                result = fit(cell, data, device=device)
                row[solver] = {
                    "test_acc": result.test_acc,
                    "best_val_acc": result.best_val_acc,
                    "fit_s": time.perf_counter() - t0,
                    **(
                        {"sweep_s": result.metrics["probe.sweep_s"], "l2": float(result.params["probe.l2"])}
                        if solver == "lbfgs"
                        else {}
                    ),
                    **({"not_converged": result.metrics["probe.not_converged"]} if solver == "lbfgs" else {}),
                }
            feats = _stored_features(
                _cell(args.backbone, weights, target, seed, subset, "lbfgs"), data, device
            )
            ours = sweep(
                (torch.tensor(feats["train"][0]), torch.tensor(feats["train"][1])),
                (torch.tensor(feats["val"][0]), torch.tensor(feats["val"][1])),
                data.num_classes,
            )
            sk = _sklearn(feats, grid, ours.chosen)
            row["sklearn"] = {
                "test_acc": sk["test_acc"],
                "test_acc_at_tlbench_C": sk["test_acc_at_tlbench_C"],
                "seconds": sk["seconds"],
                "chosen_index": sk["chosen"],
                "tlbench_index": ours.chosen,
                "val_at_tlbench_choice": sk["val"][ours.chosen],
                "val_at_own_choice": sk["val"][sk["chosen"]],
                "unconverged_C": sk["unconverged"],
                # the training objective at each λ: tlbench's minus scikit-learn's (<= 0: as low or lower)
                "max_objective_gap": max(
                    o.loss - f for o, f in zip(ours.solutions, sk["objective"], strict=True)
                ),
                "min_objective_gap": min(
                    o.loss - f for o, f in zip(ours.solutions, sk["objective"], strict=True)
                ),
            }
            rows.append(row)
            print(json.dumps({"target": target, **row}))
        sgd = [r["sgd"]["test_acc"] for r in rows]
        lb = [r["lbfgs"]["test_acc"] for r in rows]
        skl = [r["sklearn"]["test_acc"] for r in rows]
        print(
            f"\n## {target} (subset {subset or 'all'}, {args.seeds} seeds, {args.backbone} from Fashion-MNIST)"
        )
        print(
            f"test acc  sgd probe   {_interval(sgd)}  fit {np.mean([r['sgd']['fit_s'] for r in rows]):.1f} s"
        )
        print(
            f"test acc  lbfgs probe {_interval(lb)}  fit {np.mean([r['lbfgs']['fit_s'] for r in rows]):.1f} s, "
            f"sweep {np.mean([r['lbfgs']['sweep_s'] for r in rows]):.2f} s"
        )
        print(
            f"test acc  sklearn     {_interval(skl)}  {np.mean([r['sklearn']['seconds'] for r in rows]):.1f} s for the grid + refit"
        )
        print(f"lbfgs - sgd (paired)  {_interval([a - b for a, b in zip(lb, sgd, strict=True)])}")
        steps = [abs(r["sklearn"]["chosen_index"] - r["sklearn"]["tlbench_index"]) for r in rows]
        same_val = [r["sklearn"]["val_at_tlbench_choice"] == r["sklearn"]["val_at_own_choice"] for r in rows]
        gaps = (
            [r["sklearn"]["max_objective_gap"] for r in rows],
            [r["sklearn"]["min_objective_gap"] for r in rows],
        )
        print(
            f"vs sklearn: chosen C grid steps apart {steps} (equal val accuracy at both: {same_val}); "
            f"max |test acc diff| {max(abs(a - b) for a, b in zip(lb, skl, strict=True)) * 100:.2f} points "
            f"({max(abs(a - r['sklearn']['test_acc_at_tlbench_C']) for a, r in zip(lb, rows, strict=True)) * 100:.2f} "
            "at tlbench's C, scikit-learn converged: tol 1e-8); "
            f"training objective tlbench - sklearn over the grid: max {max(gaps[0]):.2e}, min {min(gaps[1]):.2e}"
        )


def scale(args: argparse.Namespace, device: torch.device) -> None:
    n, d, c = (int(v) for v in args.scale.split(","))
    g = torch.Generator(device="cpu").manual_seed(0)
    centres = torch.randn(c, d, generator=g) * 0.5
    y = torch.randint(0, c, (n + n // 5,), generator=g)
    x = (centres[y] + torch.randn(len(y), d, generator=g)).clamp_min(0)  # post-ReLU-like
    x, y = x.to(device), y.to(device)
    tr, va = (x[:n], y[:n]), (x[n:], y[n:])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    result = sweep(tr, va, c)
    sync()
    took = time.perf_counter() - t0
    its = sum(s.iterations for s in result.solutions)
    print(
        json.dumps(
            {
                "device": device_name(device),
                "shape": [n, d, c],
                "sweep_s": round(took, 2),
                "iterations": its,
                "refit_iterations": result.refit.iterations if result.refit else 0,
                "not_converged": result.not_converged,
                "chosen_l2": result.grid[result.chosen],
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backbone", default="test_resnet")
    ap.add_argument("--weights", type=Path, default=None, help="reuse a source file instead of pretraining")
    ap.add_argument("--pretrain-epochs", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--targets", default="digits,fashion_mnist")
    ap.add_argument("--digits-subset", type=float, default=None)
    ap.add_argument("--fashion-subset", type=float, default=0.1)
    ap.add_argument("--scale", default=None, help="N,D,C: time the sweep alone on random features")
    args = ap.parse_args()
    device = pick_device(args.device)
    print(f"# device: {device_name(device)}")
    if args.scale:
        scale(args, device)
        return
    weights = args.weights or Path.home() / ".cache" / "tlbench" / "reference" / f"{args.backbone}_fmnist.pth"
    if not weights.exists():
        acc = pretrain(args.backbone, weights, args.pretrain_epochs, device)
        print(f"# pretrained {args.backbone} on 25% of Fashion-MNIST: test acc {acc:.4f} -> {weights}")
    compare(args, device, weights)


if __name__ == "__main__":
    main()
