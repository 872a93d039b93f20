"""Tuning a grid's cells (``tlbench tune``) and training them with what was found (``run --tuned``).

``tune_cells`` runs each selected cell's study in this process and, with ``--workers N``, in
N-1 helper processes started with the same arguments on the same storage: the studies are shared
through the storage, so together they run exactly ``--trials`` trials per study.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tlbench.cells import Cell
from tlbench.dburl import redact
from tlbench.executor import RunOptions, execute
from tlbench.executor.policy import reap_stale_runs
from tlbench.tracking import Tracker
from tlbench.tune.results import StudySummary, best_params, study_status
from tlbench.tune.space import search_space, with_hparams
from tlbench.tune.storage import TuneError
from tlbench.tune.study import tune_cell


def start_helpers(
    workers: str, argv: list[str], seed: int | None, console: Console, env: dict[str, str] | None = None
) -> list[subprocess.Popen[bytes]]:
    """``--workers N``: N-1 more ``tlbench <argv>`` processes, each pinned to its GPU or with its
    share of the CPU cores (this process takes the first slot); ``env`` on top of this one's
    (secrets such as the storage URL: a command line is readable by every user)."""
    from tlbench.executor.pool import plan_slots

    slots = plan_slots(workers)
    if len(slots) <= 1:
        return []
    procs = []
    for i, slot in enumerate(slots[1:], start=1):
        child = {**os.environ, **(env or {}), "OMP_NUM_THREADS": str(slot.threads)}
        if slot.gpu is not None:
            child["CUDA_VISIBLE_DEVICES"] = slot.gpu
        extra = ["--seed", str(seed + i)] if seed is not None else []  # different proposals per process
        cmd = [sys.executable, "-m", "tlbench.cli", *argv, *extra]
        procs.append(subprocess.Popen(cmd, env=child, stdout=subprocess.DEVNULL))
    first = slots[0]
    if first.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = first.gpu
    import torch

    torch.set_num_threads(first.threads)
    console.print(f"{len(slots)} tuning processes share each study", highlight=False)
    return procs


def stop_helpers(helpers: list[subprocess.Popen[bytes]]) -> None:
    for h in helpers:
        if h.poll() is None:
            h.send_signal(signal.SIGINT)
    for h in helpers:
        try:
            h.wait(timeout=60)
        except subprocess.TimeoutExpired:
            h.kill()


def _trial_printer(progress: Progress, bar: Any) -> Callable[[Any, int], None]:
    def on_trial(t: Any, done: int) -> None:
        value = f"val_acc {t.value:.4f}" if t.value is not None else ""
        params = "  ".join(f"{k} {v:.3g}" for k, v in t.params.items())
        progress.console.print(
            f"  trial {t.number:>3}  {t.state.name:<8} {value:<15} {params}", highlight=False
        )
        progress.update(bar, completed=done)

    return on_trial


def split_untunable(cells: list[Cell]) -> tuple[list[Cell], list[Cell]]:
    """(cells a study tunes, cells it cannot): an L-BFGS probe has no lr or batch size, its sweep
    over the L2 strength on validation is its tuning."""
    from tlbench.catalog.strategies import lbfgs_probe

    lbfgs = [c for c in cells if lbfgs_probe(c.strategy.name, c.strategy.params) is not None]
    return [c for c in cells if c not in lbfgs], lbfgs


def say_untunable(cells: list[Cell], console: Console, then: str = "skipped") -> None:
    if cells:
        names = ", ".join(c.config_name or c.name for c in one_per_configuration(cells)[:5])
        console.print(
            f"[yellow]{len(one_per_configuration(cells))} configuration(s) not tuned[/] ({then}): "
            f"linear_probe with solver lbfgs has no lr or batch size (its L2 sweep on val is its "
            f"tuning): {names}",
            highlight=False,
        )


def one_per_configuration(cells: list[Cell]) -> list[Cell]:
    """One cell per configuration (its first replicate): a study tunes the configuration, and its
    best values then apply to every replicate."""
    seen: set[str] = set()
    out = []
    for c in cells:
        key = c.config_id or c.id
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def tune_cells(
    chosen: list[Cell],
    sources: list[Cell],
    *,
    tracker: Tracker,
    options: RunOptions,
    trials: int,
    pruner: str,
    seed: int | None,
    storage_url: str,
    helpers: list[subprocess.Popen[bytes]],
    console: Console,
) -> list[StudySummary]:
    """Each cell's study to ``trials`` trials (its ``cell:`` source trained first); trial runs
    whose process died (a killed tuning process) are marked KILLED first, as ``run`` does."""
    reap_stale_runs(tracker, options.experiment_id, console.print)
    if sources:  # a `cell:` backbone needs its source's checkpoint before any trial
        execute(sources, tracker, options, console=console)
    summaries = []
    for cell in one_per_configuration(chosen):
        space = search_space(cell)
        console.print(
            f"[bold]{cell.name}[/]  lr {space['lr'][0]:.2g}..{space['lr'][1]:.2g} (log), "
            f"batch size {list(space['batch_size'])}",
            highlight=False,
        )
        columns = (TextColumn("  trials"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            bar = progress.add_task("trials", total=trials)
            summaries.append(
                tune_cell(
                    cell,
                    trials=trials,
                    tracker=tracker,
                    experiment_id=options.experiment_id,
                    storage_url=storage_url,
                    pruner=pruner,
                    seed=seed,
                    data_dir=options.data_dir,
                    device=options.device,
                    fit_options=options.fit_options(),
                    on_trial=_trial_printer(progress, bar),
                )
            )
    for h in helpers:
        if h.wait() != 0:
            console.print(f"[yellow]a helper tuning process exited with {h.returncode}[/]")
    if helpers:  # the summary after every process is done (this one saw only its own end)
        summaries = [study_status(s.cell, storage_url) or s for s in summaries]
    return summaries


def tuned_cells(
    chosen: list[Cell], storage_url: str
) -> tuple[list[Cell], dict[str, dict[str, Any]], list[str]]:
    """Each cell with its study's best lr and batch size, the params saying where they came
    from (by cell id), and the names of cells without a complete trial."""
    out, params, missing = [], {}, []
    for cell in chosen:
        best = best_params(cell, storage_url)
        if best is None:
            missing.append(cell.name)
            continue
        out.append(with_hparams(cell, best["lr"], best["batch_size"]))
        params[cell.id] = {
            "tuned.source": f"optuna study {best['study']} trial {best['trial']}",
            "tuned.storage": redact(storage_url),
            "tuned.study_best_val_acc": f"{best['value']:.6g}",
        }
    return out, params, missing


def run_tuned(
    chosen: list[Cell],
    todo: list[Cell],
    tracker: Tracker,
    options: RunOptions,
    storage_url: str,
    grid: str,
    console: Console,
    **backend: Any,
) -> list[Any]:
    """``run --tuned``: the ``cell:`` sources as they are, then each cell with its study's best
    lr and batch size, as ``tuned`` runs whose params say where the values came from."""
    import dataclasses

    chosen, untunable = split_untunable(chosen)
    say_untunable(untunable, console, then="run as they are")
    cells, params, missing = tuned_cells(chosen, storage_url)
    if missing:
        console.print(
            f"[yellow]{len(missing)} cell(s) have no complete tuning trial in {redact(storage_url)}; skipped[/] "
            f"(tune them: tlbench tune --grid {grid} --select '<glob>' --trials N): "
            + ", ".join(missing[:5]),
            highlight=False,
        )
    if not cells and not untunable:
        raise TuneError("no selected cell has a tuning study with a complete trial; run tlbench tune first")
    chosen_ids = {c.id for c in chosen}
    sources = [c for c in todo if c.id not in chosen_ids]
    outcomes = execute(sources, tracker, options, console=console, **backend) if sources else []
    tuned = dataclasses.replace(options, variant="tuned", extra_params=params)
    return outcomes + (execute(cells, tracker, tuned, console=console, **backend) if cells else [])


def helper_argv(
    grid: str, select: tuple[str, ...], trials: int, pruner: str, **options: str | None
) -> list[str]:
    """The same ``tlbench tune`` command, for the helper processes of ``workers`` N; the storage
    URL (it may hold a database password) goes through their environment instead."""
    argv = ["tune", "--grid", grid, "--trials", str(trials), "--pruner", pruner]
    for pattern in select:
        argv += ["--select", pattern]
    for flag, value in options.items():
        if value:
            argv += [f"--{flag.replace('_', '-')}", str(value)]
    return argv


def tune_selected(
    grid: Any,
    chosen: list[Cell],
    *,
    trials: int,
    select: tuple[str, ...],
    pruner: str,
    seed: int | None,
    tracking_uri: str | None,
    storage: str | None,
    data_dir: str | None,
    device: str,
    workers: str,
    console: Console,
) -> list[StudySummary]:
    """``tlbench tune`` (``api.tune_grid``): a grid's selected configurations, each its study of
    ``trials`` trials, in this process and ``workers``-1 helpers sharing the studies."""
    from tlbench.cells import with_dependencies
    from tlbench.interrupts import sigterm_as_interrupt
    from tlbench.tracking.access import check_access
    from tlbench.tune.storage import STORAGE_ENV, open_storage, resolve_storage_url

    chosen, untunable = split_untunable(chosen)
    say_untunable(untunable, console)
    if not chosen:
        console.print("nothing to tune among the selected cells", highlight=False)
        return []
    sigterm_as_interrupt()
    url = resolve_storage_url(storage)
    open_storage(url)  # a bad URL fails here, before any training
    tracker = Tracker(tracking_uri)
    options = RunOptions(tracker.uri, check_access(tracker, grid.name), data_dir=data_dir, device=device)
    argv = helper_argv(
        str(grid.path), select, trials, pruner, tracking_uri=tracking_uri, data_dir=data_dir, device=device
    )
    helpers = start_helpers(workers, argv, seed, console, {STORAGE_ENV: url})  # the same studies
    console.print(
        f"tuning {len(one_per_configuration(chosen))} configuration(s) of grid [bold]{grid.name}[/], "
        f"{trials} trials each → studies in {redact(url)}, runs in MLflow {tracker.uri}",
        highlight=False,
    )
    chosen_ids = {c.id for c in chosen}
    sources = [c for c in with_dependencies(chosen, grid.cells) if c.id not in chosen_ids]
    try:
        return tune_cells(
            chosen,
            sources,
            tracker=tracker,
            options=options,
            trials=trials,
            pruner=pruner,
            seed=seed,
            storage_url=url,
            helpers=helpers,
            console=console,
        )
    except KeyboardInterrupt:
        stop_helpers(helpers)
        raise
