"""``tlbench validate``: resolve every input a grid names, without training anything.

Names were already checked when the spec loaded; here the datasets are opened (no download),
weight files looked up, and each distinct backbone built once with random weights and its
strategy's phases applied, so a bad ``freeze_stages`` or head shows up before a long run does.
What only exists on this machine (an ``imagefolder`` path, a ``file:`` weight) and is missing is
an error naming the path: no download can fix it. Settings that would fail or do nothing only
late (an ``lp_ft`` without room for its fine-tune phase, a batch larger than the training set,
a warmup or step schedule longer than the run) are reported here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from tlbench.cells import Cell
from tlbench.spec import WeightsSpec


def local_only(cell: Cell) -> str | None:
    """The path of a dataset that exists only where it was put (``imagefolder``), else None."""
    path = cell.dataset.params.get("path")
    return str(path) if path else None


def _check_datasets(cells: list[Cell], data_dir: Any, say: Any, problems: list[str]) -> dict[str, Any]:
    """Open every distinct dataset (no download); label -> its splits, for the checks after."""
    from tlbench.catalog.datasets import dataset_meta
    from tlbench.data import DatasetNotFoundError, load_dataset

    opened: dict[tuple, Any] = {}
    for c in cells:
        key = (c.dataset.name, tuple(sorted(c.dataset.params.items(), key=str)))
        if key in opened:
            continue
        opened[key] = None
        try:
            ds = load_dataset(c.dataset.name, params=c.dataset.params, data_dir=data_dir, download=False)
        except DatasetNotFoundError as err:
            path = local_only(c)
            if path is not None:  # nothing to download: the folder is simply not here
                problems.append(f"dataset {c.labels['dataset']}: path {path!r} does not exist here ({err})")
                continue
            # not a problem of the grid: the run (or `tlbench prefetch`) downloads it, or the user
            # places it by hand where the message says (a dataset torchvision cannot download)
            hand = dataset_meta(c.dataset.name).fetch == "manual"
            fix = f"to be placed by hand: {err}" if hand else "to be downloaded: `tlbench prefetch` gets it"
            say(f"[yellow]·[/] dataset {c.labels['dataset']} is not here yet, {fix}", highlight=False)
            continue
        except Exception as err:
            problems.append(f"dataset {c.labels['dataset']}: {type(err).__name__}: {err}")
            continue
        opened[key] = ds
        say(f"[green]✓[/] dataset {c.labels['dataset']}: {ds.sizes()} from {ds.source}", highlight=False)
    return {c.name: opened[(c.dataset.name, tuple(sorted(c.dataset.params.items(), key=str)))] for c in cells}


def _check_weights(cells: list[Cell], say: Any, problems: list[str]) -> None:
    from tlbench.models.weights import WeightsError, read_state_dict

    seen: set[str] = set()
    for c in cells:
        if c.weights.kind == "file" and c.weights.value not in seen:
            seen.add(c.weights.value)
            path = Path(c.weights.value).expanduser()
            if not path.exists():
                problems.append(
                    f"backbone {c.labels['backbone']}: weight file {str(path)!r} does not exist here"
                )
                continue
            try:
                read_state_dict(path)
                say(f"[green]✓[/] weights {c.weights.value}", highlight=False)
            except WeightsError as err:
                problems.append(f"backbone {c.labels['backbone']}: {err}")
        elif c.weights.kind == "hub" and str(c.weights) + c.backbone.name not in seen:
            seen.add(str(c.weights) + c.backbone.name)
            say(f"[cyan]·[/] weights for {c.backbone.name} come from the Hugging Face hub", highlight=False)


def train_images(cell: Cell, splits: Any) -> int | None:
    """How many images a cell trains on (after subset, shots, train_examples), if known."""
    if splits is None:
        return None
    t = cell.train
    n = len(splits.train)
    if getattr(t, "shots", None):
        return min(n, t.shots * splits.num_classes)
    if getattr(t, "train_examples", None):
        return int(t.train_examples * 0.8)
    return max(1, int(n * t.subset)) if t.subset else n


def setting_findings(cells: list[Cell], splits: dict[str, Any] | None = None) -> tuple[list[str], list[str]]:
    """(errors, warnings) about settings that fail, or silently do less, only once training runs."""
    errors: list[str] = []
    warnings: list[str] = []
    for c in cells:
        t, name = c.train, c.name
        if c.strategy.name == "lp_ft":
            lp = c.strategy.params.get("lp_epochs")
            if t.epochs < 2:
                errors.append(
                    f"{name}: lp_ft needs epochs >= 2 (a probe and a fine-tune phase), got {t.epochs}"
                )
            elif lp is not None and lp >= t.epochs:
                warnings.append(
                    f"{name}: lp_epochs {lp} >= epochs {t.epochs}: the probe is cut to {t.epochs - 1}"
                )
        if c.ignored:  # an L-BFGS probe: no schedule, no batches (recorded as ignored)
            continue
        if t.warmup_epochs and t.warmup_epochs >= t.epochs:
            warnings.append(f"{name}: warmup_epochs {t.warmup_epochs} >= epochs {t.epochs}: lr never peaks")
        if t.schedule == "step" and t.step_size >= t.epochs:
            warnings.append(f"{name}: step_size {t.step_size} >= epochs {t.epochs}: the lr never decays")
        n = train_images(c, (splits or {}).get(name))
        if n is not None and t.batch_size > n:
            warnings.append(
                f"{name}: batch_size {t.batch_size} > its {n} training images: one batch an epoch"
            )
    return errors, warnings


def validate_cells(
    cells: list[Cell],
    *,
    data_dir: str | Path | None = None,
    build: bool = True,
    console: Console | None = None,
) -> list[str]:
    """Every problem found (empty: the grid can run); warnings are printed, not returned."""
    say = console.print if console else (lambda *a, **k: None)
    problems: list[str] = []
    splits = _check_datasets(cells, data_dir, say, problems)
    _check_weights(cells, say, problems)
    errors, warnings = setting_findings(cells, splits)
    problems.extend(errors)
    for w in warnings:
        say(f"[yellow]![/] {w}", highlight=False)
    if build:
        classes = {c.dataset.name: s.num_classes for c in cells if (s := splits.get(c.name)) is not None}
        _check_builds(cells, classes, say, problems)
    return problems


def _check_builds(cells: list[Cell], classes: dict[str, int], say: Any, problems: list[str]) -> None:
    """Each distinct backbone built once (random init) with its strategy's phases applied."""
    from tlbench.catalog.strategies import phases_for
    from tlbench.models.build import add_strategy_modules, build_model
    from tlbench.train.freezing import apply_phase

    seen_models: set[tuple] = set()
    for c in cells:
        key = (
            c.backbone.name,
            repr(c.backbone.model_kwargs),
            repr(c.train.head),
            c.strategy.name,
            repr(c.strategy.params),
        )
        if key in seen_models:
            continue
        seen_models.add(key)
        try:
            model = build_model(
                c.backbone.name,
                num_classes=classes.get(c.dataset.name, 10),
                weights=WeightsSpec(kind="none"),
                head=c.train.head,
                model_kwargs=c.backbone.model_kwargs,
            )
            phases = phases_for(c.strategy.name, c.strategy.params, c.train)
            add_strategy_modules(model, phases, c.backbone.name)
            for phase in phases:
                trainable, total = apply_phase(model, phase)
                if trainable == 0:
                    raise ValueError(f"phase {phase.name} leaves nothing to train")
            say(f"[green]✓[/] {c.backbone.name} + {c.labels['strategy']} builds", highlight=False)
        except Exception as err:
            problems.append(f"{c.name}: {type(err).__name__}: {err}")
