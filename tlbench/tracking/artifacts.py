"""What a finished cell leaves in its MLflow run: its resolved spec, history, per-class accuracy,
figures and best checkpoint (``light``: the first two only, for tuning trials)."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from tlbench.cells import Cell

CHECKPOINT_ARTIFACT = "checkpoint/best.safetensors"


def _write_history(result: Any, path: Path) -> None:
    with open(path, "w", newline="") as f:
        if not result.history:
            raise ValueError("a run without epochs has no history to write")
        fields = list(dict.fromkeys(k for row in result.history for k in row))  # val_* only where validated
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(result.history)


def _write_per_class(result: Any, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", "support", "correct", "accuracy"])
        for i, name in enumerate(result.classes):
            support = int(result.confusion[i].sum())
            w.writerow([name, support, int(result.confusion[i, i]), f"{result.per_class_acc[i]:.4f}"])


def write_artifacts(client: Any, run_id: str, cell: Cell, result: Any, light: bool = False) -> None:
    """Write the files into a temporary folder, then log them in one call."""
    from tlbench.figures import run as plots
    from tlbench.models.weights import save_weights_dict

    with tempfile.TemporaryDirectory(prefix="tlbench-") as tmp:
        d = Path(tmp)
        (d / "cell.yaml").write_text(yaml.safe_dump(cell.to_dict(), sort_keys=False))
        _write_history(result, d / "history.csv")
        if not light:
            _write_per_class(result, d / "per_class.csv")
            plots.learning_curves(result.history, d / "learning_curves.png", cell.name)
            plots.confusion_matrix(result.confusion, result.classes, d / "confusion_matrix.png", cell.name)
            (d / "checkpoint").mkdir()
            save_weights_dict(result.best_state, d / CHECKPOINT_ARTIFACT)
        client.log_artifacts(run_id, str(d))
