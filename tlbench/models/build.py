"""Build a timm backbone for a cell: its weights (hub, file, earlier cell or none) and a new head.

The head is always replaced for the target's classes; everything else loads strictly, and a
file whose keys or shapes do not fit names them. Files load with safetensors or
``torch.load(weights_only=True)``: nothing a user did not make is ever unpickled.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

import tlbench.models.seed_cnn  # noqa: F401  (registers our own backbones in timm)
from tlbench.catalog.backbones import (
    check_backbone_name as check_backbone_name,  # re-exported: it lives in tlbench.hub
)
from tlbench.catalog.backbones import hub_model_name, hub_repo
from tlbench.errors import TlbenchError
from tlbench.spec import HeadConfig, WeightsSpec


class WeightsError(TlbenchError, ValueError):
    """A weight file that is missing or does not fit the backbone; the message names keys and shapes."""


def classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Key prefixes of the classifier, e.g. ('fc',) or ('head.fc',) — the part a transfer replaces."""
    cls = model.pretrained_cfg.get("classifier", "")  # type: ignore[union-attr]
    names = cls if isinstance(cls, (list, tuple)) else (cls,)
    return tuple(n for n in names if n)


def _is_head_key(key: str, prefixes: tuple[str, ...]) -> bool:
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


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file, or a .pth/.pt/.bin read with ``weights_only=True``.

    Read by timm's own loader: a training checkpoint's ``state_dict_ema`` / ``model_ema`` (timm's
    convention: the EMA weights when there are some), ``state_dict`` or ``model`` entry, with
    ``module.`` / ``_orig_mod.`` prefixes (DDP, torch.compile) removed.
    """
    from timm.models import load_state_dict

    if not path.is_file():
        raise WeightsError(
            f"weight file not found: {path} (a path relative to the current folder {Path.cwd()}, "
            "or absolute; .safetensors or a .pth state_dict)"
        )
    try:
        obj: Any = load_state_dict(str(path), use_ema=True, device="cpu", weights_only=True)
    except Exception as err:  # weights_only refuses pickled code: say so instead of unpickling
        raise WeightsError(
            f"{path}: cannot load with weights_only=True ({err}); save a plain state_dict"
        ) from None
    for key in ("model_state_dict", "state_dict", "model"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
    if not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"{path}: expected a state_dict of tensors (found keys: {', '.join(list(obj)[:8])})"
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _mismatch(own: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> list[str]:
    """What keeps ``theirs`` from loading into ``own``: missing/unexpected keys, shapes (empty: fits).

    A missing ``num_batches_tracked`` is fine: files written before PyTorch 0.4.1 and many
    converted checkpoints lack it, and BatchNorm's own loader fills it in as ``strict=True`` does.
    """
    missing = sorted(k for k in set(own) - set(theirs) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(theirs) - set(own))
    shapes = [
        f"{k}: file {tuple(theirs[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(theirs))
        if theirs[k].shape != own[k].shape
    ]
    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:8])}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:8])}")
    if shapes:
        parts.append(f"shape mismatches ({len(shapes)}): {'; '.join(shapes[:8])}")
    return parts


FilterFn = Callable[..., dict[str, torch.Tensor]]


def load_backbone_weights(model: nn.Module, path: Path, filter_fn: FilterFn | None = None) -> None:
    """Load everything but the classifier from ``path``; mismatches name keys and shapes.

    A file in the architecture's original layout (torchvision's DenseNet, an OpenAI CLIP, ...)
    goes through ``filter_fn``, timm's conversion for the architecture, when it does not fit as
    it is; then tlbench checks every key and shape itself (timm alone loads non-strictly
    whenever the class count differs, and only logs what it skipped).
    """
    state = read_state_dict(path)
    prefixes = classifier_prefixes(model)
    own = {k: v for k, v in model.state_dict().items() if not _is_head_key(k, prefixes)}

    def backbone(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v for k, v in sd.items() if not _is_head_key(k, prefixes)}

    theirs = backbone(state)
    problems = _mismatch(own, theirs)
    if problems and filter_fn is not None:
        try:
            try:
                converted = filter_fn(dict(state), model)
            except TypeError:  # timm's older filters take the state dict alone
                converted = filter_fn(dict(state))
        except Exception as err:
            problems.append(f"(timm's conversion for this architecture failed: {type(err).__name__}: {err})")
        else:
            converted_problems = _mismatch(own, backbone(converted))
            if not converted_problems:
                theirs, problems = backbone(converted), []
            else:
                problems = converted_problems + ["(after timm's conversion for this architecture)"]
    if problems:
        raise WeightsError(f"{path} does not fit {type(model).__name__}: " + " | ".join(problems))
    result = model.load_state_dict(theirs, strict=False)
    assert all(_is_head_key(k, prefixes) or k.endswith("num_batches_tracked") for k in result.missing_keys), (
        result
    )


_CREATE_LOCK = threading.Lock()


def create_with_filter(name: str, **kwargs: Any) -> tuple[nn.Module, FilterFn | None]:
    """``timm.create_model(name, **kwargs)`` with random weights, and the architecture's own
    checkpoint filter: the ``pretrained_filter_fn`` its builder hands to timm's ``load_pretrained``.

    timm keeps no registry of these functions (each model file passes its own to
    ``build_model_with_cfg``), so the call is intercepted there, where timm would load its
    weights: nothing is loaded, the filter is kept for ``load_backbone_weights``.
    """
    import timm
    from timm.models import _builder

    seen: dict[str, Any] = {}

    def capture(model: nn.Module, *args: Any, filter_fn: FilterFn | None = None, **kw: Any) -> None:
        seen["filter_fn"] = filter_fn

    with _CREATE_LOCK:
        original = _builder.load_pretrained
        _builder.load_pretrained = capture  # type: ignore[assignment]
        try:
            model = timm.create_model(name, pretrained=True, **kwargs)
        finally:
            _builder.load_pretrained = original  # type: ignore[assignment]
    return model, seen.get("filter_fn")


def save_weights(model: nn.Module, path: Path) -> None:
    """Write the model's state_dict as safetensors, atomically (temp file + rename)."""
    save_weights_dict(model.state_dict(), path)


def save_weights_dict(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write tensors as safetensors, atomically: a crash never leaves a half-written file."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file({k: v.detach().to("cpu").contiguous() for k, v in state.items()}, str(tmp))
    os.replace(tmp, path)


def _fail_fast_if_unreachable(name: str) -> None:
    """Seconds, not a minute of retries: weights neither cached nor reachable fail at once."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return  # the hub library itself fails fast (or reads the cache)
    repo, cached = hub_repo(name)
    if cached or not repo:
        return
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
    except OSError as err:
        raise WeightsError(
            f"pretrained weights {name!r} are not in the Hugging Face cache and the hub is unreachable ({err}). "
            f"Run `tlbench prefetch --grid ...` on a machine with internet (same HF_HOME), or use weights: file:PATH."
        ) from None


def build_model(
    backbone: str,
    *,
    num_classes: int,
    weights: WeightsSpec,
    head: HeadConfig | None = None,
    model_kwargs: dict[str, Any] | None = None,
    weights_file: Path | None = None,
) -> nn.Module:
    """A timm model with ``num_classes`` outputs, initialised as ``weights`` says.

    ``weights_file`` is the resolved file for ``file:`` and ``cell:`` sources (the executor
    resolves a ``cell:`` name to the source run's best checkpoint).
    """
    import timm

    kwargs = dict(model_kwargs or {})
    if weights.kind == "hub":
        name = hub_model_name(backbone, weights.value)
        _fail_fast_if_unreachable(name)
        try:
            model = timm.create_model(name, pretrained=True, num_classes=num_classes, **kwargs)
        except Exception as err:
            raise WeightsError(
                f"could not get pretrained weights for {name!r} from the Hugging Face hub ({type(err).__name__}: "
                f"{err}). Without internet, run `tlbench prefetch --grid ...` where there is, then use "
                f"HF_HUB_OFFLINE=1, or point the backbone at a file: weights: file:/path/to/{backbone}.safetensors"
            ) from None
    elif weights.kind in ("file", "cell", "run"):
        model, filter_fn = create_with_filter(backbone, num_classes=num_classes, **kwargs)
        path = weights_file or Path(weights.value).expanduser()
        load_backbone_weights(model, Path(path), filter_fn)
    else:
        model = timm.create_model(backbone, pretrained=False, num_classes=num_classes, **kwargs)
    set_head(model, head or HeadConfig(), num_classes)
    return model


def trained_settings(model: nn.Module) -> dict[str, Any]:
    """What the model trains with where timm's per-family defaults decide, not the grid: its
    classifier dropout, stochastic depth and BatchNorm momentum (recorded as MLflow params)."""
    from timm.layers import DropPath
    from torch.nn.modules.batchnorm import _BatchNorm

    modules = list(model.modules())
    dropouts = sorted({m.p for m in modules if isinstance(m, nn.Dropout) and m.p > 0})
    drop_path = max((float(m.drop_prob) for m in modules if isinstance(m, DropPath)), default=0.0)
    norms = [m for m in modules if isinstance(m, _BatchNorm)]
    return {
        "model.drop_rate": float(getattr(model, "drop_rate", 0.0) or 0.0),
        "model.dropout_layers": ",".join(f"{p:g}" for p in dropouts) or "none",
        "model.drop_path_rate": drop_path,
        "model.batchnorm_layers": len(norms),
        "model.bn_momentum": ",".join(sorted({f"{m.momentum:g}" for m in norms if m.momentum})) or "none",
    }


def data_config(model: nn.Module) -> dict[str, Any]:
    """timm's data config for the model (input size, mean, std, interpolation)."""
    from timm.data import resolve_model_data_config

    return resolve_model_data_config(model)
