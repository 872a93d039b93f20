"""``tlbench validate``: resolve every input a grid names, without training anything.

Names were already checked when the spec loaded; here the datasets are opened (no download),
weight files looked up, and each distinct backbone built once with random weights and its
strategy's phases applied, so a bad ``freeze_stages`` or head shows up before a long run does.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from tlbench.grid import Cell
from tlbench.spec import WeightsSpec


def validate_cells(
    cells: list[Cell],
    *,
    data_dir: str | Path | None = None,
    build: bool = True,
    console: Console | None = None,
) -> list[str]:
    from tlbench.data import DatasetNotFoundError, load_dataset
    from tlbench.data.catalog import dataset_meta
    from tlbench.models import WeightsError, build_model, read_state_dict
    from tlbench.strategies import apply_phase, phases_for

    say = console.print if console else (lambda *a, **k: None)
    problems: list[str] = []
    classes: dict[str, int] = {}

    seen_data: set[tuple] = set()
    for c in cells:
        key = (c.dataset.name, tuple(sorted(c.dataset.params.items(), key=str)))
        if key in seen_data:
            continue
        seen_data.add(key)
        try:
            ds = load_dataset(c.dataset.name, params=c.dataset.params, data_dir=data_dir, download=False)
        except DatasetNotFoundError as err:
            # not a problem of the grid: the run (or `tlbench prefetch`) downloads it, or the user
            # places it by hand where the message says (a dataset torchvision cannot download)
            hand = dataset_meta(c.dataset.name).fetch == "manual"
            fix = f"to be placed by hand: {err}" if hand else "to be downloaded: `tlbench prefetch` gets it"
            say(f"[yellow]·[/] dataset {c.labels['dataset']} is not here yet, {fix}", highlight=False)
            continue
        except Exception as err:
            problems.append(f"dataset {c.labels['dataset']}: {type(err).__name__}: {err}")
            continue
        classes[c.dataset.name] = ds.num_classes
        say(f"[green]✓[/] dataset {c.labels['dataset']}: {ds.sizes()} from {ds.source}", highlight=False)

    seen_weights: set[str] = set()
    for c in cells:
        if c.weights.kind == "file" and c.weights.value not in seen_weights:
            seen_weights.add(c.weights.value)
            try:
                read_state_dict(Path(c.weights.value).expanduser())
                say(f"[green]✓[/] weights {c.weights.value}", highlight=False)
            except WeightsError as err:
                problems.append(f"backbone {c.labels['backbone']}: {err}")
        elif c.weights.kind == "hub" and str(c.weights) + c.backbone.name not in seen_weights:
            seen_weights.add(str(c.weights) + c.backbone.name)
            say(f"[cyan]·[/] weights for {c.backbone.name} come from the Hugging Face hub", highlight=False)

    if build:
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
                for phase in phases_for(c.strategy.name, c.strategy.params, c.train):
                    trainable, total = apply_phase(model, phase)
                    if trainable == 0:
                        raise ValueError(f"phase {phase.name} leaves nothing to train")
                say(f"[green]✓[/] {c.backbone.name} + {c.labels['strategy']} builds", highlight=False)
            except Exception as err:
                problems.append(f"{c.name}: {type(err).__name__}: {err}")
    return problems
