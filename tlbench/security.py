"""Secrets and exposure: where passwords come from, and who may reach a port.

Secrets are read from the environment or from a file named by ``NAME_FILE`` (Docker and
Kubernetes secrets mount files), never from a command line: every user of a machine can read
every process's arguments (``ps``, ``/proc/PID/cmdline``), but not another user's environment.
Torch-free and mlflow-free: the CLI checks these before importing anything heavy.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from tlbench.errors import TlbenchError

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


class SecretError(TlbenchError, ValueError):
    """A secret that is missing, empty, given twice or unreadable: one message naming the variable."""


def read_secret(name: str, *, hint: str = "") -> str | None:
    """``$NAME``, or the contents of the file ``$NAME_FILE`` (one trailing newline dropped);
    None when neither is set. Both set, an empty value or an unreadable file is an error."""
    value, path = os.environ.get(name), os.environ.get(f"{name}_FILE")
    if value is not None and path is not None:
        raise SecretError(f"both {name} and {name}_FILE are set; unset one of them")
    if path is not None:
        try:
            value = Path(path).expanduser().read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
        except OSError as err:
            raise SecretError(f"{name}_FILE={path}: cannot read it ({err.strerror or err})") from None
        if not value:
            raise SecretError(f"{name}_FILE={path} is empty{hint}")
        return value
    if value is not None and not value:
        raise SecretError(f"{name} is set but empty{hint}")
    return value


def is_loopback(host: str) -> bool:
    """Does binding ``host`` keep a port on this machine (127.0.0.0/8, ::1, localhost)?
    ``0.0.0.0``, ``::``, a LAN address or a name resolving elsewhere do not."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_password(url: str) -> str | None:
    """The password in ``scheme://user:PASS@host/...``, or None."""
    if "://" not in url:
        return None
    rest = url.split("://", 1)[1].split("/", 1)[0]
    if "@" not in rest:
        return None
    creds = rest.rsplit("@", 1)[0]
    return creds.split(":", 1)[1] if ":" in creds else None


def refuse_password_on_command_line(option: str, url: str | None, env: str) -> None:
    """A database URL with its password given as a command-line option is visible to every
    user of the machine: refuse it and say where it goes instead."""
    if url and url_password(url):
        raise SecretError(
            f"{option}: a password on the command line is visible to every user of this machine "
            f"(ps); put the URL in the environment instead ({env}=...), or leave the password out "
            "and give it as PGPASSWORD or in ~/.pgpass"
        )


def exposure_warning(host: str, insecure: bool, what: str) -> str | None:
    """Bind ``host`` for ``what``, a service without authentication of its own: loopback is fine;
    anything else needs ``--insecure-no-auth`` (then the returned warning is printed)."""
    if is_loopback(host):
        return None
    if not insecure:
        raise SecretError(
            f"--host {host}: {what} has no authentication, so anyone who can reach the port could "
            "use it; keep it on 127.0.0.1 and reach it through an SSH tunnel "
            "(ssh -L PORT:127.0.0.1:PORT HOST), or add --insecure-no-auth if the network is trusted"
        )
    return (
        f"warning: {what} on {host} has no authentication: anyone who can reach the port can "
        "read (and change) what it serves"
    )
