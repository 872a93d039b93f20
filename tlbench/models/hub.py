"""Pretrained weights from the Hugging Face hub: where timm keeps them, and failing fast offline.

Whether the hub can be reached is asked of huggingface_hub itself, with the settings its download
will use: its endpoint (``HF_ENDPOINT``: a mirror), the environment's proxies (its httpx client
reads ``HTTP(S)_PROXY`` / ``NO_PROXY``), its offline switch, and a HEAD of the file timm fetches
first. A direct connect to huggingface.co said "unreachable" behind a proxy or with a mirror.
Its metadata timeout is shortened (unless the user set one) so a silent host fails in seconds.
"""

from __future__ import annotations

import os
from typing import Any

HUB_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
ETAG_TIMEOUT_S = 5  # huggingface_hub's default is 10, and timm asks for up to two files in turn
DOWNLOAD_TIMEOUT_S = 10  # seconds of silence in a weight download (huggingface_hub's default)
_TRUE = ("1", "true", "yes", "on")
_TRANSPORTS = {"httpx", "httpx2", "httpcore", "requests", "urllib3"}  # huggingface_hub's HTTP stacks


def _pretrained_cfg(name: str) -> Any:
    from timm.models import get_pretrained_cfg

    return get_pretrained_cfg(name)


def hub_repo(name: str) -> tuple[str, str | None]:
    """(hf repo id, file name in the HF cache if present) for a timm pretrained name."""
    from huggingface_hub import try_to_load_from_cache

    repo = getattr(_pretrained_cfg(name), "hf_hub_id", None) or ""
    if not repo:
        return "", None
    repo_id, _, revision = repo.partition("@")
    for filename in HUB_FILES:
        found = try_to_load_from_cache(repo_id, filename, revision=revision or None)
        if isinstance(found, str):
            return repo, found
    return repo, None


def short_hub_timeouts() -> None:
    """huggingface_hub's metadata / download timeouts, shortened where the user set none."""
    from huggingface_hub import constants

    if not os.environ.get("HF_HUB_ETAG_TIMEOUT"):
        constants.HF_HUB_ETAG_TIMEOUT = ETAG_TIMEOUT_S
    if not os.environ.get("HF_HUB_DOWNLOAD_TIMEOUT"):
        constants.HF_HUB_DOWNLOAD_TIMEOUT = DOWNLOAD_TIMEOUT_S


def hub_endpoint() -> str:
    """The hub huggingface_hub downloads from: ``HF_ENDPOINT`` (read at its import) or huggingface.co."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def hub_route(repo: str = "") -> str:
    """Where hub weights come from, for messages and ``prefetch``: endpoint, repo and proxy."""
    from tlbench.data.fetching import route

    return route(f"{hub_endpoint()}/{repo}" if repo else hub_endpoint())


def _first_file(name: str) -> str:
    """The file timm asks the hub for first (its safetensors alternative of the configured one)."""
    filename = getattr(_pretrained_cfg(name), "hf_hub_filename", None) or "pytorch_model.bin"
    if filename == "pytorch_model.bin":
        return "model.safetensors"
    return filename[: -len(".bin")] + ".safetensors" if filename.endswith(".bin") else filename


def hub_offline() -> str | None:
    """The switch that keeps huggingface_hub off the network (``HF_HUB_OFFLINE``), or None."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE or getattr(
        constants, "HF_HUB_OFFLINE", False
    ):
        return "HF_HUB_OFFLINE"
    return None


def hub_problem(name: str, repo: str) -> str | None:
    """Why the hub will not serve ``repo``'s weights right now (no answer, a refusal), or None.

    A HEAD of the first file through huggingface_hub (its endpoint, proxies, token, timeout);
    a 404 is not a problem: timm then asks for its next file.
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    repo_id, _, revision = repo.partition("@")
    url = hf_hub_url(repo_id, _first_file(name), revision=revision or None)
    timeout = constants.HF_HUB_ETAG_TIMEOUT
    try:
        get_hf_file_metadata(url, timeout=timeout)
    except EntryNotFoundError:
        return None
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        if status == 404:
            return None
        return f"answered HTTP {status} ({str(err).splitlines()[0]})"
    except Exception as err:  # the client's transport errors: refused, DNS, timeout, a proxy's refusal
        if isinstance(err, OSError) or type(err).__module__.split(".")[0] in _TRANSPORTS:
            return f"could not be reached ({type(err).__name__}: {err}; timeout {timeout:g} s)"
        return None  # not the network: timm's own download reports it
    return None


def fail_fast_if_unreachable(name: str) -> None:
    """Seconds, not a minute of retries: weights neither cached nor reachable fail at once, in one
    sentence naming the endpoint and proxy tried (cached weights, or none on the hub: no check)."""
    short_hub_timeouts()
    if hub_offline():
        return  # the hub library itself fails fast (or reads the cache)
    repo, cached = hub_repo(name)
    if cached or not repo:
        return
    from tlbench.models.weights import WeightsError

    if os.environ.get("TLBENCH_OFFLINE", "").strip().lower() in _TRUE:
        problem: str | None = f"is not asked (TLBENCH_OFFLINE={os.environ['TLBENCH_OFFLINE']})"
    else:
        problem = hub_problem(name, repo)
    if problem:
        raise WeightsError(
            f"pretrained weights {name!r} are not in the Hugging Face cache and the hub at {hub_route(repo)} "
            f"{problem}; run `tlbench prefetch --grid ...` on a machine with internet (same HF_HOME), "
            "set HF_ENDPOINT to a hub mirror (and HTTPS_PROXY / NO_PROXY as your network needs), "
            "or use weights: file:PATH"
        )
