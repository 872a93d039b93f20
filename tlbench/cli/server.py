"""``tlbench server``: an MLflow tracking server on a shared database, for many machines."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from tlbench.cli.common import clean_errors, err_console, fail
from tlbench.server.auth import DEFAULT_PERMISSION, PERMISSIONS


def _store_uri(ctx: click.Context, backend_store_uri: str | None) -> str:
    """The store's URL, from ``TLBENCH_SERVER_STORE`` or the option (without a password there)."""
    from tlbench.security import refuse_password_on_command_line
    from tlbench.server.app import STORE_ENV

    if not backend_store_uri:
        fail(f"give the backend store: {STORE_ENV}=postgresql://USER:PASS@HOST:5432/DB in the environment")
    if ctx.get_parameter_source("backend_store_uri") == click.core.ParameterSource.COMMANDLINE:
        refuse_password_on_command_line("--backend-store-uri", backend_store_uri, STORE_ENV)
    return backend_store_uri


def _auth_wanted(host: str, auth: bool, insecure_no_auth: bool) -> bool:
    """On by default off loopback; ``--auth`` forces it on, ``--insecure-no-auth`` off (warned)."""
    from tlbench.security import is_loopback

    if auth and insecure_no_auth:
        fail("--auth and --insecure-no-auth contradict each other")
    if insecure_no_auth:
        if not is_loopback(host):
            err_console.print(
                f"[bold yellow]warning:[/] MLflow on {host} without authentication: anyone who can "
                "reach the port can read every run, download every checkpoint and delete experiments",
                highlight=False,
            )
        return False
    return auth or not is_loopback(host)


@click.command()
@click.option(
    "--backend-store-uri",
    envvar="TLBENCH_SERVER_STORE",
    default=None,
    help="database of runs; with a password, only through TLBENCH_SERVER_STORE (pip install 'tlbench[postgres]')",
)
@click.option(
    "--artifacts-destination",
    default=None,
    help="where the server keeps artifacts (default ./mlruns/server-artifacts; or s3://...)",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="bind address (0.0.0.0 lets other machines in)"
)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1), help="server processes")
@click.option(
    "--allowed-hosts", default=None, help="Host headers MLflow accepts when exposed, e.g. 'mlflow.lan:5000'"
)
@click.option("--auth", is_flag=True, help="authentication on loopback too (always on when exposed)")
@click.option("--insecure-no-auth", is_flag=True, help="no authentication even when exposed (warned)")
@click.option(
    "--default-permission",
    type=click.Choice(PERMISSIONS),
    default=DEFAULT_PERMISSION,
    show_default=True,
    help="what a user may do on experiments they neither created nor were granted",
)
@click.option(
    "--auth-db",
    envvar="TLBENCH_SERVER_AUTH_DB",
    default=None,
    help="users database (default: beside the backend store)",
)
@click.pass_context
@clean_errors
def server(
    ctx: click.Context,
    backend_store_uri: str | None,
    artifacts_destination: str | None,
    host: str,
    port: int,
    workers: int,
    allowed_hosts: str | None,
    auth: bool,
    insecure_no_auth: bool,
    default_permission: str,
    auth_db: str | None,
) -> None:
    """Start an MLflow tracking server on a shared database, for many machines (127.0.0.1 unless
    --host; off loopback with authentication: TLBENCH_MLFLOW_ADMIN_PASSWORD or ..._FILE)."""
    from tlbench.server.app import child_env, describe, server_command
    from tlbench.server.auth import auth_setup, ensure_admin, server_env, write_config

    uri = _store_uri(ctx, backend_store_uri)
    with_auth = _auth_wanted(host, auth, insecure_no_auth)
    setup = auth_setup(uri, default_permission, auth_db) if with_auth else None  # exits 2 before binding
    cmd, env = server_command(
        uri,
        host=host,
        port=port,
        artifacts_destination=artifacts_destination,
        workers=workers,
        allowed_hosts=allowed_hosts,
        auth=with_auth,
    )
    private = Path(tempfile.mkdtemp(prefix="tlbench-server-"))  # 0700: the ini may hold a db password
    try:
        if setup is not None:
            done = ensure_admin(setup)
            env.update(server_env(setup, write_config(setup, private)))
            err_console.print(f"{setup.describe()} (admin password {done})", highlight=False)
        err_console.print(f"MLflow server on http://{host}:{port}: {describe(cmd)}", highlight=False)
        creds = " with MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD" if setup else ""
        err_console.print(
            f"workers: tlbench run --grid NAME --tracking-uri http://{host}:{port}{creds}", highlight=False
        )
        code = _serve(cmd, child_env(env))
    finally:
        shutil.rmtree(private, ignore_errors=True)
    sys.exit(code)


def _serve(cmd: list[str], env: dict[str, str]) -> int:
    """Run the server until it exits; SIGTERM (docker stop, systemd) is passed on to it, so it
    stops cleanly and the private folder is removed."""
    proc = subprocess.Popen(cmd, env=env)
    signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    try:
        return proc.wait()
    except KeyboardInterrupt:  # the server got the same Ctrl-C (one process group): let it stop
        try:
            proc.wait(timeout=30)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            proc.kill()
        return 0
