"""Build a timm backbone for a cell: its weights (hub, file, earlier cell or none) and a new head.

The head is always replaced for the target's classes (``heads``); everything else loads strictly
(``weights``), and a file whose keys or shapes do not fit names them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn as nn

import tlbench.models.seed_cnn  # noqa: F401  (registers our own backbones in timm)
from tlbench.catalog.backbones import hub_model_name
from tlbench.catalog.strategies import Phase
from tlbench.models.heads import set_head
from tlbench.models.hub import fail_fast_if_unreachable
from tlbench.models.weights import WeightsError, create_with_filter, load_backbone_weights
from tlbench.spec import HeadConfig, WeightsSpec


def build_model(
    backbone: str,
    *,
    num_classes: int,
    weights: WeightsSpec,
    head: HeadConfig | None = None,
    model_kwargs: dict[str, Any] | None = None,
    weights_file: Path | None = None,
) -> nn.Module:
    """A timm model with ``num_classes`` outputs, initialised as ``weights`` says.

    ``weights_file`` is the resolved file for ``file:`` and ``cell:`` sources (the executor
    resolves a ``cell:`` name to the source run's best checkpoint).
    """
    import timm

    kwargs = dict(model_kwargs or {})
    if weights.kind == "hub":
        name = hub_model_name(backbone, weights.value)
        fail_fast_if_unreachable(name)
        try:
            model = timm.create_model(name, pretrained=True, num_classes=num_classes, **kwargs)
        except Exception as err:
            raise WeightsError(
                f"could not get pretrained weights for {name!r} from the Hugging Face hub ({type(err).__name__}: "
                f"{err}). Without internet, run `tlbench prefetch --grid ...` where there is, then use "
                f"HF_HUB_OFFLINE=1, or point the backbone at a file: weights: file:/path/to/{backbone}.safetensors"
            ) from None
    elif weights.kind in ("file", "cell", "run"):
        model, filter_fn = create_with_filter(backbone, num_classes=num_classes, **kwargs)
        path = weights_file or Path(weights.value).expanduser()
        load_backbone_weights(model, Path(path), filter_fn)
    else:
        model = timm.create_model(backbone, pretrained=False, num_classes=num_classes, **kwargs)
    set_head(model, head or HeadConfig(), num_classes)
    return model


def trained_settings(model: nn.Module) -> dict[str, Any]:
    """What the model trains with where timm's per-family defaults decide, not the grid: its
    classifier dropout, stochastic depth and BatchNorm momentum (recorded as MLflow params)."""
    from timm.layers import DropPath
    from torch.nn.modules.batchnorm import _BatchNorm

    modules = list(model.modules())
    dropouts = sorted({m.p for m in modules if isinstance(m, nn.Dropout) and m.p > 0})
    drop_path = max((float(m.drop_prob) for m in modules if isinstance(m, DropPath)), default=0.0)
    norms = [m for m in modules if isinstance(m, _BatchNorm)]
    return {
        "model.drop_rate": float(getattr(model, "drop_rate", 0.0) or 0.0),
        "model.dropout_layers": ",".join(f"{p:g}" for p in dropouts) or "none",
        "model.drop_path_rate": drop_path,
        "model.batchnorm_layers": len(norms),
        "model.bn_momentum": ",".join(sorted({f"{m.momentum:g}" for m in norms if m.momentum})) or "none",
    }


def data_config(model: nn.Module) -> dict[str, Any]:
    """timm's data config for the model (input size, mean, std, interpolation)."""
    from timm.data import resolve_model_data_config

    return resolve_model_data_config(model)


def add_strategy_modules(model: nn.Module, phases: list[Phase], name: str) -> Any:
    """The LoRA layers or VPT tokens a strategy trains, added once (before the model moves);
    returns peft's tuner for a LoRA model (``models.lora.merge`` folds it back), else None."""
    tuner = None
    for phase in phases:
        if phase.lora is not None:
            from tlbench.models.lora import add_lora

            tuner = add_lora(model, phase.lora)
        if phase.prompts is not None:
            from tlbench.models.prompts import add_prompts

            add_prompts(model, phase.prompts, name)
    return tuner
