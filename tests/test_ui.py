"""``tlbench ui --grid``: the printed URL, rendered by a real headless Chromium against a real
MLflow server, shows the grid's training runs table (axes and test accuracy as columns, best
first), not MLflow 3's GenAI overview. The store is filled through MlflowClient: nothing trains."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from helpers import free_port
from mlflow.entities import Metric

from tlbench.cells import expand
from tlbench.spec import load_grid
from tlbench.tracking import Tracker
from tlbench.tracking.view import view_state

GRID = """
name: uigrid
train: {epochs: 1, batch_size: 32, image_size: 16}
datasets: [digits]
backbones: [{name: test_resnet, weights: none}]
strategies: [linear_probe, finetune, scratch]
optimizers: [sgd, adam]
augmentations: [none]
"""

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """A store with the grid's six runs FINISHED, test accuracies 0.50 .. 0.75."""
    folder = tmp_path_factory.mktemp("ui")
    grid = folder / "uigrid.yaml"
    grid.write_text(GRID)
    store = f"sqlite:///{folder / 'mlflow.db'}"
    os.environ["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"] = "false"  # no sampler threads to wait for
    try:
        tracker = Tracker(store)
        exp = tracker.experiment_id("uigrid")
        cells = expand(load_grid(grid), grid)
        for i, cell in enumerate(cells):
            run = tracker.start_cell(exp, cell)
            metrics = {"test_acc": 0.5 + 0.05 * i, "best_val_acc": 0.6, "train_time_s": 1.0 + i}
            tracker.client.log_batch(run.run_id, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()])
            run.end("FINISHED")
    finally:
        del os.environ["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"]
    return grid, store, cells


def test_the_view_shows_the_varying_axes_and_sorts_by_test_accuracy(filled):
    _, _, cells = filled
    state = view_state(cells)
    assert state["orderByKey"] == "metrics.`test_acc`" and state["orderByAsc"] is False
    assert state["columnOrder"][:2] == ["params.`strategy`", "params.`optimizer`"]  # dataset is one
    assert (
        "metrics.`test_acc`" in state["selectedColumns"]
        and "attributes.`Dataset`" in state["selectedColumns"]
    )


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium")
def test_the_printed_url_opens_the_runs_table_in_chromium(filled, services, tmp_path):
    grid, store, cells = filled
    port = free_port()
    proc = services.start(
        [
            sys.executable,
            "-m",
            "tlbench.cli",
            "ui",
            "--grid",
            str(grid),
            "--tracking-uri",
            store,
            "--port",
            str(port),
        ],
        env={**os.environ, "COLUMNS": "400"},
    )
    body = services.wait_http(
        f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=5", proc, 120
    )
    assert '"uigrid"' in body  # the store, served on loopback
    url = re.search(r"uigrid: (http://\S+)", services.output(proc)).group(1)
    assert "workflowType=machine_learning" in url and "viewStateShareKey=tlbench" in url

    dom = _render(url, tmp_path)
    assert "tlbench: axes + test accuracy" in dom  # the saved view is the one applied
    assert 'data-testid="sort-header-test_acc"' in dom  # the test-accuracy column, sorted by
    assert re.search(r'class="is-ordered-by[^"]*"><span data-testid="sort-header-test_acc"', dom)
    for axis in ("strategy", "optimizer"):
        assert f'data-testid="sort-header-{axis}"' in dom
    # the rows: the best run (the last cell, 0.75) above the worst (the first, 0.50)
    best, worst = _run_name(cells[-1]), _run_name(cells[0])
    assert best in dom and worst in dom and dom.index(best) < dom.index(worst)
    assert "Model training" in dom


def _run_name(cell) -> str:
    from tlbench.tracking.view import short_run_name

    return short_run_name(cell)


def _render(url: str, tmp_path) -> str:
    """The DOM after the app has fetched and drawn (virtual time lets its requests finish)."""
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--window-size=1900,1000",
        "--virtual-time-budget=20000",
        "--dump-dom",
        url,
    ]
    for _ in range(3):  # the first paint on a cold server can miss the runs' request
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
        if 'data-testid="sort-header-test_acc"' in out:
            return out
        time.sleep(2)
    return out
