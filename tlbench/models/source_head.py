"""The source model's own classifier, kept apart from the cell's new head: what LEEP and NCE
read (the source task's predictions on the target images).

A hub model keeps its pretrained head (ImageNet's, for most tags); a ``file:``/``cell:``/``run:``
checkpoint keeps the head it was trained with, when it has one (a linear layer, or the MLP
``models.heads`` builds); a random init has none. Where there is none the reason is returned, so
the caller can say why it skips the scores that need one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from tlbench.catalog.backbones import hub_model_name
from tlbench.models.heads import classifier_prefixes
from tlbench.models.weights import read_state_dict
from tlbench.spec import WeightsSpec


def source_classifier(
    model: nn.Module,
    backbone: str,
    weights: WeightsSpec,
    weights_file: Path | None,
    model_kwargs: dict[str, Any] | None = None,
) -> tuple[nn.Module | None, str]:
    """(the source classifier on the pre-logits features, "") or (None, why there is none).

    ``model`` is the cell's model (its classifier's name and input width tell where to look)."""
    width = _in_features(model)
    if weights.kind == "none":
        return None, "random init: no source classifier"
    if weights.kind == "hub":
        import timm

        name = hub_model_name(backbone, weights.value)
        source = timm.create_model(name, pretrained=True, **dict(model_kwargs or {}))
        head = source.get_classifier()  # type: ignore[operator]
        if not isinstance(head, nn.Linear):
            return None, f"{name}'s classifier is a {type(head).__name__}, not a linear layer"
        return head, ""
    path = weights_file or Path(weights.value).expanduser()
    return head_from_state(read_state_dict(Path(path)), classifier_prefixes(model), width, str(path))


def _in_features(model: nn.Module) -> int:
    layers = [m for m in model.get_classifier().modules() if isinstance(m, nn.Linear)]  # type: ignore[operator]
    return int(layers[0].in_features) if layers else int(getattr(model, "num_features", 0))


def head_from_state(
    state: dict[str, torch.Tensor], prefixes: tuple[str, ...], width: int, where: str
) -> tuple[nn.Module | None, str]:
    """The classifier a checkpoint keeps under the model's classifier prefix: one linear layer
    (``fc.weight``) or ``models.heads``' MLP (``fc.0.weight``, ``fc.3.weight``, ... with ReLU
    between); None with the reason for anything else."""
    for prefix in prefixes:
        keys = {k.removeprefix(prefix + "."): v for k, v in state.items() if k.startswith(prefix + ".")}
        if not keys:
            continue
        if set(keys) <= {"weight", "bias"} and keys.get("weight", torch.empty(0)).ndim == 2:
            return _linear(keys["weight"], keys.get("bias"), width, where)
        layers = sorted({int(m.group(1)) for k in keys if (m := re.fullmatch(r"(\d+)\.weight", k))})
        if layers and all(keys[f"{i}.weight"].ndim == 2 for i in layers):
            modules: list[nn.Module] = []
            for j, i in enumerate(layers):
                lin, why = _linear(keys[f"{i}.weight"], keys.get(f"{i}.bias"), width, where)
                if lin is None:
                    return None, why
                modules += [lin] + ([nn.ReLU()] if j < len(layers) - 1 else [])
                width = lin.out_features
            return nn.Sequential(*modules), ""
        return None, f"{where}: its classifier ({', '.join(sorted(keys)[:4])}) is not a linear layer or MLP"
    return None, f"{where} keeps no classifier (no {'/'.join(prefixes) or 'head'} keys)"


def _linear(
    weight: torch.Tensor, bias: torch.Tensor | None, width: int, where: str
) -> tuple[nn.Linear | None, str]:
    if width and weight.shape[1] != width:
        return None, f"{where}: its classifier takes {weight.shape[1]} features, the backbone gives {width}"
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        lin.weight.copy_(weight.float())
        if bias is not None:
            lin.bias.copy_(bias.float())
    return lin, ""
