"""Which parameters a phase trains, and which modules stay in eval mode while it does.

Which parameters are which part (stages by timm's ``group_matcher``, biases, norms, adapters,
prompts) is ``models.parts``'s; here a phase's kind picks the parts that train. Frozen parts are
also kept in eval mode, so a linear probe does not update BatchNorm statistics (seed 000's S3
does exactly this).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlbench.models.parts import (
    adapter_parameter_names,
    bias_parameter_names,
    head_parameter_names,
    norm_parameter_names,
    prompt_parameter_names,
    stage_groups,
)

if TYPE_CHECKING:
    import torch.nn as nn

    from tlbench.catalog.strategies import Phase


def apply_phase(model: nn.Module, phase: Phase) -> tuple[int, int]:
    """Set ``requires_grad`` for a phase; returns (trainable, total) parameter counts."""
    names = trained_names(model, phase)
    total = trainable = 0
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)
        total += p.numel()
        trainable += p.numel() if n in names else 0
    return trainable, total


def trained_names(model: nn.Module, phase: Phase) -> set[str]:
    """The parameters a phase trains: the head always; besides it, by ``phase.trainable``."""
    every = {n for n, _ in model.named_parameters()}
    head = head_parameter_names(model)
    kind = phase.trainable
    if kind == "all":
        return every
    if kind == "partial":
        groups = stage_groups(model)
        # the last group holds the head (and final norms); never freeze it
        k = min(phase.freeze_stages + 1, len(groups) - 1)
        return every - ({n for g in groups[:k] for n in g} - head)
    if kind == "bias":
        layer_biases, norm_shifts = bias_parameter_names(model)
        return head | layer_biases | norm_shifts
    if kind == "norm":
        return head | norm_parameter_names(model)
    if kind == "lora":
        return head | adapter_parameter_names(model)
    if kind == "prompt":
        return head | prompt_parameter_names(model)
    return head


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


def trained_parts(model: nn.Module, phases: list[Phase]) -> dict[str, object]:
    """What a run records of its strategy's trained parts, where a name alone would not say it."""
    out: dict[str, object] = {}
    for phase in phases:
        if phase.trainable == "bias":
            layer, norm = (names - head_parameter_names(model) for names in bias_parameter_names(model))
            out["bitfit.layer_biases"] = len(layer)
            out["bitfit.norm_shifts"] = len(norm)
            out["bitfit.biases"] = (
                "layer biases and norm shifts"
                if layer
                else "norm shifts only: the layers have no bias, so the norms' shifts are the biases"
            )
        elif phase.trainable == "norm":
            out["norm_tune.tensors"] = len(norm_parameter_names(model))
        elif phase.trainable == "prompt":
            prompts = prompt_parameter_names(model)
            out["vpt.prompt_params"] = sum(p.numel() for n, p in model.named_parameters() if n in prompts)
        elif phase.lora is not None:  # the adapters are in the model (prepare added them)
            from tlbench.models.lora import adapted_layers

            out.update(adapted_layers(model))
        if phase.l2sp is not None:
            out["l2sp.weight_decay"] = "off: the L2-SP penalty replaces it"
    return out
