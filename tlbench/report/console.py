"""The report in the terminal (rich tables): the pivot with its marks, the comparison and ranks of
an axis, the transferability scores (also what ``tlbench rank`` prints), and the summary
``tlbench run`` prints at its end, one row per configuration when the grid has replicates."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tlbench.report import fmt, fmt_transfer
from tlbench.report.configs import config_table
from tlbench.report.tables import Report, label

SUMMARY_COLUMNS = ["cell", "status", "test_acc", "best_val_acc", "best_epoch", "train_time_s", "trainable"]
STATUS_COLOURS = {"FINISHED": "green", "SKIPPED": "cyan", "FAILED": "red", "KILLED": "yellow"}


def render_pivot(rep: Report, console: Console) -> None:
    """The test-accuracy pivot: best per row bold, ties †, and what the entries are under it."""
    t = fmt.test_table(rep)
    d = fmt.display(t, fmt.test_is_val(rep))
    table = Table(title=f"test {rep.metric}: {' × '.join(rep.rows)} by {' × '.join(rep.cols)}")
    for name in rep.rows:
        table.add_column(name)
    for c in d.text.columns:
        table.add_column(label(c), justify="right")
    for i, (key, row) in enumerate(d.text.iterrows()):
        keys = list(key) if isinstance(key, tuple) else [key]
        vals = []
        for j, v in enumerate(row):
            text = escape(str(v))
            if bool(d.best.iat[i, j]):
                text = f"[bold green]{text}[/]"
            if bool(d.tie.iat[i, j]):
                text = f"{text} {fmt.TIE}"
            if d.winner.iat[i, j]:
                text += f"\n[dim]{escape(str(d.winner.iat[i, j]))}[/]"
            vals.append(text)
        table.add_row(*map(str, keys), *vals)
    console.print(table)
    for note in fmt.pivot_notes(t, rep):
        console.print(f"  {note}", style="dim", highlight=False)


def render_frame(df: pd.DataFrame, console: Console, title: str) -> None:
    """Any small table in the terminal, formatted like the files."""
    table = Table(title=title)
    for c in df.columns:
        table.add_column(str(c), justify="left" if df[c].dtype == object else "right")
    for _, row in df.iterrows():
        table.add_row(*(escape(fmt.number(v, c)) for c, v in row.items()))
    console.print(table)


def render_compare(rep: Report, console: Console) -> None:
    """The pairwise comparison of the report's axis, or why there is none."""
    if not rep.compare.empty:
        render_frame(
            fmt.compare_display(rep.compare), console, f"pairwise: {rep.compare_axis} (test {rep.metric})"
        )
    elif rep.compare_note:
        console.print(f"pairwise {rep.compare_axis}: {rep.compare_note}", style="dim", highlight=False)


def render_ranks(rep: Report, console: Console) -> None:
    """Average ranks of the report's axis across datasets and backbones, with the test's verdict."""
    ranks = fmt.ranks_frame(rep)
    if not ranks.empty:
        render_frame(ranks, console, f"average rank of {rep.compare_axis}")
    for line in fmt.ranks_lines(rep):
        console.print(f"  {line}", style="dim", highlight=False)


def render_costs(rep: Report, console: Console) -> None:
    """The method × cost table, one ranked table per dataset × backbone, with what it shows."""
    tables = fmt.cost_tables(rep.costs)
    for title, table in tables:
        render_frame(table, console, f"method × cost: {title}")
    if tables:
        console.print(f"  {fmt.COSTS_NOTE}", style="dim", highlight=False)


def render_transferability(
    console: Console,
    table: pd.DataFrame,
    agreement: pd.DataFrame,
    against: str | Mapping[str, str],
    results: pd.DataFrame | None = None,
    *,
    metric: str | Mapping[str, str] = "accuracy",
    ci: str = "t",
) -> None:
    """Transferability scores per dataset (``score_table``'s ``table``), the ``against`` results
    (``results_for``'s, optional) beside them and each score's ``agreement`` with them, as the
    report shows them: what ``tlbench rank`` prints for a fresh ranking."""
    _render_sections(console, fmt_transfer.sections(table, agreement, against, results, metric=metric, ci=ci))


def render_transfer(rep: Report, console: Console) -> None:
    """The report's transferability section (nothing when the grid has no rank runs)."""
    _render_sections(console, fmt_transfer.report_sections(rep))


def _render_sections(console: Console, sections: list[fmt_transfer.TransferSection]) -> None:
    for s in sections:
        render_frame(
            s.scores,
            console,
            f"transferability: {s.dataset} (backbones in the predicted order of {s.order_by})",
        )
        console.print(f"  {s.note}", style="dim", highlight=False)
        if s.agreement.empty:
            console.print(f"  no finished {s.against} results to check the scores against yet", style="dim")
        else:
            render_frame(s.agreement, console, f"agreement with {s.against}: {s.dataset}")
    if sections:
        console.print(f"  {fmt_transfer.AGREEMENT_NOTE}", style="dim", highlight=False)


def render_summary(df: pd.DataFrame, console: Console, title: str = "results", ci: str = "t") -> None:
    """A rich table of the summary; the best test accuracy per dataset is bold.

    With replicates (several cells of one configuration) one row per configuration: the states of
    its runs, n, and accuracies as mean ± 95 % CI; ties with the dataset's best marked †.
    """
    if "config" in df.columns and df["config"].duplicated().any():
        _render_configs(df, console, title, ci)
        return
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
        table.add_row(*(_summary_text(row, col, best) for col in SUMMARY_COLUMNS))
    console.print(table)


def _summary_text(row: pd.Series, col: str, best: dict[str, float]) -> str:
    """One value of the terminal summary, with rich markup (status colours, best in bold)."""
    v = row.get(col)
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "—"
    if col in ("test_acc", "best_val_acc"):
        text = f"{v:.4f}"
        if col == "test_acc" and best.get(str(row["dataset"])) == v:
            text = f"[bold green]{text}[/]"
        return text
    if col == "best_epoch":
        return str(int(v))
    if col == "train_time_s":
        return f"{v:.1f}"
    if col == "status":
        color = STATUS_COLOURS.get(v, "white")
        return f"[{color}]{v}[/]" + (f" ({escape(str(row['reason']))})" if row.get("reason") else "")
    return escape(str(v))


def _render_configs(df: pd.DataFrame, console: Console, title: str, ci: str) -> None:
    """The summary of a replicated grid: one row per configuration, ties with each dataset's best.
    Replicates finished by an earlier run (skipped now) count as finished: they are results."""
    if "reason" in df:
        earlier = (df["status"] == "SKIPPED") & df["reason"].astype(str).str.startswith("finished")
        df = df.assign(status=df["status"].mask(earlier, "FINISHED"), reason=df["reason"].mask(earlier, ""))
    configs = config_table(df, ci=ci)
    best, tie = _dataset_marks(df, configs)
    table = Table(
        title=f"{title} (mean ± 95 % CI over seeds; † = not significantly below the dataset's best)"
    )
    for col in ("config", "runs", "test_acc", "best_val_acc", "train_time_s"):
        table.add_column(col, justify="left" if col in ("config", "runs") else "right")
    reasons = df[df["reason"].astype(bool)].groupby("config")["reason"].first() if "reason" in df else {}
    for r in configs.to_dict("records"):
        test = fmt.entry({**r, "runs": None}, replicated=True) if r["n"] else "—"
        test = f"[bold green]{test}[/]" if best.get(r["config"]) else test
        test += f" {fmt.TIE}" if tie.get(r["config"]) else ""
        status = r["status"] + (f" ({escape(str(reasons[r['config']]))})" if r["config"] in reasons else "")
        colour = "green" if status.startswith("FINISHED") and "," not in status else "yellow"
        val, time_s = fmt.number(r["val_mean"]), fmt.number(r["train_time_s"])
        table.add_row(escape(r["config"]), f"[{colour}]{status}[/]", test, val, time_s)
    console.print(table)


def _dataset_marks(df: pd.DataFrame, configs: pd.DataFrame) -> tuple[dict[str, bool], dict[str, bool]]:
    """Per configuration: is it its dataset's best (by mean), is it tied with it (stats.ties_with_best)."""
    from tlbench.report.configs import replicate_frame
    from tlbench.stats import ties_with_best

    runs = replicate_frame(df)
    best: dict[str, bool] = {}
    tie: dict[str, bool] = {}
    for _, g in runs.groupby("dataset", sort=False):
        res = ties_with_best(g[["config", "seed", "value"]])
        top = res["mean"].max()
        for r in res.to_dict("records"):
            best[r["config"]] = r["mean"] == top
            tie[r["config"]] = bool(r["tie"] and r["tested"] and r["mean"] != top)
    return best, tie
