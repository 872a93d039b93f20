"""What a cell run records beside its params: its dataset as an MLflow dataset input, and MLflow's
own system metrics (CPU, memory, disk, network; GPU utilisation and memory where NVIDIA's NVML
or ROCm answers) while it trains.

The dataset input fills the UI's Dataset column and lineage: the dataset's label as its name,
a digest of everything that decides which images land in which split (name, params, subset,
shots, the data seed, the val carve) and the split sizes, where it comes from, and the sizes as
its profile. System metrics are on by default; ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false``
(``tlbench run --no-system-metrics`` sets it for its workers) turns them off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tlbench.cells import Cell

SYSTEM_METRICS_ENV = "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"  # MLflow's own switch; default on here
DATASET_CONTEXT = "train"  # the mlflow.data.context input tag: what the run used the dataset for


def system_metrics_enabled() -> bool:
    """On unless ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING`` says false (MLflow's default is off;
    a benchmark's runs should say what the machine was doing)."""
    value = os.environ.get(SYSTEM_METRICS_ENV)
    return value is None or value.strip().lower() in ("1", "true", "yes", "on")


def dataset_entity(cell: Cell, info: dict[str, Any]) -> Any:
    """The ``mlflow.entities.Dataset`` of a cell: name, digest, source and split sizes."""
    from mlflow.entities import Dataset

    from tlbench.catalog.datasets import dataset_meta

    t = cell.train
    sizes = {k: int(info[f"{k}_size"]) for k in ("train", "val", "test") if f"{k}_size" in info}
    recipe = {
        "dataset": cell.dataset.name,
        "params": cell.dataset.params,
        "subset": t.subset,
        "shots": getattr(t, "shots", None),
        "train_examples": getattr(t, "train_examples", None),
        "val_fraction": t.val_fraction,
        "data_seed": t.seed if t.data_seed is None else t.data_seed,
        "sizes": sizes,
    }
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = cell.dataset.params.get("path")
    if path:  # imagefolder: a folder on this machine
        source_type, source = "local", {"uri": str(path)}
    else:
        source_type = "tlbench"
        source = {"dataset": cell.dataset.name, "description": dataset_meta(cell.dataset.name).description}
    profile = {"num_rows": sizes.get("train"), **sizes, "num_classes": info.get("num_classes")}
    return Dataset(
        name=cell.labels["dataset"],
        digest=digest,
        source_type=source_type,
        source=json.dumps(source, default=str),
        profile=json.dumps(profile),
    )


def log_dataset_input(client: Any, run_id: str, cell: Cell, info: dict[str, Any]) -> None:
    """Log the cell's dataset as the run's input (once: a resumed run already has it)."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.exceptions import MlflowException

    if info.get("resumed_from_epoch") is not None:
        return
    entity = DatasetInput(dataset_entity(cell, info), tags=[InputTag("mlflow.data.context", DATASET_CONTEXT)])
    with contextlib.suppress(MlflowException):  # informative only: never fail a cell over it
        client.log_inputs(run_id, datasets=[entity])


class SystemMetrics:
    """MLflow's ``SystemMetricsMonitor`` on one run; a no-op when turned off or unavailable."""

    def __init__(self, monitor: Any = None):
        self._monitor = monitor
        self._first_step = getattr(monitor, "_logging_step", 0)

    @classmethod
    def start(cls, tracking_uri: str, run_id: str, *, resumed: bool = False) -> SystemMetrics:
        """Sample every ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` s (MLflow's default 10 s)
        on a daemon thread; a resumed run continues its steps."""
        if not system_metrics_enabled():
            return cls()
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no GPU: not news
            monitor = SystemMetricsMonitor(run_id, resume_logging=resumed, tracking_uri=tracking_uri)
            monitor.start()
        except Exception:  # psutil missing, a store hiccup: training goes on without them
            return cls()
        return cls(monitor)

    def stop(self) -> None:
        """Stop sampling and flush; a run shorter than one interval still gets one sample."""
        monitor, self._monitor = self._monitor, None
        if monitor is None:
            return
        with contextlib.suppress(Exception):
            monitor.finish()
            if monitor._logging_step == self._first_step:
                monitor.collect_metrics()
                monitor.publish_metrics(monitor.aggregate_metrics())
                monitor.mlflow_logger.flush()
