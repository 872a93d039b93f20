"""What ``tlbench rank`` costs beside the fine-tuning it predicts (#27's target: <= 2 %).

Reads a store where the grid has run (``tlbench run --grid rank_offline``), then ranks it twice
in this process (start-up excluded, nothing logged):

- ``cold``: an empty feature store and every score computed here, the probe's L-BFGS sweep too,
  as before any cell has run (the use ``rank`` is for: deciding what to fine-tune);
- ``warm``: the store's feature entries (what the cold pass and the grid's probes wrote) and the
  probe taken from the grid's finished probe cells;

and prints each beside the grid's training: sum of ``device_s`` (the cells' device-seconds) and
of ``train_time_s`` over its FINISHED cell runs, as read from the store.

    python benchmarks/perf/rank_cost.py [--grid rank_offline] [--tracking-uri sqlite:///mlruns/mlflow.db]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import tlbench
from tlbench.tracking import Tracker


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default="rank_offline")
    ap.add_argument("--tracking-uri", default=None)
    args = ap.parse_args()
    res = tlbench.results(args.grid, tracking_uri=args.tracking_uri, compare=None)
    done = res.cells[res.cells["status"] == "FINISHED"]
    tracker = Tracker(args.tracking_uri)
    runs = {r.info.run_id: r for r in tracker.runs(tracker.experiment_id(tlbench.load_grid(args.grid).name))}
    device_s = sum(float(runs[i].data.metrics.get("device_s", 0.0)) for i in done["run_id"])
    train_s = sum(float(runs[i].data.metrics.get("train_time_s", 0.0)) for i in done["run_id"])
    print(
        f"grid {args.grid}: {len(done)} of {len(res.cells)} cells FINISHED; "
        f"sum device_s {device_s:.1f} s, sum train_time_s {train_s:.1f} s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TLBENCH_FEATURE_STORE"] = tmp
        for name, reuse in (("cold", False), ("warm", True)):
            r = tlbench.rank_grid(
                args.grid, tracking_uri=args.tracking_uri, log=False, reuse_probes=reuse, console=_Quiet()
            )
            total = r.seconds["total"]
            parts = ", ".join(f"{k} {v:.2f}" for k, v in r.seconds.items() if k != "total")
            print(
                f"{name}: rank {total:.1f} s = {100 * total / device_s:.2f} % of device_s "
                f"({100 * total / train_s:.2f} % of train_time_s)  [{parts}]"
            )


class _Quiet:
    def print(self, *a: object, **k: object) -> None:
        pass


if __name__ == "__main__":
    main()
