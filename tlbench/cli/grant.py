"""``tlbench grant``: give a user of an authenticated ``tlbench server`` access to a grid."""

from __future__ import annotations

import click

from tlbench.cli import common
from tlbench.server.auth import PERMISSIONS

USER_PASSWORD_ENV = "TLBENCH_MLFLOW_USER_PASSWORD"


@click.command()
@click.argument("user")
@common.grid_option
@common.tracking_option
@click.option(
    "--permission",
    type=click.Choice(PERMISSIONS),
    default="EDIT",
    show_default=True,
    help="EDIT: a worker (the grid's and the claims' experiments); READ: a viewer",
)
@click.option(
    "--create", is_flag=True, help=f"create the user if missing, its password from {USER_PASSWORD_ENV}[_FILE]"
)
@common.clean_errors
def grant(user: str, grid: str, tracking_uri: str | None, permission: str, create: bool) -> None:
    """Give USER a permission on a grid's experiment (and, to run cells, on the claims
    experiment), as an admin: MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD."""
    from tlbench.security import SecretError, read_secret
    from tlbench.tracking import Tracker
    from tlbench.tracking.access import grant as grant_access
    from tlbench.tracking.access import is_remote

    spec, _, _ = common.load(grid, (), check_backbones=False)
    password = read_secret(USER_PASSWORD_ENV) if create else None
    if create and password is None:
        raise SecretError(
            f"--create: give the new user's password as {USER_PASSWORD_ENV} or {USER_PASSWORD_ENV}_FILE"
        )
    tracker = Tracker(tracking_uri)
    if not is_remote(tracker.uri):
        raise SecretError(
            f"{tracker.uri} is a local store without users: give --tracking-uri http://HOST:PORT"
        )
    for line in grant_access(tracker, user, spec.name, permission, password):
        common.err_console.print(f"{user}: {line}", highlight=False)
