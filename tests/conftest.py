"""Shared test set-up: offline, quiet, tiny; every MLflow store is a temporary one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub traffic from tests, and fail fast if tried
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ["COLUMNS"] = "250"  # rich tables: no wrapped cell names in captured output

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _data_dir(tmp_path_factory):
    """Tensor caches and downloads go to a per-session folder, not ~/.cache."""
    os.environ["TLBENCH_DATA"] = str(tmp_path_factory.mktemp("tlbench-data"))
    yield


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A fresh embedded MLflow store (SQLite + artifacts) in a temporary folder."""
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


TINY_GRID = """
name: tiny
train: {epochs: 2, batch_size: 32, image_size: 16, lr: 0.05, seed: 0}
datasets:
  - {name: synthetic, params: {classes: 4, train_per_class: 30, val_per_class: 8, test_per_class: 8, image_size: 16}}
backbones:
  - {name: test_resnet, weights: none}
strategies: [scratch]
optimizers: [sgd]
augmentations: [none]
"""


@pytest.fixture
def write_grid(tmp_path: Path):
    """Write a grid YAML into tmp_path and return its path."""

    def _write(text: str = TINY_GRID, name: str = "tiny.yaml") -> Path:
        p = tmp_path / name
        p.write_text(text)
        return p

    return _write
