"""Each strategy's params: the pydantic models a grid's ``strategies[i].params`` is checked against.

Torch-free, like the catalog; their field descriptions are the grid reference's.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


BnMode = Literal["train", "frozen", "adapt"]
_BN_HELP = (
    "BatchNorm of the trained parts: train (batch statistics, running ones updated); frozen "
    "(eval mode: the pretrained running statistics are used and kept; scale and shift still "
    "train); adapt (the running statistics re-estimated on the target's training images before "
    "the first epoch, AdaBN, then as train)"
)


# the settings an L-BFGS probe does not use: it solves a convex problem to convergence for each
# L2 strength, full batch, instead of stepping an optimizer through epochs
LBFGS_IGNORES = (
    "epochs",
    "batch_size",
    "lr",
    "lr_scale",
    "weight_decay",
    "schedule",
    "warmup_epochs",
    "step_size",
    "gamma",
    "min_lr",
    "label_smoothing",
)
Solver = Literal["sgd", "lbfgs"]


class LinearProbeParams(_Params):
    """``linear_probe``: the head trained by the cell's optimizer (``sgd``, any optimizer of the
    grid, epochs, lr) or fit as the papers' linear evaluation (``lbfgs``: Kornblith et al. 2019,
    SimCLR, CLIP; ``tlbench.train.logreg``)."""

    solver: Solver = Field(
        "sgd",
        description="sgd: the optimizer axis trains the head for the epochs; lbfgs: an "
        "L2-regularised logistic regression per l2 value on the frozen features, l2 chosen on val",
    )
    l2: tuple[float, ...] | None = Field(
        None,
        description="lbfgs: the L2 strengths swept (λ of mean CE + λ/2 |W|^2; scikit-learn's "
        "C = 1 / (λ n_train)); default 45 log-spaced values in [1e-6, 1e5] (Kornblith et al.)",
    )
    refit: bool = Field(True, description="lbfgs: refit on train + val at the chosen l2 (as the papers)")
    max_iter: int = Field(1000, ge=1, description="lbfgs: L-BFGS iterations per l2 value at most")
    tol: float = Field(
        1e-6, gt=0, lt=1, description="lbfgs: converged when max |gradient| <= tol * its value at W = 0"
    )

    # added after recipe 2: left out of a cell's id at their defaults, so SGD probes keep theirs
    ID_DEFAULTS_OMITTED: ClassVar[frozenset[str]] = frozenset({"solver", "l2", "refit", "max_iter", "tol"})

    @field_validator("l2")
    @classmethod
    def _positive(cls, v: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if v is not None:
            if not v:
                raise ValueError("l2 needs at least one value, e.g. [1e-4, 1e-2, 1]")
            bad = [x for x in v if not x > 0]
            if bad:
                raise ValueError(f"l2 values must be > 0 (an L2 strength), got {bad[0]}")
        return v


class LoraParams(_Params):
    """``lora``: low-rank updates W + (alpha / r) B A of the chosen layers (Hu et al. 2022), through
    Hugging Face peft; ``dora``: weight-decomposed LoRA (Liu et al. 2024, peft's ``use_dora``)."""

    r: int = Field(8, ge=1, description="the rank of each low-rank update")
    alpha: float = Field(16.0, gt=0, description="scaling: the update is (alpha / r) B A")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA branch's input")
    targets: tuple[str, ...] | None = Field(
        None,
        description="module names adapted (peft's suffix match, e.g. attn.qkv); default per family: "
        "attn.qkv, attn.proj, mlp.fc1, mlp.fc2 on a ViT; the 1x1 / 3x3 convs (and linears) of the "
        "stages on a ConvNet. The head is never a target: it trains in full",
    )
    dora: bool = Field(False, description="DoRA: a learned magnitude per output beside the direction")

    @field_validator("targets")
    @classmethod
    def _names(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is not None and (not v or any(not t.strip() for t in v)):
            raise ValueError("targets needs module names, e.g. [attn.qkv, attn.proj]")
        return v


class BiasParams(_Params):
    bn: BnMode = Field("train", description=_BN_HELP)


class VptParams(_Params):
    """``vpt``: learnable prompt tokens prepended to a ViT's sequence (Jia et al. 2022)."""

    tokens: int = Field(10, ge=1, description="prompt tokens per layer")
    deep: bool = Field(False, description="deep: new prompts before every block; else only before the first")


class L2spParams(_Params):
    """``l2sp``: fine-tune with alpha/2 |w - w0|^2 on the backbone (w0: its pretrained weights) and
    beta/2 |w|^2 on the head (Li et al. 2018); the penalty replaces the optimizer's weight decay."""

    alpha: float = Field(0.01, ge=0, description="weight of the pull towards the pretrained backbone")
    beta: float = Field(0.01, ge=0, description="weight of plain L2 on the new head")
    bn: BnMode = Field("train", description=_BN_HELP)


class PartialParams(_Params):
    freeze_stages: int = Field(2, ge=0, description="stem + this many stages stay frozen")
    bn: BnMode = Field("train", description=_BN_HELP)


class FinetuneParams(_Params):
    layer_decay: float | None = Field(None, gt=0, le=1, description="timm layer-wise lr decay")
    bn: BnMode = Field("train", description=_BN_HELP)


class LpFtParams(_Params):
    lp_epochs: int | None = Field(None, ge=1, description="linear-probe epochs; default half of epochs")
    ft_lr_scale: float = Field(0.1, gt=0, description="fine-tune lr = lr * ft_lr_scale")
    layer_decay: float | None = Field(
        None, gt=0, le=1, description="timm layer-wise lr decay of the fine-tune"
    )
    # adapt by default: the probe's head is fit to features normalised by the running statistics,
    # and the fine-tune phase normalises by batch statistics; with the pretrained (source)
    # statistics that switch alone cost 14 points of val accuracy, with frozen statistics the
    # fine-tune phase diverged, with target statistics the switch is free (benchmarks/perf/README.md)
    bn: BnMode = Field("adapt", description=_BN_HELP)


DEFAULT_ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))


class WiseFtParams(LpFtParams):
    """``wise_ft``: ``lp_ft``, then the weights interpolated between the probe's and the fine-tuned
    ones, the mixing weight chosen on val (Wortsman et al. 2022)."""

    alphas: tuple[float, ...] = Field(
        DEFAULT_ALPHAS,
        description="the mixing weights tried: theta(a) = (1 - a) theta_probe + a theta_finetuned, "
        "each in [0, 1]; the best on val is tested",
    )

    @field_validator("alphas")
    @classmethod
    def _unit(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v:
            raise ValueError("alphas needs at least one value in [0, 1], e.g. [0, 0.5, 1]")
        bad = [a for a in v if not 0 <= a <= 1]
        if bad:
            raise ValueError(f"alphas must lie in [0, 1] (0: the probe, 1: the fine-tune), got {bad[0]}")
        return v
