"""The critical-difference diagram of average ranks (Demšar 2006), drawn by scikit-posthocs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tlbench.stats import RankResult


def cd_diagram(
    result: RankResult, path: str | Path, *, title: str | None = None, keep: dict[str, Any] | None = None
) -> Path | None:
    """Draw ``scikit_posthocs.critical_difference_diagram`` to a PNG; None without a Nemenyi matrix.

    Values joined by a bar are not significantly different (Nemenyi, alpha = 0.05).
    """
    if result.nemenyi is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import scikit_posthocs as sp
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    k = len(result.avg_ranks)
    fig = Figure(figsize=(max(6.0, 1.2 * k), 1.0 + 0.4 * k))
    ax = fig.subplots()
    sp.critical_difference_diagram(result.avg_ranks, result.nemenyi, ax=ax)
    ax.set_title(
        title or f"Average rank over {result.n_blocks} blocks (Friedman p = {result.friedman_p:.3g})"
    )
    fig.savefig(path, dpi=150, bbox_inches="tight")  # the labels sit outside the axes
    if keep is not None:
        keep["critical difference"] = fig
    else:
        fig.clear()  # a bare Figure is never in pyplot's registry; clearing frees its artists now
    return path
