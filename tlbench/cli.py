"""The ``tlbench`` command: ls, validate, prefetch, run, tune, report, ui, dashboard.

Bad input (a malformed grid, an unknown name, a missing file) prints one clear message and exits
with status 2, without a traceback.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from tlbench.interrupts import sigterm_as_interrupt
from tlbench.spec import SpecError

# piped output (files, CI logs) gets wide tables instead of rich's 80-column default
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200)
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(code)


def _clean_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can fix into one message and exit code 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from tlbench.data import DatasetNotFoundError
        from tlbench.models import WeightsError
        from tlbench.registry import UnknownNameError
        from tlbench.tune import TuneError

        try:
            return fn(*args, **kwargs)
        except SpecError as err:
            _fail(str(err))
        except (DatasetNotFoundError, WeightsError, UnknownNameError, TuneError) as err:
            _fail(str(err))

    return wrapper


grid_option = click.option(
    "--grid", "-g", required=True, help="grid name (benchmarks/grids/NAME.yaml) or path to a .yaml file"
)
select_option = click.option(
    "--select",
    "-s",
    multiple=True,
    help="only cells whose name matches this glob (repeatable), e.g. 'digits/*/finetune/*'",
)
tracking_option = click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    default=None,
    help="MLflow store; default sqlite under ./mlruns",
)
storage_option = click.option(
    "--storage",
    envvar="TLBENCH_OPTUNA_STORAGE",
    default=None,
    help="Optuna storage: a journal file (default ./mlruns/optuna.journal) or postgresql://... / sqlite:///...",
)
data_dir_option = click.option(
    "--data-dir", envvar="TLBENCH_DATA", default=None, help="dataset cache (default ~/.cache/tlbench/data)"
)


def _load(
    grid: str, select: tuple[str, ...], *, check_backbones: bool = True
) -> tuple[Any, list[Any], list[Any]]:
    from tlbench.grid import expand
    from tlbench.grid import select as select_cells
    from tlbench.spec import load_grid, resolve_grid_path

    path = resolve_grid_path(grid)
    spec = load_grid(path, check_backbones=check_backbones)
    cells = expand(spec, path)
    chosen = select_cells(cells, select)
    if select and not chosen:
        _fail(f"--select {' '.join(select)} matches none of the {len(cells)} cells of grid {spec.name!r}")
    return spec, cells, chosen


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tlbench")
def main() -> None:
    """tlbench: declare a transfer-learning grid, get every cell trained, tracked and compared."""


@main.command("ls")
@grid_option
@select_option
@_clean_errors
def ls_cmd(grid: str, select: tuple[str, ...]) -> None:
    """List the cells of a grid."""
    from tlbench.estimate import cell_flops, gpu_hours

    spec, cells, chosen = _load(grid, select, check_backbones=False)
    table = Table(title=f"grid {spec.name}: {len(chosen)} of {len(cells)} cells")
    for col in ("#", "cell", "id", "weights", "epochs", "lr", "batch", "size", "subset", "TFLOP"):
        table.add_column(col, justify="left" if col in ("cell", "id", "weights") else "right")
    flops = [cell_flops(c) for c in chosen]
    for i, (c, f) in enumerate(zip(chosen, flops, strict=True), 1):
        t = c.train
        table.add_row(
            str(i),
            c.name,
            c.id,
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
    console.print(
        f"{len(chosen)} cells, about {total / 1e12:,.1f} TFLOP of training ≈ {gpu_hours(total):,.2f} GPU-hours "
        f"on an H100 at the ~44 TFLOP/s tlbench sustains (ResNet-50 @ 224, measured)"
        + (f"; {unknown} cells of unknown size not counted" if unknown else ""),
        highlight=False,
    )


@main.command()
@grid_option
@select_option
@data_dir_option
@click.option(
    "--build/--no-build", default=True, help="instantiate each backbone (random init) to check it builds"
)
@_clean_errors
def validate(grid: str, select: tuple[str, ...], data_dir: str | None, build: bool) -> None:
    """Check that every entry of a grid resolves, without training."""
    from tlbench.prefetch import status
    from tlbench.validate import validate_cells

    spec, cells, chosen = _load(grid, select)
    _print_inputs(status(chosen, data_dir), f"grid {spec.name}: inputs (local, or to be downloaded)")
    problems = validate_cells(chosen, data_dir=data_dir, build=build, console=console)
    if problems:
        for p in problems:
            err_console.print(f"[red]✗[/] {p}", highlight=False)
        _fail(f"grid {spec.name!r}: {len(problems)} problem(s)")
    console.print(f"[green]grid {spec.name!r} is valid:[/] {len(chosen)} cells")


@main.command()
@grid_option
@select_option
@data_dir_option
@_clean_errors
def prefetch(grid: str, select: tuple[str, ...], data_dir: str | None) -> None:
    """Download every dataset and pretrained weight a grid needs (run it where there is internet)."""
    from tlbench.prefetch import fetch

    spec, _, chosen = _load(grid, select)
    results = fetch(chosen, data_dir)
    _print_inputs(results, f"grid {spec.name}: inputs")
    failed = [r for r in results if not r.ok]
    if failed:
        _fail(f"{len(failed)} input(s) could not be fetched (see above)", code=1)


def _print_inputs(items: list[Any], title: str) -> None:
    table = Table(title=title)
    for col in ("kind", "name", "state", "where"):
        table.add_column(col)
    colours = {
        "local": "green",
        "fetched": "green",
        "generated": "cyan",
        "bundled": "cyan",
        "download": "yellow",
    }
    for it in items:
        table.add_row(it.kind, it.name, f"[{colours.get(it.state, 'red')}]{it.state}[/]", it.where)
    console.print(table)


@main.command()
@grid_option
@select_option
@tracking_option
@data_dir_option
@click.option("--force", is_flag=True, help="re-run cells that already have a FINISHED run")
@click.option("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
@click.option(
    "--compile", "compile_", is_flag=True, help="torch.compile each model (worth it for long GPU cells)"
)
@click.option(
    "--feature-cache/--no-feature-cache",
    default=True,
    show_default=True,
    help="train frozen-backbone heads on features computed once (deterministic augmentation only)",
)
@click.option(
    "--workers",
    "-w",
    default="1",
    show_default=True,
    help="worker processes: N, or auto = one per visible GPU (1 = this process, no pool)",
)
@click.option(
    "--cells-per-gpu",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="pack k small cells per GPU",
)
@click.option(
    "--retries",
    default=2,
    show_default=True,
    type=click.IntRange(min=0),
    help="re-runs of a cell whose worker died",
)
@click.option(
    "--backend",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="ray: each cell a Ray task on a cluster (pip install 'tlbench[ray]')",
)
@click.option(
    "--address", default=None, help="Ray cluster: auto, HOST:PORT or ray://HOST:10001 (default auto)"
)
@click.option(
    "--checkpoint-dir",
    envvar="TLBENCH_CHECKPOINTS",
    default=None,
    help="per-epoch checkpoints (default ./mlruns/checkpoints; a shared path for several machines)",
)
@click.option(
    "--tuned",
    is_flag=True,
    help="train each cell with its Optuna study's best lr and batch size (a 'tuned' run beside the plain one)",
)
@storage_option
@_clean_errors
def run(
    grid: str,
    select: tuple[str, ...],
    tracking_uri: str | None,
    data_dir: str | None,
    force: bool,
    device: str,
    compile_: bool,
    feature_cache: bool,
    workers: str,
    cells_per_gpu: int,
    retries: int,
    backend: str,
    address: str | None,
    checkpoint_dir: str | None,
    tuned: bool,
    storage: str | None,
) -> None:
    """Train every (selected) cell of a grid and track it in MLflow."""
    from tlbench.executor import execute
    from tlbench.grid import with_dependencies
    from tlbench.report import render_summary, summary_frame
    from tlbench.tracking import Tracker

    spec, cells, chosen = _load(grid, select)
    sigterm_as_interrupt()
    todo = with_dependencies(chosen, cells)
    extra = len(todo) - len(chosen)
    tracker = Tracker(tracking_uri)
    exp_id = tracker.experiment_id(spec.name)
    err_console.print(
        f"grid [bold]{spec.name}[/]: {len(todo)} cells"
        + (f" ({extra} added as cell: sources)" if extra else "")
        + f" → MLflow {tracker.uri} (experiment {spec.name!r})",
        highlight=False,
    )
    if workers != "auto" and not (workers.isdigit() and int(workers) >= 1):
        _fail(f"--workers {workers!r}: give a number of workers (1, 2, ...) or auto")
    run_kw: dict[str, Any] = dict(
        backend=backend,
        workers=workers,
        cells_per_gpu=cells_per_gpu,
        retries=retries,
        address=address,
        checkpoint_dir=checkpoint_dir,
        force=force,
        data_dir=data_dir,
        device=device,
        console=err_console,
        grid_file=str(Path(grid)),
        fit_options={"compile": compile_, "cache_features": feature_cache},
    )
    try:
        if tuned:
            outcomes = _run_tuned(chosen, todo, tracker, exp_id, storage, grid, run_kw)
        else:
            outcomes = execute(todo, tracker, exp_id, **run_kw)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted:[/] the current run is marked KILLED; run again to continue")
        sys.exit(130)
    df = summary_frame((o.cell, o.status, o.metrics, o.reason) for o in outcomes)
    render_summary(df, console, title=f"grid {spec.name}")
    failed = [o for o in outcomes if o.status == "FAILED"]
    if failed:
        _fail(f"{len(failed)} of {len(outcomes)} cells failed (reasons above and in MLflow)", code=1)


def _tune_helpers(workers: str, url: str, seed: int | None) -> list[subprocess.Popen[bytes]]:
    """``tune --workers N``: N-1 more ``tlbench tune`` processes with the same arguments on the
    same storage (each pinned to its GPU, or with its share of the CPU cores); studies are shared
    through the storage, so together they run exactly --trials trials per study."""
    from tlbench.executor.pool import plan_slots

    if workers != "auto" and not (workers.isdigit() and int(workers) >= 1):
        _fail(f"--workers {workers!r}: give a number of processes (1, 2, ...) or auto")
    slots = plan_slots(workers)
    if len(slots) <= 1:
        return []
    params = click.get_current_context().params
    args = ["tune", "--grid", params["grid"], "--trials", str(params["trials"]), "--pruner", params["pruner"]]
    for pattern in params["select"]:
        args += ["--select", pattern]
    for key, flag in (("tracking_uri", "--tracking-uri"), ("data_dir", "--data-dir"), ("device", "--device")):
        if params.get(key):
            args += [flag, str(params[key])]
    args += ["--storage", url]
    procs = []
    for i, slot in enumerate(slots[1:], start=1):
        env = {**os.environ, "OMP_NUM_THREADS": str(slot.threads)}
        if slot.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot.gpu
        extra = ["--seed", str(seed + i)] if seed is not None else []  # different proposals per process
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tlbench.cli", *args, *extra], env=env, stdout=subprocess.DEVNULL
            )
        )
    first = slots[0]
    if first.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = first.gpu
    import torch

    torch.set_num_threads(first.threads)
    err_console.print(f"{len(slots)} tuning processes share each study", highlight=False)
    return procs


def _stop_helpers(helpers: list[subprocess.Popen[bytes]]) -> None:
    for h in helpers:
        if h.poll() is None:
            h.send_signal(signal.SIGINT)
    for h in helpers:
        try:
            h.wait(timeout=60)
        except subprocess.TimeoutExpired:
            h.kill()


def _resummarize(summary: Any, url: str) -> Any:
    """The study as all processes left it (this process's summary saw only its own end)."""
    from tlbench.tune import study_status

    return study_status(summary.cell, url) or summary


def _run_tuned(
    chosen: list[Any],
    todo: list[Any],
    tracker: Any,
    exp_id: str,
    storage: str | None,
    grid: str,
    run_kw: dict[str, Any],
) -> list[Any]:
    """``run --tuned``: the ``cell:`` sources as they are, then each cell with its study's best
    lr and batch size, as ``tuned`` runs whose params say where the values came from."""
    from tlbench.dburl import redact
    from tlbench.executor import execute
    from tlbench.tune import best_params, resolve_storage_url, with_hparams

    url = resolve_storage_url(storage)
    tuned_cells, extra, missing = [], {}, []
    for cell in chosen:
        best = best_params(cell, url)
        if best is None:
            missing.append(cell.name)
            continue
        tuned_cells.append(with_hparams(cell, best["lr"], best["batch_size"]))
        extra[cell.id] = {
            "tuned.source": f"optuna study {best['study']} trial {best['trial']}",
            "tuned.storage": redact(url),
            "tuned.study_best_val_acc": f"{best['value']:.6g}",
        }
    if missing:
        err_console.print(
            f"[yellow]{len(missing)} cell(s) have no complete tuning trial in {redact(url)}; skipped[/] "
            f"(tune them: tlbench tune --grid {grid} --select '<glob>' --trials N): "
            + ", ".join(missing[:5]),
            highlight=False,
        )
    if not tuned_cells:
        _fail("no selected cell has a tuning study with a complete trial; run tlbench tune first")
    chosen_ids = {c.id for c in chosen}
    sources = [c for c in todo if c.id not in chosen_ids]
    outcomes = execute(sources, tracker, exp_id, **run_kw) if sources else []
    return outcomes + execute(tuned_cells, tracker, exp_id, variant="tuned", extra_params=extra, **run_kw)


@main.command()
@grid_option
@select_option
@tracking_option
@storage_option
@data_dir_option
@click.option("--trials", "-n", type=click.IntRange(min=1), required=True, help="trials per cell's study")
@click.option(
    "--pruner",
    type=click.Choice(["median", "halving", "hyperband", "none"]),
    default="median",
    show_default=True,
    help="stops hopeless trials early (halving = successive halving)",
)
@click.option(
    "--seed", type=int, default=None, help="sampler seed (leave unset when several processes share a study)"
)
@click.option("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
@click.option(
    "--workers",
    "-w",
    default="1",
    show_default=True,
    help="tuning processes sharing each study: N, or auto = one per visible GPU",
)
@_clean_errors
def tune(
    grid: str,
    select: tuple[str, ...],
    tracking_uri: str | None,
    storage: str | None,
    data_dir: str | None,
    trials: int,
    pruner: str,
    seed: int | None,
    device: str,
    workers: str,
) -> None:
    """Tune lr and batch size of each (selected) cell with an Optuna study of N trials.

    Several processes or machines given the same --storage share each study: together they run
    exactly N trials. An interrupted study continues where it stopped.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tlbench.dburl import redact
    from tlbench.executor import run_cells
    from tlbench.grid import with_dependencies
    from tlbench.tracking import Tracker
    from tlbench.tune import open_storage, resolve_storage_url, search_space, tune_cell

    spec, cells, chosen = _load(grid, select)
    sigterm_as_interrupt()
    url = resolve_storage_url(storage)
    open_storage(url)  # a bad URL fails here, before any training
    helpers = _tune_helpers(workers, url, seed)  # more processes on the same studies
    tracker = Tracker(tracking_uri)
    exp_id = tracker.experiment_id(spec.name)
    reaped = tracker.reap_stale(exp_id)
    if reaped:
        err_console.print(
            f"[yellow]marked {len(reaped)} run(s) KILLED whose process is gone (no heartbeat)[/]"
        )
    err_console.print(
        f"tuning {len(chosen)} cell(s) of grid [bold]{spec.name}[/], {trials} trials each → studies in "
        f"{redact(url)}, runs in MLflow {tracker.uri}",
        highlight=False,
    )
    chosen_ids = {c.id for c in chosen}
    sources = [c for c in with_dependencies(chosen, cells) if c.id not in chosen_ids]
    summaries = []
    try:
        if sources:  # a `cell:` backbone needs its source's checkpoint before any trial
            run_cells(sources, tracker, exp_id, data_dir=data_dir, device=device, console=err_console)
        for cell in chosen:
            space = search_space(cell)
            err_console.print(
                f"[bold]{cell.name}[/]  lr {space['lr'][0]:.2g}..{space['lr'][1]:.2g} (log), "
                f"batch size {list(space['batch_size'])}",
                highlight=False,
            )
            columns = (TextColumn("  trials"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=err_console, transient=True) as progress:
                bar = progress.add_task("trials", total=trials)

                def on_trial(t: Any, done: int, progress: Any = progress, bar: Any = bar) -> None:
                    value = f"val_acc {t.value:.4f}" if t.value is not None else ""
                    params = "  ".join(f"{k} {v:.3g}" for k, v in t.params.items())
                    progress.console.print(
                        f"  trial {t.number:>3}  {t.state.name:<8} {value:<15} {params}", highlight=False
                    )
                    progress.update(bar, completed=done)

                summaries.append(
                    tune_cell(
                        cell,
                        trials=trials,
                        tracker=tracker,
                        experiment_id=exp_id,
                        storage_url=url,
                        pruner=pruner,
                        seed=seed,
                        data_dir=data_dir,
                        device=device,
                        on_trial=on_trial,
                    )
                )
    except KeyboardInterrupt:
        _stop_helpers(helpers)
        err_console.print(
            "[yellow]interrupted:[/] the current trial is failed and queued again; "
            "run the same command to continue the study"
        )
        sys.exit(130)
    for h in helpers:
        if h.wait() != 0:
            err_console.print(f"[yellow]a helper tuning process exited with {h.returncode}[/]")
    if helpers:  # the summary after every process is done
        summaries = [_resummarize(s, url) for s in summaries]
    table = Table(title=f"tuning: grid {spec.name}")
    for col in ("cell", "complete", "pruned", "failed", "best val_acc", "best lr", "best batch", "study"):
        table.add_column(col, overflow="fold")
    for s in summaries:
        table.add_row(
            s.cell.name,
            str(s.complete),
            str(s.pruned),
            str(s.failed),
            f"{s.best_value:.4f}" if s.best_value is not None else "-",
            f"{s.best_params['lr']:.3g}" if s.best_params else "-",
            str(s.best_params.get("batch_size", "-")),
            s.study,
        )
    console.print(table)
    err_console.print(f"train with the best values: tlbench run --grid {grid} --tuned", highlight=False)


@main.command()
@grid_option
@select_option
@tracking_option
@click.option(
    "--format", "formats", default="md,html,csv", show_default=True, help="comma list of md, csv, html"
)
@click.option("--out", "out_dir", default=None, help="output folder (default reports/GRID)")
@click.option("--rows", default="dataset,backbone", show_default=True, help="axes down the pivot table")
@click.option("--cols", default="strategy", show_default=True, help="axes across the pivot table")
@click.option(
    "--mlflow/--no-mlflow", "to_mlflow", default=True, help="attach the report to the grid's parent run"
)
@_clean_errors
def report(
    grid: str,
    select: tuple[str, ...],
    tracking_uri: str | None,
    formats: str,
    out_dir: str | None,
    rows: str,
    cols: str,
    to_mlflow: bool,
) -> None:
    """Comparison tables and plots of a grid's cells, from the MLflow store."""
    from tlbench import report as rp
    from tlbench.tracking import Tracker

    fmts = [f.strip() for f in formats.split(",") if f.strip()]
    bad = [f for f in fmts if f not in ("md", "csv", "html")]
    if bad:
        _fail(f"--format {bad[0]!r}: choose from md, csv, html")
    row_axes, col_axes = [a.strip() for a in rows.split(",")], [a.strip() for a in cols.split(",")]
    for a in row_axes + col_axes:
        if a not in rp.AXES:
            _fail(f"--rows/--cols: unknown axis {a!r} (valid: {', '.join(rp.AXES)})")
    spec, _, chosen = _load(grid, select, check_backbones=False)
    tracker = Tracker(tracking_uri)
    exp_id = tracker.experiment_id(spec.name)
    out = Path(out_dir) if out_dir else Path("reports") / spec.name
    rep = rp.build(chosen, tracker, exp_id, grid=spec.name, rows=row_axes, cols=col_axes, out=out)
    files = rp.write(rep, out, fmts)
    rp.render_pivot(rep, console)
    if not rep.reported.empty:
        rp.render_frame(rep.reported, console, "reported elsewhere vs tlbench")
    if not rep.tuned.empty:
        rp.render_frame(rep.tuned, console, "tuned vs untuned")
    rp.render_summary(rep.cells, console, title=f"grid {spec.name}: {len(rep.cells)} cells")
    if to_mlflow:
        run_id = rp.log_to_mlflow(tracker, exp_id, spec.name, files)
        err_console.print(f"report attached to MLflow run {run_id} (grid:{spec.name})", highlight=False)
    err_console.print(f"wrote {', '.join(str(f) for f in files if f.suffix != '.png')}", highlight=False)


@main.command()
@tracking_option
@click.option("--host", default="127.0.0.1", show_default=True, help="bind address (0.0.0.0 exposes it)")
@click.option("--port", default=5000, show_default=True, type=int)
def ui(tracking_uri: str | None, host: str, port: int) -> None:
    """Start the MLflow UI over the tracking store (on 127.0.0.1 unless --host)."""
    from tlbench.tracking import DEFAULT_STORE_DIR, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    mlflow_bin = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    cmd = [mlflow_bin, "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    if uri.startswith("sqlite:///"):
        cmd += ["--default-artifact-root", (DEFAULT_STORE_DIR / "artifacts").resolve().as_uri()]
    err_console.print(f"MLflow UI on http://{host}:{port} over {uri}", highlight=False)
    try:
        sys.exit(subprocess.call(cmd, env=os.environ.copy()))
    except KeyboardInterrupt:
        sys.exit(0)


@main.command()
@click.option(
    "--backend-store-uri",
    envvar="TLBENCH_SERVER_STORE",
    required=True,
    help="database of runs: postgresql://USER:PASS@HOST:5432/DB (pip install 'tlbench[postgres]')",
)
@click.option(
    "--artifacts-destination",
    default=None,
    help="where the server keeps artifacts (default ./mlruns/server-artifacts; or s3://...)",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="bind address (0.0.0.0 lets other machines in)"
)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1), help="server processes")
@click.option(
    "--allowed-hosts", default=None, help="Host headers MLflow accepts when exposed, e.g. 'mlflow.lan:5000'"
)
def server(
    backend_store_uri: str,
    artifacts_destination: str | None,
    host: str,
    port: int,
    workers: int,
    allowed_hosts: str | None,
) -> None:
    """Start an MLflow tracking server on a shared database, for many machines (127.0.0.1 unless --host)."""
    from tlbench.server import describe, server_command

    try:
        cmd = server_command(
            backend_store_uri,
            host=host,
            port=port,
            artifacts_destination=artifacts_destination,
            workers=workers,
            allowed_hosts=allowed_hosts,
        )
    except ValueError as err:
        _fail(str(err))
    err_console.print(f"MLflow server on http://{host}:{port}: {describe(cmd)}", highlight=False)
    err_console.print(
        f"workers: tlbench run --grid NAME --tracking-uri http://{host}:{port}", highlight=False
    )
    try:
        sys.exit(subprocess.call(cmd, env=os.environ.copy()))
    except KeyboardInterrupt:
        sys.exit(0)


@main.command()
@storage_option
@click.option("--host", default="127.0.0.1", show_default=True, help="bind address (0.0.0.0 exposes it)")
@click.option("--port", default=8080, show_default=True, type=int)
@_clean_errors
def dashboard(storage: str | None, host: str, port: int) -> None:
    """Start optuna-dashboard over the tuning studies (on 127.0.0.1 unless --host)."""
    from optuna_dashboard import run_server

    from tlbench.dburl import redact
    from tlbench.tune import open_storage, resolve_storage_url

    url = resolve_storage_url(storage)
    store = open_storage(url)
    err_console.print(f"optuna-dashboard on http://{host}:{port} over {redact(url)}", highlight=False)
    try:
        run_server(store, host=host, port=port)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
