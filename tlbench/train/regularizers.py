"""Penalties added to a step's loss: L2-SP (Li et al. 2018), the pull towards the pretrained weights.

``Ω(w) = α/2 ‖w_backbone − w⁰‖² + β/2 ‖w_head‖²``: fine-tuning that stays near its starting point,
instead of weight decay's pull towards zero (which L2-SP replaces: the optimizer's weight decay is
off for these phases). ``w⁰`` is taken when the phase's step is built, from the freshly built
pretrained model (before a resumed cell loads its checkpoint), so a resume anchors to the same
weights.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from tlbench.models.parts import head_parameter_names


class L2SP:
    """A callable penalty over the model's floating parameters (BatchNorm's scale and shift count
    as backbone weights, as in the paper's code)."""

    def __init__(self, model: nn.Module, alpha: float, beta: float):
        head = head_parameter_names(model)
        named = list(model.named_parameters())
        self.alpha, self.beta = alpha, beta
        self.backbone = [p for n, p in named if n not in head]
        self.anchor = [p.detach().clone() for p in self.backbone]
        self.head = [p for n, p in named if n in head]

    def __call__(self) -> torch.Tensor:
        pull = torch.stack([(p - a).pow(2).sum() for p, a in zip(self.backbone, self.anchor, strict=True)])
        shrink = torch.stack([p.pow(2).sum() for p in self.head])
        return 0.5 * self.alpha * pull.sum() + 0.5 * self.beta * shrink.sum()
