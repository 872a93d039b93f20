"""The method × cost table and its score vs cost plots, from a store filled through MLflow's client:
ranked by the grid's metric (accuracy or mean per-class accuracy, which rank differently here),
trainable share logged or derived, GPU memory where logged else CPU RSS, and each dataset's front."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from tlbench import report as rp
from tlbench.cells import expand
from tlbench.report import fmt
from tlbench.report.costs import cost_table, trainable_fraction
from tlbench.spec import load_grid
from tlbench.tracking import Tracker, tags

GRID = """
name: {name}
metric: {metric}
train: {{epochs: 1, batch_size: 32, image_size: 16, lr: 0.05, seed: 0}}
seeds: 2
datasets:
  - {{name: synthetic, params: {{classes: 3, train_per_class: 12, val_per_class: 6, test_per_class: 6, image_size: 16}}}}
  - {{name: digits}}
backbones: [{{name: test_resnet, weights: none}}]
strategies: [linear_probe, partial, finetune]
optimizers: [sgd]
augmentations: [none]
"""
TOTAL = 1_000_000.0
# (dataset, strategy) -> (test acc, test mean per-class acc, trainable params, GPU MB, CPU RSS MB):
# synthetic ran on a CPU (no GPU peak; partial logged no RSS either), digits on a GPU. Accuracy
# and mean per-class accuracy rank each dataset's strategies differently.
VALUES = {
    ("synthetic", "linear_probe"): (0.80, 0.78, 5_000.0, None, 900.0),
    ("synthetic", "partial"): (0.79, 0.70, 300_000.0, None, None),
    ("synthetic", "finetune"): (0.90, 0.75, TOTAL, None, 1500.0),
    ("digits", "linear_probe"): (0.70, 0.60, 5_000.0, 400.0, 2000.0),
    ("digits", "partial"): (0.88, 0.80, 300_000.0, 700.0, 2100.0),
    ("digits", "finetune"): (0.86, 0.82, TOTAL, 1200.0, 2200.0),
}
NOISE = {0: -0.005, 1: 0.005}  # per seed: the means are the values above
FAILED = ("digits", "finetune", 1)  # this replicate failed: its configuration has n = 1


def _spec(cell):
    """The run of one replicate: seed 1 and the synthetic probe are 'older runs' without the
    trainable fraction; memory metrics only where VALUES has them."""
    from synthetic_store import Spec

    ds, strategy, seed = cell.dataset.name, cell.strategy.name, cell.train.seed
    if (ds, strategy, seed) == FAILED:
        return Spec(status="FAILED", tags={tags.REASON: "CUDA out of memory"})
    acc, per_class, trainable, gpu, rss = VALUES[(ds, strategy)]
    metrics = {
        "test_acc": acc + NOISE[seed],
        "best_val_acc": acc + NOISE[seed],
        "test_mean_per_class_acc": per_class + NOISE[seed],
        "best_val_mean_per_class_acc": per_class + NOISE[seed],
        "train_time_s": 10.0,
        "device_s": 20.0 + 10 * seed + trainable / 1e5,
        "params_trainable": trainable,
        "params_total": TOTAL,
    }
    if seed == 0 and (ds, strategy) != ("synthetic", "linear_probe"):
        metrics["params_trainable_frac"] = trainable / TOTAL
    metrics |= {k: v for k, v in (("peak_mem_mb", gpu), ("peak_rss_mb", rss)) if v is not None}
    return Spec(metrics=metrics, curve=[acc], tags={tags.DEVICE: "cuda" if gpu else "cpu"})


@pytest.fixture(scope="session")
def cost_stores(tmp_path_factory):
    """metric -> (grid file, store URI): the same runs under a grid ranked by accuracy and one
    ranked by mean per-class accuracy."""
    from synthetic_store import fill_store

    out = {}
    for metric in ("acc", "mean_per_class_acc"):
        tmp = tmp_path_factory.mktemp(f"costs-{metric}")
        name = f"costs_{metric}"
        grid = tmp / f"{name}.yaml"
        grid.write_text(GRID.format(name=name, metric=metric))
        store = f"sqlite:///{tmp / 'mlflow.db'}"
        fill_store(store, name, [(c, _spec(c)) for c in expand(load_grid(grid))])
        out[metric] = (grid, store)
    return out


def _expected_order(ds: str, metric: str) -> list[str]:
    """Strategies by their mean score, best first, from VALUES (the failed seed left out)."""
    col = 0 if metric == "acc" else 1

    def mean(strategy: str) -> float:
        seeds = [s for s in NOISE if (ds, strategy, s) != FAILED]
        return float(np.mean([VALUES[(ds, strategy)][col] + NOISE[s] for s in seeds]))

    strategies = [s for d, s in VALUES if d == ds]
    return sorted(strategies, key=mean, reverse=True)


def _expected_front(ds: str, metric: str, cost: int) -> list[str]:
    """By brute force: strategies no other beats with a higher score at no more cost."""
    col = 0 if metric == "acc" else 1
    points = {s: (v[cost], v[col]) for (d, s), v in VALUES.items() if d == ds and v[cost] is not None}
    front = [s for s, (x, y) in points.items() if not any(x2 <= x and y2 > y for x2, y2 in points.values())]
    return sorted(front, key=lambda s: points[s][0])


def _build(cost_stores, metric, out=None):
    grid, store = cost_stores[metric]
    spec = load_grid(grid)
    tracker = Tracker(store)
    rows, cols = ["dataset", "backbone"], ["strategy"]
    exp = tracker.experiment_id(spec.name)
    return rp.build(
        expand(spec), tracker, exp, grid=spec.name, rows=rows, cols=cols, out=out, plots=bool(out)
    )


@pytest.mark.parametrize("metric", ["acc", "mean_per_class_acc"])
def test_each_dataset_is_ranked_by_the_grids_metric(cost_stores, metric):
    costs = _build(cost_stores, metric).costs
    for ds in ("synthetic", "digits"):
        mine = costs[costs["dataset"] == ds]
        assert list(mine["rank"]) == [1, 2, 3]
        assert list(mine["strategy"]) == _expected_order(ds, metric)
        col = 0 if metric == "acc" else 1
        means = [VALUES[(ds, s)][col] + (NOISE[0] if (ds, s) == FAILED[:2] else 0) for s in mine["strategy"]]
        assert list(mine["mean"]) == pytest.approx(means)
    assert (costs["metric"] == metric).all()
    ft = costs.set_index("config").loc["digits/test_resnet/finetune/sgd/none"]
    assert ft["n"] == 1 and sorted(ft["status"].split(", ")) == ["FAILED 1", "FINISHED 1"]
    ok = costs[costs["n"] == 2]
    assert (ok["ci_low"] < ok["mean"]).all() and (ok["mean"] < ok["ci_high"]).all()


def test_the_two_metrics_rank_differently():
    assert _expected_order("synthetic", "acc") != _expected_order("synthetic", "mean_per_class_acc")
    assert _expected_order("digits", "acc") != _expected_order("digits", "mean_per_class_acc")


def test_trainable_share_memory_and_device_time(cost_stores):
    costs = _build(cost_stores, "acc").costs.set_index(["dataset", "strategy"])
    for (ds, strategy), (_, _, trainable, gpu, rss) in VALUES.items():
        row = costs.loc[(ds, strategy)]
        assert row["params_trainable"] == trainable
        assert row["params_trainable_frac"] == pytest.approx(trainable / TOTAL)  # logged or derived
        memory, source = (gpu, "GPU") if gpu is not None else (rss, "CPU") if rss is not None else (None, "")
        assert row["memory"] == source
        assert row["peak_memory_mb"] == pytest.approx(memory) if memory else pd.isna(row["peak_memory_mb"])
        seeds = [s for s in NOISE if (ds, strategy, s) != FAILED]
        assert row["device_s"] == pytest.approx(np.mean([20 + 10 * s + trainable / 1e5 for s in seeds]))


def test_the_logged_fraction_wins_and_older_runs_derive_it():
    runs = pd.DataFrame(
        {
            "params_trainable": [10.0, 10.0, 10.0, None],
            "params_total": [100.0, 100.0, 0.0, 100.0],
            "params_trainable_frac": [0.5, None, None, None],
        }
    )
    frac = trainable_fraction(runs)
    assert frac[0] == 0.5 and frac[1] == pytest.approx(0.1)
    assert frac[2:].isna().all()  # no total, no trainable: unknown, not zero or infinite
    assert trainable_fraction(runs.drop(columns="params_trainable_frac"))[0] == pytest.approx(0.1)


def test_a_replicate_on_a_gpu_makes_its_configuration_gpu_and_mixed_tables_say_so_per_value():
    cells = pd.DataFrame(
        {
            "cell": ["d/b/lp@s0", "d/b/lp@s1", "d/b/ft@s0"],
            "config": ["d/b/lp", "d/b/lp", "d/b/ft"],
            "seed": [0, 1, 0],
            "status": ["FINISHED"] * 3,
            "dataset": ["d"] * 3,
            "backbone": ["b"] * 3,
            "strategy": ["lp", "lp", "ft"],
            "test_acc": [0.5, 0.6, 0.9],
            "peak_mem_mb": [300.0, None, None],
            "peak_rss_mb": [None, 800.0, 1000.0],
        }
    )
    costs = cost_table(cells).set_index("config")
    assert (costs.loc["d/b/lp", "memory"], costs.loc["d/b/lp", "peak_memory_mb"]) == ("GPU", 300.0)
    assert (costs.loc["d/b/ft", "memory"], costs.loc["d/b/ft", "peak_memory_mb"]) == ("CPU", 1000.0)
    [(_, table)] = fmt.cost_tables(costs.reset_index())
    assert list(table["peak memory (MB)"]) == ["1,000.0 (CPU)", "300.0 (GPU)"]


def test_every_format_shows_the_table_with_its_memory_column(cost_stores, tmp_path):
    rep = _build(cost_stores, "mean_per_class_acc")
    titles = [t for t, _ in fmt.cost_tables(rep.costs)]
    assert titles == [
        f"{ds} / test_resnet (ranked by test mean per-class accuracy)" for ds in ("synthetic", "digits")
    ]
    tables = dict(fmt.cost_tables(rep.costs))
    synthetic, digits = tables[titles[0]], tables[titles[1]]
    assert "peak CPU RSS (MB)" in synthetic.columns and "peak GPU memory (MB)" in digits.columns
    assert list(synthetic["strategy"]) == _expected_order("synthetic", "mean_per_class_acc")
    assert synthetic.set_index("strategy").loc["partial", "peak CPU RSS (MB)"] == "—"
    assert digits.set_index("strategy").loc["linear_probe", "trainable %"] == "0.5 %"
    files = rp.write(rep, tmp_path, ["md", "html", "tex", "csv"])
    for name in ("report.md", "report.html", "report.tex"):
        text = (tmp_path / name).read_text()
        assert "Method" in text and "peak GPU memory (MB)" in text and "peak CPU RSS (MB)" in text
    assert "## Method × cost (ranked by test mean per-class accuracy)" in (tmp_path / "report.md").read_text()
    csv = pd.read_csv(tmp_path / "method_cost.csv")
    assert tmp_path / "method_cost.csv" in files
    assert list(csv["config"]) == list(rep.costs["config"])
    buffer = io.StringIO()
    rp.render_costs(rep, Console(file=buffer, width=200))
    assert "method × cost: digits / test_resnet" in buffer.getvalue()


@pytest.mark.parametrize("metric", ["acc", "mean_per_class_acc"])
def test_one_cost_figure_per_dataset_with_its_fronts(cost_stores, metric, tmp_path):
    rep = _build(cost_stores, metric, out=tmp_path)
    costs = rep.costs.set_index("config")
    for ds in ("synthetic", "digits"):
        title = f"score vs cost: {ds}"
        assert rep.plots[title] == tmp_path / f"costs_{ds}.png"
        assert rep.plots[title].read_bytes().startswith(b"\x89PNG")
        params, memory = rep.figures[title].axes[:2]
        assert params.get_xscale() == "log"
        for ax, cost, column in (
            (params, 2, "params_trainable"),
            (memory, 4 if ds == "synthetic" else 3, None),
        ):
            expected = _expected_front(ds, metric, cost)
            [line] = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
            configs = [f"{ds}/test_resnet/{s}/sgd/none" for s in expected]
            xs = costs.loc[configs, column or "peak_memory_mb"]
            assert list(line.get_xdata()) == pytest.approx(list(xs))
            assert list(line.get_ydata()) == pytest.approx(list(costs.loc[configs, "mean"]))
            on = "params" if ax is params else "memory"
            assert sorted(costs.index[costs["front"].str.contains(on) & (costs["dataset"] == ds)]) == sorted(
                configs
            )
        labels = {t.get_text() for t in params.texts}
        assert labels == {s for d, s in VALUES if d == ds}
    assert "costs_synthetic.png" in rp.to_markdown(rep) and "score vs cost: digits" in rp.to_html(rep)


def test_a_configuration_without_a_finished_run_is_listed_last_unranked():
    cells = pd.DataFrame(
        {
            "cell": ["d/b/lp", "d/b/ft", "d/b/bitfit"],
            "status": ["FINISHED", "MISSING", "FINISHED"],
            "dataset": ["d"] * 3,
            "backbone": ["b"] * 3,
            "strategy": ["lp", "ft", "bitfit"],
            "test_acc": [0.5, None, 0.7],
            "params_trainable": [10.0, None, 20.0],
            "params_total": [100.0, None, 100.0],
        }
    )
    costs = cost_table(cells)
    assert list(costs["strategy"]) == ["bitfit", "lp", "ft"]
    assert list(costs["rank"][:2]) == [1, 2] and pd.isna(costs["rank"].iloc[2])
    assert list(costs["front"]) == ["params", "params", ""]  # no memory logged: no memory front
    [(title, table)] = fmt.cost_tables(costs)
    assert title == "d / b (ranked by test accuracy)"
    assert list(table["rank"]) == ["1", "2", "—"] and table["peak memory (MB)"].eq("—").all()
    assert list(table["trainable %"]) == ["20.0 %", "10.0 %", "—"]
