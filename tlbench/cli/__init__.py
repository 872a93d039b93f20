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


def entry() -> None:
    """The ``tlbench`` console script: ``main``, then the process ends without the interpreter's
    module teardown (2 s of freeing torch, timm and MLflow after every command that imported
    them, paid after the last line is printed); what an ordinary exit does first still runs."""
    try:
        main.main(prog_name="tlbench")
        code: int | str | None = 0
    except SystemExit as done:
        code = done.code
    leave(code)


def leave(code: int | str | None) -> None:
    """End this process as ``sys.exit(code)`` would, in the interpreter's own order: the
    background writers ended (a write in progress finishes), the non-daemon threads joined after
    their libraries' own exit hooks (``threading._shutdown``), the ``atexit`` handlers (logging,
    multiprocessing, temporary folders such as the downloaded sources', Ray), the streams flushed; then ``os._exit``."""
    import atexit
    import contextlib
    import os
    import sys
    import threading

    from tlbench.tracking.process import stop_writers

    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    stop_writers()
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is None:  # an interpreter without it: the ordinary exit, teardown included
        sys.exit(code)
    shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can be said
            stream.flush()
    os._exit(code or 0)


__all__ = ["entry", "main"]
