"""``tlbench cache``: look at and clear the feature store (frozen-backbone features on disk)."""

from __future__ import annotations

import re
import time

import click

from tlbench.cli import common

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> float:
    """``90s``, ``30m``, ``12h``, ``7d``, ``2w`` (a bare number: days) in seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not m:
        raise click.BadParameter(f"{text!r}: give an age like 90s, 30m, 12h, 7d or 2w")
    return float(m.group(1)) * _UNITS[m.group(2) or "d"]


def _open(data_dir: str | None):  # noqa: ANN202 - FeatureStore, imported late (torch)
    from pathlib import Path

    from tlbench.features import FeatureStore, default_root

    root = default_root(Path(data_dir).expanduser() if data_dir else None)
    if root is None:
        common.fail("the feature store is off ($TLBENCH_FEATURE_STORE); nothing to show", code=2)
    return FeatureStore(root)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


@click.group()
def cache() -> None:
    """The feature store: one entry per backbone × weights × source split × transform × device."""


@cache.command("ls")
@common.data_dir_option
def ls(data_dir: str | None) -> None:
    """Entries (most recently used first): key, backbone, split, rows × dim, dtype, size, last use."""
    store = _open(data_dir)
    entries = store.entries()
    click.echo(
        f"{store.root}: {len(entries)} entries, {_size(sum(e.size for e in entries))}"
        f" of {_size(store.budget)} ($TLBENCH_FEATURE_STORE_GB)"
    )
    now = time.time()
    for e in entries:
        f = e.meta.get("fields", {})
        dtype, shape = e.meta.get("tensors", {}).get("features", ("?", []))
        dims = "×".join(str(d) for d in shape)
        age = now - e.last_used
        used = f"{age / 3600:.1f} h ago" if age >= 3600 else f"{age / 60:.0f} min ago"
        click.echo(
            f"  {e.key}  {f.get('backbone', '?'):<18} {f.get('dataset', '?'):<14} {f.get('split', '?'):<5} {dims:>12} {dtype:<4}"
            f" {f.get('image_size', '?')}px {f.get('device', '?')}/{f.get('precision', '?')}"
            f"  {_size(e.size):>9}  {used}"
        )


@cache.command("clear")
@click.option("--older-than", default=None, help="only entries unused for this long: 90s, 30m, 12h, 7d, 2w")
@common.data_dir_option
def clear(older_than: str | None, data_dir: str | None) -> None:
    """Drop feature-store entries (every one, or those not used for --older-than)."""
    store = _open(data_dir)
    dropped = store.clear(parse_age(older_than) if older_than else None)
    click.echo(f"dropped {len(dropped)} entries ({_size(sum(e.size for e in dropped))}) from {store.root}")
