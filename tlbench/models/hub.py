"""Pretrained weights from the Hugging Face hub: where timm keeps them, and failing fast offline."""

from __future__ import annotations

import os

HUB_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def hub_repo(name: str) -> tuple[str, str | None]:
    """(hf repo id, file name in the HF cache if present) for a timm pretrained name."""
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    repo = getattr(cfg, "hf_hub_id", None) or ""
    if not repo:
        return "", None
    for filename in HUB_FILES:
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return repo, found
    return repo, None


def fail_fast_if_unreachable(name: str) -> None:
    """Seconds, not a minute of retries: weights neither cached nor reachable fail at once."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return  # the hub library itself fails fast (or reads the cache)
    repo, cached = hub_repo(name)
    if cached or not repo:
        return
    import socket

    from tlbench.models.weights import WeightsError

    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
    except OSError as err:
        raise WeightsError(
            f"pretrained weights {name!r} are not in the Hugging Face cache and the hub is unreachable ({err}). "
            f"Run `tlbench prefetch --grid ...` on a machine with internet (same HF_HOME), or use weights: file:PATH."
        ) from None
