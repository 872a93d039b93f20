"""``tlbench ls``: the cells of a grid, their ids and settings, and what training them costs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from rich.table import Table

from tlbench.cli.common import clean_errors, console, grid_option, load, select_option, tracking_option

if TYPE_CHECKING:
    from tlbench.preflight.throughput import Estimate, Estimator


@click.command("ls")
@grid_option
@select_option
@tracking_option
@clean_errors
def ls_cmd(grid: str, select: tuple[str, ...], tracking_uri: str | None) -> None:
    """List the cells of a grid, with what training them costs: FLOPs, and with --tracking-uri
    the minutes the finished runs in that store predict, with an ~80 % prediction interval.

    Per backbone, input size, strategy and device, the store's runs give seconds = fixed +
    per epoch x epochs + per image-epoch x train images x epochs (fitted where the key has runs
    of different sizes, else the ratio of its one size), scaled for the cell's augmentation,
    optimizer and batch size; the interval is from how far the key's runs fall from their own
    leave-one-out predictions. Cells with no run of their key say FLOPs: the FLOP model above."""
    from tlbench.preflight.estimate import cell_flops, gpu_hours

    spec, cells, chosen = load(grid, select, check_backbones=False)
    measured, device = _measured(tracking_uri)
    table = Table(title=f"grid {spec.name}: {len(chosen)} of {len(cells)} cells")
    columns = ["#", "cell", "id", "seed", "weights", "epochs", "lr", "batch", "size", "subset", "TFLOP"]
    for col in [*columns, *([f"est. min ({device}, 80 %)"] if measured else [])]:
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
            *([_minutes(seconds[i - 1])] if measured else []),
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
    _say_same_settings(chosen)
    console.print(
        f"{len(chosen)} cells, about {total / 1e12:,.1f} TFLOP of training ≈ {gpu_hours(total):,.2f} GPU-hours "
        f"on an H100 at the ~44 TFLOP/s tlbench sustains (ResNet-50 @ 224, measured)"
        + (f"; {unknown} cells of unknown size not counted" if unknown else ""),
        highlight=False,
    )
    if measured:
        _say_estimates(chosen, seconds, device, tracking_uri)


def _say_same_settings(chosen: list) -> None:
    """Which cells coincide (one id, one run), so a count of runs below the cells is explained."""
    from tlbench.cells.duplicates import runs_needed, runs_text, said, same_settings

    groups = same_settings(chosen)
    if not groups:
        return
    console.print(
        f"{len(chosen)} cells make {runs_text(runs_needed(chosen))}: cells whose settings coincide share "
        "one id and one run (counted once below)",
        highlight=False,
    )
    for line in said(groups):
        console.print(f"  {line}", highlight=False, soft_wrap=True)


def _say_estimates(chosen: list, seconds: list, device: str, tracking_uri: str | None) -> None:
    """The measured estimates' total, its interval and where the estimates come from."""
    timed = [e for e in seconds if e is not None]
    trained = list({c.id: e for c, e in zip(chosen, seconds, strict=True) if e is not None}.values())
    lows, highs = [e.low for e in trained], [e.high for e in trained]
    span = (
        f", 80 % interval {_num(sum(x or 0.0 for x in lows) / 3600)}–{_num(sum(x or 0.0 for x in highs) / 3600)} h "
        "(the cells' bounds summed: as if all erred alike)"
        if trained and None not in lows and None not in highs
        else ""
    )
    fitted = sum(e.fitted for e in timed)
    if not timed:
        console.print(
            f"no cell's key (backbone, input size, strategy, device) has a finished run in {tracking_uri}: "
            f"all {len(chosen)} by the FLOP model above",
            highlight=False,
        )
        return
    console.print(
        f"{len(timed)} of {len(chosen)} cells from the runs in {tracking_uri} ({device}; {fitted} fitted over "
        f"runs of different sizes, {len(timed) - fitted} at the ratio of the one size their key has run): "
        f"≈ {_num(sum(e.seconds for e in trained) / 3600)} h{span} on one {device} worker; the other "
        f"{len(chosen) - len(timed)} by the FLOP model above",
        highlight=False,
    )


def _measured(tracking_uri: str | None) -> tuple[Estimator | None, str]:
    """The estimator on the store's finished runs (None without a store, or runs), and their device."""
    if not tracking_uri:
        return None, "cpu"
    from tlbench.preflight.throughput import Estimator, main_device, measurements, store_runs
    from tlbench.tracking import Tracker

    runs = store_runs(Tracker(tracking_uri))
    found = measurements(runs)
    return (Estimator(found) if found else None), main_device(runs)


def _seconds(cells: list, measured: Estimator | None, device: str) -> list[Estimate | None]:
    from tlbench.preflight.estimate import train_images

    return [measured.cell(c, device, train_images(c)) for c in cells] if measured else []


def _minutes(e: Estimate | None) -> str:
    """An estimate in minutes with its interval, or FLOPs where the store has no run of its key."""
    if e is None:
        return "FLOPs"
    if e.low is None or e.high is None:
        return _num(e.seconds / 60)
    return f"{_num(e.seconds / 60)} ({_num(e.low / 60)}–{_num(e.high / 60)})"


def _num(x: float) -> str:
    """Two significant digits below 10 (0.062, 1.4), whole numbers above."""
    return f"{x:,.0f}" if x >= 10 else f"{x:.2g}" if x >= 0.001 else "0"
