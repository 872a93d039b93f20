"""The ``tlbench`` command: one small module per subcommand, each parsing its options and
calling the library; ``common`` holds what they share (bad input: one message, exit status 2)."""

from __future__ import annotations

import click

from tlbench.cli.cache import cache
from tlbench.cli.dashboard import dashboard
from tlbench.cli.grant import grant
from tlbench.cli.grids import grids_cmd, init_cmd
from tlbench.cli.ls import ls_cmd
from tlbench.cli.prefetch import prefetch
from tlbench.cli.rank import rank_cmd
from tlbench.cli.report import report
from tlbench.cli.run import run
from tlbench.cli.server import server
from tlbench.cli.store import store
from tlbench.cli.tune import tune
from tlbench.cli.ui import ui
from tlbench.cli.validate import validate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tlbench")
def main() -> None:
    """tlbench: declare a transfer-learning grid, get every cell trained, tracked and compared."""


for command in (
    grids_cmd,
    init_cmd,
    ls_cmd,
    validate,
    prefetch,
    run,
    tune,
    rank_cmd,
    report,
    ui,
    server,
    grant,
    dashboard,
    cache,
    store,
):
    main.add_command(command)

__all__ = ["main"]
