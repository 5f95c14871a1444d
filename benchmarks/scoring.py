"""Batch-scoring benchmark: the scoring job against `mlflow.pyfunc` predict on the same month.

`python -m scripts.benchmark_scoring` (part of `make benchmark`) trains the demo's stronger model
on two generated months and registers it as @champion in a throwaway MLflow store, generates a
yellow-taxi month of TLC-shaped rides (3,000,000 by default, about a real month), then scores it,
parquet in and parquet out, each way in its own process, one after the other:
- the job (`scoring.job.run`, the path it chooses: the model's region table);
- the job forced onto the LightGBM booster (the API's direct path), to show what the table buys;
- the naive way: pandas reads the file, training's feature code builds the model input, the
  pyfunc predicts the whole frame, pandas writes the predictions with the ride keys.
Each process reports the CPU seconds (user + system, all threads) of its scoring, of its start-up
(imports, model download, compiling) and its peak resident memory. Rides per CPU-second is the
per-core figure. The predictions of all three are compared. The results replace the scoring
block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import local_platform as c
from benchmarks.measure import REPORT, ROOT, machine, say, write_report

START, END = "<!-- scoring-benchmark:start -->", "<!-- scoring-benchmark:end -->"
MODEL_NAME = "nyc-taxi-duration"
TARGETS = {"per_core": 1_000_000, "speedup": 10.0}
PACKAGES = ("mlflow", "lightgbm", "pyarrow", "pandas", "numpy")
WAYS = {
    "job": "scoring job (`python -m scoring`: region table)",
    "booster": "scoring job on the LightGBM booster",
    "pyfunc": "`mlflow.pyfunc` predict on the whole frame",
}


def peak_rss_mb() -> float:
    # VmHWM belongs to this process's memory since exec; getrusage's ru_maxrss would keep the
    # parent's peak (Linux carries it over exec), here the parent's generated month.
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)[1]) / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(way: str, model_uri: str, source: str, output: str) -> dict:
    """Run in a child process: load the model, score `source` into `output`, report figures."""
    started_cpu, started = cpu_seconds(), time.perf_counter()
    import mlflow
    import numpy as np
    import pyarrow.parquet as pq

    # Before the model loads: the model puts its own code (a `training` package with the
    # transforms it ships) on sys.path, which would shadow the repository's packages.
    from scoring import job
    from trip_model.features import model_input
    from trip_model.predict import Scorer, candidates, choose

    model = mlflow.pyfunc.load_model(model_uri)
    result: dict = {"way": way}
    if way == "pyfunc":
        import pandas as pd

        setup_cpu, setup = cpu_seconds(), time.perf_counter()
        columns = ["VendorID", "tpep_pickup_datetime", "tpep_dropoff_datetime", "PULocationID",
                   "DOLocationID", "trip_distance"]  # fmt: skip
        rides = pd.read_parquet(source, columns=columns)
        predicted = model.predict(
            model_input(rides.PULocationID, rides.DOLocationID, rides.trip_distance)
        )
        out = rides.assign(predicted_duration=np.asarray(predicted, dtype=np.float64))
        out.to_parquet(Path(output) / "predictions.parquet", index=False)
        rows = len(out)
        result["path"] = "pyfunc"
    else:
        scorer = choose(model, model_uri.rsplit("/", 1)[-1])
        if way == "booster":
            booster = next(x for x in candidates(model) if x.label == "LightGBM booster")
            scorer = Scorer(scorer.version, booster.label, booster.predict, 0.0)
        setup_cpu, setup = cpu_seconds(), time.perf_counter()
        rows = job.run([source], output, scorer).rows
        result["path"] = scorer.path
    result |= {
        "rows": rows,
        "startup_cpu_s": setup_cpu - started_cpu,
        "startup_s": setup - started,
        "score_cpu_s": cpu_seconds() - setup_cpu,
        "score_s": time.perf_counter() - setup,
        "peak_rss_mb": peak_rss_mb(),
    }
    files = sorted(Path(output).glob("*.parquet"))
    result["predictions"] = str(files[0])
    # The predictions in input order, for the comparison in the parent.
    table = pq.read_table(files, columns=["predicted_duration"])
    np.save(Path(output) / "predicted.npy", table.column(0).to_numpy(zero_copy_only=False))
    return result


def run_child(way: str, model_uri: str, source: Path, work: Path, env: dict) -> dict:
    output = work / f"out-{way}"
    output.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "scripts.benchmark_scoring", "--measure", way, model_uri,
         str(source), str(output)],
        env={**os.environ, **c.QUIET, **env}, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    if result.returncode != 0:
        raise c.ComponentError(f"{way} run failed:\n{result.stderr[-3000:]}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["output"] = output
    return figures


def train_champion(work: Path, env: dict) -> tuple[str, str]:
    """The demo's stronger model on two generated green months: (models:/ URI, summary)."""
    from training.generate import write_month

    months = [
        write_month(work / "data" / f"green_tripdata_2024-{m:02d}.parquet", 2024, m, 20_000, 0,
                    "green")
        for m in (1, 2)
    ]  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "training", "--train", str(months[0]), "--val", str(months[1]),
         "--model", "lightgbm"],
        env={**os.environ, **c.QUIET, **env}, capture_output=True, text=True, cwd=work,
    )  # fmt: skip
    if out.returncode != 0 or "@champion" not in out.stdout:
        raise c.ComponentError(f"training did not register a champion:\n{out.stderr[-3000:]}")
    summary = out.stdout.strip().splitlines()[-1]
    version = re.search(r" v(\d+) @", summary)[1]
    return f"models:/{MODEL_NAME}/{version}", summary


def verdicts(results: dict) -> list[tuple[str, str, str]]:
    job, pyfunc = results["job"], results["pyfunc"]
    per_core = job["rows"] / job["score_cpu_s"]
    speedup = per_core / (pyfunc["rows"] / pyfunc["score_cpu_s"])
    rows = []
    for text, figure, target, shown in (
        (f"≥ {TARGETS['per_core']:,} rides/s per core, parquet in → parquet out", per_core,
         TARGETS["per_core"], f"{per_core:,.0f}"),
        (f"≥ {TARGETS['speedup']:g}× `mlflow.pyfunc` per core", speedup, TARGETS["speedup"],
         f"{speedup:.1f}×"),
    ):  # fmt: skip
        verdict = "met" if figure >= target else f"**missed**: {figure / target:.0%} of target"
        rows.append((text, shown, verdict))
    return rows


def render(results: dict, diffs: dict, args, model: str, rows: int, took: float) -> str:
    command = shlex.join(["python", "-m", "scripts.benchmark_scoring", *args.argv])
    lines = [
        START,
        f"Generated by `make benchmark` (`{command}`) on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}"
        f" UTC in {took:.0f} s.",
        "",
        f"- Machine: {machine(PACKAGES)}.",
        f"- Model: `{model}` (training's summary), loaded by version from a throwaway MLflow store.",
        f"- Input: one generated yellow-taxi month, {rows:,} rides in row groups of"
        f" {args.row_group:,}, parquet on local disk; output parquet on local disk.",
        "- Each way in its own process, one after the other. *Scoring* is reading the file,"
        " building features, predicting and writing the predictions with the ride keys; *start-up*"
        " is imports, loading the model and (the job) checking its faster paths against the"
        " pyfunc and compiling the table. CPU seconds are user + system over all threads;"
        " rides per CPU-second is the per-core figure.",
        "",
        "| way | predicts via | scoring: rides per CPU-s | scoring wall s | start-up CPU s |"
        " whole process: rides per CPU-s | peak memory MB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for way, r in results.items():
        whole = r["rows"] / (r["score_cpu_s"] + r["startup_cpu_s"])
        lines.append(
            f"| {WAYS[way]} | {r['path']} | {r['rows'] / r['score_cpu_s']:,.0f} |"
            f" {r['score_s']:.1f} | {r['startup_cpu_s']:.1f} | {whole:,.0f} |"
            f" {r['peak_rss_mb']:,.0f} |"
        )
    lines += ["", "| target | figure | result |", "|---|---:|---|"]
    lines += [f"| {name} | {figure} | {verdict} |" for name, figure, verdict in verdicts(results)]
    lines += [
        f"| predictions equal to the pyfunc's, every ride | max abs diff {max(diffs.values()):.1g}"
        f" | {'met' if max(diffs.values()) <= 1e-9 else '**missed**'} |",
        "",
        END,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--measure"]:
        print(json.dumps(measure(*argv[1:5])))
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m scripts.benchmark_scoring", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rows", type=int, default=3_000_000, help="rides in the month (3M)")
    parser.add_argument(
        "--row-group", type=int, default=1 << 20, help="rows per row group (pyarrow's default)"
    )
    parser.add_argument("--out", type=Path, default=REPORT, help="report to update (%(default)s)")
    args = parser.parse_args(argv)
    args.argv = argv
    started = time.monotonic()
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from training.generate import generate_month

    with tempfile.TemporaryDirectory(prefix="benchmark-scoring-") as tmp:
        work = Path(tmp)
        env = {"MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
        say("training the champion on generated TLC-shaped data (local MLflow store)")
        try:
            model_uri, model = train_champion(work, env)
            say(model)
            say(f"generating a yellow month of {args.rows:,} rides")
            source = work / "yellow_tripdata_2024-03.parquet"
            frame = generate_month(2024, 3, rows=args.rows, seed=5, colour="yellow")
            pq.write_table(
                pa.Table.from_pandas(frame, preserve_index=False), source,
                row_group_size=args.row_group,
            )  # fmt: skip
            del frame
            results = {}
            for way in WAYS:
                say(f"scoring: {WAYS[way]}")
                results[way] = r = run_child(way, model_uri, source, work, env)
                print(
                    f"    {r['rows'] / r['score_cpu_s']:,.0f} rides per CPU-s scoring "
                    f"({r['score_s']:.1f} s wall), start-up {r['startup_cpu_s']:.1f} CPU-s, "
                    f"peak {r['peak_rss_mb']:,.0f} MB, via {r['path']}",
                    flush=True,
                )
        except c.ComponentError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        expected = np.load(results["pyfunc"]["output"] / "predicted.npy")
        diffs = {
            way: float(np.max(np.abs(np.load(r["output"] / "predicted.npy") - expected)))
            for way, r in results.items()
        }
        rows = results["job"]["rows"]
        if {r["rows"] for r in results.values()} != {rows}:
            raise SystemExit(f"error: the ways scored different numbers of rides: {results}")
    block = render(results, diffs, args, model, rows, time.monotonic() - started)
    write_report(block, args.out, START, END)
    say(f"wrote {args.out}")
    print(block[block.index("| target |") : block.index(END)], flush=True)
    return 0
