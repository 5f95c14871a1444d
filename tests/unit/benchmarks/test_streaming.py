"""The streaming benchmark's own pieces: the events it feeds both ways, and a verdict that can
say missed."""

from __future__ import annotations

import argparse
import base64
import json

from benchmarks import streaming
from streaming import kinesis


def test_the_events_are_lambda_s_kinesis_shape_with_valid_rides():
    [event] = streaming.lambda_events(1)
    records = kinesis.records(event)
    assert len(records) == streaming.BATCH
    body = json.loads(base64.b64decode(event["Records"][3]["kinesis"]["data"]))
    assert body["ride_id"] == "b0-r3" and records[3].data == json.dumps(body).encode()
    assert 1 <= body["ride"]["PULocationID"] <= 265


def results(handler_rate: float) -> dict:
    durations = [1.0, 2.0]
    return {
        "handler": {"path": "region table", "records": 1000, "cpu_s": 1000 / handler_rate,
                    "wall_s": 1.0, "durations": durations},
        "course": {"path": "pyfunc", "records": 1000, "cpu_s": 10.0, "wall_s": 10.0,
                   "durations": durations},
    }  # fmt: skip


def test_the_report_says_met_or_missed_with_the_figure():
    args = argparse.Namespace(argv=[])
    met = streaming.render(results(100 * 25), [0.1, 0.2], args, "m", 1.0)
    assert "| 25× | met |" in met and "p50 150 ms" in met
    missed = streaming.render(results(100 * 5), [0.1], args, "m", 1.0)
    assert "| 5× | **missed**: 25% of target |" in missed
