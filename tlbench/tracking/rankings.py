"""``tlbench rank``'s runs: one per dataset under the grid's experiment, newest wins.

A rank run is tagged ``tlbench.variant = rank`` and ``tlbench.rank = <dataset label>`` and has no
``tlbench.cell_id``, so no cell machinery ever takes it for a cell. Its metrics:

- ``<score>.<backbone>``: the score's mean over the backbone's seeds; ``<score>.<backbone>.s<seed>``
  each seed's value;
- ``time.<score>_s``, ``time.features_s``, ``time.total_s``: where the seconds went;
- ``weighted_tau.<score>``, ``pearson.<score>`` (with ``.ci_low`` / ``.ci_high``) and
  ``top1_hit.<score>`` (1 / 0): how the score agreed with the grid's results, when it had some.

Backbone labels are written with MLflow's disallowed characters replaced; the tag
``tlbench.rank.backbones`` maps the written names back to the labels.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tlbench.tracking import tags

if TYPE_CHECKING:
    from tlbench.tracking.store import Tracker

RANK = "tlbench.rank"  # the dataset label a rank run scores
BACKBONES = "tlbench.rank.backbones"  # JSON: written name -> backbone label
VARIANT = "rank"
AGREEMENT_KEYS = ("weighted_tau", "pearson", "top1_hit")
_SEED = re.compile(r"\.s(\d+)$")


def metric_name(label: str) -> str:
    """A label as MLflow allows it in a metric key (letters, digits, _ - . / and spaces)."""
    return re.sub(r"[^\w.\- /]", "_", label)


def log_ranking(
    tracker: Tracker,
    experiment_id: str,
    grid: str,
    dataset: str,
    values: Iterable[dict[str, Any]],
    agreement: Iterable[dict[str, Any]],
    params: dict[str, Any],
    seconds: dict[str, float],
) -> str:
    """A FINISHED rank run for ``dataset``: ``values`` rows (backbone, seed, score, value),
    ``agreement`` rows (score, weighted_tau, tau_ci, pearson, pearson_ci, top1_hit)."""
    from mlflow.entities import Metric, Param

    rows = list(values)
    names = {metric_name(r["backbone"]): r["backbone"] for r in rows}
    run = tracker.client.create_run(
        experiment_id,
        run_name=f"rank:{dataset}",
        tags={
            tags.VARIANT: VARIANT,
            RANK: dataset,
            tags.GRID: grid,
            BACKBONES: json.dumps(names),
        },
    )
    run_id = run.info.run_id
    ts = int(time.time() * 1000)
    metrics: dict[str, float] = {f"time.{k}_s": v for k, v in seconds.items()}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["score"], metric_name(r["backbone"])), []).append(r)
    for (score, bb), found in groups.items():
        finite = [float(r["value"]) for r in found if _finite(r["value"])]
        if finite:
            metrics[f"{score}.{bb}"] = sum(finite) / len(finite)
        metrics.update(
            {f"{score}.{bb}.s{r['seed']}": float(r["value"]) for r in found if _finite(r["value"])}
        )
    for a in agreement:
        s = a["score"]
        for key in ("weighted_tau", "pearson"):
            metrics[f"{key}.{s}"] = a[key]
            low, high = a[f"{key}_ci"]
            metrics[f"{key}.{s}.ci_low"], metrics[f"{key}.{s}.ci_high"] = low, high
        if a.get("top1_hit") is not None:
            metrics[f"top1_hit.{s}"] = float(bool(a["top1_hit"]))
    points = [Metric(k, float(v), ts, 0) for k, v in metrics.items() if _finite(v)]
    for i in range(0, len(points), 1000):
        tracker.client.log_batch(run_id, metrics=points[i : i + 1000])
    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for i in range(0, len(items), 100):
        tracker.client.log_batch(run_id, params=items[i : i + 100])
    tracker.client.set_terminated(run_id, "FINISHED")
    return run_id


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def latest_rankings(tracker: Tracker, experiment_id: str) -> dict[str, Any]:
    """dataset label -> its newest FINISHED rank run."""
    runs = tracker.client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{tags.VARIANT}` = '{VARIANT}' and attributes.status = 'FINISHED'",
        max_results=5000,
        order_by=["start_time DESC"],
    )
    out: dict[str, Any] = {}
    for r in runs:
        out.setdefault(r.data.tags.get(RANK, ""), r)
    return out


def ranking_values(run: Any, scores: Iterable[str]) -> list[dict[str, Any]]:
    """A rank run's per-seed rows (backbone, seed, score, value) read back from its metrics
    (seed None where a backbone had one seed: its mean is its value)."""
    names: dict[str, str] = json.loads(run.data.tags.get(BACKBONES, "{}"))
    known = sorted(scores, key=len, reverse=True)  # "reg_hscore" before "hscore"
    per_seed: dict[tuple[str, str], list[dict[str, Any]]] = {}
    means: dict[tuple[str, str], float] = {}
    for key, value in run.data.metrics.items():
        score = next((s for s in known if key.startswith(s + ".")), None)
        if score is None:
            continue
        rest = key[len(score) + 1 :]
        m = _SEED.search(rest)
        if m and rest[: m.start()] in names:
            bb = names[rest[: m.start()]]
            per_seed.setdefault((score, bb), []).append(
                {"backbone": bb, "seed": int(m.group(1)), "score": score, "value": value}
            )
        elif rest in names:
            means[(score, names[rest])] = value
    out = []
    for (score, bb), mean in means.items():
        out += per_seed.get((score, bb)) or [{"backbone": bb, "seed": None, "score": score, "value": mean}]
    return out
