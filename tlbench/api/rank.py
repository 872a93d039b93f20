"""Which backbone should I fine-tune? Transferability scores from Python (``rank_grid``), and the
run order they predict (``order_cells``, what ``tlbench run --order-by`` uses)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tlbench.api.grids import Grid, load_grid
from tlbench.rank.order import order_cells

__all__ = ["order_cells", "rank_grid"]

if TYPE_CHECKING:
    from rich.console import Console

    from tlbench.rank.ranking import Ranking


def rank_grid(
    grid: str | Path | Grid,
    *,
    select: list[str] | tuple[str, ...] | None = None,
    tracking_uri: str | None = None,
    scores: str | list[str] | tuple[str, ...] | None = None,
    against: str = "finetune",
    data_dir: str | None = None,
    device: str = "auto",
    log: bool = True,
    reuse_probes: bool = True,
    console: Console | None = None,
) -> Ranking:
    """Score every (dataset, backbone) of the (selected) cells from one forward pass over the
    target data (``scores``: comma list or names, default all), check the scores against the
    store's finished ``against`` results, and log one MLflow run per dataset (``log``).
    ``Ranking`` holds the per-seed values, the tables and the agreement as DataFrames.
    ``reuse_probes``: ``probe`` is the grid's finished L-BFGS probe cells' where they exist."""
    from tlbench.api.runs import progress_console
    from tlbench.rank.ranking import rank
    from tlbench.rank.scores import parse_scores
    from tlbench.tracking import Tracker

    names = parse_scores(scores)
    g = load_grid(grid)
    say = console if console is not None else progress_console()
    tracker = Tracker(tracking_uri)
    experiment_id = tracker.experiment_id(g.name)
    return rank(
        g.select(select),
        tracker,
        experiment_id,
        grid=g.name,
        scores=names,
        against=against,
        data_dir=data_dir,
        device=None if device == "auto" else device,
        log=log,
        reuse_probes=reuse_probes,
        say=lambda line: say.print(line, highlight=False),
    )
