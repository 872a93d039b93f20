"""The method × cost table: per dataset and backbone, each configuration's score beside what it
cost (trainable parameters, peak memory, device time), ranked by the grid's ``metric:``.

Which transfer method to use is a trade: a LoRA or BitFit run that trains 0.3 % of the weights
may lose a point to a full fine-tune yet fit on a smaller device. The table and its Pareto plots
(``tlbench.figures.costs``) share these numbers. Pandas only, on ``collect``'s frame and
``configs.config_table``'s statistics; older runs without the newer metrics get derived or blank
values, never an error.
"""

from __future__ import annotations

import pandas as pd

from tlbench.report.configs import config_table
from tlbench.report.tables import SCORE, pareto_front

GROUP = ["dataset", "backbone"]  # one ranked table per group: scores of different datasets differ
MEMORY = {"GPU": "peak_mem_mb", "CPU": "peak_rss_mb"}  # GPU's CUDA peak first, else the CPU's RSS
FRONT_AXES = {"params": "params_trainable", "memory": "peak_memory_mb"}  # front name -> its x
COST_COLUMNS = [
    "dataset",
    "backbone",
    "rank",
    "config",
    "config_id",
    "strategy",
    "optimizer",
    "augmentation",
    "metric",
    "status",
    "n",
    "mean",
    "std",
    "ci_low",
    "ci_high",
    "params_trainable",
    "params_total",
    "params_trainable_frac",
    "peak_memory_mb",
    "memory",
    "device_s",
    "front",
    "test_is_val",
]


def _numeric(df: pd.DataFrame, column: str) -> pd.Series:
    """A column as floats, all NaN where the frame lacks it (runs logged before the metric)."""
    if column not in df.columns:
        return pd.Series(float("nan"), index=df.index)
    return pd.to_numeric(df[column], errors="coerce")


def trainable_fraction(df: pd.DataFrame) -> pd.Series:
    """Each run's share of trained parameters: the logged ``params_trainable_frac``, or for runs
    from before that metric, ``params_trainable / params_total`` (NaN without a total)."""
    total = _numeric(df, "params_total")
    derived = _numeric(df, "params_trainable") / total.where(total > 0)
    return _numeric(df, "params_trainable_frac").fillna(derived)


def _run_costs(done: pd.DataFrame) -> pd.DataFrame:
    """Per configuration, the mean over its finished runs of each cost, and its peak memory: the
    GPU's where any replicate logged one, else the CPU process's RSS, with which it is."""
    runs = pd.DataFrame(
        {
            "params_trainable": _numeric(done, "params_trainable"),
            "params_total": _numeric(done, "params_total"),
            "params_trainable_frac": trainable_fraction(done),
            "device_s": _numeric(done, "device_s"),
            **{source: _numeric(done, metric) for source, metric in MEMORY.items()},
        }
    )
    means = runs.groupby(done["config"], sort=False).mean()
    memory = pd.Series(float("nan"), index=means.index)
    which = pd.Series("", index=means.index, dtype=object)
    for source in reversed(MEMORY):  # the first source wins where both were logged
        known = means[source].notna()
        memory, which = memory.mask(known, means[source]), which.mask(known, source)
    return means.drop(columns=list(MEMORY)).assign(peak_memory_mb=memory, memory=which)


def cost_table(df: pd.DataFrame, configs: pd.DataFrame | None = None, ci: str = "t") -> pd.DataFrame:
    """One row per configuration (``COST_COLUMNS``): its score's n / mean / CI over seeds (from
    ``configs``, ``config_table``'s, made here when not given) beside its mean costs, ranked within
    each dataset × backbone by the mean score, best first (rank 1; ties share the best rank;
    configurations without a finished run last, unranked), and which Pareto fronts it is on."""
    if df.empty:
        return pd.DataFrame(columns=COST_COLUMNS)
    # a frame of cells without replicate keys (made by hand): each cell is its own configuration
    frame = df if "config" in df.columns else df.assign(config=df["cell"], config_id=df.get("id", df["cell"]))
    if configs is None:
        configs = config_table(frame, ci=ci, value=SCORE if SCORE in frame.columns else "test_acc")
    if configs.empty:
        return pd.DataFrame(columns=COST_COLUMNS)
    done = frame[frame["status"] == "FINISHED"]
    out = configs.set_index("config").join(_run_costs(done))
    out["memory"] = out["memory"].fillna("")  # a configuration without a finished run: unknown
    if "metric" in frame.columns:
        out["metric"] = frame.groupby("config", sort=False)["metric"].first()
    out = out.reset_index()
    keys = [k for k in GROUP if k in out.columns]
    groups = [g for _, g in out.groupby(keys, sort=False)] if keys else [out]
    ranked = [
        g.sort_values("mean", ascending=False, na_position="last", kind="stable").assign(
            rank=g["mean"].rank(ascending=False, method="min")
        )
        for g in groups
    ]
    out = pd.concat(ranked, ignore_index=True)
    on = {name: {c for front in fronts.values() for c in front} for name, fronts in cost_fronts(out).items()}
    out["front"] = [", ".join(n for n in FRONT_AXES if c in on[n]) for c in out["config"]]
    return out[[c for c in COST_COLUMNS if c in out.columns]]


def cost_fronts(costs: pd.DataFrame) -> dict[str, dict[str, list[str]]]:
    """Per front (``params``, ``memory``) and dataset, the configurations no other of the dataset
    beats with a higher mean score at no more cost (``tables.pareto_front``, by ``config``)."""
    fronts: dict[str, dict[str, list[str]]] = {name: {} for name in FRONT_AXES}
    if costs.empty:
        return fronts
    by = costs.groupby("dataset", sort=False) if "dataset" in costs.columns else [("", costs)]
    for ds, g in by:
        for name, x in FRONT_AXES.items():
            fronts[name][str(ds)] = pareto_front(g[["config", x, "mean"]], x=x, y="mean", key="config")
    return fronts
