"""Racing: the same conclusions for a fraction of the epochs (issue #18).

Runs a grid twice into two fresh stores, side by side on this machine: without racing, then with
``--race`` (same executor and workers, so survivors train bit-identically). Prints:

- epochs (and device-seconds) trained with racing / without;
- per group, the winner (best mean validation accuracy, as the race ranks) and the set tied with
  it (``stats.ties_with_best`` on test accuracy, as the report marks it), with and without racing;
- Kendall's tau of the survivors' ranking (mean test accuracy) against the unraced ranking;
- the accuracy of ``tlbench ls``'s measured-throughput estimates: each unraced cell predicted
  from the other cells' rate of its key (leave-one-out), mean absolute error per cell.

``--replay STORE --grid NAME`` instead replays the racing rule on a store of unraced runs (their
per-epoch validation history): which configurations a race would have dropped, and whether the
winners and ties stay. Exact for CPU runs: a survivor's training is bit-identical.

    python benchmarks/perf/racing.py [--grid race_cpu] [--workers 2]
    python benchmarks/perf/racing.py --replay sqlite:////tmp/t5/mlflow.db --grid transfer_offline
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from scipy import stats as sps

from tlbench.cells import expand
from tlbench.executor.options import RacePlan
from tlbench.executor.racing import Race
from tlbench.preflight.throughput import rates, run_key
from tlbench.spec import load_grid
from tlbench.stats import ties_with_best
from tlbench.tracking import Tracker, tags


def run(grid: str, store: str, race: bool, workers: int) -> float:
    cmd = [sys.executable, "-m", "tlbench.cli", "run", "--grid", grid, "--tracking-uri", store]
    cmd += ["--workers", str(workers), "--race" if race else "--no-race"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def frame(store: str, grid: str) -> pd.DataFrame:
    """One row per cell run (newest): config, seed, group, status, metrics, params."""
    tracker = Tracker(store)
    rows = []
    seen = set()
    for r in tracker.runs(tracker.experiment_id(grid)):
        cid = r.data.tags[tags.CELL_ID]
        if cid in seen or r.data.tags.get(tags.VARIANT):
            continue
        seen.add(cid)
        p, m = r.data.params, r.data.metrics
        race = r.data.tags.get(tags.RACE, "")
        rows.append(
            {
                "cell": r.data.tags[tags.CELL],
                "config": r.data.tags[tags.CELL].split("@")[0],
                "seed": int(r.data.tags[tags.CELL].partition("@s")[2] or 0),
                "group": (p.get("dataset"), p.get("backbone")),
                "status": "DROPPED" if race == "dropped" else r.info.status,
                "test_acc": m.get("test_acc"),
                "best_val_acc": m.get("best_val_acc"),
                "epochs_trained": m.get("epochs_trained", float(p.get("epochs", 0))),
                "device_s": m.get("device_s", m.get("train_time_s", 0.0)),
                "params": dict(p),
                "device": r.data.tags.get(tags.DEVICE, "cpu"),
            }
        )
    return pd.DataFrame(rows)


def conclusions(df: pd.DataFrame) -> dict:
    """Per group: the winner by mean best-val, the configurations tied with the best on test."""
    out = {}
    for group, g in df[df["status"] == "FINISHED"].groupby("group"):
        winner = g.groupby("config")["best_val_acc"].mean().idxmax()
        ties = ties_with_best(g.rename(columns={"test_acc": "value"})[["config", "seed", "value"]])
        tied = set(ties.loc[ties["best"] | ties["tie"], "config"])
        ranking = g.groupby("config")["test_acc"].mean().sort_values(ascending=False)
        out[group] = {"winner": winner, "tied": tied, "ranking": ranking}
    return out


def estimate_error(df: pd.DataFrame) -> float:
    """Leave-one-out: each finished cell's seconds predicted from the other cells of its key."""
    done = df[df["status"] == "FINISHED"].reset_index(drop=True)
    errors = []
    for i, row in done.iterrows():
        others = [
            (r["params"], {"device_s": r["device_s"], "epochs_trained": r["epochs_trained"]}, r["device"])
            for j, r in done.iterrows()
            if j != i
        ]
        key = run_key(row["params"], row["device"])
        rate = rates(others).get(key)
        if rate is None:
            continue
        predicted = rate * float(row["params"]["train_size"]) * row["epochs_trained"]
        errors.append(abs(predicted - row["device_s"]))
    return sum(errors) / len(errors) if errors else float("nan")


def compare(grid: str, workers: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="tlbench-race-"))
    plain_store, race_store = f"sqlite:///{tmp / 'plain.db'}", f"sqlite:///{tmp / 'race.db'}"
    t_plain = run(grid, plain_store, False, workers)
    t_race = run(grid, race_store, True, workers)
    name = load_grid(grid).name
    a, b = frame(plain_store, name), frame(race_store, name)
    print(f"grid {name}: {len(a)} cells, {a['config'].nunique()} configurations, {workers} workers")
    print(f"wall: unraced {t_plain:.0f} s, raced {t_race:.0f} s ({t_race / t_plain:.2f}x)")
    ea, eb = a["epochs_trained"].sum(), b["epochs_trained"].sum()
    print(f"epochs trained: raced {eb:.0f} / unraced {ea:.0f} = {eb / ea:.1%}")
    print(
        f"device-seconds: raced {b['device_s'].sum():.0f} / unraced {a['device_s'].sum():.0f} = {b['device_s'].sum() / a['device_s'].sum():.1%}"
    )
    print(f"dropped: {sorted(b.loc[b['status'] == 'DROPPED', 'config'].unique())}")
    _same(conclusions(a), conclusions(b))
    print(
        f"ls estimate, leave-one-out mean absolute error per cell: {estimate_error(a):.2f} s "
        f"(cells take {a['device_s'].mean():.2f} s on average)"
    )


def _same(ca: dict, cb: dict) -> None:
    for group in ca:
        wa, wb = ca[group]["winner"], cb[group]["winner"]
        ta, tb = ca[group]["tied"], cb[group]["tied"]
        survivors = [c for c in ca[group]["ranking"].index if c in cb[group]["ranking"].index]
        tau = sps.kendalltau(
            ca[group]["ranking"][survivors].rank(), cb[group]["ranking"][survivors].rank()
        ).statistic
        print(
            f"group {group}: winner {'same' if wa == wb else 'DIFFERENT'} ({wa} / {wb}); "
            f"tied set {'same' if ta == tb else 'DIFFERENT'} ({len(ta)} / {len(tb)}); "
            f"Kendall tau of the {len(survivors)} survivors {tau:.3f}"
        )


def replay(store: str, grid: str, plan: RacePlan) -> None:
    """The racing rule on unraced runs' histories: what a race would drop, and at which epochs."""
    spec = load_grid(grid)
    cells = expand(spec)
    tracker = Tracker(store)
    race = Race(cells, plan, tracker, tracker.experiment_id(spec.name), what_if=True)
    race.start()  # every value is known: decisions are taken without training
    dropped = {d.cell.config_name or d.cell.name for d in race.dropped}
    df = frame(store, spec.name)
    budget = sum(c.train.epochs for c in cells if c.name in race)
    spent = sum(c.train.epochs for c in cells if c.name in race and (c.config_name or c.name) not in dropped)
    spent += sum(d.metrics["epochs_trained"] for d in race.dropped)
    print(f"replay of {spec.name} on {store}: {len(race.dropped)} cells of {len(race.group_of)} raced out")
    print(f"epochs trained with racing: {spent:.0f} / {budget} = {spent / budget:.1%}")
    for d in race.dropped:
        print(f"  {d.cell.name}: {d.reason}")
    kept = df[~df["config"].isin(dropped)]
    _same(conclusions(df), conclusions(kept))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", default="race_cpu")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--replay", default=None, help="a store of unraced runs to replay the rule on")
    args = ap.parse_args()
    if args.replay:
        spec = load_grid(args.grid)
        replay(args.replay, args.grid, RacePlan.from_config(spec.race))
    else:
        compare(args.grid, args.workers)


if __name__ == "__main__":
    main()
