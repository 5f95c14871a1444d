"""scripts/smoke from a runner that cannot reach the tracking server (outside allowedCidrs):
it waits for the model API, says what it cannot check, and still fails when the API serves
nothing."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scripts import smoke
from scripts.components import free_port


@pytest.fixture
def api():
    state = {"ready": True}

    class Handler(BaseHTTPRequestHandler):
        def reply(self, code, body):
            payload = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self):  # noqa: N802
            if state["ready"]:
                self.reply(200, {"status": "ready", "model_version": "4"})
            else:
                self.reply(503, {"status": "not ready", "reason_code": "no_model_version"})

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["content-length"]))
            self.reply(200, {"duration": 5.6, "model_version": "4"})

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()


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
