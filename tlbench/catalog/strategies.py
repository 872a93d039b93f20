"""Fine-tuning strategies: which parameters train, in which phases, at which learning rate.

A strategy turns into a list of ``Phase``s (``lp_ft`` has two: a linear probe, then a full
fine-tune at a lower lr). Torch-free: the grid checks names and params against it; a phase is
applied to a model by ``tlbench.train.freezing``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from tlbench.catalog.strategy_params import (  # noqa: F401 (re-exported)
    DEFAULT_ALPHAS,
    LBFGS_IGNORES,
    BiasParams,
    BnMode,
    FinetuneParams,
    L2spParams,
    LinearProbeParams,
    LoraParams,
    LpFtParams,
    PartialParams,
    Solver,
    VptParams,
    WiseFtParams,
)
from tlbench.registry import Registry

if TYPE_CHECKING:
    from tlbench.spec import TrainConfig


Trainable = Literal["head", "partial", "all", "bias", "norm", "lora", "prompt"]


@dataclass(frozen=True)
class Phase:
    """A stretch of epochs with one set of trainable parameters and its own optimizer/schedule."""

    name: str
    epochs: int
    trainable: Trainable
    lr: float
    freeze_stages: int = 0
    layer_decay: float | None = None
    bn_frozen: bool = False  # every BatchNorm stays in eval mode (its affine parameters may train)
    adapt_bn: bool = False  # BatchNorm statistics re-estimated on the train split before this phase
    solver: Solver = "sgd"  # lbfgs: the head is the L-BFGS linear evaluation (train.linear_eval)
    lora: LoraParams | None = None  # trainable "lora": the adapters models.lora injects
    prompts: VptParams | None = None  # trainable "prompt": the tokens models.prompts adds
    l2sp: tuple[float, float] | None = None  # (alpha, beta) of train.regularizers.L2SP


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


def _bn(p: BaseModel) -> dict[str, bool]:
    """A ``bn`` param as the phase's flags (``BnMode``: train, frozen, adapt)."""
    return {"bn_frozen": p.bn == "frozen", "adapt_bn": p.bn == "adapt"}  # type: ignore[attr-defined]


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
                **_bn(p),  # type: ignore[arg-type]
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
                **_bn(p),  # type: ignore[arg-type]
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
        "wise_ft",
        "lp_ft, then the weights interpolated between the probe's and the fine-tuned ones at the "
        "mixing weight best on val (WiSE-FT, Wortsman et al. 2022)",
        WiseFtParams,
        True,
        _lp_ft,  # type: ignore[arg-type]
    )
)


_register(
    StrategyInfo(
        "lora",
        "LoRA through peft: low-rank updates of the attention/MLP linears (ViT) or the stages' convs "
        "(ConvNet), the new head in full; merged into the weights for evaluation (Hu et al. 2022)",
        LoraParams,
        True,
        lambda p, t: [Phase("lora", t.epochs, "lora", t.effective_lr, lora=p)],  # type: ignore[arg-type]
    )
)
_register(
    StrategyInfo(
        "bitfit",
        "only the biases and the head train; where the convs have no bias (ResNets) the "
        "normalisation layers' shifts are the biases (Ben Zaken et al. 2022)",
        BiasParams,
        True,
        lambda p, t: [Phase("bitfit", t.epochs, "bias", t.effective_lr, **_bn(p))],  # type: ignore[arg-type]
    )
)
_register(
    StrategyInfo(
        "norm_tune",
        "only the normalisation layers' scale and shift, and the head, train",
        BiasParams,
        True,
        lambda p, t: [Phase("norm_tune", t.epochs, "norm", t.effective_lr, **_bn(p))],  # type: ignore[arg-type]
    )
)
_register(
    StrategyInfo(
        "vpt",
        "visual prompt tuning on a ViT: learnable tokens in the sequence (deep: before every block), "
        "the head; the backbone frozen (Jia et al. 2022)",
        VptParams,
        True,
        lambda p, t: [Phase("vpt", t.epochs, "prompt", t.effective_lr, prompts=p)],  # type: ignore[arg-type]
    )
)
_register(
    StrategyInfo(
        "l2sp",
        "fine-tune everything with an L2 pull towards the pretrained weights instead of weight "
        "decay (L2-SP, Li et al. 2018)",
        L2spParams,
        True,
        lambda p, t: [
            Phase("l2sp", t.epochs, "all", t.effective_lr, l2sp=(p.alpha, p.beta), **_bn(p))  # type: ignore[attr-defined]
        ],
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


def wise_ft_alphas(name: str, params: dict) -> tuple[float, ...] | None:
    """The mixing weights of a ``wise_ft`` cell's interpolation, else None."""
    if name != "wise_ft":
        return None
    return WiseFtParams.model_validate(params).alphas


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
