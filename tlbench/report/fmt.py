"""How the report's numbers read, in every format: ``0.912 ± 0.008 (n=3)``, its marks and notes.

One place for the words and numbers, so Markdown, HTML, LaTeX and the terminal say the same
thing; each writer only decides how bold, a statistical tie and a footnote mark look.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from tlbench.report.pivots import PivotTable, plain
from tlbench.report.tables import METRIC_NAMES, Report, param_count

TIE = "†"  # not significantly different from the row's best (underlined in HTML and LaTeX)
MIXED = "‡"  # replicates ran with different environments
TEST_IS_VAL = "§"  # the dataset's test split is its val split
INT_COLUMNS = {"epoch", "epochs", "best_epoch", "count", "params_total", "params_trainable", "n", "runs"}
INT_COLUMNS |= {"n_groups", "n_pairs", "wins", "ties", "losses", "planned", "k"}
P_COLUMNS = {"p_raw", "p_holm", "friedman_p"}


def number(v: Any, column: Any = None) -> str:
    """One value as the files show it: a dash for missing, counts whole, accuracies to 4 places."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float) and column in INT_COLUMNS:
        return f"{int(v):,}"
    if isinstance(v, float) and column in P_COLUMNS:
        return f"{v:.3g}" if v > 0 else "< 1e-300"  # below float precision, not zero
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:,.1f}"
    return str(v)


def entry(row: Mapping[str, Any], *, replicated: bool, k_all: int = 1) -> str:
    """A pivot entry: ``mean ± CI half-width (n=…)`` in a table with replicates (the plain mean
    and n where one seed gives no interval), the plain mean to 4 places in a seedless one."""
    mean = row.get("mean")
    if mean is None or pd.isna(mean):
        return "—"
    if not replicated:
        return f"{float(mean):.4f}"
    from tlbench.stats import format_mean_ci

    extras = [f"n={int(row['n'])}"]
    k, runs, planned = row.get("k"), row.get("runs"), row.get("planned")
    if k is not None and not pd.isna(k) and int(k) != k_all:
        extras.append(f"k={int(k)}")
    if runs is not None and planned is not None and not pd.isna(planned) and runs < planned:
        extras.append(f"{int(runs)}/{int(planned)} runs")
    return f"{format_mean_ci(row)} ({', '.join(extras)})"


@dataclass
class Display:
    """A pivot ready to write: entry texts (winner and marks included), which are best and tied."""

    text: pd.DataFrame
    best: pd.DataFrame
    tie: pd.DataFrame
    winner: pd.DataFrame


def display(t: PivotTable, test_is_val: frozenset[str] = frozenset()) -> Display:
    """Entry texts of a pivot, the ‡ provenance mark included; row and column labels of a dataset
    whose test is its val get §."""
    k_all = int(t.long["k"].max()) if len(t.long) and t.long["k"].notna().any() else 1
    records = t.long.to_dict("records")
    texts = {id_: entry(r, replicated=t.replicated, k_all=k_all) for id_, r in enumerate(records)}
    long = t.long.assign(
        _text=[texts[i] + (f" {MIXED}" if r["flagged"] else "") for i, r in enumerate(records)]
    )
    shown = PivotTable(t.value, t.rows, t.cols, t.agg, t.ci, t.collapsed, long, t.index, t.columns)
    text = _mark_labels(shown.wide("_text").astype(object).fillna("—"), t, test_is_val)
    frames = [_mark_labels(t.wide(n), t, test_is_val) for n in ("best", "tie", "winner")]
    return Display(text, *frames)


def _mark_labels(df: pd.DataFrame, t: PivotTable, flagged: frozenset[str]) -> pd.DataFrame:
    """§ after every dataset label (in rows or columns) whose test split is its val split."""
    if not flagged:
        return df

    def mark(index: pd.Index, axes: list[str]) -> pd.Index:
        if "dataset" not in axes:
            return index
        pos = axes.index("dataset")

        def one(key: Any) -> Any:
            parts = list(key) if isinstance(key, tuple) else [key]
            if parts[pos] in flagged:
                parts[pos] = f"{parts[pos]} {TEST_IS_VAL}"
            return tuple(parts) if isinstance(key, tuple) else parts[0]

        new = [one(k) for k in index]
        if isinstance(index, pd.MultiIndex):
            return pd.MultiIndex.from_tuples(new, names=index.names)
        return pd.Index(new, name=index.name)

    out = df.copy()
    out.index, out.columns = mark(df.index, t.rows), mark(df.columns, t.cols)
    return out


def test_table(rep: Report, val: bool = False) -> PivotTable:
    """The report's pivot with statistics, or its plain pivot made into one (a report by hand)."""
    t = rep.table_val if val else rep.table
    return t if t is not None else plain(rep.pivot_val if val else rep.pivot)


def test_is_val(rep: Report) -> frozenset[str]:
    """Dataset labels whose test split is their val split."""
    if "test_is_val" not in rep.cells.columns:
        return frozenset()
    return frozenset(rep.cells.loc[rep.cells["test_is_val"].eq(True), "dataset"].astype(str))


def interval_note(ci: str) -> str:
    """What ± means, and the bootstrap's small-n under-coverage where it is used."""
    if ci == "bootstrap":
        return (
            "Each entry: the mean over seeds with its 95 % percentile-bootstrap confidence interval "
            "(± its half-width, or [low, high] where it is not symmetric), and n, the number of seeds. "
            "The percentile bootstrap under-covers at small n: about 83-85 % instead of 95 % at n = 5 "
            "(tlbench.stats); prefer --ci t unless there are many seeds."
        )
    return (
        "Each entry: the mean over seeds ± the half-width of its 95 % confidence interval "
        "(Student t), and n, the number of seeds; one seed gives the plain mean, no interval."
    )


def pivot_notes(t: PivotTable, rep: Report) -> list[str]:
    """The sentences under a pivot: what an entry is, how axes were collapsed, what the marks mean."""
    notes = [interval_note(t.ci)] if t.replicated else []
    if t.collapsed:
        axes = " × ".join(t.collapsed)
        if t.agg == "best":
            notes.append(
                f"Collapsed ({axes}, --agg best): each entry is the configuration with the best mean "
                "validation accuracy (never test) among the k at its position, named after its number."
            )
        else:
            notes.append(
                f"Collapsed ({axes}, --agg mean): each entry is the mean over the k configurations at "
                "its position (each seed's value averaged over them first); their spread is in the "
                "next table. k is shown where it differs from the rest; 'r/p runs' where runs are missing."
            )
    if t.replicated:
        used = " and ".join(t.tests()) or "none: too few seeds"
        notes.append(
            f"Bold: the row's best. {TIE} (underlined in HTML and LaTeX): not significantly different "
            "from it at α = 0.05, by a t-test paired over the seeds both share (Welch's t-test when they "
            f"share fewer than 2), Holm-corrected across the row (tests used: {used}); entries with "
            "fewer than 2 seeds are not tested."
        )
    if len(t.long) and t.long["flagged"].any():
        notes.append(f"{MIXED}: replicates ran with different environments (see provenance, Configurations).")
    for ds in sorted(test_is_val(rep)):
        notes.append(
            f"{TEST_IS_VAL} {ds}: its test split is its val split (the source has no test split), so its "
            "test accuracy is measured on the images the best epoch was chosen on: optimistic."
        )
    return notes


def spread(t: PivotTable) -> pd.DataFrame:
    """min – max of the configuration means at each position (``--agg mean`` over collapsed axes)."""
    lo, hi = t.wide("lo"), t.wide("hi")
    out = lo.astype(object)
    for r in range(lo.shape[0]):
        for c in range(lo.shape[1]):
            a, b = lo.iat[r, c], hi.iat[r, c]
            out.iat[r, c] = "—" if pd.isna(a) else f"{a:.3f} – {b:.3f}"
    return out


def compare_display(cmp: pd.DataFrame) -> pd.DataFrame:
    """``stats.pairwise``'s table as people read it: a − b with its CI, the test, Holm p, W/T/L."""
    rows = []
    for r in cmp.to_dict("records"):
        ci = "—" if pd.isna(r["ci_low"]) else f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
        rows.append(
            {
                "a": r["a"],
                "b": r["b"],
                "mean a − b": "—" if pd.isna(r["mean_diff"]) else f"{r['mean_diff']:+.3f}",
                "95 % CI": ci,
                "test": r["test"],
                "p (Holm)": number(r["p_holm"], "p_holm"),
                "groups": int(r["n_groups"]),
                "wins/ties/losses": f"{r['wins']}/{r['ties']}/{r['losses']}",
            }
        )
    return pd.DataFrame(rows)


def compare_note(axis: str) -> str:
    return (
        f"Every pair of {axis} values over the groups (the other axes) where both ran: mean "
        "difference a − b and its 95 % CI, a t-test of the per-group differences (each group's seeds "
        "averaged first: the groups, not the seeds, are what the conclusion generalises over; with "
        "one group, a t-test paired over its seeds, Welch when none match), Holm-corrected across "
        "the pairs; wins/ties/losses of a count the groups where a's own test over its seeds is "
        "significantly better/not/worse (α = 0.05)."
    )


def ranks_lines(rep: Report) -> list[str]:
    """What the rank analysis used and found, in sentences."""
    r = rep.ranks
    if r is None:
        return []
    lines = [
        f"Average rank of each {rep.compare_axis} (1 = best) over {r.n_blocks} complete "
        f"dataset × backbone groups; {r.dropped_blocks} incomplete group(s) left out."
    ]
    if not pd.isna(r.friedman_p):
        lines.append(
            f"Friedman χ² = {r.friedman_stat:.2f}, p = {number(r.friedman_p, 'friedman_p')}; the Nemenyi "
            "test's p-values and its critical-difference diagram (values joined by a bar do not differ "
            "at α = 0.05) are worth reading only when Friedman rejects."
        )
    if r.note:
        lines.append(r.note + ".")
    return lines


def ranks_frame(rep: Report) -> pd.DataFrame:
    r = rep.ranks
    if r is None or r.avg_ranks.empty:
        return pd.DataFrame()
    return r.avg_ranks.rename_axis(rep.compare_axis).reset_index()


def counts_line(rep: Report) -> str:
    """The report's first line: cells by state, and configurations × seeds when replicated."""
    counts = ", ".join(f"{k} {v}" for k, v in rep.status_counts().items())
    line = f"{len(rep.cells)} cells: {counts}."
    if len(rep.configs) and len(rep.configs) < len(rep.cells):
        line += f" {len(rep.configs)} configurations with replicates (seeds)."
    return line


def replicated(rep: Report) -> bool:
    """Whether any configuration has more than one run: only then a configurations table."""
    return bool(len(rep.configs)) and bool((rep.configs["runs"] > 1).any())


def configs_display(rep: Report) -> pd.DataFrame:
    """One row per configuration: states, n, test accuracy as mean ± CI, flags spelled out."""
    rows = []
    for r in rep.configs.to_dict("records"):
        test = entry({**r, "runs": None}, replicated=True) if r["n"] else "—"
        rows.append(
            {
                "config": r["config"] + (f" {TEST_IS_VAL}" if r.get("test_is_val") else ""),
                "status": r["status"],
                f"test {rep.metric} (mean ± 95 % CI)": test,
                "std": r["std"],
                f"val {rep.metric} (mean)": r["val_mean"],
                "train time (s)": r["train_time_s"],
                "provenance": f"{MIXED} {r['provenance']}" if r.get("provenance") else "",
            }
        )
    return pd.DataFrame(rows)


def epoch_tables(epochs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The per-epoch table split by dataset, configurations named without their dataset, and only
    the epochs that dataset ran."""
    out = []
    for ds, g in epochs.groupby(level="dataset", sort=False):
        table = g.droplevel("dataset").dropna(axis=1, how="all")
        prefix = f"{ds}/"
        table.index = [n.removeprefix(prefix) for n in table.index.astype(str)]
        table.index.name = "configuration"
        out.append((str(ds), table))
    return out


MEMORY_LABELS = {"GPU": "peak GPU memory (MB)", "CPU": "peak CPU RSS (MB)"}
COSTS_NOTE = (
    "One row per configuration, ranked by its mean test score over seeds (the grid's metric; "
    "rank 1 = best, equal means share a rank, configurations without a finished run last and "
    "unranked), with the 95 % interval and n. Trainable: the parameters the method trains, and "
    "their share of the model's (logged as params_trainable_frac; trainable / total for older "
    "runs). Memory: the CUDA peak allocated where the run logged one (GPU), else the process's "
    "peak resident memory (CPU RSS); — where neither was logged. Device time: mean device_s, the "
    "seconds a cell held its device. Pareto front: no configuration of the dataset scores higher "
    "with as few trainable parameters (params) or as little memory (memory)."
)


def _share(frac: float) -> str:
    """A fraction of the weights as a percentage, to the digits a small one needs (0.04 %)."""
    if pd.isna(frac):
        return "—"
    pct = 100 * float(frac)
    return f"{pct:.1f} %" if pct >= 10 else f"{pct:.2g} %"


def _memory_column(sources: set[str]) -> str:
    """The memory column's name: where it was measured, when every row measured it alike."""
    return MEMORY_LABELS[next(iter(sources))] if len(sources) == 1 else "peak memory (MB)"


def _cost_row(r: dict[str, Any], shown: list[str], metric: str, sources: set[str]) -> dict[str, Any]:
    """One configuration's row of the method × cost table, its values written out."""
    memory = number(r["peak_memory_mb"])
    if len(sources) > 1 and r["memory"]:
        memory = f"{memory} ({r['memory']})"
    score = entry({**r, "runs": None}, replicated=True) if r["n"] else "—"
    trainable = r["params_trainable"]
    return {
        "rank": "—" if pd.isna(r["rank"]) else str(int(r["rank"])),
        **{a: r[a] for a in shown},
        f"test {metric} (mean ± 95 % CI)": score,
        "trainable params": "—" if pd.isna(trainable) else param_count(trainable),
        "trainable %": _share(r["params_trainable_frac"]),
        _memory_column(sources): memory,
        "device time (s)": r["device_s"],
        "Pareto front": r["front"],
    }


def cost_tables(costs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The method × cost table as people read it, one per dataset × backbone (title, table): rank,
    the configuration's varying axes, its score ± CI (n), trainable parameters and their share,
    peak memory (GPU or CPU, said in the column's name, or per value where they mix), device time."""
    if costs.empty:
        return []
    shown = [a for a in ("strategy", "optimizer", "augmentation") if a in costs and costs[a].nunique() > 1]
    shown = shown or ["strategy"]
    out = []
    keys = [k for k in ("dataset", "backbone") if k in costs.columns]
    for key, g in costs.groupby(keys, sort=False) if keys else [(("all",), costs)]:
        used = str(g["metric"].iloc[0]) if "metric" in g else "acc"
        metric = METRIC_NAMES.get(used, used)
        sources = set(g["memory"]) - {""}
        table = pd.DataFrame([_cost_row(r, shown, metric, sources) for r in g.to_dict("records")])
        out.append((f"{' / '.join(map(str, key))} (ranked by test {metric})", table))
    return out
