"""What only a model's structure can tell about a strategy: LoRA's targets exist, VPT has tokens.

Checked before anything trains, for every command that goes on to build models (``load_grid(...,
check_backbones=True)``): each distinct backbone × ``lora``/``vpt`` entry is built once on
PyTorch's meta device (shapes, no memory, no weights), so a typo in ``targets`` or a ``vpt`` on a
ResNet is a grid error naming the entry's key path, not a crash an hour into a run.
"""

from __future__ import annotations

from pathlib import Path

from tlbench.cells import Cell
from tlbench.spec import SpecError, WeightsSpec
from tlbench.spec.schema import GridSpec
from tlbench.spec.scopes import scopes

_STRUCTURAL = {"lora": ".params.targets", "vpt": ""}


def check_adapters(spec: GridSpec, cells: list[Cell], file: Path | str | None) -> None:
    """Raise ``SpecError`` at the first ``lora``/``vpt`` entry its backbone cannot take."""
    seen: set[tuple[str, ...]] = set()
    for c in cells:
        if c.strategy.name not in _STRUCTURAL:
            continue
        key = (c.backbone.name, repr(c.backbone.model_kwargs), c.strategy.name, repr(c.strategy.params))
        if key in seen:
            continue
        seen.add(key)
        try:
            _check(c)
        except ValueError as err:
            raise SpecError(file, _where(spec, c), f"cell {c.name}: {err}") from None


def _check(cell: Cell) -> None:
    import torch

    from tlbench.catalog.strategy_params import LoraParams, VptParams
    from tlbench.models.build import build_model
    from tlbench.models.lora import resolve_targets
    from tlbench.models.prompts import check_tokens

    with torch.device("meta"):
        model = build_model(
            cell.backbone.name,
            num_classes=2,
            weights=WeightsSpec(kind="none"),
            head=cell.train.head,
            model_kwargs=cell.backbone.model_kwargs,
        )
    if cell.strategy.name == "lora":
        resolve_targets(model, LoraParams.model_validate(cell.strategy.params).targets)
    else:
        VptParams.model_validate(cell.strategy.params)
        check_tokens(model, cell.backbone.name)


def _where(spec: GridSpec, cell: Cell) -> str:
    """The key path of the cell's strategy entry (``blocks[1].strategies[2].params.targets``)."""
    for scope in scopes(spec):
        if scope.block != cell.block:
            continue
        for i, entry in enumerate(scope.axes.strategies or ()):
            if (entry.label or entry.name) == cell.labels["strategy"]:
                return f"{scope.where['strategies']}[{i}]{_STRUCTURAL[cell.strategy.name]}"
    return "strategies"
