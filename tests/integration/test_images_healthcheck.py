"""The model API image's HEALTHCHECK, run as Docker would run it, against a server on the port it names."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading

from local_platform import free_port
from tests.unit.scripts.test_images import (
    ROOT,
    dockerfile,
)


def test_the_api_healthcheck_asks_the_port_the_server_listens_on(tmp_path):
    assert 'CMD ["python", "-m", "services.model_api.healthcheck"]' in dockerfile("taxi-model-api")

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:

        def probe(env: dict[str, str]) -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "-m", "services.model_api.healthcheck"],
                env={**os.environ, **env}, capture_output=True, text=True, timeout=30, cwd=ROOT,
            )  # fmt: skip

        everywhere = "0.0.0.0"  # noqa: S104 - what the image sets; the probe asks loopback
        assert probe({"UVICORN_HOST": everywhere, "UVICORN_PORT": str(port)}).returncode == 0
        # The old check asked 8000 whatever the port; a port where nothing listens fails.
        wrong = probe({"UVICORN_HOST": everywhere, "UVICORN_PORT": str(free_port())})
        assert wrong.returncode == 1 and wrong.stderr.startswith("unhealthy: http://127.0.0.1:")
    finally:
        server.shutdown()
