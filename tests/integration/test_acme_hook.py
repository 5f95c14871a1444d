"""The Let's Encrypt deploy hook (infra/acme_deploy_hook.sh), run with sh as certbot runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.vm_launcher import install_tls
from tests.unit.infra.test_vm_tls import (
    LE_CHAIN,
    LE_KEY,
    STACK_CERT,
    STACK_KEY,
    run_hook,
    tls_spec,
)


def test_a_new_lets_encrypt_certificate_reaches_the_server_at_its_restart(tmp_path):
    lineage = tmp_path / "letsencrypt/live/mlflow"
    lineage.mkdir(parents=True)
    (lineage / "fullchain.pem").write_text(LE_CHAIN)
    (lineage / "privkey.pem").write_text(LE_KEY)
    (lineage / "privkey.pem").chmod(0o600)

    done = run_hook(
        tmp_path, {"RENEWED_LINEAGE": str(lineage), "RENEWED_DOMAINS": "mlflow.example.com"}
    )
    assert done.returncode == 0, done.stderr
    acme = tmp_path / "acme"
    assert acme.stat().st_mode & 0o777 == 0o700
    assert (acme / "privkey.pem").stat().st_mode & 0o777 == 0o600
    assert not list(acme.glob(".*.new"))  # renamed into place
    # The hook restarts the server only if it runs (the launcher then presents the new pair).
    assert (tmp_path / "systemctl.calls").read_text() == "try-restart mlflow.service\n"

    spec = tls_spec(tmp_path, "mlflow.example.com")
    assert install_tls(spec, STACK_KEY, STACK_CERT) == "Let's Encrypt (mlflow.example.com)"
    assert Path(spec["certfile"]).read_text() == LE_CHAIN
    assert Path(spec["keyfile"]).read_text() == LE_KEY

    # A renewal replaces both files; the next start presents the renewed pair.
    (lineage / "fullchain.pem").write_text(LE_CHAIN.replace("leaf", "renewed leaf"))
    assert run_hook(tmp_path, {"RENEWED_LINEAGE": str(lineage)}).returncode == 0
    install_tls(spec, STACK_KEY, STACK_CERT)
    assert "renewed leaf" in Path(spec["certfile"]).read_text()


@pytest.mark.parametrize("missing", ["RENEWED_LINEAGE", "the lineage's files"])
def test_the_hook_fails_without_a_certificate_and_restarts_nothing(tmp_path, missing):
    env = {} if missing == "RENEWED_LINEAGE" else {"RENEWED_LINEAGE": str(tmp_path / "none")}
    done = run_hook(tmp_path, env)
    assert done.returncode != 0
    assert not (tmp_path / "systemctl.calls").exists()
    assert not (tmp_path / "acme" / "fullchain.pem").exists()
