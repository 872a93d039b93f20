"""Every figure tlbench draws, from frames and arrays: ``run`` (one run's learning curves and
confusion matrix, logged as its artifacts), ``curves`` (learning curves with bands over seeds),
``comparisons`` (the pivot as a heatmap, each axis's effect, accuracy vs training time),
``costs`` (score vs trainable parameters and peak memory), ``cd_diagram`` (average ranks). Drawn
with ``matplotlib.figure.Figure`` directly, never pyplot: no global state, no display needed;
matplotlib is imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_figure(
    fig: Any, path: Path, title: str, keep: dict[str, Any] | None, dpi: int = 90
) -> dict[str, Path]:
    """Write the figure; with ``keep``, keep it there too under its title (figures returned to a
    notebook). Shared by every figure of the report."""
    fig.savefig(path, dpi=dpi, bbox_inches="tight" if dpi > 90 else None)
    if keep is not None:
        keep[title] = fig
    return {title: path}
