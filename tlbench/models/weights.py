"""Weight files into a timm backbone, and a model's weights out to a file.

Files load with safetensors or ``torch.load(weights_only=True)`` through timm's own loader (EMA
and nested checkpoints, DDP/compile prefixes), through the architecture's own timm conversion when
they do not fit as they are; then every key and shape but the classifier's must fit, and what does
not is named. Nothing a user did not make is ever unpickled.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from tlbench.errors import TlbenchError
from tlbench.models.heads import classifier_prefixes, is_head_key


class WeightsError(TlbenchError, ValueError):
    """A weight file that is missing or does not fit the backbone; the message names keys and shapes."""


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
    own = {k: v for k, v in model.state_dict().items() if not is_head_key(k, prefixes)}

    def backbone(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # a VPT cell's prompts (models.prompts) are its strategy's, not the backbone's: a model
        # built from its weights starts without them (and a vpt cell adds its own after loading)
        return {k: v for k, v in sd.items() if not is_head_key(k, prefixes) and not k.startswith("vpt.")}

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
    assert all(is_head_key(k, prefixes) or k.endswith("num_batches_tracked") for k in result.missing_keys), (
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
