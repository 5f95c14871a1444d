"""Streaming benchmark: the stream handler against the course's Lambda pattern (the pyfunc called
per record), and the local end-to-end latency (a ride put, its prediction readable).

`python -m scripts.benchmark_streaming` (part of `make benchmark`):

1. Throughput. Trains the demo's stronger model (LightGBM) into a throwaway MLflow store, then, in a
   child process for each way, one after the other, handles Lambda Kinesis events of 500 records
   (generated rides as base64 JSON, as Kinesis delivers them):
   - the handler: `streaming.kinesis.records`, `Handler.handle`, `streaming.kinesis.response`,
     the model through `trip_model.serving` as the Lambda function loads it;
   - the course's pattern: each record decoded and parsed, its features as a dict, the pyfunc
     asked for that one ride, the prediction event built.
   Both put their predictions nowhere (the course's TEST_RUN; our null output takes every record):
   the figure is the handling, not Kinesis. Records per CPU-second (user + system, all threads)
   of the handling; loading the model is excluded for both. The predictions are compared.
2. Latency. A throwaway platform (PostgreSQL, moto_server, the MLflow server with auth), the
   champion trained by the training CLI, the streams on moto and the stream consumer as the
   `streaming` user (as `make demo` runs it); rides put one at a time, each timed from its put to
   its prediction readable on the output stream.

The results replace the streaming block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import local_platform as c
from benchmarks.measure import REPORT, ROOT, machine, say, write_report
from benchmarks.scoring import cpu_seconds, train_champion

START, END = "<!-- streaming-benchmark:start -->", "<!-- streaming-benchmark:end -->"
TARGET_SPEEDUP = 20.0
BATCH = 500
PACKAGES = ("mlflow", "lightgbm", "pydantic", "pandas", "numpy", "boto3")
WAYS = {
    "handler": "stream handler (`streaming.aws_lambda`'s path)",
    "course": "course's Lambda: the pyfunc per record",
}


def lambda_events(batches: int, seed: int = 7) -> list[dict]:
    """Lambda Kinesis events of BATCH generated rides each."""
    import numpy as np

    rng = np.random.default_rng(seed)
    events = []
    for b in range(batches):
        pu, do = rng.integers(1, 266, BATCH), rng.integers(1, 266, BATCH)
        distance = np.round(rng.exponential(3.0, BATCH), 2)
        records = []
        for i in range(BATCH):
            ride_id = f"b{b}-r{i}"
            body = {"ride_id": ride_id, "ride": {"PULocationID": int(pu[i]),
                    "DOLocationID": int(do[i]), "trip_distance": float(distance[i])}}  # fmt: skip
            records.append({
                "kinesis": {"partitionKey": ride_id, "sequenceNumber": str(b * BATCH + i),
                            "data": base64.b64encode(json.dumps(body).encode()).decode()},
                "eventID": f"shardId-000000000000:{b * BATCH + i}",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/ride-events",
            })  # fmt: skip
        events.append({"Records": records})
    return events


def course_handler(model, version: str):
    """The course's lambda_function.py (module 4, streaming), on this model: TEST_RUN, so no
    put; its features as the model takes them (PU_DO and trip_distance), one ride at a time."""
    import pandas as pd

    def prepare_features(ride):
        return {"PU_DO": f"{ride['PULocationID']}_{ride['DOLocationID']}",
                "trip_distance": ride["trip_distance"]}  # fmt: skip

    def handle(event):
        predictions_events = []
        for record in event["Records"]:
            ride_event = json.loads(base64.b64decode(record["kinesis"]["data"]).decode("utf-8"))
            ride, ride_id = ride_event["ride"], ride_event["ride_id"]
            prediction = float(model.predict(pd.DataFrame([prepare_features(ride)]))[0])
            predictions_events.append({
                "model": "ride_duration_prediction_model", "version": version,
                "prediction": {"ride_duration": prediction, "ride_id": ride_id},
            })  # fmt: skip
        return {"predictions": predictions_events}

    return handle


class NullOutput:
    max_records = 500

    def __init__(self) -> None:
        self.taken: list[bytes] = []

    def put(self, records):
        self.taken += [data for _, data in records]
        return []

    def send(self, letters):
        return []


def measure(way: str, model_uri: str, batches: int) -> dict:
    """Run in a child process: load the model, handle `batches` events, report figures."""
    import mlflow

    from streaming import kinesis
    from streaming.handler import Handler
    from trip_model.predict import choose
    from trip_model.serving import Loaded

    events = lambda_events(batches)
    model = mlflow.pyfunc.load_model(model_uri)
    version = model_uri.rsplit("/", 1)[-1]
    if way == "course":
        handle = course_handler(model, version)
        path = "pyfunc"
    else:
        scorer = choose(model, version, threads=1)  # as trip_model.serving loads it
        holder = type("Holder", (), {"current": Loaded(version, 0.0, scorer.predict, scorer.path),
                                     "error": None, "uri": model_uri})()  # fmt: skip
        sink = NullOutput()
        handler = Handler(holder, sink, sink)

        def handle(event):
            return kinesis.response(handler.handle(kinesis.records(event)))

        path = scorer.path
    handle(events[0])  # the first call's one-time costs (imports, caches) in neither figure
    started_cpu, started = cpu_seconds(), time.perf_counter()
    answers = [handle(event) for event in events[1:]]
    cpu, wall = cpu_seconds() - started_cpu, time.perf_counter() - started
    if way == "course":
        durations = [p["prediction"]["ride_duration"] for a in answers for p in a["predictions"]]
    else:
        assert all(a == {"batchItemFailures": []} for a in answers)
        durations = [json.loads(d)["duration"] for d in sink.taken[BATCH:]]
    return {"way": way, "path": path, "records": (batches - 1) * BATCH, "cpu_s": cpu,
            "wall_s": wall, "durations": durations[: 2 * BATCH]}  # fmt: skip


def run_child(way: str, model_uri: str, batches: int, env: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "scripts.benchmark_streaming", "--measure", way, model_uri,
         str(batches)],
        env={**os.environ, **c.QUIET, **env}, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    if done.returncode != 0:
        raise c.ComponentError(f"{way} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def latency(rides: int, work: Path) -> tuple[list[float], str]:
    """Seconds from each ride's put to its prediction readable, on the local platform."""
    with c.throwaway_platform() as platform:
        _, summary = train_champion(work, platform.env("trainer"))
        streams = c.ensure_streams(platform.s3_endpoint)
        consumer = c.stream_consumer_start(streams, work / "consumer.log",
                                           platform.env("streaming"))  # fmt: skip
        try:
            ride = {"PULocationID": 43, "DOLocationID": 151, "trip_distance": 1.8}
            deadline = time.monotonic() + 120
            while c.round_trip(streams, {"ride_id": "warm", "ride": ride}, 10)[0] is None:
                if time.monotonic() > deadline:  # the consumer loads the model meanwhile
                    raise c.ComponentError(
                        f"no prediction in 120 s: {c.log_tail(work / 'consumer.log')}"
                    )
            took = []
            for i in range(rides):
                prediction, seconds = c.round_trip(streams, {"ride_id": f"r{i}", "ride": ride})
                if prediction is None:
                    raise c.ComponentError(f"ride r{i}: no prediction in 30 s")
                took.append(seconds)
        finally:
            consumer.stop(timeout=10)
    return took, summary


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q))


def render(results: dict, took: list[float], args, model: str, elapsed: float) -> str:
    handler, course = results["handler"], results["course"]
    rate = {way: r["records"] / r["cpu_s"] for way, r in results.items()}
    speedup = rate["handler"] / rate["course"]
    diff = max(abs(a - b) for a, b in zip(handler["durations"], course["durations"], strict=False))
    command = shlex.join(["python", "-m", "scripts.benchmark_streaming", *args.argv])
    lines = [
        START,
        f"Generated by `make benchmark` (`{command}`) on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}"
        f" UTC in {elapsed:.0f} s.",
        "",
        f"- Machine: {machine(PACKAGES)}.",
        f"- Model: `{model}` (training's summary).",
        f"- Throughput: Lambda Kinesis events of {BATCH} generated rides; each way in its own"
        " process, one after the other, its first event not counted; predictions put nowhere"
        " (the course's TEST_RUN, our null output). CPU seconds are user + system over all"
        " threads.",
        f"- Latency: {len(took)} rides put one at a time on moto's Kinesis, each timed until its"
        " prediction is readable on the output stream; the consumer (as `make demo` runs it)"
        " polls an idle shard every 0.1 s, and the reader every 0.01 s.",
        "",
        "| way | predicts via | records | records per CPU-s | wall s |",
        "|---|---|---:|---:|---:|",
    ]
    for way, r in results.items():
        lines.append(f"| {WAYS[way]} | {r['path']} | {r['records']:,} | {rate[way]:,.0f} |"
                     f" {r['wall_s']:.1f} |")  # fmt: skip
    verdict = "met" if speedup >= TARGET_SPEEDUP else (
        f"**missed**: {speedup / TARGET_SPEEDUP:.0%} of target")  # fmt: skip
    lines += [
        "",
        "| target | figure | result |",
        "|---|---:|---|",
        f"| ≥ {TARGET_SPEEDUP:g}× the course's Lambda, records per CPU-second | {speedup:.0f}× |"
        f" {verdict} |",
        f"| the same predictions | max abs diff {diff:.1g} over {len(handler['durations'])} rides"
        f" | {'met' if diff <= 1e-9 else '**missed**'} |",
        f"| local end to end, put → prediction readable (no target set) | p50"
        f" {percentile(took, 50) * 1000:.0f} ms, p99 {percentile(took, 99) * 1000:.0f} ms,"
        f" max {max(took) * 1000:.0f} ms | measured |",
        "",
        END,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--measure"]:
        print(json.dumps(measure(argv[1], argv[2], int(argv[3]))))
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m scripts.benchmark_streaming", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--batches", type=int, default=201,
                        help="events of 500 records the handler takes (201)")  # fmt: skip
    parser.add_argument("--course-batches", type=int, default=5,
                        help="events of 500 records the course's pattern takes (5)")  # fmt: skip
    parser.add_argument("--rides", type=int, default=200, help="rides timed end to end (200)")
    parser.add_argument("--out", type=Path, default=REPORT, help="report to update (%(default)s)")
    args = parser.parse_args(argv)
    args.argv = argv
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="benchmark-streaming-") as tmp:
        work = Path(tmp)
        env = {"MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
        try:
            say("training the champion on generated TLC-shaped data (local MLflow store)")
            model_uri, model = train_champion(work, env)
            say(model)
            results = {}
            for way, batches in (("handler", args.batches), ("course", args.course_batches)):
                say(f"handling {batches} events of {BATCH} records: {WAYS[way]}")
                results[way] = r = run_child(way, model_uri, batches, env)
                print(f"    {r['records'] / r['cpu_s']:,.0f} records per CPU-s via {r['path']}",
                      flush=True)  # fmt: skip
            say(f"timing {args.rides} rides end to end on a throwaway local platform")
            (work / "e2e").mkdir()
            took, _ = latency(args.rides, work / "e2e")
        except c.ComponentError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    block = render(results, took, args, model, time.monotonic() - started)
    write_report(block, args.out, START, END)
    say(f"wrote {args.out}")
    print(block[block.index("| target |") : block.index(END)], flush=True)
    return 0
