"""The serving benchmark's parts that run processes: the load generator against real sockets, and what /proc says about a server's process group."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from benchmarks import measure
from local_platform import free_port
from tests.unit.benchmarks.test_serving import (
    run_loadgen,
)


@pytest.mark.parametrize("path", ["/plain", "/chunked"])
def test_loadgen_counts_non_2xx_answers_as_errors(server, tmp_path, path):
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_text('{"ok": true}\n{"ok": false}\n')
    result = run_loadgen(server + path, bodies)
    ok, failed = result["statuses"].get("200", 0), result["statuses"].get("500", 0)
    assert ok > 10 and failed > 10
    assert result["errors"] == failed and result["requests"] == ok + failed
    assert result["requests_per_s"] == pytest.approx(ok / 1.0)
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    assert result["error_sample"].startswith("HTTP 500")


def test_loadgen_counts_refused_connections(tmp_path):
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_text('{"ok": true}\n')
    result = run_loadgen(f"http://127.0.0.1:{free_port()}/x", bodies)
    assert result["requests_per_s"] == 0 and result["errors"] > 0
    assert "ConnectionRefusedError" in result["failures"]


def test_server_connections_and_memory_are_read_from_proc(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    clients = []
    try:
        deadline = time.monotonic() + 10
        while len(clients) < 3 and time.monotonic() < deadline:
            try:
                clients.append(socket.create_connection(("127.0.0.1", port), timeout=1))
            except ConnectionRefusedError:
                time.sleep(0.05)
        deadline = time.monotonic() + 10
        while measure.connections_per_process(proc.pid, port) != [3]:
            assert time.monotonic() < deadline, measure.connections_per_process(proc.pid, port)
            time.sleep(0.05)
        assert measure.group_pids(proc.pid) == [proc.pid]
        assert 5 < measure.group_rss_mb(proc.pid) < 500
    finally:
        for client in clients:
            client.close()
        proc.kill()
        proc.wait()
