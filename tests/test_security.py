"""Secrets from the environment or a file, exposure rules, and the CLI refusing unsafe starts."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner
from helpers import free_port

from tlbench.cli import main
from tlbench.security import SecretError, exposure_warning, is_loopback, read_secret, url_password


def test_a_secret_comes_from_its_variable_or_its_file(tmp_path, monkeypatch):
    monkeypatch.delenv("TLB_S", raising=False)
    monkeypatch.delenv("TLB_S_FILE", raising=False)
    assert read_secret("TLB_S") is None
    monkeypatch.setenv("TLB_S", "from-env")
    assert read_secret("TLB_S") == "from-env"
    (tmp_path / "s").write_text("from-file\n")
    monkeypatch.setenv("TLB_S_FILE", str(tmp_path / "s"))
    with pytest.raises(SecretError, match="both TLB_S and TLB_S_FILE"):
        read_secret("TLB_S")
    monkeypatch.delenv("TLB_S")
    assert read_secret("TLB_S") == "from-file"
    monkeypatch.setenv("TLB_S_FILE", str(tmp_path / "missing"))
    with pytest.raises(SecretError, match="TLB_S_FILE=.*cannot read"):
        read_secret("TLB_S")
    monkeypatch.delenv("TLB_S_FILE")
    monkeypatch.setenv("TLB_S", "")
    with pytest.raises(SecretError, match="TLB_S is set but empty"):
        read_secret("TLB_S")


def test_loopback_and_exposure():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "mlflow.lan"))
    assert exposure_warning("127.0.0.1", False, "x") is None
    with pytest.raises(SecretError, match="--insecure-no-auth"):
        exposure_warning("0.0.0.0", False, "optuna-dashboard")
    assert "no authentication" in exposure_warning("0.0.0.0", True, "optuna-dashboard")
    assert (
        url_password("postgresql://u:p%40ss@db/x") == "p%40ss" and url_password("postgresql://u@db/x") is None
    )


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def test_an_exposed_server_without_credentials_exits_2_before_binding(tmp_path, monkeypatch):
    for name in ("TLBENCH_MLFLOW_ADMIN_PASSWORD", "TLBENCH_MLFLOW_ADMIN_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    port = free_port()
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = CliRunner().invoke(
        main, ["server", "--backend-store-uri", store, "--host", "0.0.0.0", "--port", str(port)]
    )
    assert out.exit_code == 2 and "TLBENCH_MLFLOW_ADMIN_PASSWORD" in out.output, out.output
    assert "--insecure-no-auth" in out.output and _bindable(port)
    assert not (tmp_path / "mlflow.db").exists()  # nothing started
    monkeypatch.setenv("TLBENCH_MLFLOW_ADMIN_PASSWORD", "short")
    out = CliRunner().invoke(main, ["server", "--backend-store-uri", store, "--host", "0.0.0.0"])
    assert out.exit_code == 2 and "at least 12 characters" in out.output and "short" not in out.output


def test_passwords_on_the_command_line_and_exposed_uis_are_refused():
    pg = "postgresql://tl:hunter2hunter2@127.0.0.1:1/x"
    cases = {
        ("server", "--backend-store-uri", pg): "TLBENCH_SERVER_STORE",
        ("dashboard", "--storage", pg): "TLBENCH_OPTUNA_STORAGE",
        ("dashboard", "--host", "0.0.0.0"): "--insecure-no-auth",
        ("ui", "--host", "0.0.0.0"): "--insecure-no-auth",
        ("server", "--auth", "--insecure-no-auth", "--backend-store-uri", "sqlite:///x.db"): "contradict",
    }
    for args, says in cases.items():
        out = CliRunner().invoke(main, list(args))
        assert out.exit_code == 2 and says in out.output, (args, out.output)
        assert "hunter2" not in out.output and "Traceback" not in out.output


def test_tune_helpers_get_the_storage_through_their_environment_not_argv():
    from tlbench.tune.driver import helper_argv

    argv = helper_argv(
        "g.yaml", ("a/*",), 3, "median", tracking_uri="http://h:5000", data_dir=None, device="cpu"
    )
    assert "--storage" not in argv and argv[:3] == ["tune", "--grid", "g.yaml"]
