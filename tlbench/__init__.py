"""tlbench: declare a transfer-learning grid, get every cell trained, tracked in MLflow and compared.

The library's entry points are ``tlbench.api``'s, re-exported here (imported on first use, so
``import tlbench`` stays free of torch, timm and MLflow): ``load_grid``, ``expand_grid``,
``validate_grid``, ``prefetch_grid``, ``run_grid``, ``rank_grid``, ``tune_grid``, ``results``, ``report_grid``,
``ui_url``, and the store's ``backup_store``, ``restore_store``, ``check_store``.
"""

from __future__ import annotations

from typing import Any

from tlbench.version import __version__

_API = (
    "Grid",
    "Results",
    "RunResult",
    "backup_store",
    "check_store",
    "expand_grid",
    "load_grid",
    "order_cells",
    "prefetch_grid",
    "rank_grid",
    "report_grid",
    "restore_store",
    "results",
    "run_grid",
    "tune_grid",
    "ui_url",
    "validate_grid",
)
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from tlbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'tlbench' has no attribute {name!r}")
