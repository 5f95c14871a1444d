"""Tracking-server benchmark: the authenticated server against the same rendering without auth.

`python -m scripts.benchmark_tracking` (part of `make benchmark`) starts PostgreSQL and moto_server,
then, one at a time, the MLflow server as infra.mlflow_server renders it for the VM (HTTPS,
bounded database pools, the credential cache), once with the basic-auth app and once without it,
each with the same workers. Clients are separate processes (so the client side is not one GIL),
all working as the `trainer` workload user on the authenticated server. Per workload (one metric
per request, a 100-metric batch, a run search, a registry alias lookup) they send their next
request as soon as the last one answered, for a fixed time, while the script samples the server's
resident memory and PostgreSQL's connections from the server's database user. The table and the
issue's goal (authenticated ≥ 90% of unauthenticated requests/s) replace the tracking block of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from infra.mlflow_server import ENGINES_PER_PROCESS, connections_used, pool_for
from scripts import components as c
from scripts.benchmark import group_rss_mb, machine, say, write_report

START, END = "<!-- tracking-benchmark:start -->", "<!-- tracking-benchmark:end -->"
WORKLOADS = ("log_metric", "log_batch (100 metrics)", "search_runs", "alias lookup")
MODEL = "bench-model"
GOAL = 0.90  # issue 18: authenticated requests/s at least 90% of the unauthenticated server's
BATCH_METRICS = 100


def client_loop(env: dict, workload: str, setup: dict, ready, warmup: float, seconds: float, out):
    """One client process: its own MlflowClient, requests back to back until the deadline.

    Every client imports MLflow and creates its run before the clock starts (the barrier), so the
    measured window holds only requests; those sent during the warm-up are not counted."""
    os.environ.update(env)
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient()
    run_id = client.create_run(setup["experiment"]).info.run_id
    latencies, errors, step = [], 0, 0
    ready.wait()
    measured_from = time.monotonic() + warmup
    deadline = measured_from + seconds
    while (began := time.monotonic()) < deadline:
        failed = False
        try:
            if workload == "log_metric":
                client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
            elif workload.startswith("log_batch"):
                stamp = int(time.time() * 1000)
                client.log_batch(
                    run_id,
                    metrics=[Metric("loss", 1.0 / (s + 1), stamp, s) for s in
                             range(step * BATCH_METRICS, (step + 1) * BATCH_METRICS)],
                )  # fmt: skip
            elif workload == "search_runs":
                client.search_runs([setup["experiment"]], max_results=10)
            else:
                client.get_model_version_by_alias(MODEL, "champion")
        except Exception:  # counted, never raised: a failed request is a result
            failed = True
        if began >= measured_from:
            latencies.append(time.monotonic() - began)
            errors += failed
        step += 1
    out.put((latencies, errors))


def prepare(env: dict) -> dict:
    """An experiment to log into and a registered model with a @champion alias to look up."""
    os.environ.update(env)
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment = client.create_experiment(f"bench-{time.time_ns()}")
    run = client.create_run(experiment).info.run_id
    if not client.search_registered_models(f"name = '{MODEL}'"):
        client.create_registered_model(MODEL)
    version = client.create_model_version(MODEL, f"runs:/{run}/model", run_id=run).version
    client.set_registered_model_alias(MODEL, "champion", version)
    return {"experiment": experiment}


class Sampler:
    """Peak server RSS (its process group) and peak PostgreSQL connections of user mlflow."""

    def __init__(self, pgid: int, pg_port: int, superuser_password: str) -> None:
        import psycopg2

        self.pgid, self.rss, self.connections = pgid, 0.0, 0
        self._conn = psycopg2.connect(
            host=c.LOOPBACK, port=pg_port, user="postgres", password=superuser_password,
            dbname="postgres",
        )  # fmt: skip
        self._conn.autocommit = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.rss = max(self.rss, group_rss_mb(self.pgid))
            with self._conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'mlflow'")
                self.connections = max(self.connections, cur.fetchone()[0])
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._conn.close()


def phase(env: dict, workload: str, setup: dict, args) -> dict:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    ready = ctx.Barrier(args.clients + 1)
    procs = [
        ctx.Process(target=client_loop,
                    args=(env, workload, setup, ready, args.warmup, args.duration, out))
        for _ in range(args.clients)
    ]  # fmt: skip
    for p in procs:
        p.start()
    ready.wait(timeout=300)  # every client has imported MLflow and made its run
    results = [out.get(timeout=args.warmup + args.duration + 120) for _ in procs]
    for p in procs:
        p.join()
    latencies = np.array([x for lat, _ in results for x in lat]) * 1000
    errors = sum(e for _, e in results)
    return {
        "rps": len(latencies) / args.duration,
        "p50": float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
        "p99": float(np.percentile(latencies, 99)) if len(latencies) else float("nan"),
        "errors": errors,
        "requests": len(latencies),
    }


def render_block(results: dict, args, took: float, machine_line: str) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        START,
        f"Generated by `make benchmark` (`python -m scripts.benchmark_tracking`) on {now} in "
        f"{took:.0f} s.",
        "",
        f"- Machine: {machine_line}.",
        f"- Servers: `mlflow server` as rendered for the VM (HTTPS, PostgreSQL backend, S3 "
        f"artifacts on moto, bounded pools, credential cache {args.auth_cache} s), "
        f"{args.workers} workers, one at a time: with the basic-auth app (clients are the "
        "`trainer` user) and the same rendering without it.",
        f"- Load: {args.clients} client processes (MlflowClient), each sending its next request "
        f"as soon as the last answered, all started together once each has its run, "
        f"{args.warmup:g} s of warm-up then {args.duration:g} s measured per workload. Peak memory: the server's processes' resident memory; peak "
        "connections: PostgreSQL's sessions of the server's database user; both sampled every "
        "0.2 s.",
        "",
        "| workload | server | requests/s | p50 ms | p99 ms | errors | peak PostgreSQL "
        "connections | peak server memory MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for workload in args.workloads:
        for server in ("authenticated", "unauthenticated"):
            r = results[server][workload]
            lines.append(
                f"| {workload} | {server} | {r['rps']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} | "
                f"{r['errors']} | {r['connections']} | {r['rss']:,.0f} |"
            )
    lines += ["", "| goal (issue 18) | figure | result |", "|---|---:|---|"]
    for workload in args.workloads:
        auth, bare = results["authenticated"][workload], results["unauthenticated"][workload]
        share = auth["rps"] / bare["rps"] if bare["rps"] else 0.0
        met = share >= GOAL and auth["errors"] == 0
        lines.append(
            f"| {workload}: authenticated ≥ {GOAL:.0%} of unauthenticated req/s, no errors | "
            f"{share:.0%} | {'met' if met else '**missed**'} |"
        )
    peak = max(r["connections"] for server in results.values() for r in server.values())
    bound = connections_used(args.workers, *pool_for(args.db_max_connections, args.workers))
    lines.append(
        f"| peak PostgreSQL connections ≤ the computed bound ({bound}: {args.workers} workers "
        f"and the master, {ENGINES_PER_PROCESS} pools each, max_connections "
        f"{args.db_max_connections}) | {peak} | {'met' if peak <= bound else '**missed**'} |"
    )
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.benchmark_tracking",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--duration", type=float, default=15, help="seconds measured (15)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds not counted (2)")
    parser.add_argument("--clients", type=int, default=16, help="client processes (16)")
    parser.add_argument("--workers", type=int, default=2, help="server workers (2, as the VM)")
    parser.add_argument("--workload", action="append", choices=WORKLOADS, dest="workloads",
                        help="measure only this workload (repeatable; all by default)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="report (docs/benchmarks.md)")
    args = parser.parse_args(argv)
    args.workloads = args.workloads or list(WORKLOADS)
    args.auth_cache = 60
    args.db_max_connections = 100  # PostgreSQL's default, as components.mlflow_start renders it
    began = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    root.chmod(0o755)
    procs: list[c.Proc] = []
    results: dict[str, dict] = {}
    try:
        say("starting moto_server")
        moto = c.moto_start(c.free_port(), root / "moto.log")
        procs.append(moto)
        c.ensure_bucket(moto.url, "bench-artifacts")
        tls = c.make_tls(root / "tls")
        for server, auth in (("authenticated", True), ("unauthenticated", False)):
            # A database of its own for each server: neither sees the other's runs.
            cluster = c.pg_init(root / server / "pgdata", root / server / "pg-superuser")
            pg = c.pg_start(cluster, c.free_port(), root / server / "postgresql.log")
            procs.append(pg)
            db_password = c.new_password()
            c.pg_ensure_databases(pg.extra["port"], cluster.superuser_password, "mlflow",
                                  db_password, ["mlflow", "mlflow_auth"])  # fmt: skip
            admin = c.MlflowCredentials("admin", c.new_password(), tls.ca_cert)
            users = c.workload_users(lambda _: c.new_password(), tls.ca_cert)
            say(
                f"starting the {server} MLflow server ({args.workers} workers, {pg.extra['server'].source} PostgreSQL)"
            )
            proc = c.mlflow_start(
                port=c.free_port(), db_port=pg.extra["port"], db_password=db_password,
                admin=admin, users={n: u.password for n, u in users.items()},
                secret_key=c.new_password(), artifacts_destination="s3://bench-artifacts/mlflow",
                store_env=c.s3_store_env(moto.url), tls=tls, workdir=root / server / "mlflow",
                log=root / server / "mlflow.log", workers=args.workers, auth=auth,
                db_max_connections=args.db_max_connections,
            )  # fmt: skip
            procs.append(proc)
            env = users["trainer"].env(proc.url)
            if not auth:  # nobody is asked who they are
                env = {k: v for k, v in env.items() if "USERNAME" not in k and "PASSWORD" not in k}
            setup = prepare(env)
            results[server] = {}
            for workload in args.workloads:
                say(f"{server}: {workload}, {args.clients} clients, {args.duration:g} s")
                with Sampler(proc.pid, pg.extra["port"], cluster.superuser_password) as sample:
                    r = phase(env, workload, setup, args)
                r |= {"rss": sample.rss, "connections": sample.connections}
                results[server][workload] = r
                say(f"    {r['rps']:,.0f} req/s, p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, "
                    f"errors {r['errors']}, {r['connections']} connections, "
                    f"{r['rss']:,.0f} MB")  # fmt: skip
            for done in (proc, pg):
                done.stop(timeout=5)
                procs.remove(done)
    finally:
        for proc in reversed(procs):
            proc.stop(timeout=5)
        shutil.rmtree(root, ignore_errors=True)
    block = render_block(results, args, time.monotonic() - began,
                         machine(("mlflow", "sqlalchemy", "psycopg2-binary", "uvicorn")))  # fmt: skip
    out = args.out or Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
    write_report(block, out, START, END)
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
