"""``tlbench ls``: the cells of a grid, their ids and settings, and what training them costs."""

from __future__ import annotations

import click
from rich.table import Table

from tlbench.cli.common import clean_errors, console, grid_option, load, select_option


@click.command("ls")
@grid_option
@select_option
@clean_errors
def ls_cmd(grid: str, select: tuple[str, ...]) -> None:
    """List the cells of a grid."""
    from tlbench.estimate import cell_flops, gpu_hours

    spec, cells, chosen = load(grid, select, check_backbones=False)
    table = Table(title=f"grid {spec.name}: {len(chosen)} of {len(cells)} cells")
    for col in ("#", "cell", "id", "seed", "weights", "epochs", "lr", "batch", "size", "subset", "TFLOP"):
        table.add_column(col, justify="left" if col in ("cell", "id", "weights") else "right")
    flops = [cell_flops(c) for c in chosen]
    for i, (c, f) in enumerate(zip(chosen, flops, strict=True), 1):
        t = c.train
        table.add_row(
            str(i),
            c.name,
            c.id,
            str(t.seed) if c.replicate is not None else "",
            str(c.weights),
            str(t.epochs),
            f"{t.effective_lr:g}",
            str(t.batch_size),
            str(t.image_size or "auto"),
            f"{t.subset:g}" if t.subset else "",
            f"{f / 1e12:,.1f}" if f is not None else "?",
        )
    console.print(table)
    known = [f for f in flops if f is not None]
    unknown = len(flops) - len(known)
    total = sum(known)
    configs = len({c.config_id for c in chosen})
    seeds = sorted({c.replicate for c in chosen if c.replicate is not None})
    if seeds:  # replicated: configurations x seeds (a replicated cell: source is named per seed)
        console.print(f"{configs} configurations × seeds {seeds} = {len(chosen)} cells", highlight=False)
    console.print(
        f"{len(chosen)} cells, about {total / 1e12:,.1f} TFLOP of training ≈ {gpu_hours(total):,.2f} GPU-hours "
        f"on an H100 at the ~44 TFLOP/s tlbench sustains (ResNet-50 @ 224, measured)"
        + (f"; {unknown} cells of unknown size not counted" if unknown else ""),
        highlight=False,
    )
