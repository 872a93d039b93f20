"""Which parameters are which part of a timm model: the head, the stages, biases, norms, adapters.

One place names the parts a strategy trains (``train.freezing`` decides *which* train), so "the
first k stages" means the same for a ResNet, a ConvNeXt or a ViT (timm's ``group_matcher``), and
"the biases" the same for BitFit wherever it is asked.
"""

from __future__ import annotations

import torch.nn as nn


def head_parameter_names(model: nn.Module) -> set[str]:
    """Names of the classifier's parameters (whatever timm calls it: fc, head, head.fc, classifier)."""
    head = model.get_classifier()  # type: ignore[operator]
    ids = {id(p) for p in head.parameters()}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def stage_groups(model: nn.Module) -> list[list[str]]:
    """Parameter names per coarse group, in depth order: [stem, stage 1, ..., head/rest]."""
    from timm.models import group_parameters

    groups = group_parameters(model, model.group_matcher(coarse=True))  # type: ignore[operator]
    return [list(names) for _, names in sorted(groups.items())]


def is_norm(module: nn.Module) -> bool:
    """BatchNorm, LayerNorm, GroupNorm and timm's variants (LayerNorm2d, BatchNormAct2d, RmsNorm)."""
    from torch.nn.modules.batchnorm import _NormBase

    if isinstance(module, _NormBase | nn.LayerNorm | nn.GroupNorm):
        return True
    return "Norm" in type(module).__name__ and any(True for _ in module.parameters(recurse=False))


def norm_parameter_names(model: nn.Module) -> set[str]:
    """Every normalisation layer's scale and shift."""
    return {
        f"{m_name}.{p_name}" if m_name else p_name
        for m_name, m in model.named_modules()
        if is_norm(m)
        for p_name, _ in m.named_parameters(recurse=False)
    }


def bias_parameter_names(model: nn.Module) -> tuple[set[str], set[str]]:
    """(layer biases, norm shifts): BitFit trains both; a ResNet's convs have none, so there its
    biases are the norms' shifts alone."""
    norms = norm_parameter_names(model)
    biases = {n for n, _ in model.named_parameters() if n.rsplit(".", 1)[-1] == "bias"}
    return biases - norms, biases & norms


def adapter_parameter_names(model: nn.Module) -> set[str]:
    """peft's LoRA/DoRA parameters (``lora_A``, ``lora_B``, ``lora_magnitude_vector``)."""
    return {n for n, _ in model.named_parameters() if ".lora_" in n}


def prompt_parameter_names(model: nn.Module) -> set[str]:
    """VPT's tokens (``models.prompts``)."""
    return {n for n, _ in model.named_parameters() if n.startswith("vpt.")}
