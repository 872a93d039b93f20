"""Fine-tuning strategies: which parameters train, in which phases, at which learning rate.

A strategy turns into a list of ``Phase``s (``lp_ft`` has two: a linear probe, then a full
fine-tune at a lower lr). Torch-free: the grid checks names and params against it; a phase is
applied to a model by ``tlbench.train.freezing``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tlbench.registry import Registry

if TYPE_CHECKING:
    from tlbench.spec import TrainConfig


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


@dataclass(frozen=True)
class Phase:
    """A stretch of epochs with one set of trainable parameters and its own optimizer/schedule."""

    name: str
    epochs: int
    trainable: Literal["head", "partial", "all"]
    lr: float
    freeze_stages: int = 0
    layer_decay: float | None = None
    bn_frozen: bool = False  # every BatchNorm stays in eval mode (its affine parameters may train)
    adapt_bn: bool = False  # BatchNorm statistics re-estimated on the train split before this phase
    solver: Solver = "sgd"  # lbfgs: the head is the L-BFGS linear evaluation (train.linear_eval)


@dataclass(frozen=True)
class StrategyInfo:
    name: str
    description: str
    params: type[BaseModel] | None
    pretrained: bool  # False: random init whatever weights the backbone entry names
    phases: Callable[[BaseModel | None, TrainConfig], list[Phase]]


STRATEGIES: Registry[StrategyInfo] = Registry("strategy")


def _register(info: StrategyInfo) -> None:
    STRATEGIES.register(info.name, info)


_register(
    StrategyInfo(
        "linear_probe",
        "backbone frozen (BatchNorm statistics too); only the new head trains (solver: sgd), or the "
        "papers' linear evaluation: L-BFGS logistic regression, L2 chosen on val (solver: lbfgs)",
        LinearProbeParams,
        True,
        lambda p, t: [
            Phase("linear_probe", t.epochs, "head", t.effective_lr, solver=p.solver)  # type: ignore[union-attr]
        ],
    )
)
_register(
    StrategyInfo(
        "partial",
        "stem and the first k stages frozen (timm group_matcher); the rest and the head train",
        PartialParams,
        True,
        lambda p, t: [
            Phase(
                "partial",
                t.epochs,
                "partial",
                t.effective_lr,
                freeze_stages=p.freeze_stages,  # type: ignore[union-attr]
                bn_frozen=p.bn == "frozen",  # type: ignore[union-attr]
                adapt_bn=p.bn == "adapt",  # type: ignore[union-attr]
            )
        ],
    )
)
_register(
    StrategyInfo(
        "finetune",
        "everything trains from the pretrained init; optional layer-wise lr decay",
        FinetuneParams,
        True,
        lambda p, t: [
            Phase(
                "finetune",
                t.epochs,
                "all",
                t.effective_lr,
                layer_decay=p.layer_decay,  # type: ignore[union-attr]
                bn_frozen=p.bn == "frozen",  # type: ignore[union-attr]
                adapt_bn=p.bn == "adapt",  # type: ignore[union-attr]
            )
        ],
    )
)


def _lp_ft(p: LpFtParams, t: TrainConfig) -> list[Phase]:
    if t.epochs < 2:
        raise ValueError("lp_ft needs at least 2 epochs (a probe phase and a fine-tune phase)")
    lp = p.lp_epochs if p.lp_epochs is not None else max(1, t.epochs // 2)
    lp = min(lp, t.epochs - 1)
    return [
        Phase("linear_probe", lp, "head", t.effective_lr, adapt_bn=p.bn == "adapt"),
        Phase(
            "finetune",
            t.epochs - lp,
            "all",
            t.effective_lr * p.ft_lr_scale,
            layer_decay=p.layer_decay,
            bn_frozen=p.bn == "frozen",
        ),
    ]


_register(
    StrategyInfo(
        "lp_ft",
        "linear probe for lp_epochs, then fine-tune everything at lr * ft_lr_scale (Kumar et al. 2022)",
        LpFtParams,
        True,
        _lp_ft,  # type: ignore[arg-type]
    )
)
_register(
    StrategyInfo(
        "scratch",
        "random init, everything trains: the baseline transfer must beat",
        None,
        False,
        lambda p, t: [Phase("scratch", t.epochs, "all", t.effective_lr)],
    )
)


def lbfgs_probe(name: str, params: dict) -> LinearProbeParams | None:
    """The probe's settings when a strategy is the L-BFGS linear evaluation, else None."""
    if name != "linear_probe":
        return None
    p = LinearProbeParams.model_validate(params)
    return p if p.solver == "lbfgs" else None


def lbfgs_conflict(train: TrainConfig, augmentation: str, random: bool) -> str | None:
    """Why an L-BFGS probe cannot run with these settings (``{pair}``: the exclude rule to offer),
    or None: it fits a convex problem on frozen features, computed once."""
    if random:
        return (
            f"solver lbfgs fits a logistic regression on frozen features, which the random "
            f"augmentation {augmentation!r} would change every pass; use augmentation none, or "
            "exclude the pair: {pair}"
        )
    if train.head.type != "linear" or train.head.dropout > 0:
        return (
            f"solver lbfgs fits a linear head (a convex problem); this cell's head is "
            f"{train.head.type} with dropout {train.head.dropout}: use head {{type: linear}} or solver sgd"
        )
    return None


def lbfgs_ignored(train: TrainConfig) -> dict[str, object]:
    """The settings an L-BFGS probe does not use, as the grid gave them (recorded, not in its id)."""
    return {k: getattr(train, k) for k in LBFGS_IGNORES}


def id_params(name: str, params: dict) -> dict:
    """A strategy's params as its cells' ids hold them: params added after a recipe are left out
    at their defaults (``ID_DEFAULTS_OMITTED``), so adding them changed no existing id."""
    model = STRATEGIES.get(name).params
    omitted = getattr(model, "ID_DEFAULTS_OMITTED", frozenset())
    if not omitted or model is None:
        return params
    fields = model.model_fields
    return {k: v for k, v in params.items() if not (k in omitted and v == _json_default(fields[k].default))}


def _json_default(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def phases_for(name: str, params: dict, train: TrainConfig) -> list[Phase]:
    info = STRATEGIES.get(name)
    p = info.params.model_validate(params) if info.params else None
    return info.phases(p, train)
