"""``tlbench rank``: every (dataset, backbone) of a grid scored from its frozen features, checked
against the grid's finished results, one MLflow run per dataset.

Per target (dataset, backbone, seed): the cell's data and weights (a ``cell:`` source's best
checkpoint), one forward pass per split through the feature store, then each score on those
features. A score that cannot be computed for a backbone (LEEP and NCE without a source
classifier) is skipped for it with the reason. The scoring time is the wall time of this function
(process start-up excluded), split into building and extracting (``features``) and each score.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tlbench.rank.scores import SCORES, RankError
from tlbench.rank.targets import Target, targets, unfinished_sources
from tlbench.report.collect import cells_frame
from tlbench.report.transferability import agreement_table, results_for, score_table

if TYPE_CHECKING:
    from tlbench.cells import Cell
    from tlbench.tracking import Tracker


@dataclass
class Ranking:
    """What ``rank`` found: per-seed values, the per-dataset tables, how well each score agreed
    with the grid's results, what was skipped and why, and where the seconds went."""

    grid: str
    against: str
    values: pd.DataFrame  # dataset, backbone, seed, score, value, seconds
    table: pd.DataFrame  # report.transferability.score_table
    agreement: pd.DataFrame  # report.transferability.agreement_table (empty: no results yet)
    results: pd.DataFrame = field(default_factory=pd.DataFrame)  # report.transferability.results_for
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    run_ids: dict[str, str] = field(default_factory=dict)  # dataset -> its rank run


def check_targets(cells: list[Cell], tracker: Tracker, experiment_id: str) -> list[Target]:
    """The targets of ``cells``, refused when some ``cell:`` source has not been trained yet."""
    found = targets(cells)
    if not found:
        raise RankError(
            "nothing to rank: no selected cell adapts a pretrained backbone "
            "(rank scores the backbones of linear_probe, finetune, ... cells, not scratch ones)"
        )
    missing = unfinished_sources(found, set(tracker.finished_runs(experiment_id)))
    if missing:
        names = " ".join(f"'{m}'" for m in missing)
        raise RankError(
            f"the backbones of {len(missing)} cell: source(s) are not trained yet: {', '.join(missing)}; "
            f"run them first (tlbench run --grid ... --select {names})"
        )
    return found


class _Weights:
    """Source checkpoints, downloaded once per run for the whole ranking."""

    def __init__(self, tracker: Tracker, experiment_id: str, tmp: Path):
        self.tracker, self.tmp = tracker, tmp
        self.finished = tracker.finished_runs(experiment_id)
        self.files: dict[str, Path] = {}

    def file(self, cell: Cell) -> Path | None:
        w = cell.weights
        if w.kind not in ("cell", "run"):
            return None
        run_id = self.finished[cell.depends_on_id or ""].info.run_id if w.kind == "cell" else w.value
        if run_id not in self.files:
            dst = self.tmp / run_id
            self.files[run_id] = (
                self.tracker.download_checkpoint(run_id, dst)
                if w.kind == "cell"
                else self.tracker.run_checkpoint(run_id, dst)
            )
        return self.files[run_id]


def score_targets(
    found: list[Target],
    scores: list[str],
    weights: Callable[[Cell], Path | None],
    *,
    data_dir: str | None,
    device: str | None,
    metric_of: Callable[[Target], str],
    say: Callable[[str], None],
    known: dict[tuple[str, str, int], float] | None = None,
) -> tuple[pd.DataFrame, list[str], dict[str, float]]:
    """Every score of every target: (values, notes, seconds per phase). ``known``: the probe's
    value where the grid's own L-BFGS probe cell has it (its ``best_val``: the same solve on the
    same features), taken instead of solving again."""
    from tlbench.executor.runner import load_cell_data
    from tlbench.rank.features import target_features

    need_source = any(SCORES[s].needs_source for s in scores)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    seconds: dict[str, float] = {"features": 0.0, **{s: 0.0 for s in scores}}
    for t in found:
        data = load_cell_data(t.cell, data_dir)
        f = target_features(t, data, weights(t.cell), device=device, source=need_source)
        seconds["features"] += f.seconds["build"] + f.seconds["extract"]
        shown = []
        first = len(rows)
        for name in scores:
            s = SCORES[name]
            if s.needs_source and f.source_probs is None:
                note = f"{name} skipped for {t.backbone} on {t.dataset}: {f.source_note}"
                if note not in notes:
                    notes.append(note)
                rows.append(_row(t, name, float("nan"), 0.0))
                continue
            t0 = time.perf_counter()
            reuse = (known or {}).get((t.dataset, t.backbone, t.seed)) if name == "probe" else None
            value = float(s.fn(f, metric_of(t)) if reuse is None else reuse)
            took = time.perf_counter() - t0
            seconds[name] += took
            rows.append(_row(t, name, value, took))
            shown.append(f"{name} {value:.4g}")
        rows[first]["features_s"] = f.seconds["build"] + f.seconds["extract"]
        say(
            f"✓ {t.dataset} / {t.backbone} (seed {t.seed}): {', '.join(shown) or 'nothing'} "
            f"[features {f.store}, {f.seconds['build'] + f.seconds['extract']:.1f} s]"
        )
    return pd.DataFrame(rows), notes, seconds


def finished_probes(cells: list[Cell], frame: pd.DataFrame) -> dict[tuple[str, str, int], float]:
    """(dataset, backbone, seed) -> the best val metric of the grid's finished L-BFGS probe."""
    from tlbench.report.tables import VAL_SCORE

    lbfgs = {
        c.name
        for c in cells
        if c.strategy.name == "linear_probe" and c.strategy.params.get("solver") == "lbfgs"
    }
    done = frame[frame["cell"].isin(lbfgs) & (frame["status"] == "FINISHED")].dropna(subset=[VAL_SCORE])
    return {
        (r["dataset"], r["backbone"], int(r["seed"])): float(r[VAL_SCORE]) for r in done.to_dict("records")
    }


def _row(t: Target, score: str, value: float, seconds: float) -> dict[str, Any]:
    return {
        "dataset": t.dataset,
        "backbone": t.backbone,
        "seed": t.seed,
        "score": score,
        "value": value,
        "seconds": seconds,
        "features_s": 0.0,
    }


def rank(
    cells: list[Cell],
    tracker: Tracker,
    experiment_id: str,
    *,
    grid: str,
    scores: list[str],
    against: str = "finetune",
    data_dir: str | None = None,
    device: str | None = None,
    log: bool = True,
    reuse_probes: bool = True,
    say: Callable[[str], None] = print,
) -> Ranking:
    """Score, check against the finished ``against`` results of the same cells' grid, log.
    ``reuse_probes``: take ``probe`` from the grid's finished L-BFGS probe cells where there are
    some (False: solve it here, as before any cell has run)."""
    from tlbench.tracking.rankings import log_ranking

    t0 = time.perf_counter()
    found = check_targets(cells, tracker, experiment_id)
    metrics = {t.key: t.cell.metric for t in found}
    frame = cells_frame(cells, tracker, experiment_id)
    with tempfile.TemporaryDirectory(prefix="tlbench-rank-") as tmp:
        w = _Weights(tracker, experiment_id, Path(tmp))
        values, notes, seconds = score_targets(
            found,
            scores,
            w.file,
            data_dir=data_dir,
            device=device,
            metric_of=lambda t: metrics[t.key],
            say=say,
            known=finished_probes(cells, frame) if reuse_probes else None,
        )
    results = results_for(frame, against)
    agree = agreement_table(values, results)
    seconds["total"] = time.perf_counter() - t0
    out = Ranking(grid, against, values, score_table(values), agree, results, notes, seconds)
    if log:
        for dataset, g in values.groupby("dataset", sort=False):
            a = agree[agree["dataset"] == dataset] if not agree.empty else agree
            spent = {"features": float(g["features_s"].sum()), "scores": float(g["seconds"].sum())}
            spent.update({f"{k}": float(v) for k, v in g.groupby("score")["seconds"].sum().items()})
            out.run_ids[str(dataset)] = log_ranking(
                tracker,
                experiment_id,
                grid,
                str(dataset),
                g.to_dict("records"),
                a.to_dict("records"),
                {
                    "dataset": dataset,
                    "backbones": ",".join(dict.fromkeys(g["backbone"])),
                    "scores": ",".join(scores),
                    "against": against,
                    "seeds": ",".join(str(s) for s in sorted(set(g["seed"]))),
                    "notes": " | ".join(n for n in notes if f" on {dataset}:" in n) or "none",
                },
                spent,
            )
    return out
