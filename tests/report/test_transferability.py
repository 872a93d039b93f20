"""The report's transferability section, from a store filled through MLflow's client: finetune
results of 4 backbones × 3 seeds (synthetic) and × 1 seed (digits), and ``tlbench rank`` runs
written by ``tracking.rankings.log_ranking``; no training, no scoring."""

from __future__ import annotations

import html
import io
import time

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from scipy import stats

from tlbench import api
from tlbench import report as rp
from tlbench.cells import expand
from tlbench.report import fmt_transfer
from tlbench.report.transferability import score_table
from tlbench.spec import load_grid
from tlbench.tracking import Tracker
from tlbench.tracking.rankings import log_ranking

GRID = """
name: {name}
train: {{epochs: 1, batch_size: 32, image_size: 16, lr: 0.05, seed: 0}}
seeds: 3
datasets:
  - {{name: synthetic, params: {{classes: 3, train_per_class: 12, val_per_class: 6, test_per_class: 6, image_size: 16}}}}
  - {{name: digits}}
backbones: [resnet18, resnet50, efficientnet_b0, vit_small_patch16_224]
strategies: [linear_probe, finetune]
optimizers: [sgd, adamw]
augmentations: [none]
"""
BACKBONES = ["resnet18", "resnet50", "efficientnet_b0", "vit_small_patch16_224"]
SEEDS = {"synthetic": [0, 1, 2], "digits": [0]}  # digits ran (and was ranked) with one seed
RESULT = {"resnet18": 0.80, "resnet50": 0.86, "efficientnet_b0": 0.84, "vit_small_patch16_224": 0.90}
NOISE = {0: -0.010, 1: 0.002, 2: 0.011}
# adamw is better on test but worse on validation: the configuration checked against is sgd's
OPT = {"sgd": (0.0, 0.02), "adamw": (0.03, -0.05)}  # (test offset, val - test)
SCORES = ["logme", "leep", "knn"]
VALUE = {  # leep is skipped for the ViT (no source classifier): NaN, as rank writes it
    "logme": {"resnet18": 1.0, "resnet50": 1.3, "efficientnet_b0": 1.4, "vit_small_patch16_224": 1.6},
    "leep": {
        "resnet18": -2.0,
        "resnet50": -1.5,
        "efficientnet_b0": -1.7,
        "vit_small_patch16_224": float("nan"),
    },
    "knn": {"resnet18": 0.60, "resnet50": 0.70, "efficientnet_b0": 0.65, "vit_small_patch16_224": 0.72},
}


def result(backbone: str, strategy: str, optimizer: str, seed: int) -> tuple[float, float]:
    """(test accuracy, best validation accuracy) of one finished cell."""
    test = RESULT[backbone] - (0.1 if strategy == "linear_probe" else 0.0) + NOISE[seed] + OPT[optimizer][0]
    test += 0.002 * ((BACKBONES.index(backbone) * 3 + seed) % 4)  # seeds do not move in lockstep
    return test, test + OPT[optimizer][1]


def score(name: str, backbone: str, seed: int) -> float:
    return VALUE[name][backbone] + 0.01 * (seed - 1) * (1 + BACKBONES.index(backbone) % 2)


def _rank_run(tracker: Tracker, exp: str, grid: str, dataset: str, shift: float = 0.0) -> str:
    values = [
        {"backbone": b, "seed": s, "score": n, "value": score(n, b, s) + shift}
        for n in SCORES
        for b in BACKBONES
        for s in SEEDS[dataset]
    ]
    params = {"dataset": dataset, "backbones": ",".join(BACKBONES), "scores": ",".join(SCORES)}
    params |= {"against": "finetune", "seeds": ",".join(map(str, SEEDS[dataset]))}
    run_id = log_ranking(tracker, exp, grid, dataset, values, [], params, {"total": 1.0})
    time.sleep(0.01)  # "newest" is by start time
    return run_id


UNRANKED = """
name: unranked
train: {epochs: 1, batch_size: 32, image_size: 16, lr: 0.05, seed: 0}
datasets: [{name: digits}]
backbones: [resnet18, resnet50]
strategies: [finetune]
optimizers: [sgd]
augmentations: [none]
"""


def _written(cell) -> bool:
    """Which cells have a finished run: every seed in ``SEEDS``, linear probes on synthetic seed 0
    only (they are there to be left out: the scores are checked against finetune)."""
    if cell.train.seed not in SEEDS[cell.dataset.name]:
        return False
    return cell.strategy.name == "finetune" or (cell.dataset.name, cell.train.seed) == ("synthetic", 0)


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """(grid file, store, a grid without rank runs): finished cells, then for each dataset an
    older (wrong) rank run and the newest one."""
    from synthetic_store import Spec, fill_store

    tmp = tmp_path_factory.mktemp("transfer")
    store = f"sqlite:///{tmp / 'mlflow.db'}"
    grid, unranked = tmp / "transfer.yaml", tmp / "unranked.yaml"
    grid.write_text(GRID.format(name="transfer"))
    unranked.write_text(UNRANKED)
    runs = []
    for c in filter(_written, [*expand(load_grid(grid)), *expand(load_grid(unranked))]):
        test, val = result(c.backbone.name, c.strategy.name, c.optimizer.name, c.train.seed)
        runs.append((c, Spec(metrics={"test_acc": test, "best_val_acc": val}, curve=[val])))
    fill_store(store, "transfer", [r for r in runs if r[0].grid == "transfer"])
    fill_store(store, "unranked", [r for r in runs if r[0].grid == "unranked"])
    tracker = Tracker(store)
    exp = tracker.experiment_id("transfer")
    for dataset in SEEDS:
        _rank_run(tracker, exp, "transfer", dataset, shift=-5.0)  # older: must be ignored
        _rank_run(tracker, exp, "transfer", dataset)
    return grid, store, unranked


@pytest.fixture(scope="module")
def written(filled, tmp_path_factory):
    """The report of the ranked grid, every format written, and the folder it went to."""
    grid, store, _ = filled
    out = tmp_path_factory.mktemp("transfer-report")
    rep = api.report_grid(grid, tracking_uri=store, out=out, formats=["md", "html", "csv", "tex"])
    return rep, out


def _means(dataset: str) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """score -> backbone -> mean score; backbone -> mean finetune/sgd result, as built in."""
    seeds = SEEDS[dataset]
    scores = {n: {b: float(np.mean([score(n, b, s) for s in seeds])) for b in BACKBONES} for n in SCORES}
    results = {b: float(np.mean([result(b, "finetune", "sgd", s)[0] for s in seeds])) for b in BACKBONES}
    return scores, results


def test_rank_values_reads_each_datasets_newest_run(filled):
    grid, store, _ = filled
    tracker = Tracker(store)
    values = rp.rank_values(tracker, tracker.experiment_id("transfer"))
    assert list(values.columns) == ["dataset", "backbone", "seed", "score", "value", "against"]
    assert set(values["against"]) == {"finetune"}
    for dataset, seeds in SEEDS.items():
        mine = values[values["dataset"] == dataset]
        assert len(mine) == (len(SCORES) * len(BACKBONES) - 1) * len(seeds)  # leep skipped for the ViT
        assert list(dict.fromkeys(mine["score"])) == SCORES  # the order rank was asked in
        for r in mine.to_dict("records"):
            assert r["value"] == pytest.approx(score(r["score"], r["backbone"], int(r["seed"])))


def test_the_section_has_the_numbers_built_in(written):
    rep, _ = written
    assert rep.transfer_against == {"synthetic": "finetune", "digits": "finetune"}
    res = rep.transfer_results
    assert set(res["config"].str.split("/").str[2:].str.join("/")) == {"finetune/sgd/none"}  # best on val
    for dataset in SEEDS:
        scores, results = _means(dataset)
        table = rep.transfer_scores[rep.transfer_scores["dataset"] == dataset].set_index(
            ["score", "backbone"]
        )
        for n in SCORES:
            ranked = [b for b in BACKBONES if not np.isnan(scores[n][b])]
            order = sorted(ranked, key=lambda b: -scores[n][b])
            for b in ranked:
                assert table.loc[(n, b), "mean"] == pytest.approx(scores[n][b])
                assert table.loc[(n, b), "rank"] == order.index(b) + 1
        agree = rep.transfer_agreement[rep.transfer_agreement["dataset"] == dataset].set_index("score")
        assert list(agree.index) == SCORES
        for n in SCORES:
            names = sorted(b for b in BACKBONES if not np.isnan(scores[n][b]))
            x, y = [scores[n][b] for b in names], [results[b] for b in names]
            row = agree.loc[n]
            assert row["weighted_tau"] == pytest.approx(stats.weightedtau(x, y).statistic)
            assert row["pearson"] == pytest.approx(stats.pearsonr(x, y).statistic)
            assert row["predicted_best"] == max(names, key=lambda b: scores[n][b])
            assert row["best"] == max(names, key=lambda b: results[b])
            assert row["n_seeds"] == len(SEEDS[dataset])
            low, high = row["weighted_tau_ci"]
            if dataset == "digits" or len(names) < 4:  # one seed; 3 backbones: most replicates unusable
                assert np.isnan(low) and np.isnan(high)
            else:
                assert low <= row["weighted_tau"] <= high
    assert bool(
        rep.transfer_agreement.set_index(["dataset", "score"]).loc[("synthetic", "logme"), "top1_hit"]
    )


def test_markdown_html_and_latex_show_the_tables(written):
    rep, out = written
    md, page, tex = ((out / f"report.{ext}").read_text() for ext in ("md", "html", "tex"))
    title = "Transferability: scores vs the grid's results"
    assert f"## {title}" in md and f"<h2>{html.escape(title)}</h2>" in page
    for text in (md, page):
        assert "weighted τ [95 % CI]" in text and "Pearson r [95 % CI]" in text and "top-1 hit" in text
        assert "the configuration with the best mean validation accuracy" in text
    assert r"weighted $\tau$ [95 \% CI]" in tex
    [section] = [s for s in fmt_transfer.report_sections(rep) if s.dataset == "synthetic"]
    scores, _ = _means("synthetic")
    assert list(section.scores["backbone"]) == sorted(BACKBONES, key=lambda b: -scores["logme"][b])
    vit = section.scores.set_index("backbone").loc["vit_small_patch16_224"]
    assert vit["leep"] == "—" and vit["logme"].endswith("(#1)") and " ± " in vit["logme"]
    assert vit["finetune: test accuracy (mean ± 95 % CI)"].endswith("(n=3)")
    assert set(section.agreement["top-1 hit"]) <= {"yes", "no"}
    md_section = md.split(f"## {title}")[1].split("\n## ")[0]
    assert "### synthetic" in md_section and "### digits" in md_section and "| logme |" in md_section


def test_one_seed_gives_na_intervals(written):
    rep, _ = written
    [digits] = [s for s in fmt_transfer.report_sections(rep) if s.dataset == "digits"]
    assert digits.agreement["weighted τ [95 % CI]"].str.endswith("[n/a]").all()
    assert digits.agreement["Pearson r [95 % CI]"].str.endswith("[n/a]").all()
    assert not digits.scores["logme"].str.contains("±").any()  # one seed: the plain value
    section = rp.to_markdown(rep).split("## Transferability")[1].split("\n## ")[0]
    assert "[n/a]" in section.split("### digits")[1]


def test_the_csv_files_have_a_row_per_score_and_backbone(written):
    rep, out = written
    scores = pd.read_csv(out / "transferability_scores.csv")
    assert len(scores) == 2 * (len(SCORES) * len(BACKBONES) - 1)
    assert {"dataset", "score", "backbone", "n", "mean", "ci_low", "ci_high", "rank", "against"} <= set(
        scores
    )
    agreement = pd.read_csv(out / "transferability_agreement.csv")
    assert len(agreement) == 2 * len(SCORES)
    assert {"weighted_tau", "weighted_tau_ci_low", "pearson_ci_high", "top1_hit"} <= set(agreement)
    expected = rep.transfer_agreement.set_index(["dataset", "score"])["weighted_tau"]
    got = agreement.set_index(["dataset", "score"])["weighted_tau"]
    assert got.to_dict() == pytest.approx(expected.to_dict())
    assert out / "transferability_scores.csv" in rep.files


def test_one_scatter_figure_per_dataset(written):
    rep, out = written
    for dataset in SEEDS:
        title = f"transferability: {dataset}"
        assert rep.plots[title] == out / f"transferability_{dataset}.png"
        assert rep.plots[title].read_bytes().startswith(b"\x89PNG")
        axes = [ax for ax in rep.figures[title].axes if ax.get_visible()]
        assert len(axes) == len(SCORES)
        agree = rep.transfer_agreement.set_index(["dataset", "score"])
        for ax, n in zip(axes, SCORES, strict=True):
            tau = agree.loc[(dataset, n), "weighted_tau"]
            assert ax.get_title().startswith(f"{n}: τ = {tau:.2f}, r = ")
            labelled = {t.get_text() for t in ax.texts}
            assert labelled == {b for b in BACKBONES if not np.isnan(VALUE[n][b])}
    assert "transferability_synthetic.png" in (out / "report.md").read_text()


def test_the_section_keeps_to_the_selected_datasets(filled):
    grid, store, _ = filled
    rep = api.report_grid(grid, tracking_uri=store, select=["synthetic/*"])
    assert rep.transfer_against == {"synthetic": "finetune"}
    assert set(rep.transfer_scores["dataset"]) == {"synthetic"}


def test_a_grid_without_rank_runs_has_no_section(filled, tmp_path):
    _, store, unranked = filled
    rep = api.report_grid(unranked, tracking_uri=store, out=tmp_path, formats=["md", "html", "csv", "tex"])
    assert rep.transfer_scores.empty and rep.transfer_agreement.empty and rep.transfer_against == {}
    assert "Transferability" not in (tmp_path / "report.md").read_text()
    assert "Transferability" not in (tmp_path / "report.html").read_text()
    assert not list(tmp_path.glob("transferability*"))
    buffer = io.StringIO()
    rp.render_transfer(rep, Console(file=buffer, width=200))
    assert buffer.getvalue() == ""


def _printed(render, *args, **kwargs) -> str:
    buffer = io.StringIO()
    render(Console(file=buffer, width=250), *args, **kwargs)
    return buffer.getvalue()


def test_the_terminal_renderer_rank_calls(written, filled):
    rep, _ = written
    text = _printed(
        rp.render_transferability,
        rep.transfer_scores,
        rep.transfer_agreement,
        "finetune",
        rep.transfer_results,
    )
    assert "transferability: synthetic" in text and "agreement with finetune: digits" in text
    assert "vit_small_patch16_224" in text and "[n/a]" in text and "finetune: test accuracy" in text
    assert "transferability: digits" in _printed(lambda console: rp.render_transfer(rep, console))
    # a fresh grid, as rank leaves it: no results yet, and a score skipped for every backbone (NaN)
    tracker = Tracker(filled[1])
    values = rp.rank_values(tracker, tracker.experiment_id("transfer")).drop(columns="against")
    skipped = values[values["score"] == "logme"].assign(score="nce", value=float("nan"))
    table = score_table(pd.concat([values, skipped], ignore_index=True))
    for results in (None, pd.DataFrame()):
        text = _printed(rp.render_transferability, table, pd.DataFrame(), "finetune", results)
        assert "no finished finetune results" in text and "finetune: test accuracy" not in text
        assert "nce" in text and "(#" in text


def test_rows_follow_the_first_score_that_was_computed(filled):
    tracker = Tracker(filled[1])
    values = rp.rank_values(tracker, tracker.experiment_id("transfer")).drop(columns="against")
    skipped = values[values["score"] == "knn"].assign(score="nce", value=float("nan"))
    table = score_table(pd.concat([skipped, values], ignore_index=True))  # nce first, never computed
    [section, _] = fmt_transfer.sections(table, pd.DataFrame(), "finetune")
    assert section.order_by == "logme" and "predicted order of logme" in section.note
    scores, _ = _means("synthetic")
    assert list(section.scores["backbone"]) == sorted(BACKBONES, key=lambda b: -scores["logme"][b])
    assert section.scores["nce"].eq("—").all()
