"""What a finished cell leaves in its MLflow run: its resolved spec, history, per-class accuracy,
figures and best checkpoint (``light``: the first two only, for tuning trials).

A full disk, for the temporary folder they are written into or for a local artifact store,
ends in ``DiskFullError`` naming that folder; the files half-copied into the store are removed.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tlbench.diskspace import ensure_room, state_nbytes, tree_nbytes, writing

if TYPE_CHECKING:
    from tlbench.cells import Cell

CHECKPOINT_ARTIFACT = "checkpoint/best.safetensors"
TMP_REMEDY = "free space there or point TMPDIR at a disk with room, then run again"
STORE_REMEDY = "free space there (or move the store: --tracking-uri / MLFLOW_TRACKING_URI), then run again"


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

    where = tempfile.gettempdir()
    needed = 0 if light else state_nbytes(result.best_state)  # the rest: kilobytes
    with tempfile.TemporaryDirectory(prefix="tlbench-") as tmp:
        d = Path(tmp)
        with writing(where, needed, TMP_REMEDY, what="writing the run's artifacts"):
            (d / "cell.yaml").write_text(yaml.safe_dump(cell.to_dict(), sort_keys=False))
            _write_history(result, d / "history.csv")
            if not light:
                _write_per_class(result, d / "per_class.csv")
                plots.learning_curves(result.history, d / "learning_curves.png", cell.name)
                plots.confusion_matrix(
                    result.confusion, result.classes, d / "confusion_matrix.png", cell.name
                )
                (d / "checkpoint").mkdir()
                save_weights_dict(result.best_state, d / CHECKPOINT_ARTIFACT)
        _log_folder(client, run_id, d)


def _log_folder(client: Any, run_id: str, d: Path) -> None:
    """``log_artifacts``; into a local artifact store, checked for room first and, on a full disk,
    the files it copied removed (a half-written best checkpoint must not pass for a good one)."""
    from mlflow.utils.file_utils import local_file_uri_to_path
    from mlflow.utils.uri import is_local_uri

    uri = client.get_run(run_id).info.artifact_uri
    if not is_local_uri(uri):  # a server's store: its own error, as it reports it
        client.log_artifacts(run_id, str(d))
        return
    dest = Path(local_file_uri_to_path(uri))
    needed, what = tree_nbytes(d), "copying the run's artifacts into the store"
    copies = [dest / p.relative_to(d) for p in d.rglob("*") if p.is_file()]
    ensure_room(dest, needed, STORE_REMEDY, what)
    with writing(dest, needed, STORE_REMEDY, partial=copies, what=what):
        client.log_artifacts(run_id, str(d))
