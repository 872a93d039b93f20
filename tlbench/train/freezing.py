"""Which parameters a phase trains, and which modules stay in eval mode while it does.

Freezing uses timm's ``group_matcher`` so "the first k stages" means the same thing for a ResNet,
a ConvNeXt or a ViT. Frozen parts are also kept in eval mode, so a linear probe does not update
BatchNorm statistics (seed 000's S3 does exactly this).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch.nn as nn

    from tlbench.catalog.strategies import Phase


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


def apply_phase(model: nn.Module, phase: Phase) -> tuple[int, int]:
    """Set ``requires_grad`` for a phase; returns (trainable, total) parameter counts."""
    head = head_parameter_names(model)
    if phase.trainable == "all":
        frozen: set[str] = set()
    elif phase.trainable == "head":
        frozen = {n for n, _ in model.named_parameters() if n not in head}
    else:
        groups = stage_groups(model)
        # the last group holds the head (and final norms); never freeze it
        k = min(phase.freeze_stages + 1, len(groups) - 1)
        frozen = {n for g in groups[:k] for n in g} - head
    total = trainable = 0
    for n, p in model.named_parameters():
        p.requires_grad_(n not in frozen)
        total += p.numel()
        trainable += p.numel() if n not in frozen else 0
    return trainable, total


def set_train_mode(model: nn.Module, phase: Phase | None = None) -> None:
    """``model.train()``, but fully frozen sub-modules stay in eval mode (frozen BN stats, no
    dropout), and with ``phase.bn_frozen`` every BatchNorm does too."""
    from torch.nn.modules.batchnorm import _BatchNorm

    model.train()
    if phase is not None and phase.bn_frozen:
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.eval()

    def visit(module: nn.Module) -> None:
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            module.eval()
            return
        for child in module.children():
            visit(child)

    visit(model)
