"""Backbones of our own, registered in timm so grids use them like any timm model.

``seed_cnn`` is the seed reports' "own CNN" baseline (seeds 000 and 001): a plain stack of
conv-BN-ReLU-pool stages and a linear classifier, trained from scratch as the reference a
pretrained backbone must beat. It speaks timm's model API (``forward_features``,
``forward_head``, ``get_classifier``, ``reset_classifier``, ``group_matcher``), so every
strategy (including ``partial``) and weight source works with it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model


class SeedCNN(nn.Module):
    """Stages of (conv3x3-BN-ReLU) x2 + max-pool, widths doubling, then global pool + linear."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        widths: tuple[int, ...] = (32, 64, 128),
        drop_rate: float = 0.0,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        stages = []
        prev = in_chans
        for w in widths:
            stages.append(
                nn.Sequential(
                    nn.Conv2d(prev, w, 3, padding=1, bias=False),
                    nn.BatchNorm2d(w),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(w, w, 3, padding=1, bias=False),
                    nn.BatchNorm2d(w),
                    nn.ReLU(inplace=True),
                    nn.MaxPool2d(2),
                )
            )
            prev = w
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = prev
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(prev, num_classes) if num_classes > 0 else nn.Identity()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return {"stem": r"^stages\.0\.[0-2]\.", "blocks": r"^stages\.(\d+)"}

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x).flatten(1))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


default_cfgs = generate_default_cfgs(
    {
        "seed_cnn.untrained": {
            "num_classes": 1000,
            "input_size": (3, 64, 64),
            "pool_size": (8, 8),
            "mean": IMAGENET_DEFAULT_MEAN,
            "std": IMAGENET_DEFAULT_STD,
            "first_conv": "stages.0.0",
            "classifier": "fc",
            "interpolation": "bilinear",
            "crop_pct": 1.0,
        }
    }
)


@register_model
def seed_cnn(pretrained: bool = False, **kwargs: Any) -> SeedCNN:
    """The seeds' own-CNN baseline (no pretrained weights exist: use it with ``weights: none``)."""
    return build_model_with_cfg(SeedCNN, "seed_cnn", pretrained, **kwargs)
