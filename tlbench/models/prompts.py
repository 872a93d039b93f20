"""Visual prompt tuning (Jia et al. 2022) on a timm VisionTransformer, with forward hooks.

The prompts are a parameter of a submodule ``vpt`` (so they are in the state dict, the optimizer
and the checkpoint like any weight). Hooks on timm's own modules place them: after ``norm_pre``
(the sequence with its position embeddings) the tokens go in behind the prefix (class/register)
tokens; with ``deep`` each later block's input has them replaced by that block's own; after the
last block they are taken out again, so the final norm, the pooling (token or average) and the
head see the sequence timm built. The backbone's own code is untouched.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

if TYPE_CHECKING:
    from tlbench.catalog.strategy_params import VptParams

_NEEDS = ("patch_embed", "blocks", "norm_pre", "num_prefix_tokens", "embed_dim")


def check_tokens(model: nn.Module, name: str) -> None:
    """``ValueError`` unless the model is a ViT with a token sequence VPT can extend."""
    missing = [a for a in _NEEDS if not hasattr(model, a)]
    if missing:
        raise ValueError(
            f"vpt needs a ViT with a token sequence (timm's VisionTransformer: {', '.join(_NEEDS)}); "
            f"{name} is a {type(model).__name__} without {', '.join(missing)}: use lora, bitfit or "
            "norm_tune on it, or exclude the pair"
        )


class Prompts(nn.Module):
    """``depth`` × ``tokens`` learnable tokens, uniformly initialised as VPT's code does."""

    def __init__(self, depth: int, tokens: int, dim: int, patch_area: int):
        super().__init__()
        bound = math.sqrt(6.0 / float(3 * patch_area + dim))  # Xavier over (patch, dim), VPT's init
        self.prompts = nn.Parameter(torch.empty(depth, tokens, dim).uniform_(-bound, bound))


def add_prompts(model: nn.Module, params: VptParams, name: str = "backbone") -> None:
    """Give ``model`` its prompts (``model.vpt``) and the hooks that place them."""
    check_tokens(model, name)
    blocks = list(model.blocks)  # type: ignore[arg-type]
    patch = model.patch_embed.patch_size  # type: ignore[union-attr]
    area = int(patch[0] * patch[1]) if isinstance(patch, tuple | list) else int(patch) ** 2
    t, prefix = params.tokens, int(model.num_prefix_tokens)  # type: ignore[arg-type]
    model.vpt = Prompts(len(blocks) if params.deep else 1, t, int(model.embed_dim), area)  # type: ignore[arg-type]

    def tokens(i: int, x: torch.Tensor) -> torch.Tensor:
        return model.vpt.prompts[i].to(x.dtype).expand(x.shape[0], -1, -1)  # type: ignore[union-attr, operator]

    def insert(_m: nn.Module, _inp: tuple, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :prefix], tokens(0, x), x[:, prefix:]], dim=1)

    def replace(i: int):  # noqa: ANN202
        def hook(_m: nn.Module, args: tuple) -> tuple:
            x = args[0]
            return (torch.cat([x[:, :prefix], tokens(i, x), x[:, prefix + t :]], dim=1), *args[1:])

        return hook

    def remove(_m: nn.Module, _inp: tuple, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :prefix], x[:, prefix + t :]], dim=1)

    model.norm_pre.register_forward_hook(insert)  # type: ignore[union-attr]
    if params.deep:
        for i, block in enumerate(blocks[1:], start=1):
            block.register_forward_pre_hook(replace(i))
    blocks[-1].register_forward_hook(remove)
