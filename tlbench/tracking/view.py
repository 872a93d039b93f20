"""How a grid looks in the MLflow UI: its experiment opens on the training runs table, with the
axes and test accuracy as columns, best first.

MLflow 3's UI decides the experiment page from two things, both set here:

- the experiment tag ``mlflow.experimentKind``: ``custom_model_development`` makes the page a
  "Model training" one whose default tab is Runs (untagged, the UI may infer GenAI and open the
  traces Overview); the URL's ``workflowType=machine_learning`` sets the sidebar toggle, which
  otherwise comes from the browser's last choice (local storage ``mlflow.workflowType``);
- a saved view: the experiment tag ``mlflow.sharedViewState.<key>`` holds
  ``{"name", "createdAt", "state"}``, ``state`` being the runs table's JSON state (search facets
  ``orderByKey`` / ``orderByAsc`` / ``searchFilter`` ..., and UI state ``selectedColumns`` /
  ``columnOrder`` / ``columnWidths`` ...); ``?viewStateShareKey=<key>`` opens it, and the
  UI's view picker lists it by name. Column keys are ``params.`NAME```, ``metrics.`NAME```,
  ``attributes.`Dataset```.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:
    from tlbench.cells import Cell

EXPERIMENT_KIND = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
VIEW_PREFIX = "mlflow.sharedViewState."
VIEW_KEY = "tlbench"  # the saved view tlbench writes (and rewrites) on every grid's experiment
VIEW_NAME = "tlbench: axes + test accuracy"
AXES = ("dataset", "backbone", "strategy", "optimizer", "augmentation")
METRICS = ("test_acc", "best_val_acc", "train_time_s")
STRATEGY_SHORT = {"linear_probe": "lp", "finetune": "ft", "lp_ft": "lp-ft"}


def experiment_view_tags() -> dict[str, str]:
    """Tags a grid's experiment gets at creation: a model-training experiment."""
    return {EXPERIMENT_KIND: TRAINING_KIND}


def short_run_name(cell: Cell, variant: str | None = None) -> str:
    """A run name that fits the table's column (the axes are columns of their own):
    ``digits-10pct/test_resnet/lp/sgd/basic@s1``; the full name stays in tag ``tlbench.cell``."""
    labels = dict(cell.labels)
    labels["strategy"] = STRATEGY_SHORT.get(labels["strategy"], labels["strategy"])
    name = "/".join(labels[a] for a in AXES)
    if cell.replicate is not None and cell.name.endswith(f"@s{cell.replicate}"):
        name += f"@s{cell.replicate}"
    return name if not variant else f"{name} [{variant}]"


def view_state(cells: Iterable[Cell]) -> dict[str, Any]:
    """The runs table: the axes that vary (all five for an empty grid) and the seed of a
    replicated grid, then test / best-val accuracy and time; sorted by test accuracy, best first."""
    cells = list(cells)
    varying = [a for a in AXES if len({c.labels[a] for c in cells}) > 1] or list(AXES)
    params = [f"params.`{a}`" for a in varying]
    if any(c.replicate is not None for c in cells):
        params.append("params.`seed`")
    metrics = [f"metrics.`{m}`" for m in METRICS]
    if any(c.replicate is not None for c in cells):
        metrics.insert(1, "metrics.`test_acc_mean`")  # the configurations' summary runs
    columns = params + metrics
    return {
        "searchFilter": "",
        "orderByKey": "metrics.`test_acc`",
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "selectedColumns": [*columns, "attributes.`Dataset`"],
        "columnOrder": columns,
        "columnWidths": {"tags.`mlflow.runName`": 320},
        "runListHidden": False,
        "viewMaximized": False,
    }


def ensure_view(client: Any, experiment_id: str, cells: Iterable[Cell]) -> None:
    """Tag the experiment as a training one and (re)write tlbench's saved view; writes nothing
    when both are as they should be (a concurrent writer writes the same)."""
    exp = client.get_experiment(experiment_id)
    state = json.dumps(view_state(cells), sort_keys=True)
    current = exp.tags.get(VIEW_PREFIX + VIEW_KEY)
    created = int(time.time() * 1000)
    if current:
        try:
            old = json.loads(current)
            if old.get("state") == state and old.get("name") == VIEW_NAME:
                state = ""  # unchanged
            created = int(old.get("createdAt", created))
        except (ValueError, AttributeError):
            pass
    if exp.tags.get(EXPERIMENT_KIND) != TRAINING_KIND:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND, TRAINING_KIND)
    if state:
        now = int(time.time() * 1000)
        envelope = {"name": VIEW_NAME, "createdAt": created, "updatedAt": now, "state": state}
        client.set_experiment_tag(experiment_id, VIEW_PREFIX + VIEW_KEY, json.dumps(envelope))


def runs_url(base: str, experiment_id: str) -> str:
    """The UI address of an experiment's runs table in tlbench's saved view, training toggle on."""
    query = urlencode({"workflowType": "machine_learning", "viewStateShareKey": VIEW_KEY})
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"
