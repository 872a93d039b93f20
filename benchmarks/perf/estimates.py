"""How good are ``tlbench ls --tracking-uri``'s time estimates? (issue #28)

Each finished run of the grid's experiment in STORE is predicted from the store's other finished
runs, through the code path ``tlbench ls`` uses (``Estimator.cell`` on the grid's cell, its train
size from ``train_images``), and compared with the ``device_s`` it took. Two hold-outs:

- leave-one-out: only the run itself is left out (the store knows the cell's configuration from
  its other seeds or optimizers);
- leave-size-out: every run of its key (backbone, input size, strategy, device) with its train
  size and epochs is left out: can the key's other sizes predict it? (None on a one-size grid.)

Printed per predictor, the old one (#18: the key's median seconds per image-epoch) beside the
current one: mean and median absolute percentage error, the coverage of the printed ~80 % interval,
and the grid's total. Reads the store only.

    python benchmarks/perf/estimates.py --store sqlite:////tmp/race_unraced/mlflow.db --grid race_cpu
    python benchmarks/perf/estimates.py --store sqlite:////tmp/base/mlruns/mlflow.db --grid smoke
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass

from tlbench.cells import expand
from tlbench.preflight.estimate import train_images
from tlbench.preflight.throughput import Estimator, cell_key, measurements, rates, run_key
from tlbench.spec import load_grid
from tlbench.tracking import Tracker, tags


@dataclass
class Held:
    """One prediction of a held-out run."""

    cell: str
    actual: float
    old: float | None
    new: float | None
    low: float | None
    high: float | None


def store(uri: str) -> list[dict]:
    """Every finished run of the store: its cell, experiment, params, metrics and device."""
    tracker = Tracker(uri)
    out = []
    for exp in tracker.experiment_ids():
        for r in tracker.runs(exp, "FINISHED"):
            out.append(
                {
                    "exp": exp,
                    "cell": r.data.tags.get(tags.CELL),
                    "variant": r.data.tags.get(tags.VARIANT),
                    "params": dict(r.data.params),
                    "metrics": dict(r.data.metrics),
                    "device": r.data.tags.get(tags.DEVICE, ""),
                }
            )
    return out


def _size(run: dict) -> tuple:
    key = run_key(run["params"], run["device"])
    return key, run["params"].get("train_size"), run["metrics"].get("epochs_trained")


def predict(uri: str, grid: str, hold: str) -> list[Held]:
    spec = load_grid(grid)
    cells = {c.name: c for c in expand(spec)}
    runs = store(uri)
    exp = Tracker(uri).experiment_id(spec.name)
    out = []
    for i, run in enumerate(runs):
        cell = cells.get(run["cell"] or "")
        actual = run["metrics"].get("device_s")
        if run["exp"] != exp or run["variant"] or cell is None or not actual:
            continue
        # leave-size-out: every run of the key at this size and epochs
        others = runs[:i] + runs[i + 1 :] if hold == "one" else [r for r in runs if _size(r) != _size(run)]
        device = (run["device"] or "cpu").split(":")[0]
        triples = [(r["params"], r["metrics"], r["device"]) for r in others]
        images = train_images(cell)
        rate = rates(triples).get(cell_key(cell, device))
        old = rate * images * cell.train.epochs if rate is not None and images else None
        est = Estimator(measurements(triples)).cell(cell, device, images)
        out.append(
            Held(
                run["cell"],
                actual,
                old,
                est.seconds if est else None,
                est.low if est else None,
                est.high if est else None,
            )
        )
    return out


def summary(held: list[Held], which: str) -> str:
    pairs = [(getattr(h, which), h.actual, h) for h in held if getattr(h, which) is not None]
    if not pairs:
        return "no run had another of its key to be predicted from"
    ape = [abs(p - a) / a for p, a, _ in pairs]
    line = (
        f"{len(pairs)} of {len(held)} runs predicted: MAPE {statistics.mean(ape):.1%}, "
        f"median APE {statistics.median(ape):.1%}, "
        f"mean absolute error {statistics.mean(abs(p - a) for p, a, _ in pairs):.2f} s "
        f"({statistics.mean(abs(p - a) for p, a, _ in pairs) / statistics.mean(a for _, a, _ in pairs):.0%} of the mean run), "
        f"total {sum(p for p, _, _ in pairs):.0f} s for {sum(a for _, a, _ in pairs):.0f} s measured"
    )
    if which == "new":
        inside = [
            h.low <= h.actual <= h.high for _, _, h in pairs if h.low is not None and h.high is not None
        ]
        width = [
            (h.high - h.low) / h.new
            for _, _, h in pairs
            if h.low is not None and h.high is not None and h.new
        ]
        if inside:
            line += (
                f"; 80 % interval covers {sum(inside)} of {len(inside)} ({sum(inside) / len(inside):.0%}), "
                f"median width {statistics.median(width):.0%} of the estimate"
            )
            lows = sum(h.low for _, _, h in pairs if h.low is not None)
            highs = sum(h.high for _, _, h in pairs if h.high is not None)
            line += f"; total's interval {lows:.0f}–{highs:.0f} s"
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", required=True, help="tracking URI of a store with finished runs of --grid")
    ap.add_argument("--grid", required=True, help="the grid those runs are cells of")
    ap.add_argument("--worst", type=int, default=5, help="list the runs the current predictor misses most")
    args = ap.parse_args()
    print(f"{args.grid} in {args.store}")
    for hold, label in (("one", "leave-one-out"), ("size", "leave-size-out")):
        held = predict(args.store, args.grid, hold)
        print(f"{label}:")
        print(f"  old (median s per image-epoch of the key): {summary(held, 'old')}")
        print(f"  new (fitted shape × group factor, interval): {summary(held, 'new')}")
        missed = sorted((h for h in held if h.new), key=lambda h: -abs(h.new - h.actual) / h.actual)
        for h in missed[: args.worst]:
            print(
                f"    {h.cell}: {h.actual:.2f} s, predicted {h.new:.2f} s "
                f"[{h.low or float('nan'):.2f}, {h.high or float('nan'):.2f}] (old {h.old or float('nan'):.2f} s)"
            )


if __name__ == "__main__":
    main()
