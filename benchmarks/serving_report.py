"""The serving benchmark's report: the rows of its tables, the verdicts against the issues'
targets, and the block it writes into docs/benchmarks.md (benchmarks.serving measures)."""

from __future__ import annotations

import argparse
import datetime as dt
import shlex

from benchmarks.measure import END, START, WRK_THREADS, machine

COMMAND = "make benchmark"
BATCH = 1000
TARGETS = {"speedup": 3.0, "single_p99_ms": 25.0, "batch_p50_ms": 50.0}
# Issue 16's goals, against a bare FastAPI endpoint served the same way, measured with wrk.
CEILING = {"single_share": 0.70, "single_p99_ms": 15.0, "health_share": 0.90}
BARE = "bare FastAPI (no-op)"
WRK_ROUNDS = 3
LOGGED = "model API, prediction log on"
API = "model API"


def ceiling_rows(wrk_rows: dict, results: dict) -> list[str]:
    """The wrk table and issue 16's goals against the bare endpoint."""
    lines = [
        "",
        f"Against the ceiling, measured with wrk (Debian's package: {WRK_THREADS} threads, "
        "the same connections, one server at a time; per workload"
        f" {WRK_ROUNDS} rounds of each server in alternating order, A B C, C B A, ..., each a"
        " warm-up then a measured run; requests/s: the rounds' mean, p50: the median round's,"
        " p99: the worst round's): a bare FastAPI app"
        ' answering `{"status": "ok"}` (scripts/bare_app.py), served as the model API is'
        " (`services.model_api.serve --app`, the same workers, a socket each), against the model"
        " API with its prediction log on (the goals), and for single rides also with it off.",
        "",
        "| workload | server | route | requests/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for (workload, name), r in wrk_rows.items():
        lines.append(
            f"| {workload} | {name} | `{r['path']}` | {r['requests_per_s']:,.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |"
        )
    bare_1, ours_1 = wrk_rows[("single ride", BARE)], wrk_rows[("single ride", LOGGED)]
    bare_h, ours_h = wrk_rows[("GET /health", BARE)], wrk_rows[("GET /health", LOGGED)]
    ours_b = wrk_rows[(f"{BATCH:,}-ride batch", LOGGED)]
    share = ours_1["requests_per_s"] / bare_1["requests_per_s"]
    per_round = ", ".join(
        f"{o / b:.0%}" for o, b in zip(ours_1["rounds"], bare_1["rounds"], strict=True)
    )
    health = ours_h["requests_per_s"] / bare_h["requests_per_s"]
    batch_p50 = max(ours_b["p50_ms"], results["batch"][LOGGED]["p50_ms"])
    goals = [
        (f"single ride (log on): ≥ {CEILING['single_share']:.0%} of the bare endpoint's req/s",
         f"{share:.0%} (rounds: {per_round})", share >= CEILING["single_share"]),
        (f"single ride (log on): p99 ≤ {CEILING['single_p99_ms']:g} ms (wrk)",
         f"{ours_1['p99_ms']:.2f} ms", ours_1["p99_ms"] <= CEILING["single_p99_ms"]),
        ("single ride (log on): zero errors", str(ours_1["errors"]), ours_1["errors"] == 0),
        (f"{BATCH:,}-ride batch (log on): p50 ≤ {TARGETS['batch_p50_ms']:g} ms (wrk and loadgen,"
         " the larger)", f"{batch_p50:.1f} ms", batch_p50 <= TARGETS["batch_p50_ms"]),
        (f"`/health`: within {1 - CEILING['health_share']:.0%} of the bare endpoint's req/s",
         f"{health:.0%}", health >= CEILING["health_share"]),
    ]  # fmt: skip
    lines += ["", "| goal (issue 16) | figure | result |", "|---|---:|---|"]
    lines += [f"| {g} | {f} | {'met' if ok else '**missed**'} |" for g, f, ok in goals]
    return lines


def verdicts(results: dict) -> list[tuple[str, str, str]]:
    ours_1, mlflow_1 = results["single"][API], results["single"]["mlflow models serve"]
    ours_b = results["batch"][API]
    speedup = ours_1["requests_per_s"] / max(mlflow_1["requests_per_s"], 1e-9)
    rows = []

    def at_least(name, figure, target, text):
        ok = figure >= target
        rows.append((name, text, "met" if ok else f"**missed**: {figure / target:.0%} of target"))

    def at_most(name, figure, target, text):
        ok = figure <= target
        verdict = (
            "met" if ok else f"**missed** by {figure - target:.1f} ms ({figure / target:.1f}×)"
        )
        rows.append((name, text, verdict))

    at_least(f"single ride: ≥ {TARGETS['speedup']:g}× the req/s of `mlflow models serve`",
             speedup, TARGETS["speedup"], f"{speedup:.2f}×")  # fmt: skip
    at_most(f"single ride: p99 ≤ {TARGETS['single_p99_ms']:g} ms", ours_1["p99_ms"],
            TARGETS["single_p99_ms"], f"{ours_1['p99_ms']:.1f} ms")  # fmt: skip
    errors = ours_1["errors"]
    rows.append(("single ride: zero errors", str(errors), "met" if errors == 0 else "**missed**"))
    at_most(f"{BATCH:,}-ride batch: p50 ≤ {TARGETS['batch_p50_ms']:g} ms", ours_b["p50_ms"],
            TARGETS["batch_p50_ms"], f"{ours_b['p50_ms']:.1f} ms")  # fmt: skip
    return rows


def log_rows(results: dict, counts: dict) -> list[str]:
    """The prediction log's cost: the API with it on against the same API with it off."""
    rows = []
    for workload, label in (("single", "single ride"), ("batch", f"{BATCH:,}-ride batch")):
        off, on = results[workload][API], results[workload][LOGGED]
        rows.append(
            f"| {label} | {on['requests_per_s']:,.0f} vs {off['requests_per_s']:,.0f}"
            f" ({on['requests_per_s'] / off['requests_per_s']:.0%}) | {on['p50_ms']:.1f} vs"
            f" {off['p50_ms']:.1f} | {on['p99_ms']:.1f} vs {off['p99_ms']:.1f} |"
        )
    return [
        "",
        "Prediction log on vs off (the same API, one server each, same run): requests/s, p50 and"
        " p99 in ms, on first.",
        "",
        "| workload | requests/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        f"Rides the log wrote: {counts['written']:,} while loaded, {counts['in_bucket']:,} in the"
        f" bucket after its shutdown; dropped (buffer full): {counts['dropped']:,}; failed writes:"
        f" {counts['failed']:,} rides.",
    ]


def render(
    results: dict,
    diffs: dict,
    args: argparse.Namespace,
    model: str,
    took: float,
    counts: dict,
    wrk_rows: dict | None = None,
) -> str:
    lines = [
        START,
        f"Generated by `{COMMAND}` (`{shlex.join(['python', '-m', 'scripts.benchmark', *args.argv])}`)"
        f" on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC in {took:.0f} s.",
        "",
        f"- Machine: {machine()}.",
        f"- Model: `{model}` (training's summary), served from the alias by both servers.",
        f"- Servers: each with {args.workers} uvicorn workers on 127.0.0.1; ours as the image runs"
        " it (`python -m services.model_api.serve`: a listening socket per worker, Prometheus"
        " multiprocess metrics on), twice: with the prediction log off, and on (writing to"
        " the platform's S3 bucket, moto, as the service stacks set it); MLflow's as"
        " `mlflow models serve --env-manager local` runs it, fed `dataframe_split` JSON.",
        f"- Load: `scripts/loadgen.py` in its own process, {args.concurrency} keep-alive connections"
        f" each sending its next request as soon as the last answered, {args.warmup:g} s warm-up"
        f" then {args.duration:g} s measured, per server and workload, one server at a time."
        " Peak memory is the resident memory of the server's master and workers, sampled every"
        " 0.2 s. Connections per worker are counted once the warm-up is over: the workers of"
        " `mlflow models serve` (plain `uvicorn --workers`) share one listening socket, and the"
        " burst of new connections often lands on one of them, which then does all the work.",
        "",
        "| workload | server | requests/s | rides/s | p50 ms | p99 ms | errors | peak memory MB"
        " | connections per worker |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for workload, per_server in results.items():
        rides = 1 if workload == "single" else BATCH
        label = "single ride" if workload == "single" else f"{BATCH:,}-ride batch"
        for name, r in per_server.items():
            lines.append(
                f"| {label} | {name} | {r['requests_per_s']:,.0f} | "
                f"{r['requests_per_s'] * rides:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                f"{r['errors']} | {r['peak_mb']:,.0f} | {r.get('connections', '?')} |"
            )
    lines += ["", "| target | figure | result |", "|---|---:|---|"]
    lines += [f"| {name} | {figure} | {verdict} |" for name, figure, verdict in verdicts(results)]
    worst = max(diffs.values())
    lines += [
        f"| predictions identical to the pyfunc model's (1,000 rides batched, 200 one by one,"
        f" every server) | max abs diff {worst:.1g} | met |",
        *log_rows(results, counts),
        *(ceiling_rows(wrk_rows, results) if wrk_rows else []),
        "",
        END,
    ]
    return "\n".join(lines)
