"""Who may do what on a shared MLflow server with authentication: checked before any cell starts.

Clients authenticate with MLflow's own settings: ``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD`` (or ``~/.mlflow/credentials``, or ``MLFLOW_TRACKING_TOKEN``). A
worker needs EDIT on its grid's experiment and on the claims experiment, where ``tlbench grant``
gives it MANAGE (MLflow's EDIT may not delete runs: a released claim is deleted by its owner, so
claims do not pile up; that experiment holds no results); a missing or wrong
credential, or a missing permission, is one message naming the variable, never a traceback in
every cell (MLflow does not retry 401 / 403, so it is never a retry loop either).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from tlbench.errors import TlbenchError
from tlbench.tracking import tags
from tlbench.tracking.claims import claims_experiment

if TYPE_CHECKING:
    from tlbench.tracking.store import Tracker

USERNAME_ENV, PASSWORD_ENV, TOKEN_ENV = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)
SECRET_ENV = (USERNAME_ENV, PASSWORD_ENV, TOKEN_ENV)  # what a Ray task gets, outside its runtime_env
WRITABLE_TAG = "tlbench.writable"  # set (to the same value) to prove EDIT on an experiment
AUTH_CODES = ("UNAUTHENTICATED", "PERMISSION_DENIED")


class AccessError(TlbenchError, PermissionError):
    """The tracking server refused this user: what to set or to grant."""


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def credentials() -> dict[str, str]:
    """MLflow's credentials as this process would send them (environment, else
    ``~/.mlflow/credentials``), as variables: for processes on other machines (Ray tasks)."""
    import os

    from mlflow.utils.credentials import read_mlflow_creds

    creds = read_mlflow_creds()
    out = {USERNAME_ENV: creds.username, PASSWORD_ENV: creds.password, TOKEN_ENV: os.environ.get(TOKEN_ENV)}
    return {k: v for k, v in out.items() if v}


def explain(err: BaseException, uri: str = "the MLflow server", what: str = "") -> str | None:
    """The user's fix for a 401 / 403 from the server; None for any other error."""
    code = getattr(err, "error_code", None)
    if code not in AUTH_CODES:
        return None
    user = credentials().get(USERNAME_ENV)
    if code == "UNAUTHENTICATED":
        if not user and not credentials().get(TOKEN_ENV):
            return (
                f"{uri} requires authentication: set {USERNAME_ENV} and {PASSWORD_ENV} "
                "(or write them to ~/.mlflow/credentials)"
            )
        return f"{uri} rejected the credentials: {PASSWORD_ENV} is wrong for {USERNAME_ENV}={user!r}, or no such user"
    return (
        f"{uri}: user {user!r} ({USERNAME_ENV}) is not allowed to {what or 'do this'}; an admin grants it: "
        f"tlbench grant {user or 'USER'} --grid GRID --tracking-uri {uri}"
    )


def unreachable(err: BaseException) -> str | None:
    """For a request MLflow gave up on (the server away through all its retries): what to do."""
    if "Max retries exceeded" not in str(err):
        return None
    return (
        "the runs it could not end keep their checkpoints; the same command marks them KILLED with the "
        "reason once the server is back, and continues them (more patience: "
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR)"
    )


def outage_reason(err: BaseException, seconds: float) -> str | None:
    """A run's end reason when its process's retries ran out (``unreachable``); None otherwise."""
    if unreachable(err) is None:
        return None
    url = re.search(r"with url: (/\S*)", str(err)) or re.search(r"/api/2\.0/mlflow/(\S+?)[\s?]", str(err))
    call = url.group(1).split("?")[0].removeprefix("/api/2.0/mlflow/").rstrip(" (") if url else "a request"
    return f"the tracking server was unreachable for {seconds:.0f} s: retries ran out at {call}"


def _checked(tracker: Tracker, what: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as err:
        message = explain(err, tracker.uri, what)
        if message is None:
            raise
        raise AccessError(message) from None


def check_access(tracker: Tracker, grid: str) -> str:
    """The grid's experiment id, after proving this user may log there and claim cells (EDIT on
    both experiments; a created experiment is the creator's). A local store skips the checks."""
    if not is_remote(tracker.uri):
        return tracker.experiment_id(grid)
    _checked(tracker, "read the server", lambda: tracker.client.search_experiments(max_results=1))
    claims = _checked(
        tracker, f"read or create experiment {tags.CLAIMS_EXPERIMENT!r}", claims_experiment, tracker
    )
    exp_id = _checked(tracker, f"read or create experiment {grid!r}", tracker.experiment_id, grid)
    for eid, name in ((exp_id, grid), (claims, tags.CLAIMS_EXPERIMENT)):
        what = f"write to experiment {name!r} (EDIT)"
        _checked(tracker, what, tracker.client.set_experiment_tag, eid, WRITABLE_TAG, "1")
    return exp_id


def grant(tracker: Tracker, user: str, grid: str, permission: str, password: str | None = None) -> list[str]:
    """As an admin: ``user`` gets ``permission`` on the grid's experiment (created if missing) and,
    for EDIT or MANAGE, MANAGE on the claims experiment (a worker claims cells there, and deletes
    its claims when done: EDIT may not); the user is created first when ``password`` is given and
    it does not exist. Returns what was done."""
    from mlflow.server import get_app_client

    auth = get_app_client("basic-auth", tracking_uri=tracker.uri)
    done = []
    if password is not None:
        try:
            auth.get_user(user)
        except Exception as err:
            if getattr(err, "error_code", None) != "RESOURCE_DOES_NOT_EXIST":
                raise
            _checked(tracker, "create users (an admin's right)", auth.create_user, user, password)
            done.append(f"created user {user!r}")
    targets = [(grid, tracker.experiment_id, permission)]
    if permission in ("EDIT", "MANAGE"):
        targets.append((tags.CLAIMS_EXPERIMENT, lambda _: claims_experiment(tracker), "MANAGE"))
    for name, get_id, level in targets:
        eid = _checked(tracker, f"read or create experiment {name!r}", get_id, name)
        what = "grant permissions (an admin's right, or MANAGE on the experiment)"
        try:
            _checked(tracker, what, auth.grant_user_permission, user, "experiment", eid, level)
        except Exception as err:  # granted before (EDIT on the claims, before #29): raised to MANAGE
            if getattr(err, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
                raise
            _checked(tracker, what, auth.revoke_user_permission, user, "experiment", eid)
            _checked(tracker, what, auth.grant_user_permission, user, "experiment", eid, level)
        done.append(f"{level} on experiment {name!r} ({eid})")
    return done
