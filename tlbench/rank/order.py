"""The run order a score predicts: within each pass over the seeds, every dataset's best-scored
backbone first, then every dataset's second, ... (scores of different datasets are not compared),
so a run stopped early holds the most promising ones.
Cells with nothing ranked (``scratch``, sources) keep their place at the front. A score only
orders: racing and everything else see the cells as they are.
"""

from __future__ import annotations

import math
from typing import Any

from tlbench.cells import Cell
from tlbench.rank.targets import targets


def stored_means(tracker: Any, experiment_id: str, score: str) -> dict[tuple[str, str], float]:
    """(dataset, backbone) -> the score's mean over seeds in each dataset's newest rank run."""
    from tlbench.tracking.rankings import latest_rankings, ranking_values

    out: dict[tuple[str, str], float] = {}
    for dataset, run in latest_rankings(tracker, experiment_id).items():
        values: dict[str, list[float]] = {}
        for r in ranking_values(run, [score]):
            values.setdefault(r["backbone"], []).append(float(r["value"]))
        for backbone, v in values.items():
            out[(dataset, backbone)] = sum(v) / len(v)
    return out


def missing_targets(cells: list[Cell], means: dict[tuple[str, str], float]) -> list[Cell]:
    """The cells through which the pairs without a stored score would be scored."""
    return [t.cell for t in targets(cells) if t.key not in means]


def ordered(cells: list[Cell], means: dict[tuple[str, str], float]) -> tuple[list[Cell], list[str]]:
    """(the cells in predicted order, the 'backbone on dataset' pairs that have no score)."""
    ranked = {t.key for t in targets(cells)}
    unscorable = sorted(
        f"{b} on {d}" for d, b in ranked if not math.isfinite(means.get((d, b), float("nan")))
    )
    position: dict[tuple[str, str], int] = {}
    for d in dict.fromkeys(d for d, _ in ranked):
        mine = sorted((b for dd, b in ranked if dd == d), key=lambda b: -means.get((d, b), -math.inf))
        position.update({(d, b): n for n, b in enumerate(mine)})
    passes: dict[str, list[int]] = {}
    for c in cells:
        seen = passes.setdefault(c.config_name or c.name, [])
        if c.train.seed not in seen:
            seen.append(c.train.seed)

    def key(item: tuple[int, Cell]) -> tuple[int, int, int]:
        i, c = item
        seed_pass = passes[c.config_name or c.name].index(c.train.seed)
        return seed_pass, position.get((c.labels["dataset"], c.labels["backbone"]), -1), i

    return [c for _, c in sorted(enumerate(cells), key=key)], unscorable


def order_cells(
    cells: list[Cell],
    score: str,
    tracker: Any,
    experiment_id: str,
    *,
    grid: str,
    data_dir: str | None = None,
    device: str | None = None,
    say: Any = print,
) -> list[Cell]:
    """The cells in the order ``score`` predicts (best backbone first within each dataset, seed 0
    of every configuration before seed 1); scores missing from the store are computed (and
    logged) first. A backbone the score cannot be computed for is a ``RankError`` naming it."""
    from tlbench.rank.ranking import rank
    from tlbench.rank.scores import RankError, parse_scores

    parse_scores([score])
    means = stored_means(tracker, experiment_id, score)
    todo = missing_targets(cells, means)
    if todo:
        say(f"ordering by {score}: scoring {len(todo)} (dataset, backbone) pair(s) first")
        fresh = rank(
            todo, tracker, experiment_id, grid=grid, scores=[score], data_dir=data_dir, device=device, say=say
        )
        means.update({(r.dataset, r.backbone): r.mean for r in fresh.table.itertuples() if r.score == score})
    order, unscorable = ordered(cells, means)
    if unscorable:
        raise RankError(
            f"--order-by {score}: it cannot be computed for {', '.join(unscorable)} "
            "(LEEP and NCE need a source classifier: a hub model's or a checkpoint's head); order by "
            "a score every backbone has, e.g. logme"
        )
    return order
