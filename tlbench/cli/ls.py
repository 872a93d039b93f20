"""``tlbench ls``: the cells of a grid, their ids and settings, and what training them costs."""

from __future__ import annotations

import click
from rich.table import Table

from tlbench.cli.common import clean_errors, console, grid_option, load, select_option, tracking_option


@click.command("ls")
@grid_option
@select_option
@tracking_option
@clean_errors
def ls_cmd(grid: str, select: tuple[str, ...], tracking_uri: str | None) -> None:
    """List the cells of a grid, with what training them costs: FLOPs, and with --tracking-uri
    the time at the throughput finished runs in that store measured (per backbone, input size,
    strategy and device)."""
    from tlbench.preflight.estimate import cell_flops, gpu_hours

    spec, cells, chosen = load(grid, select, check_backbones=False)
    measured, device = _measured(tracking_uri)
    table = Table(title=f"grid {spec.name}: {len(chosen)} of {len(cells)} cells")
    columns = ["#", "cell", "id", "seed", "weights", "epochs", "lr", "batch", "size", "subset", "TFLOP"]
    for col in [*columns, *([f"est. min ({device})"] if measured else [])]:
        table.add_column(col, justify="left" if col in ("cell", "id", "weights") else "right")
    flops = [cell_flops(c) for c in chosen]
    seconds = _seconds(chosen, measured, device)
    for i, (c, f) in enumerate(zip(chosen, flops, strict=True), 1):
        t = c.train
        table.add_row(
            str(i),
            c.name,
            c.id,
            str(t.seed) if c.replicate is not None else "",
            str(c.weights),
            str(t.epochs),
            "—" if "lr" in c.ignored else f"{t.effective_lr:g}",  # an L-BFGS probe has neither
            "—" if "batch_size" in c.ignored else str(t.batch_size),
            str(t.image_size or "auto"),
            f"{t.subset:g}" if t.subset else "",
            f"{f / 1e12:,.1f}" if f is not None else "?",
            *([f"{seconds[i - 1] / 60:,.1f}" if seconds[i - 1] is not None else "FLOPs"] if measured else []),
        )
    console.print(table)
    once = {c.id: f for c, f in zip(chosen, flops, strict=True)}  # cells sharing an id train once
    known = [f for f in once.values() if f is not None]
    unknown = len(once) - len(known)
    total = sum(known)
    configs = len({c.config_id for c in chosen})
    seeds = sorted({c.replicate for c in chosen if c.replicate is not None})
    if seeds:  # replicated: configurations x seeds (a replicated cell: source is named per seed)
        console.print(f"{configs} configurations × seeds {seeds} = {len(chosen)} cells", highlight=False)
    if len(once) < len(chosen):
        console.print(
            f"{len(chosen) - len(once)} cells have the id of another (identical settings, e.g. an "
            "L-BFGS probe under each optimizer): trained once, counted once below",
            highlight=False,
        )
    console.print(
        f"{len(chosen)} cells, about {total / 1e12:,.1f} TFLOP of training ≈ {gpu_hours(total):,.2f} GPU-hours "
        f"on an H100 at the ~44 TFLOP/s tlbench sustains (ResNet-50 @ 224, measured)"
        + (f"; {unknown} cells of unknown size not counted" if unknown else ""),
        highlight=False,
    )
    if measured:
        timed = [x for x in seconds if x is not None]
        console.print(
            f"{len(timed)} of {len(chosen)} cells at the throughput measured in {tracking_uri} "
            f"({device}): ≈ {sum(timed) / 3600:,.2f} h on one {device} worker; the other "
            f"{len(chosen) - len(timed)} by the FLOP model above",
            highlight=False,
        )


def _measured(tracking_uri: str | None) -> tuple[dict, str]:
    """Seconds per training image-epoch measured by the store's finished runs, and their device."""
    if not tracking_uri:
        return {}, "cpu"
    from tlbench.preflight.throughput import main_device, rates, store_runs
    from tlbench.tracking import Tracker

    runs = store_runs(Tracker(tracking_uri))
    return rates(runs), main_device(runs)


def _seconds(cells: list, measured: dict, device: str) -> list[float | None]:
    from tlbench.preflight.estimate import train_images
    from tlbench.preflight.throughput import cell_seconds

    return [cell_seconds(c, measured, device, train_images(c)) for c in cells] if measured else []
