"""LoRA / DoRA on a timm model through Hugging Face peft's custom-model path, and the merge back.

peft's ``LoraModel`` injects its layers into the timm model in place (``blocks.0.attn.qkv``
becomes a ``lora.Linear`` around the original), so the model keeps timm's interface
(``get_classifier``, ``group_matcher``, ``forward_features``) while it trains. ``merge`` folds
the low-rank updates into the original weights and removes peft's layers: what is evaluated and
saved is a plain timm state dict. peft is imported only here, when a LoRA cell runs.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import torch.nn as nn

if TYPE_CHECKING:
    from tlbench.catalog.strategy_params import LoraParams

# Hu et al. / V-PETL Bench on ViTs: every linear of attention and MLP, not the patch embedding
VIT_TARGETS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
_KERNELS = {(1, 1), (3, 3)}


def _head_modules(model: nn.Module) -> set[str]:
    head = model.get_classifier()  # type: ignore[operator]
    return {n for n, m in model.named_modules() if m is head or any(m is c for c in head.modules())}


def adaptable(model: nn.Module) -> dict[str, nn.Module]:
    """The model's linear and conv layers peft can adapt, by full name (the head left out)."""
    head = _head_modules(model)
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d) and n not in head}


def _is_vit(model: nn.Module) -> bool:
    return any(n.endswith("attn.qkv") for n, _ in model.named_modules())


def _stage_names(model: nn.Module) -> set[str]:
    """Module names inside the stages: neither the stem (timm's coarse group 0) nor the head group."""
    from tlbench.models.parts import stage_groups

    groups = stage_groups(model)
    params = {p for g in groups[1:-1] for p in g}
    return {p.rsplit(".", 1)[0] for p in params}


def default_targets(model: nn.Module) -> list[str]:
    """Per family: a ViT's attention and MLP linears; a ConvNet's 1x1 / 3x3 (ungrouped) convs and
    linears inside its stages (not the stem, not the head)."""
    layers = adaptable(model)
    if _is_vit(model):
        return [n for n in layers if n.endswith(VIT_TARGETS)]
    inside = _stage_names(model)
    return [
        n
        for n, m in layers.items()
        if n in inside and (isinstance(m, nn.Linear) or (tuple(m.kernel_size) in _KERNELS and m.groups == 1))  # type: ignore[arg-type]
    ]


def folded(names: list[str] | dict[str, nn.Module]) -> list[str]:
    """Layer names with their block indices folded (``blocks.*.attn.qkv``), each kind once."""
    return sorted({re.sub(r"\.\d+(?=\.|$)", ".*", n) for n in names})


def module_kinds(model: nn.Module) -> list[str]:
    """What a ``targets`` entry can name, for an error message."""
    return folded(adaptable(model))


def resolve_targets(model: nn.Module, targets: tuple[str, ...] | None) -> list[str]:
    """The full names of the layers LoRA adapts; ``ValueError`` naming what exists when a
    target matches no linear/conv layer (peft's rule: a name or a dotted suffix of one)."""
    layers = adaptable(model)
    if targets is None:
        found = default_targets(model)
        if not found:
            raise ValueError("no linear or conv layer to adapt outside the head")
        return found
    out: list[str] = []
    for t in targets:
        hits = [n for n in layers if n == t or n.endswith("." + t)]
        if not hits:
            raise ValueError(
                f"LoRA target {t!r} matches no linear or conv layer of this model; it has: "
                + ", ".join(module_kinds(model))
            )
        out += [n for n in hits if n not in out]
    return out


def add_lora(model: nn.Module, params: LoraParams) -> Any:
    """Inject peft's LoRA layers into ``model`` in place; returns peft's tuner (for ``merge``).

    Every original weight is frozen by peft; which parameters train is ``train.freezing``'s call.
    """
    from peft import LoraConfig
    from peft.tuners.lora import LoraModel

    targets = resolve_targets(model, params.targets)
    config = LoraConfig(
        r=params.r,
        lora_alpha=params.alpha,
        lora_dropout=params.dropout,
        target_modules=targets,
        use_dora=params.dora,
        bias="none",
    )
    return LoraModel(model, config, "default")


def merge(tuner: Any) -> nn.Module:
    """Fold the updates into the weights and drop peft's layers: a plain timm model again."""
    return tuner.merge_and_unload(progressbar=False, safe_merge=True)


def adapted_layers(model: nn.Module) -> dict[str, Any]:
    """What a LoRA run records: how many layers carry an adapter, and which (indices folded)."""
    from peft.tuners.lora import LoraLayer

    names = [n for n, m in model.named_modules() if isinstance(m, LoraLayer)]
    return {"lora.layers": len(names), "lora.adapted": ",".join(folded(names))}
