"""scripts/smoke against a model API on loopback (a server in a thread), as from a runner that
cannot reach the tracking server (outside allowedCidrs): it waits for the model API, says what it
cannot check, and still fails when the API serves nothing; and the tracking VM's console."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from local_platform import free_port
from scripts import smoke


@pytest.fixture
def api(fake_api):
    fake_api.update(ready=True, version="4")
    return fake_api


def test_an_unreachable_tracking_server_is_reported_and_the_api_still_checked(api, capsys):
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: as a firewalled server
    assert smoke.main(["--tracking-uri", closed, "--model-api-url", api["url"], "--wait", "5"]) == 0
    out = capsys.readouterr().out
    assert "ok   model API serves a model: v4" in out
    assert f"skip tracking server checks: {closed} is not reachable from here" in out
    assert "ok   model API predicts: 5.60 min from v4" in out


def test_an_api_that_never_serves_fails_after_the_wait(api, capsys):
    api["ready"] = False
    closed = f"http://127.0.0.1:{free_port()}"
    assert smoke.main(["--tracking-uri", closed, "--model-api-url", api["url"], "--wait", "1"]) == 1
    assert "FAIL model API serves a model: /ready after 1s: 503" in capsys.readouterr().err


# --- the tracking VM's bootstrap verdict, read from its serial console --------------------------

FAILED = "MLFLOW BOOTSTRAP FAILED at step packages (exit 1); see /var/log/cloud-init-output.log"


def test_the_last_verdict_on_the_console_counts():
    noise = "[   3.1] Booting\n[  42.0] cloud-init[812]: "
    assert smoke.bootstrap_verdict(noise) is None
    assert smoke.bootstrap_verdict(f"{noise}{FAILED}\r\n[ 50.2] login:") == FAILED
    assert smoke.bootstrap_verdict(f"{FAILED}\n{noise}MLFLOW BOOTSTRAP DONE\n") == (
        "MLFLOW BOOTSTRAP DONE"
    )


@pytest.fixture
def ec2_console(monkeypatch):
    """An EC2 instance in moto; `console.show(text)` sets its console output."""
    import boto3
    from moto import mock_aws
    from moto.ec2.responses import general

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "x")
    console = {"show": lambda text: monkeypatch.setattr(general, "SAMPLE_CONSOLE_OUTPUT", text)}
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="eu-west-1")
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        [vm] = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"]
        console["arn"] = f"arn:aws:ec2:eu-west-1:123456789012:instance/{vm['InstanceId']}"
        yield console


def test_a_failed_bootstrap_fails_the_smoke_test_at_once_with_its_line(api, ec2_console):
    api["ready"] = False
    ec2_console["show"](f"[  42.0] cloud-init[812]: {FAILED}\n")
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(smoke.SmokeFailure) as failure:
        smoke.run(closed, api["url"], "m", {}, ec2_console["arn"], wait=20)
    assert str(failure.value) == (  # "says": before the wait ran out
        "model API serves a model: /ready: 503 {'status': 'not ready', 'reason': 'alias champion not found', "
        f"'reason_code': 'no_model_version'}}; the tracking VM says: {FAILED}"
    )


def test_an_api_that_never_serves_says_what_the_vm_said(api, ec2_console):
    api["ready"] = False
    ec2_console["show"]("MLFLOW BOOTSTRAP DONE\n")
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(smoke.SmokeFailure, match="the tracking VM: MLFLOW BOOTSTRAP DONE$"):
        smoke.run(closed, api["url"], "m", {}, ec2_console["arn"], wait=1)
    ec2_console["show"]("still booting\n")
    with pytest.raises(smoke.SmokeFailure, match="the tracking VM: no bootstrap verdict on its"):
        smoke.run(closed, api["url"], "m", {}, ec2_console["arn"], wait=1)
    gone = ec2_console["arn"].rsplit("/", 1)[0] + "/i-0000000000000000"
    with pytest.raises(smoke.SmokeFailure, match=r"console is not readable from here \(ClientErr"):
        smoke.run(closed, api["url"], "m", {}, gone, wait=1)


def test_the_gce_serial_port_is_read_with_the_caller_s_credentials(monkeypatch, api):
    import google.auth
    import google.auth.transport.requests as transport

    asked = {}

    class Session:
        def __init__(self, credentials):
            pass

        def get(self, url, params, timeout):
            asked.update(url=url, params=params)
            response = type("R", (), {"status_code": 200})()
            response.json = lambda: {"contents": f"boot\n{FAILED}\n"}
            return response

    monkeypatch.setattr(google.auth, "default", lambda scopes: (object(), "p"))
    monkeypatch.setattr(transport, "AuthorizedSession", Session)
    instance = "projects/p/zones/europe-west1-b/instances/mlops-vm-1a2b"
    assert smoke.bootstrap_verdict(smoke.read_console(instance)) == FAILED
    assert asked == {
        "url": f"https://compute.googleapis.com/compute/v1/{instance}/serialPort",
        "params": {"port": 1},
    }
    with pytest.raises(smoke.SmokeFailure, match="not an EC2 ARN or a GCE instance path"):
        smoke.read_console("i-0abc")


# --- what the smoke test trusts, from the platform's outputs ------------------------------------

PLATFORM = {
    "trackingUri": "https://198.51.100.7:5000",
    "adminUsername": "admin",
    "adminPassword": "pw",
    "trackingInstance": "arn:aws:ec2:us-east-1:1:instance/i-0",
}


@pytest.mark.parametrize("ca", ["-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n", ""])
def test_a_stack_s_ca_is_trusted_and_a_domain_uses_the_system_cas(monkeypatch, ca):
    """Without a domain the server's certificate is the stack CA's, which the smoke test must
    trust; with one (trackingCaCert empty) Let's Encrypt's, verified by the system's CAs."""

    def outputs(project_dir, stack):
        if project_dir.name == "services":
            return {"modelApiUrl": "http://api.example"}
        return {**PLATFORM, "trackingCaCert": ca}

    monkeypatch.setattr(smoke, "outputs", outputs)
    uri, api_url, _, env, _, _ = smoke.target(SimpleNamespace(local=False, stack="dev", model="m"))
    assert (uri, api_url) == (PLATFORM["trackingUri"], "http://api.example")
    if ca:
        with open(env["MLFLOW_TRACKING_SERVER_CERT_PATH"]) as fh:
            assert fh.read() == ca
    else:
        assert "MLFLOW_TRACKING_SERVER_CERT_PATH" not in env
