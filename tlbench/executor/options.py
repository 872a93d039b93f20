"""``RunOptions``: every setting of a ``tlbench run`` that reaches the cell, in one frozen object.

The same object travels to the sequential executor, to pool workers (pickled) and to Ray tasks,
so every backend honours every option; none is dropped on the way.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RacePlan:
    """The race a run applies (``tlbench.executor.racing``): the grid's ``race:`` with the command
    line's overrides."""

    rungs: tuple[float, ...] = (1 / 9, 1 / 3)  # fractions of each cell's epochs
    epochs: tuple[int, ...] | None = None  # or explicit rung epochs
    by: tuple[str, ...] = ("dataset", "backbone", "strategy")  # the axes a comparison group shares
    eta: int = 3  # one seed: successive halving keeps the top 1/eta
    level: float = 0.95

    @classmethod
    def from_config(cls, cfg: Any | None, by: tuple[str, ...] | None = None) -> RacePlan:
        """From a grid's ``RaceConfig`` (None: the defaults); ``by`` overrides its axes."""
        if cfg is None:
            return cls(by=by or cls.by)
        return cls(cfg.rungs, cfg.epochs, by or cfg.by, cfg.eta, cfg.level)


@dataclass(frozen=True)
class RunOptions:
    """Where cells are tracked and how they train.

    ``variant`` (e.g. ``tuned``) runs the cells as that variant: tagged, and skipped only if that
    variant has a FINISHED run; ``extra_params`` (cell id -> params) are logged beside the cell's.
    """

    tracking_uri: str
    experiment_id: str
    data_dir: str | None = None
    device: str | None = None  # None / "auto": CUDA when present
    checkpoint_dir: str | None = None  # None: TLBENCH_CHECKPOINTS or ./mlruns/checkpoints
    grid_file: str | None = None
    force: bool = False
    variant: str | None = None
    compile: bool = False
    cache_features: bool = True
    extra_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # this invocation (its driver, workers and tasks): a claim held by an earlier attempt of the
    # same session (a Ray task retried after its node died) is waited for, not left to "another"
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    race: RacePlan | None = None  # train rung by rung, dropping the configurations beaten
    stack: bool = True  # probe cells sharing features train as one stack (executor.stacking)

    def resolved(self) -> RunOptions:
        """Absolute paths: workers and Ray tasks may run in another folder or on another node."""
        from tlbench.train.checkpoint import checkpoint_root

        return replace(
            self,
            data_dir=str(Path(self.data_dir).expanduser().resolve()) if self.data_dir else None,
            checkpoint_dir=str(checkpoint_root(self.checkpoint_dir).resolve()),
        )

    def fit_options(self) -> dict[str, Any]:
        return {"compile": self.compile, "cache_features": self.cache_features}

    def params_for(self, cell_id: str) -> dict[str, Any]:
        return dict(self.extra_params.get(cell_id, {}))
