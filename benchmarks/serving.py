"""The serving benchmark, our model API against `mlflow models serve`, side by side in one run.

`python -m scripts.benchmark` (part of `make benchmark`) starts a throwaway platform (PostgreSQL,
moto_server, the MLflow server with auth), trains the stronger model on generated TLC-shaped data
so it is registered as @champion (as `make demo` does), then serves that alias with both servers,
each with the same number of uvicorn workers. It checks that both return the pyfunc model's own
predictions for the same rides, then drives each server in turn from a separate load process
(scripts/loadgen.py) at fixed concurrency for a fixed time, with single-ride requests and with
1,000-ride batches, sampling the server's memory. The results and the issue's targets, met or
missed by how much, replace the generated part of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import requests

import local_platform as c
from benchmarks.measure import (
    END,
    REPORT,
    ROOT,
    connections_per_process,
    group_rss_mb,
    over_rounds,
    say,
    write_report,
    wrk,
    wrk_script,
)
from benchmarks.serving_report import (
    API,
    BARE,
    BATCH,
    LOGGED,
    WRK_ROUNDS,
    render,
)
from training.data import features

MODEL_NAME = "nyc-taxi-duration"
# Distinct request bodies each load process cycles through.
SINGLE_BODIES, BATCH_BODIES = 2000, 8
# Predictions must agree to this (absolute and relative): JSON carries floats exactly, so any
# difference means a different model or different features.
TOLERANCE = 1e-9


def prediction_log_env(platform: c.Platform) -> dict[str, str]:
    """The API logging its predictions to the platform's bucket, as the service stacks set it."""
    return {
        **c.FAKE_AWS,
        "AWS_ENDPOINT_URL": platform.s3_endpoint,
        "MODEL_API_PREDICTION_LOG": f"s3://{platform.bucket}/predictions/",
    }


def rides_in_bucket(platform: c.Platform) -> int:
    """Rides in the prediction log's files (their parquet footers)."""
    import io

    import pyarrow.parquet as pq

    s3, total = c.s3_client(platform.s3_endpoint), 0
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=platform.bucket, Prefix="predictions/"
    ):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=platform.bucket, Key=item["Key"])["Body"].read()
            total += pq.ParquetFile(io.BytesIO(body)).metadata.num_rows
    return total


def logged_rides(server: Server) -> dict[str, int]:
    """Rides the prediction log wrote and dropped, from the server's own metrics."""
    text = requests.get(f"{server.proc.url}/metrics", timeout=10).text
    out = {}
    for what in ("written", "dropped", "failed"):
        found = re.search(rf"^model_api_prediction_log_{what}_total (\S+)$", text, re.M)
        out[what] = int(float(found[1])) if found else 0
    return out


@dataclass(frozen=True)
class Server:
    """A server under test; `mlflow` servers take the model's input frame, ours takes rides."""

    name: str
    proc: c.Proc
    mlflow: bool

    @property
    def port(self) -> int:
        return int(self.proc.url.rsplit(":", 1)[1])

    def url(self, single: bool) -> str:
        path = "/invocations" if self.mlflow else "/predict" if single else "/predict/batch"
        return self.proc.url + path

    def body(self, rides: list[dict], single: bool) -> str:
        if self.mlflow:
            frame = model_input(rides)
            split = {"columns": list(frame.columns), "data": frame.values.tolist()}
            return json.dumps({"dataframe_split": split})
        return json.dumps(rides[0] if single else {"rides": rides})

    def predictions(self, rides: list[dict], single: bool) -> list[float]:
        resp = requests.post(
            self.url(single),
            data=self.body(rides, single),
            headers={"content-type": "application/json"},
            timeout=60,
        )
        resp.raise_for_status()
        out = resp.json()
        if self.mlflow:
            return [float(x) for x in out["predictions"]]
        return [out["duration"]] if single else out["durations"]


def model_input(rides: list[dict]) -> pd.DataFrame:
    """The registered model's input, built by training's own feature code, not the API's."""
    return features(pd.DataFrame(rides))


def valid_rides(path: Path) -> pd.DataFrame:
    """A generated month's rides within the API's limits, so both servers see realistic input."""
    from trip_model.rides import MAX_TRIP_DISTANCE

    frame = pd.read_parquet(path, columns=["PULocationID", "DOLocationID", "trip_distance"])
    return frame[frame["trip_distance"].between(0, MAX_TRIP_DISTANCE, inclusive="left")]


def sample_rides(frame: pd.DataFrame, n: int, seed: int) -> list[dict]:
    frame = frame.sample(n=n, replace=len(frame) < n, random_state=seed)
    return [
        {"PULocationID": int(pu), "DOLocationID": int(do), "trip_distance": float(d)}
        for pu, do, d in frame.itertuples(index=False)
    ]


def train_champion(env: dict[str, str], data: Path, log: Path) -> tuple[Path, str]:
    """Train the demo's stronger model on two generated months; (validation month, CLI summary)."""
    from training.generate import write_month

    months = [
        write_month(data / f"green_tripdata_2024-{m:02d}.parquet", 2024, m, 20_000, 0, "green")
        for m in (1, 2)
    ]
    with open(log, "a") as err:
        out = subprocess.run(
            [sys.executable, "-m", "training", "--train", str(months[0]), "--val",
             str(months[1]), "--model", "lightgbm"],
            env={**os.environ, **c.QUIET, **env}, stdout=subprocess.PIPE, stderr=err, text=True,
            cwd=ROOT,
        )  # fmt: skip
    if out.returncode != 0 or "@champion" not in out.stdout:
        raise c.ComponentError(f"training did not register a champion:\n{c.log_tail(log)}")
    return months[1], out.stdout.strip().splitlines()[-1]


def mlflow_serve_start(port: int, log: Path, env: dict[str, str], workers: int) -> c.Proc:
    argv = [
        str(c.BIN / "mlflow"), "models", "serve",
        "-m", f"models:/{MODEL_NAME}@champion",
        "--env-manager", "local",
        "-h", c.LOOPBACK, "-p", str(port), "-w", str(workers),
    ]  # fmt: skip
    # MLflow runs `uvicorn` from PATH: the one in this environment.
    path = f"{c.BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    proc = c.spawn("mlflow-models-serve", argv, log, {**env, "PATH": path})
    proc.url = f"http://{c.LOOPBACK}:{port}"
    c.wait_until(proc, c.http_ok(f"{proc.url}/ping"), 180, "serving")
    return proc


def drive(server: Server, bodies: Path, args: argparse.Namespace, single: bool) -> dict:
    """One load phase from a separate process, sampling the server's memory meanwhile."""
    url = server.url(single)
    peak = [group_rss_mb(server.proc.pid)]
    done = threading.Event()

    spread: list[int] = []

    def sample() -> None:
        started = time.monotonic()
        while not done.wait(0.2):
            peak.append(group_rss_mb(server.proc.pid))
            if not spread and time.monotonic() - started > args.warmup:
                spread.extend(connections_per_process(server.proc.pid, server.port))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "scripts.loadgen", url, str(bodies),
             "--concurrency", str(args.concurrency), "--duration", str(args.duration),
             "--warmup", str(args.warmup)],
            capture_output=True, text=True, cwd=ROOT, check=True,
        )  # fmt: skip
    finally:
        done.set()
        sampler.join()
    result = json.loads(out.stdout)
    result["peak_mb"] = max(peak)
    # The busiest `workers` processes: the others (uvicorn's supervisor, MLflow's CLI) hold none.
    result["connections"] = "+".join(map(str, spread[: args.workers])) or "?"
    return result


def check_predictions(servers: list[Server], rides: list[dict], expected: np.ndarray) -> dict:
    """Largest difference from the pyfunc model's own predictions, per server and request kind."""
    diffs = {}
    for server in servers:
        batch = np.array(server.predictions(rides, single=False))
        singles = np.array([server.predictions([r], single=True)[0] for r in rides[:200]])
        for kind, got, want in (("batch", batch, expected), ("single", singles, expected[:200])):
            if got.shape != want.shape:
                raise SystemExit(f"error: {server.name} ({kind}): {got.shape} for {want.shape}")
            if not np.allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE):
                raise SystemExit(
                    f"error: {server.name} ({kind}) does not return the pyfunc model's predictions"
                    f" (max |diff| {np.max(np.abs(got - want)):.3g})"
                )
            diffs[f"{server.name} {kind}"] = float(np.max(np.abs(got - want)))
    return diffs


def wrk_phase(servers: dict[str, c.Proc], ride: dict, batch: list[dict], work: Path, args) -> dict:
    """The ceiling's rows, measured by wrk one server at a time: per workload, WRK_ROUNDS rounds
    of each server in alternating order (A B C, C B A, ...), so that a machine whose speed drifts
    favours none of them; `--duration` is split between a server's rounds."""
    single = wrk_script(work / "single.lua", json.dumps(ride))
    batched = wrk_script(work / "batch.lua", json.dumps({"rides": batch}))
    get = wrk_script(work / "get.lua", None)
    plan = {
        "single ride": (
            [(BARE, "/noop"), (LOGGED, "/predict"), (API, "/predict")],  # API: the log's cost
            single,
        ),
        f"{BATCH:,}-ride batch": ([(LOGGED, "/predict/batch")], batched),
        "GET /health": ([(BARE, "/health"), (LOGGED, "/health")], get),
    }
    seconds = args.duration / WRK_ROUNDS
    rows = {}
    for workload, (order, script) in plan.items():
        rounds: dict[str, list[dict]] = {name: [] for name, _ in order}
        for i in range(WRK_ROUNDS):
            for name, path in order if i % 2 == 0 else order[::-1]:
                say(f"wrk: {workload}, {name} ({path}), round {i + 1}/{WRK_ROUNDS}, "
                    f"{args.warmup:g}+{seconds:.0f} s")  # fmt: skip
                r = wrk(servers[name].url + path, script, args.concurrency, args.warmup, seconds)
                rounds[name].append(r)
                print(
                    f"    {r['requests_per_s']:,.0f} req/s, p50 {r['p50_ms']:.2f} ms, "
                    f"p99 {r['p99_ms']:.2f} ms, errors {r['errors']}",
                    flush=True,
                )
        for name, path in order:
            rows[(workload, name)] = {**over_rounds(rounds[name]), "path": path}
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.benchmark", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--duration", type=float, default=20, help="seconds measured per phase (20)"
    )
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per phase (3)")
    parser.add_argument("--concurrency", type=int, default=16, help="connections kept busy (16)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers per server (2)")
    parser.add_argument("--out", type=Path, default=REPORT, help="report to update (%(default)s)")
    args = parser.parse_args(argv)
    args.argv = argv if argv is not None else sys.argv[1:]
    started = time.monotonic()
    servers: list[Server] = []
    say("starting a throwaway platform (PostgreSQL, moto_server, MLflow server with auth)")
    with (
        c.throwaway_platform(bucket="benchmark-artifacts") as platform,
        tempfile.TemporaryDirectory(prefix="benchmark-") as tmp,
    ):
        work = Path(tmp)
        env = platform.env()
        try:
            say("training the champion on generated TLC-shaped data")
            val, model = train_champion(env, work / "data", work / "training.log")
            say(model)
            from mlflow import MlflowClient

            os.environ.update(env)
            champion = MlflowClient().get_model_version_by_alias(MODEL_NAME, "champion")

            say(f"serving {MODEL_NAME}@champion with both servers, {args.workers} workers each")
            metrics_dir = work / "prometheus"
            metrics_dir.mkdir()
            ours = c.model_api_start(
                c.free_port(), work / "model-api.log",
                {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}, args.workers,
            )  # fmt: skip
            servers.append(Server(API, ours, mlflow=False))
            c.wait_until(ours, c.http_ok(f"{ours.url}/ready"), 180, "ready with a model")
            logged_dir = work / "prometheus-logged"
            logged_dir.mkdir()
            logging_on = c.model_api_start(
                c.free_port(), work / "model-api-logged.log",
                {**env, **prediction_log_env(platform), "PROMETHEUS_MULTIPROC_DIR": str(logged_dir)},
                args.workers,
            )  # fmt: skip
            servers.append(Server(LOGGED, logging_on, mlflow=False))
            c.wait_until(logging_on, c.http_ok(f"{logging_on.url}/ready"), 180, "ready")
            theirs = mlflow_serve_start(c.free_port(), work / "mlflow-serve.log", env, args.workers)
            servers.append(Server("mlflow models serve", theirs, mlflow=True))

            say("checking both return the pyfunc model's predictions")
            import mlflow

            month = valid_rides(val)
            rides = sample_rides(month, BATCH, seed=7)
            pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{champion.version}")
            diffs = check_predictions(
                servers, rides, np.asarray(pyfunc.predict(model_input(rides)))
            )

            results: dict[str, dict[str, dict]] = {"single": {}, "batch": {}}
            for workload, single, count, size in (
                ("single", True, SINGLE_BODIES, 1),
                ("batch", False, BATCH_BODIES, BATCH),
            ):
                pool = sample_rides(month, count * size, seed=11)
                for server in servers:
                    bodies = work / f"{workload}-{'mlflow' if server.mlflow else 'api'}.jsonl"
                    bodies.write_text(
                        "\n".join(
                            server.body(pool[i * size : (i + 1) * size], single)
                            for i in range(count)
                        )
                    )
                    say(f"{workload}: {server.name} for {args.warmup:g}+{args.duration:g} s")
                    r = drive(server, bodies, args, single)
                    results[workload][server.name] = r
                    print(
                        f"    {r['requests_per_s']:,.0f} req/s, p50 {r['p50_ms']:.1f} ms, "
                        f"p99 {r['p99_ms']:.1f} ms, errors {r['errors']}, "
                        f"peak {r['peak_mb']:,.0f} MB, connections {r['connections']}"
                        + (f" ({r['error_sample']})" if r["error_sample"] else ""),
                        flush=True,
                    )
            say("the ceiling: a bare FastAPI endpoint served the same way, and wrk")
            bare = c.model_api_start(
                c.free_port(), work / "bare.log", {}, args.workers, app="scripts.bare_app:app"
            )
            servers.append(Server(BARE, bare, mlflow=False))
            wrk_rows = wrk_phase(
                {BARE: bare, LOGGED: logging_on, API: ours}, rides[0], rides[:BATCH], work, args
            )
            say("stopping the logging server (its shutdown writes what it holds)")
            logging_server = next(s for s in servers if s.name == LOGGED)
            log_counts = logged_rides(logging_server)
            logging_server.proc.stop()
            log_counts["in_bucket"] = rides_in_bucket(platform)
            print(f"    prediction log: {log_counts}", flush=True)
        except c.ComponentError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            for server in reversed(servers):
                server.proc.stop()
    block = render(results, diffs, args, model, time.monotonic() - started, log_counts, wrk_rows)
    write_report(block, args.out)
    say(f"wrote {args.out}")
    print(block[block.index("| target |") : block.index(END)], flush=True)
    return 0
