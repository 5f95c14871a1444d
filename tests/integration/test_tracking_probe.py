"""The tracking server's outside probe (infra.tracking_probe) against a real HTTPS listener on
127.0.0.1 with the local CA's certificate: healthy with the certificate's days left, and each
way of failing as healthy 0 with one line of reason."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from infra import tracking_probe
from infra.aws.probe import FILTERS
from local_platform.tls import make_tls


class Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 - http.server's name
        body = b"OK" if self.path == "/health" and self.status == 200 else b"down"
        self.send_response(self.status if self.path == "/health" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def tls(tmp_path):
    return make_tls(tmp_path / "tls")


@pytest.fixture
def server(tls):
    Health.status = 200
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert, tls.key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_healthy_with_the_certificates_days_left(server, tls):
    result = tracking_probe.probe(server, tls.ca_cert.read_text())
    assert result["healthy"] == 1
    assert "reason" not in result
    # make_tls's certificate lasts a year from five minutes ago.
    assert 364 <= result["certificateDaysLeft"] <= 365


def test_days_left_count_from_now(server, tls):
    later = tracking_probe.time.time() + 350 * 86400
    result = tracking_probe.probe(server, tls.ca_cert.read_text(), now=lambda: later)
    assert 14 <= result["certificateDaysLeft"] <= 15  # under the alarm's 21 days


def test_an_unhealthy_answer_still_reports_the_certificate(server, tls):
    Health.status = 503
    result = tracking_probe.probe(server, tls.ca_cert.read_text())
    assert result["healthy"] == 0
    assert result["reason"] == "/health answered HTTP 503"
    assert result["certificateDaysLeft"] > 300


def test_a_certificate_from_another_ca_is_unhealthy(server, tmp_path):
    other = make_tls(tmp_path / "other")
    result = tracking_probe.probe(server, other.ca_cert.read_text())
    assert result == {
        "healthy": 0,
        "reason": "certificate not trusted: unable to get local issuer certificate",
    }


def test_nothing_listening_is_unhealthy(tls):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = tracking_probe.probe(f"https://127.0.0.1:{port}", tls.ca_cert.read_text())
    assert result["healthy"] == 0
    assert "refused" in result["reason"].lower()


def test_a_silent_server_times_out(tls):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        uri = f"https://127.0.0.1:{silent.getsockname()[1]}"
        result = tracking_probe.probe(uri, tls.ca_cert.read_text(), timeout=0.5)
    assert result == {"healthy": 0, "reason": "no answer within 0.5 s"}


def test_the_handler_prints_the_line_the_metric_filters_read(server, tls, monkeypatch, capsys):
    monkeypatch.setenv("TRACKING_PROBE_URI", server)
    monkeypatch.setenv("TRACKING_PROBE_CA", tls.ca_cert.read_text())
    monkeypatch.setenv("TRACKING_PROBE_STACK", "dev")
    returned = tracking_probe.handler({}, None)
    line = json.loads(capsys.readouterr().out)
    assert line == returned
    assert line["probe"] == "tracking" and line["stack"] == "dev" and line["healthy"] == 1
    # What AWS's metric filters read from the line (infra.aws.probe), and the alarms watch.
    for pattern, value in FILTERS.values():
        field = value.removeprefix("$.")
        assert isinstance(line[field], int | float)
        assert f"$.{field} = *" in pattern and '$.probe = "tracking"' in pattern
