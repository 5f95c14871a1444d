"""`make demo`'s bookkeeping of replicated tracking servers (local_platform.demo): which processes
it expects and how it recognises each by its command line, with and without replicas. The
servers' roll itself runs for real in tests/integration/test_tracking_roll.py."""

from __future__ import annotations

import json

import pytest

from local_platform import demo


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    path = tmp_path / "tracking.json"
    monkeypatch.setattr(demo, "TRACKING", path)
    return path


def test_one_server_is_the_components_as_always(tracking):
    tracking.write_text(json.dumps({"port": 5000, "replicas": 1}))
    assert demo.expected() == set(demo.MARKERS)
    tracking.unlink()
    assert demo.expected() == set(demo.MARKERS)  # no state yet


def test_replicas_are_a_balancer_and_a_server_per_slot(tracking):
    tracking.write_text(json.dumps({"port": 5000, "replicas": 2,
                                    "servers": {"s1": "https://127.0.0.1:40001",
                                                "s3": "https://127.0.0.1:40003"}}))  # fmt: skip
    assert demo.expected() == (set(demo.MARKERS) - {"mlflow-server"}) | {
        "mlflow-server@s1",
        "mlflow-server@s3",
        demo.BALANCER,
    }


def test_each_is_recognised_by_its_kind_s_command_line():
    assert demo.marker("mlflow-server@s2") == demo.MARKERS["mlflow-server"]
    assert demo.marker(demo.BALANCER) == "haproxy"
    assert demo.marker("postgresql") == "postgres"


def test_a_roll_without_replicas_says_what_to_run_first(tracking, capsys):
    tracking.write_text(json.dumps({"port": 5000, "replicas": 1}))
    assert demo.roll_tracking(None) == 1
    assert "make demo TRACKING_REPLICAS=2 first" in capsys.readouterr().err
