"""Build a timm backbone for a cell: its weights (hub, file, earlier cell or none) and a new head.

The head is always replaced for the target's classes; everything else loads strictly, and a
file whose keys or shapes do not fit names them. Files load with safetensors or
``torch.load(weights_only=True)``: nothing a user did not make is ever unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

import tlbench.backbones  # noqa: F401  (registers our own backbones in timm)
from tlbench.registry import UnknownNameError
from tlbench.spec import HeadConfig, WeightsSpec


class WeightsError(ValueError):
    """A weight file that is missing or does not fit the backbone; the message names keys and shapes."""


def check_backbone_name(name: str) -> None:
    """Raise ``UnknownNameError`` (with did-you-mean) unless timm knows this model (``arch`` or ``arch.tag``)."""
    import timm

    if not timm.is_model(name):
        raise UnknownNameError("backbone (timm model)", name, timm.list_models())


def classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Key prefixes of the classifier, e.g. ('fc',) or ('head.fc',) — the part a transfer replaces."""
    cls = model.pretrained_cfg.get("classifier", "")  # type: ignore[union-attr]
    names = cls if isinstance(cls, (list, tuple)) else (cls,)
    return tuple(n for n in names if n)


def _is_head_key(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _set_head(model: nn.Module, head: HeadConfig, num_classes: int) -> None:
    """Replace the (already reset) linear classifier with ``head``: dropout + linear, or an MLP."""
    if head.type == "linear" and head.dropout == 0:
        return
    current = model.get_classifier()  # type: ignore[operator]
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
    setattr(parent, path.rsplit(".", 1)[-1], nn.Sequential(*layers))


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file, or a .pth/.pt/.bin read with ``weights_only=True``."""
    if not path.exists():
        raise WeightsError(f"weight file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refuses pickled code: say so instead of unpickling
        raise WeightsError(
            f"{path}: cannot load with weights_only=True ({err}); save a plain state_dict"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected a state_dict of tensors in timm's key layout")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_backbone_weights(model: nn.Module, path: Path) -> None:
    """Load everything but the classifier from ``path``, strictly; mismatches name keys and shapes."""
    state = read_state_dict(path)
    prefixes = classifier_prefixes(model)
    own = {k: v for k, v in model.state_dict().items() if not _is_head_key(k, prefixes)}
    theirs = {k: v for k, v in state.items() if not _is_head_key(k, prefixes)}
    missing = sorted(set(own) - set(theirs))
    unexpected = sorted(set(theirs) - set(own))
    shapes = [
        f"{k}: file {tuple(theirs[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(theirs))
        if theirs[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:8])}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:8])}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {'; '.join(shapes[:8])}")
        raise WeightsError(f"{path} does not fit {type(model).__name__}: " + " | ".join(parts))
    result = model.load_state_dict(theirs, strict=False)
    assert all(_is_head_key(k, prefixes) for k in result.missing_keys), result


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
    from tlbench.prefetch import hub_repo

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
        name = backbone if (not weights.value or "." in backbone) else f"{backbone}.{weights.value}"
        _fail_fast_if_unreachable(name)
        try:
            model = timm.create_model(name, pretrained=True, num_classes=num_classes, **kwargs)
        except Exception as err:
            raise WeightsError(
                f"could not get pretrained weights for {name!r} from the Hugging Face hub ({type(err).__name__}: "
                f"{err}). Without internet, run `tlbench prefetch --grid ...` where there is, then use "
                f"HF_HUB_OFFLINE=1, or point the backbone at a file: weights: file:/path/to/{backbone}.safetensors"
            ) from None
    else:
        model = timm.create_model(backbone, pretrained=False, num_classes=num_classes, **kwargs)
        if weights.kind in ("file", "cell", "run"):
            path = weights_file or Path(weights.value).expanduser()
            load_backbone_weights(model, Path(path))
    _set_head(model, head or HeadConfig(), num_classes)
    return model


def data_config(model: nn.Module) -> dict[str, Any]:
    """timm's data config for the model (input size, mean, std, interpolation)."""
    from timm.data import resolve_model_data_config

    return resolve_model_data_config(model)
