"""The new classifier every cell gets: linear, dropout + linear, or an MLP, initialised by one rule.

timm's families initialise their classifiers very differently (EfficientNet/MobileNet's "goog"
init is 11x PyTorch's for 10 classes); a transfer replaces the head and starts it the same way
for every backbone (``head.init``: zero, BiT's choice, by default).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from tlbench.spec import HeadConfig


def classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Key prefixes of the classifier, e.g. ('fc',) or ('head.fc',) — the part a transfer replaces."""
    cls = model.pretrained_cfg.get("classifier", "")  # type: ignore[union-attr]
    names = cls if isinstance(cls, (list, tuple)) else (cls,)
    return tuple(n for n in names if n)


def is_head_key(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


HEAD_INIT_STD = (
    0.01  # head: {init: normal}: small normal init, as e.g. timm's ViT heads and MAE's linear probe
)


def final_head_layer(head: nn.Module) -> nn.Module:
    """The layer that produces the logits: the classifier itself or the last Linear/Conv of an MLP."""
    layers = [m for m in head.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers:
        raise ValueError(f"the classifier {type(head).__name__} has no Linear or Conv2d layer to initialise")
    return layers[-1]


def init_head_layer(layer: nn.Module, rule: str) -> None:
    """Initialise the logits layer by ``rule``, whatever the backbone family's own init was.

    ``zero`` (the default): weights and bias 0, so the first logits are 0 and the first loss is
    exactly ln(C), and no gradient reaches the backbone before the head has learnt something
    (BiT, Kolesnikov et al. 2020, zero-initialises its new head for this). ``normal``: N(0, 0.01²),
    bias 0. ``pytorch``: ``nn.Linear``'s own default (uniform in ±1/sqrt(fan_in)).
    """
    weight, bias = layer.weight, layer.bias  # type: ignore[union-attr]
    with torch.no_grad():
        if rule == "zero":
            nn.init.zeros_(weight)
        elif rule == "normal":
            nn.init.trunc_normal_(weight, std=HEAD_INIT_STD, a=-2 * HEAD_INIT_STD, b=2 * HEAD_INIT_STD)
        elif rule == "pytorch":
            layer.reset_parameters()  # type: ignore[operator]
            return
        else:
            raise ValueError(f"unknown head init {rule!r} (valid: zero, normal, pytorch)")
        if bias is not None:
            nn.init.zeros_(bias)


def set_head(model: nn.Module, head: HeadConfig, num_classes: int) -> None:
    """Give the model a new classifier for ``num_classes``: linear, dropout + linear, or an MLP.

    Every head is initialised by one rule (``head.init``) whatever the backbone: timm's families
    initialise their classifiers very differently (EfficientNet/MobileNet's "goog" init is 11x
    PyTorch's for 10 classes, and its large first logits wash out pretrained features). An MLP's
    hidden layers keep PyTorch's fan-in init (a zero hidden layer would never learn).
    """
    current = model.get_classifier()  # type: ignore[operator]
    if head.type == "mlp" or head.dropout > 0:
        if not isinstance(current, nn.Linear):
            raise ValueError(f"cannot attach a {head.type} head: classifier is {type(current).__name__}")
        layers: list[nn.Module] = []
        width = current.in_features
        for h in head.hidden if head.type == "mlp" else ():
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(head.dropout)]
            width = h
        if head.type == "linear":
            layers.append(nn.Dropout(head.dropout))
        layers.append(nn.Linear(width, num_classes))
        path = classifier_prefixes(model)[0]
        parent = model.get_submodule(path.rsplit(".", 1)[0]) if "." in path else model
        current = nn.Sequential(*layers)
        setattr(parent, path.rsplit(".", 1)[-1], current)
    init_head_layer(final_head_layer(current), head.init)
