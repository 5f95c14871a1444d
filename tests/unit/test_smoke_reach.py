"""scripts/smoke from a runner that cannot reach the tracking server (outside allowedCidrs):
it waits for the model API, says what it cannot check, and still fails when the API serves
nothing."""

from __future__ import annotations

import pytest

from scripts import smoke
from scripts.components import free_port


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
