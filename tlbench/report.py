"""Comparison tables from cell outcomes and MLflow runs, rendered with rich, Markdown, CSV or HTML.

The seed reports ended in hand-made tables: an epoch-by-epoch comparison (seed 000), parameters
and accuracy per strategy (seed 003), baseline vs transfer (seed 001). Here they are computed from
the store: every cell of the grid appears, FINISHED or not (missing, failed, running), never
silently dropped. The terminal summary after ``tlbench run`` uses the same code.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from tlbench.grid import Cell
from tlbench.tracking import VARIANT_TAG

AXES = ["dataset", "backbone", "strategy", "optimizer", "augmentation"]
SUMMARY_COLUMNS = ["cell", "status", "test_acc", "best_val_acc", "best_epoch", "train_time_s", "trainable"]
HEADLINE_METRICS = [
    "test_acc",
    "best_val_acc",
    "test_top5",
    "best_epoch",
    "train_time_s",
    "images_per_s",
    "params_trainable",
    "params_total",
    "peak_mem_mb",
]
EPOCH_METRICS = ["train_loss", "train_acc", "val_loss", "val_acc"]


def _count(n: float) -> str:
    """Parameter counts as people say them: 970, 37.4k, 11.7M."""
    n = float(n)
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e4:
        return f"{n / 1e3:.0f}k"
    if n >= 1e3:
        return f"{n / 1e3:.1f}k"
    return f"{n:.0f}"


def summary_frame(rows: Iterable[tuple[Cell, str, dict[str, float], str]]) -> pd.DataFrame:
    """One row per cell: (cell, status, metrics, reason) -> a DataFrame with the headline metrics."""
    records: list[dict[str, Any]] = []
    for cell, status, metrics, reason in rows:
        rec: dict[str, Any] = {"cell": cell.name, "status": status, "id": cell.id, **cell.axis_values()}
        for m in HEADLINE_METRICS:
            rec[m] = metrics.get(m)
        trainable, total = metrics.get("params_trainable"), metrics.get("params_total")
        rec["trainable"] = f"{_count(trainable)} of {_count(total)}" if trainable and total else None
        rec["reason"] = reason.splitlines()[0] if reason else ""
        records.append(rec)
    return pd.DataFrame.from_records(records)


def render_summary(df: pd.DataFrame, console: Console, title: str = "results") -> None:
    """A rich table of the summary; the best test accuracy per dataset is bold."""
    table = Table(title=title, show_lines=False)
    for col in SUMMARY_COLUMNS:
        table.add_column(col, justify="left" if col in ("cell", "status", "trainable") else "right")
    best: dict[str, float] = {}
    if not df.empty and "test_acc" in df:
        for ds, group in df.groupby("dataset"):
            vals = group["test_acc"].dropna()
            if len(vals):
                best[str(ds)] = float(vals.max())
    for _, row in df.iterrows():
        cells = []
        for col in SUMMARY_COLUMNS:
            v = row.get(col)
            if v is None or (isinstance(v, float) and pd.isna(v)):
                text = "—"
            elif col in ("test_acc", "best_val_acc"):
                text = f"{v:.4f}"
                if col == "test_acc" and best.get(str(row["dataset"])) == v:
                    text = f"[bold green]{text}[/]"
            elif col == "best_epoch":
                text = str(int(v))
            elif col == "train_time_s":
                text = f"{v:.1f}"
            elif col == "status":
                color = {"FINISHED": "green", "SKIPPED": "cyan", "FAILED": "red", "KILLED": "yellow"}.get(
                    v, "white"
                )
                text = f"[{color}]{v}[/]" + (f" ({row['reason']})" if row.get("reason") else "")
            else:
                text = str(v)
            cells.append(text)
        table.add_row(*cells)
    console.print(table)


# ---------------------------------------------------------------------------------------------
# reading the store


def collect(cells: list[Cell], tracker: Any, experiment_id: str) -> pd.DataFrame:
    """One row per cell of the grid with its newest FINISHED run, or the state it is in."""
    runs = [r for r in tracker.runs(experiment_id) if not r.data.tags.get(VARIANT_TAG)]  # newest first
    by_cell: dict[str, list[Any]] = {}
    for r in runs:
        by_cell.setdefault(r.data.tags.get("tlbench.cell_id", ""), []).append(r)
    rows = []
    for cell in cells:
        mine = by_cell.get(cell.id, [])
        finished = [r for r in mine if r.info.status == "FINISHED"]
        run = finished[0] if finished else (mine[0] if mine else None)
        status = run.info.status if run else "MISSING"
        reason = run.data.tags.get("tlbench.failure_reason", "") if run and status != "FINISHED" else ""
        metrics = dict(run.data.metrics) if run and status == "FINISHED" else {}
        rows.append((cell, status, metrics, reason, run.info.run_id if run else None))
    df = summary_frame((c, s, m, r) for c, s, m, r, _ in rows)
    df["run_id"] = [rid for *_, rid in rows]
    df["epochs"] = [c.train.epochs for c, *_ in rows]
    for key in ("test_acc", "best_val_acc", "source"):
        df[f"reported_{key}"] = [c.reported.get(key) for c, *_ in rows]
    return df


def tuned_vs_untuned(cells: list[Cell], tracker: Any, experiment_id: str, df: pd.DataFrame) -> pd.DataFrame:
    """Cells that also have a FINISHED ``tuned`` run: both results and the settings each used."""
    tuned = tracker.finished_runs(experiment_id, variant="tuned")
    plain = df.set_index("id")
    records = []
    for cell in cells:
        run = tuned.get(cell.id)
        if run is None:
            continue
        base = plain.loc[cell.id]
        base_params = tracker.client.get_run(base["run_id"]).data.params if base["run_id"] else {}
        t_acc, u_acc = run.data.metrics.get("test_acc"), base["test_acc"]
        records.append(
            {
                "cell": cell.name,
                "untuned_test_acc": u_acc,
                "tuned_test_acc": t_acc,
                "gain": (t_acc - u_acc)
                if t_acc is not None and u_acc is not None and not pd.isna(u_acc)
                else None,
                "untuned_lr": base_params.get("effective_lr"),
                "tuned_lr": run.data.params.get("effective_lr"),
                "untuned_batch": base_params.get("batch_size"),
                "tuned_batch": run.data.params.get("batch_size"),
                "hp_source": run.data.params.get("hp_source", run.data.tags.get(VARIANT_TAG, "")),
            }
        )
    return pd.DataFrame.from_records(records)


def reported_vs_tlbench(df: pd.DataFrame) -> pd.DataFrame:
    """For cells with a published number (e.g. the seed reports): reported, tlbench, difference."""
    records = []
    for _, row in df.iterrows():
        for metric in ("test_acc", "best_val_acc"):
            rep = row.get(f"reported_{metric}")
            if rep is None or pd.isna(rep):
                continue
            got = row.get(metric)
            records.append(
                {
                    "cell": row["cell"],
                    "source": row.get("reported_source") or "",
                    "metric": metric,
                    "reported": rep,
                    "tlbench": got,
                    "difference": (got - rep) if got is not None and not pd.isna(got) else None,
                    "status": row["status"],
                }
            )
    return pd.DataFrame.from_records(
        records, columns=["cell", "source", "metric", "reported", "tlbench", "difference", "status"]
    )


def epoch_history(tracker: Any, df: pd.DataFrame, metrics: list[str] = EPOCH_METRICS) -> pd.DataFrame:
    """Long table (cell, epoch, metric, value) of the per-epoch metrics of FINISHED cells."""
    records = []
    for _, row in df[df["status"] == "FINISHED"].iterrows():
        for m in metrics:
            for h in tracker.client.get_metric_history(row["run_id"], m):
                records.append(
                    {
                        "cell": row["cell"],
                        "dataset": row["dataset"],
                        "epoch": h.step,
                        "metric": m,
                        "value": h.value,
                    }
                )
    return pd.DataFrame.from_records(records, columns=["cell", "dataset", "epoch", "metric", "value"])


# ---------------------------------------------------------------------------------------------
# tables


def pivot(df: pd.DataFrame, rows: list[str], cols: list[str], value: str = "test_acc") -> pd.DataFrame:
    """``value`` arranged by any axes; cells sharing a position are averaged (n shown separately)."""
    for axis in rows + cols:
        if axis not in df.columns:
            raise ValueError(f"unknown axis {axis!r} (valid: {', '.join(AXES)})")
    done = df[df["status"] == "FINISHED"]
    return pd.pivot_table(done, index=rows, columns=cols, values=value, aggfunc="mean", dropna=False).reindex(
        index=_order(df, rows), columns=_order(df, cols)
    )


def _order(df: pd.DataFrame, axes: list[str]) -> pd.Index:
    """Grid order (first appearance) rather than alphabetical."""
    seen = list(dict.fromkeys(tuple(r) for r in df[axes].itertuples(index=False)))
    return (
        pd.MultiIndex.from_tuples(seen, names=axes)
        if len(axes) > 1
        else pd.Index([s[0] for s in seen], name=axes[0])
    )


def axis_effects(df: pd.DataFrame, value: str = "test_acc") -> pd.DataFrame:
    """Mean and spread of ``value`` per value of each axis (e.g. linear_probe vs finetune)."""
    done = df[df["status"] == "FINISHED"]
    parts = []
    for axis in AXES:
        g = done.groupby(axis, sort=False)[value].agg(["count", "mean", "std", "min", "max"])
        if len(g) < 2:
            continue  # an axis with one value says nothing
        g = g.reset_index().rename(columns={axis: "value"})
        g.insert(0, "axis", axis)
        parts.append(g)
    if not parts:
        return pd.DataFrame(columns=["axis", "value", "count", "mean", "std", "min", "max"])
    return pd.concat(parts, ignore_index=True)


def epoch_table(history: pd.DataFrame, metric: str = "val_acc") -> pd.DataFrame:
    """Epoch-by-epoch, cells side by side (seed 000's table)."""
    h = history[history["metric"] == metric]
    if h.empty:
        return pd.DataFrame()
    return h.pivot_table(index="epoch", columns="cell", values="value", aggfunc="last")


def cell_summary(df: pd.DataFrame) -> pd.DataFrame:
    cols = [
        "cell",
        "status",
        "test_acc",
        "best_val_acc",
        "test_top5",
        "epochs",
        "best_epoch",
        "trainable",
        "params_total",
        "train_time_s",
        "images_per_s",
        "peak_mem_mb",
        "reason",
    ]
    return df[[c for c in cols if c in df.columns]]


def pareto_front(df: pd.DataFrame, x: str = "train_time_s", y: str = "test_acc") -> list[str]:
    """Cells no other cell beats on both lower ``x`` and higher ``y``."""
    done = df[(df["status"] == "FINISHED")].dropna(subset=[x, y]).sort_values([x, y], ascending=[True, False])
    front, best = [], -math.inf
    for _, row in done.iterrows():
        if row[y] > best:
            front.append(row["cell"])
            best = row[y]
    return front


# ---------------------------------------------------------------------------------------------
# plots


def _plots(
    df: pd.DataFrame, history: pd.DataFrame, piv: pd.DataFrame, effects: pd.DataFrame, out: Path
) -> dict[str, Path]:
    import numpy as np
    from matplotlib.figure import Figure

    files: dict[str, Path] = {}
    val = history[history["metric"] == "val_acc"]
    for ds, group in val.groupby("dataset", sort=False):
        fig = Figure(figsize=(9, 4.5))
        ax = fig.subplots()
        for cell, g in group.groupby("cell", sort=False):
            ax.plot(g["epoch"], g["value"], marker=".", linewidth=1, label=cell.split("/", 1)[1])
        ax.set(xlabel="epoch", ylabel="val accuracy", title=f"learning curves: {ds}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2, loc="lower right")
        fig.tight_layout()
        path = out / f"curves_{_slug(str(ds))}.png"
        fig.savefig(path, dpi=90)
        files[f"learning curves: {ds}"] = path

    if piv.size and piv.notna().any().any():
        fig = Figure(figsize=(max(5, 1.1 * piv.shape[1] + 3), max(3, 0.35 * piv.shape[0] + 1.5)))
        ax = fig.subplots()
        im = ax.imshow(piv.to_numpy(dtype=float), cmap="viridis", aspect="auto", vmin=0, vmax=1)
        ax.set_xticks(
            range(piv.shape[1]), [_label(c) for c in piv.columns], rotation=45, ha="right", fontsize=7
        )
        ax.set_yticks(range(piv.shape[0]), [_label(r) for r in piv.index], fontsize=7)
        for i in range(piv.shape[0]):
            for j in range(piv.shape[1]):
                v = piv.iat[i, j]
                if not pd.isna(v):
                    ax.text(
                        j,
                        i,
                        f"{v:.3f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if v < 0.6 else "black",
                    )
        fig.colorbar(im, ax=ax, label="test accuracy")
        ax.set_title("test accuracy")
        fig.tight_layout()
        files["accuracy heatmap"] = out / "heatmap.png"
        fig.savefig(files["accuracy heatmap"], dpi=90)

    if not effects.empty:
        axes = list(dict.fromkeys(effects["axis"]))
        fig = Figure(figsize=(4 * len(axes), 3.5))
        subplots = np.atleast_1d(fig.subplots(1, len(axes)))
        for ax, axis in zip(subplots, axes, strict=True):
            e = effects[effects["axis"] == axis]
            ax.bar(range(len(e)), e["mean"], yerr=e["std"].fillna(0), capsize=3, color="tab:blue", alpha=0.8)
            ax.set_xticks(range(len(e)), e["value"], rotation=30, ha="right", fontsize=7)
            ax.set(title=axis, ylim=(0, 1.05), ylabel="mean test acc")
        fig.tight_layout()
        files["effect of each axis"] = out / "axes.png"
        fig.savefig(files["effect of each axis"], dpi=90)

    done = df[df["status"] == "FINISHED"].dropna(subset=["train_time_s", "test_acc"])
    if len(done):
        front = pareto_front(df)
        fig = Figure(figsize=(7, 4.5))
        ax = fig.subplots()
        for ds, g in done.groupby("dataset", sort=False):
            ax.scatter(g["train_time_s"], g["test_acc"], label=str(ds), s=18)
        f = done.set_index("cell").loc[front].sort_values("train_time_s")
        ax.plot(
            f["train_time_s"], f["test_acc"], color="black", linewidth=1, linestyle="--", label="Pareto front"
        )
        ax.set(xlabel="train time (s)", ylabel="test accuracy", title="accuracy vs training time")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        files["accuracy vs train time"] = out / "pareto.png"
        fig.savefig(files["accuracy vs train time"], dpi=90)
    return files


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in s)


def _label(key: Any) -> str:
    return "/".join(map(str, key)) if isinstance(key, tuple) else str(key)


# ---------------------------------------------------------------------------------------------
# writing


@dataclass
class Report:
    """Every table of a grid's report, plus the plots, ready to write in any format."""

    grid: str
    cells: pd.DataFrame
    pivot: pd.DataFrame
    pivot_val: pd.DataFrame
    effects: pd.DataFrame
    epochs: pd.DataFrame
    summary: pd.DataFrame
    reported: pd.DataFrame
    tuned: pd.DataFrame
    rows: list[str]
    cols: list[str]
    plots: dict[str, Path] = field(default_factory=dict)

    def status_counts(self) -> dict[str, int]:
        return self.cells["status"].value_counts().to_dict()


def build(
    cells: list[Cell],
    tracker: Any,
    experiment_id: str,
    *,
    grid: str,
    rows: list[str],
    cols: list[str],
    out: Path | None = None,
    plots: bool = True,
) -> Report:
    df = collect(cells, tracker, experiment_id)
    history = epoch_history(tracker, df)
    piv = pivot(df, rows, cols, "test_acc")
    effects = axis_effects(df)
    rep = Report(
        grid,
        df,
        piv,
        pivot(df, rows, cols, "best_val_acc"),
        effects,
        epoch_table(history),
        cell_summary(df),
        reported_vs_tlbench(df),
        tuned_vs_untuned(cells, tracker, experiment_id, df),
        rows,
        cols,
    )
    if plots and out is not None:
        out.mkdir(parents=True, exist_ok=True)
        rep.plots = _plots(df, history, piv, effects, out)
    return rep


INT_COLUMNS = {"epoch", "epochs", "best_epoch", "count", "params_total", "params_trainable"}


def _fmt(v: Any, column: Any = None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float) and column in INT_COLUMNS:
        return f"{int(v):,}"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:,.1f}"
    return str(v)


def _best_mask(piv: pd.DataFrame) -> pd.DataFrame:
    """True where a value is its row's best (ties all marked)."""
    return piv.eq(piv.max(axis=1), axis=0) & piv.notna()


def _markdown_table(df: pd.DataFrame, index: bool = True, best: pd.DataFrame | None = None) -> str:
    data = df.reset_index() if index else df
    head = [_label(c) for c in data.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, (_, row) in enumerate(data.iterrows()):
        cells = []
        for j, v in enumerate(row):
            text = _fmt(v, data.columns[j])
            k = j - (data.shape[1] - df.shape[1])
            if best is not None and k >= 0 and bool(best.iat[i, k]):
                text = f"**{text}**"
            cells.append(text.replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_markdown(rep: Report) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in rep.status_counts().items())
    parts = [
        f"# tlbench report: grid `{rep.grid}`",
        f"{len(rep.cells)} cells: {counts}.",
        f"## Test accuracy ({' × '.join(rep.rows)} by {' × '.join(rep.cols)}; best per row in bold)",
        _markdown_table(rep.pivot, best=_best_mask(rep.pivot)),
        "## Best validation accuracy",
        _markdown_table(rep.pivot_val, best=_best_mask(rep.pivot_val)),
        "## Effect of each axis (test accuracy over the cells with that value)",
        _markdown_table(rep.effects, index=False),
        "## Validation accuracy per epoch",
        _markdown_table(rep.epochs) if not rep.epochs.empty else "_no finished cells_",
        "## Cells",
        _markdown_table(rep.summary, index=False),
    ]
    if not rep.tuned.empty:
        parts[2:2] = ["## Tuned vs untuned", _markdown_table(rep.tuned, index=False)]
    if not rep.reported.empty:
        parts[2:2] = ["## Reported elsewhere vs tlbench", _markdown_table(rep.reported, index=False)]
    for title, path in rep.plots.items():
        parts.append(f"![{title}]({path.name})")
    return "\n\n".join(parts) + "\n"


def _html_table(
    df: pd.DataFrame, index: bool = True, best: pd.DataFrame | None = None, status_col: bool = False
) -> str:
    data = df.reset_index() if index else df
    offset = data.shape[1] - df.shape[1]
    out = [
        "<table><thead><tr>"
        + "".join(f"<th>{html.escape(_label(c))}</th>" for c in data.columns)
        + "</tr></thead><tbody>"
    ]
    for i, (_, row) in enumerate(data.iterrows()):
        tds = []
        for j, v in enumerate(row):
            cls = []
            k = j - offset
            if best is not None and k >= 0 and bool(best.iat[i, k]):
                cls.append("best")
            if status_col and data.columns[j] == "status":
                cls.append(f"st-{str(v).lower()}")
            attr = f' class="{" ".join(cls)}"' if cls else ""
            tds.append(f"<td{attr}>{html.escape(_fmt(v, data.columns[j]))}</td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


CSS = """
body{font-family:system-ui,-apple-system,sans-serif;margin:2rem;color:#222;max-width:1400px}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.8rem;margin:.5rem 0}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
td.best{font-weight:bold;background:#d8f5d0}
td.st-missing{color:#999}td.st-failed,td.st-killed{color:#b00}td.st-running{color:#b80}
img{max-width:100%;border:1px solid #eee;margin:.5rem 0}.scroll{overflow-x:auto}
"""


def to_html(rep: Report) -> str:
    """One self-contained page: tables plus plots embedded as base64 PNG."""
    counts = ", ".join(f"{k} {v}" for k, v in rep.status_counts().items())
    imgs = "".join(
        f'<h3>{html.escape(t)}</h3><img alt="{html.escape(t)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}">'
        for t, p in rep.plots.items()
    )
    sections = [
        f"<h1>tlbench report: grid <code>{html.escape(rep.grid)}</code></h1><p>{len(rep.cells)} cells: {html.escape(counts)}.</p>",
        f"<h2>Test accuracy ({html.escape(' × '.join(rep.rows))} by {html.escape(' × '.join(rep.cols))}; best per row highlighted)</h2>",
        f'<div class="scroll">{_html_table(rep.pivot, best=_best_mask(rep.pivot))}</div>',
        "<h2>Best validation accuracy</h2>",
        f'<div class="scroll">{_html_table(rep.pivot_val, best=_best_mask(rep.pivot_val))}</div>',
        "<h2>Effect of each axis</h2>",
        _html_table(rep.effects, index=False),
        "<h2>Validation accuracy per epoch</h2>",
        f'<div class="scroll">{_html_table(rep.epochs)}</div>'
        if not rep.epochs.empty
        else "<p>no finished cells</p>",
        "<h2>Cells</h2>",
        f'<div class="scroll">{_html_table(rep.summary, index=False, status_col=True)}</div>',
        "<h2>Plots</h2>",
        imgs or "<p>no plots</p>",
    ]
    if not rep.tuned.empty:
        sections[1:1] = ["<h2>Tuned vs untuned</h2>", _html_table(rep.tuned, index=False)]
    if not rep.reported.empty:
        sections[1:1] = ["<h2>Reported elsewhere vs tlbench</h2>", _html_table(rep.reported, index=False)]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>tlbench report: {html.escape(rep.grid)}</title>"
        f"<style>{CSS}</style></head><body>{''.join(sections)}</body></html>"
    )


def write(rep: Report, out: Path, formats: list[str]) -> list[Path]:
    """Write the report in each format into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if "md" in formats:
        written.append(out / "report.md")
        written[-1].write_text(to_markdown(rep))
    if "html" in formats:
        written.append(out / "report.html")
        written[-1].write_text(to_html(rep))
    if "csv" in formats:
        tables = {
            "cells.csv": rep.cells.drop(columns=["reason"]).assign(reason=rep.cells["reason"]),
            "pivot_test_acc.csv": rep.pivot,
            "pivot_best_val_acc.csv": rep.pivot_val,
            "axis_effects.csv": rep.effects,
            "val_acc_per_epoch.csv": rep.epochs,
        }
        if not rep.reported.empty:
            tables["reported_vs_tlbench.csv"] = rep.reported
        if not rep.tuned.empty:
            tables["tuned_vs_untuned.csv"] = rep.tuned
        for name, table in tables.items():
            path = out / name
            index = name.startswith(("pivot", "val_acc"))
            table.to_csv(path, index=index)
            written.append(path)
    return written + list(rep.plots.values())


def log_to_mlflow(tracker: Any, experiment_id: str, grid: str, files: list[Path]) -> str:
    """Attach the report to the grid's parent run (created once, reused), under ``report/``."""
    parent_tag = "tlbench.grid_report"
    existing = tracker.client.search_runs(
        [experiment_id], filter_string=f"tags.`{parent_tag}` = 'true'", max_results=1
    )
    if existing:
        run_id = existing[0].info.run_id
    else:
        run = tracker.client.create_run(
            experiment_id, run_name=f"grid:{grid}", tags={parent_tag: "true", "tlbench.grid": grid}
        )
        run_id = run.info.run_id
        tracker.client.set_terminated(run_id, "FINISHED")
    for f in files:
        tracker.client.log_artifact(run_id, str(f), "report")
    return run_id


def render_pivot(rep: Report, console: Console) -> None:
    """The test-accuracy pivot in the terminal, best per row bold."""
    table = Table(title=f"test accuracy: {' × '.join(rep.rows)} by {' × '.join(rep.cols)}")
    for name in rep.rows:
        table.add_column(name)
    for c in rep.pivot.columns:
        table.add_column(_label(c), justify="right")
    best = _best_mask(rep.pivot)
    for i, (key, row) in enumerate(rep.pivot.iterrows()):
        keys = list(key) if isinstance(key, tuple) else [key]
        vals = []
        for j, v in enumerate(row):
            text = _fmt(v)
            vals.append(f"[bold green]{text}[/]" if bool(best.iat[i, j]) else text)
        table.add_row(*map(str, keys), *vals)
    console.print(table)


def render_frame(df: pd.DataFrame, console: Console, title: str) -> None:
    """Any small table in the terminal, formatted like the files."""
    table = Table(title=title)
    for c in df.columns:
        table.add_column(str(c), justify="left" if df[c].dtype == object else "right")
    for _, row in df.iterrows():
        table.add_row(*(_fmt(v, c) for c, v in row.items()))
    console.print(table)
