"""What every pool worker imports before its first cell, imported once in the forkserver
(``tlbench.executor.forkserver``): each worker forks with it loaded instead of importing it.

Imports only: no torch operation (a forked child must not inherit an OpenMP pool), no CUDA.
"""

import matplotlib.figure  # noqa: F401
import mlflow  # noqa: F401
import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
import mlflow.tracking  # noqa: F401
import safetensors.torch  # noqa: F401
import timm  # noqa: F401
import torch  # noqa: F401

import tlbench.data.datasets  # noqa: F401
import tlbench.executor.runner  # noqa: F401
import tlbench.executor.stacking  # noqa: F401
import tlbench.features.store  # noqa: F401
import tlbench.figures.run  # noqa: F401
import tlbench.models.build  # noqa: F401
import tlbench.tracking.artifacts  # noqa: F401
import tlbench.tracking.cellrun  # noqa: F401
import tlbench.train.fitting  # noqa: F401
import tlbench.train.stacked  # noqa: F401
