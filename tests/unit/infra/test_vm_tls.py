"""What the tracking VM's server presents: the stack's certificate with the key from the secret
store, or with a `domain` Let's Encrypt's once certbot's deploy hook (infra/acme_deploy_hook.sh,
run here for real with sh) has handed it over."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from pathlib import Path

import pytest

from infra import vm_launcher
from infra.vm import ACME_HOOK_SOURCE
from infra.vm_launcher import LaunchError, install_tls, split_pem, tls_check

STACK_CERT = "-----BEGIN CERTIFICATE-----\nstack\n-----END CERTIFICATE-----\n"
STACK_KEY = "-----BEGIN PRIVATE KEY-----\nstack key\n-----END PRIVATE KEY-----\n"
LE_CHAIN = "-----BEGIN CERTIFICATE-----\nlets encrypt leaf + R11\n-----END CERTIFICATE-----\n"
LE_KEY = "-----BEGIN PRIVATE KEY-----\nlets encrypt key\n-----END PRIVATE KEY-----\n"


def tls_spec(tmp_path: Path, domain: str | None) -> dict:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    return {
        "certfile": str(run / "tls.crt"),
        "keyfile": str(run / "tls.key"),
        "acmeDir": str(tmp_path / "acme") if domain else None,
        "domain": domain,
    }


def test_without_a_domain_the_stack_certificate_and_its_secret_key(tmp_path):
    spec = tls_spec(tmp_path, None)
    assert install_tls(spec, STACK_KEY, STACK_CERT) == "the stack's CA"
    assert Path(spec["certfile"]).read_text() == STACK_CERT
    key = Path(spec["keyfile"])
    assert key.read_text() == STACK_KEY and key.stat().st_mode & 0o777 == 0o600


def test_before_the_first_lets_encrypt_certificate_the_stack_s_and_a_line_why(tmp_path, capsys):
    """The first deploy comes before the user's DNS record: the server still starts, on the
    stack's certificate (which names the domain), and says what it waits for."""
    spec = tls_spec(tmp_path, "mlflow.example.com")
    assert install_tls(spec, STACK_KEY, STACK_CERT) == "the stack's CA"
    assert Path(spec["certfile"]).read_text() == STACK_CERT
    err = capsys.readouterr().err
    assert "no Let's Encrypt certificate for mlflow.example.com yet" in err
    assert "journalctl -u mlflow-acme" in err


def run_hook(tmp_path: Path, env: dict) -> subprocess.CompletedProcess:
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    calls = tmp_path / "systemctl.calls"
    systemctl = tmp_path / "systemctl"
    systemctl.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    systemctl.chmod(0o755)
    hook = tmp_path / "acme-deploy-hook"
    hook.write_text(ACME_HOOK_SOURCE.read_text())  # as the bundle carries it
    return subprocess.run(
        ["sh", str(hook)],
        env={
            "PATH": os.environ["PATH"],
            "MLFLOW_ACME_DIR": str(tmp_path / "acme"),
            "MLFLOW_USER": user,
            "MLFLOW_GROUP": group,
            "SYSTEMCTL": str(systemctl),
            **env,
        },
        capture_output=True,
        text=True,
    )


def test_the_tls_secret_holds_the_key_then_the_certificate_and_nothing_less():
    assert split_pem(STACK_KEY + STACK_CERT) == (STACK_KEY, STACK_CERT)
    chain = STACK_CERT + LE_CHAIN
    assert split_pem(STACK_KEY.rstrip("\n") + "\n" + chain) == (STACK_KEY, chain)
    with pytest.raises(LaunchError, match="must hold a private key and a certificate"):
        split_pem(STACK_KEY)


def test_a_renewed_certificate_in_the_secret_store_restarts_the_server_once(tmp_path, monkeypatch):
    """The stack renewed the certificate (a new secret version): the daily check restarts the
    server, whose launcher installs it; the same certificate restarts nothing."""
    spec = {"tls": tls_spec(tmp_path, None), "secrets": {}}
    install_tls(spec["tls"], STACK_KEY, STACK_CERT)
    renewed = STACK_CERT.replace("stack", "renewed")
    stored = {"tlsCert": STACK_CERT}
    monkeypatch.setattr(vm_launcher, "fetch_secrets", lambda source: stored)
    restarts = []
    assert tls_check(spec, lambda: restarts.append(1)) == (
        "mlflow tls: the server presents the current certificate"
    )
    stored["tlsCert"] = renewed
    assert "restarted mlflow.service" in tls_check(spec, lambda: restarts.append(1))
    assert restarts == [1]


def test_with_lets_encrypt_in_place_the_check_leaves_it_to_certbot(tmp_path, monkeypatch):
    spec = {"tls": tls_spec(tmp_path, "mlflow.example.com"), "secrets": {}}
    acme = Path(spec["tls"]["acmeDir"])
    acme.mkdir()
    (acme / "fullchain.pem").write_text(LE_CHAIN)
    (acme / "privkey.pem").write_text(LE_KEY)
    monkeypatch.setattr(vm_launcher, "fetch_secrets", lambda source: pytest.fail("no fetch"))
    assert "Let's Encrypt's certificate in use" in tls_check(spec, lambda: pytest.fail("restart"))
