"""``tlbench rank``: which backbone should I fine-tune? Transferability scores for every
(dataset, backbone) of a grid in seconds, checked against the grid's own results."""

from __future__ import annotations

import click

from tlbench.cli import common

DEFAULT_SCORES = "logme,leep,nce,hscore,reg_hscore,transrate,knn,probe"


@click.command("rank")
@common.grid_option
@common.select_option
@common.tracking_option
@common.data_dir_option
@click.option(
    "--metrics",
    "scores",
    default=DEFAULT_SCORES,
    show_default=True,
    help="comma list of scores: logme, leep, nce, hscore, reg_hscore, transrate, knn, probe",
)
@click.option(
    "--against",
    default="finetune",
    show_default=True,
    help="the strategy whose finished results each score is checked against (weighted tau, Pearson r)",
)
@common.device_option
@click.option("--no-log", is_flag=True, help="print only: no rank run in MLflow")
@common.clean_errors
def rank_cmd(
    grid: str,
    select: tuple[str, ...],
    tracking_uri: str | None,
    data_dir: str | None,
    scores: str,
    against: str,
    device: str,
    no_log: bool,
) -> None:
    """Score every (dataset, backbone) of a grid from one forward pass over the target data
    (features from the feature store, extracted once where missing), print a table per dataset
    with the backbones in predicted order, and log one MLflow run per dataset."""
    from tlbench import api
    from tlbench.report.console import render_transferability

    result = api.rank_grid(
        grid,
        select=select,
        tracking_uri=tracking_uri,
        scores=scores,
        against=against,
        data_dir=data_dir,
        device=device,
        log=not no_log,
        console=common.err_console,
    )
    render_transferability(common.console, result.table, result.agreement, result.against, result.results)
    for note in result.notes:
        common.err_console.print(f"[yellow]note:[/] {note}", highlight=False)
    spent = ", ".join(f"{k} {v:.2f} s" for k, v in result.seconds.items() if k != "total")
    common.err_console.print(
        f"scored in {result.seconds['total']:.1f} s ({spent})"
        + (f"; logged to MLflow: {len(result.run_ids)} rank run(s)" if result.run_ids else ""),
        highlight=False,
    )
