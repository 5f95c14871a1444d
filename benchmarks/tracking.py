"""Tracking-server benchmark: the authenticated server against the same rendering without auth.

`python -m scripts.benchmark_tracking` (part of `make benchmark`) starts moto_server and two MLflow
servers as infra.mlflow_server renders them for the VM (HTTPS, bounded database pools, the
credential and auth read caches), each on a PostgreSQL of its own and with the same workers: one
with the mlops-auth plugin (MLflow's basic-auth app), one without auth. The same client processes (so the client side is not one
GIL), working as the `trainer` workload user, load one server at a time: per workload (one metric
per request, a 100-metric batch, a run search, a registry alias lookup) and round, each sends its
next request as soon as the last one answered, for a fixed time, the servers taking turns in
alternating order (A B, B A) so that a machine whose speed drifts favours neither. The script
samples the loaded server's resident memory and PostgreSQL's connections from its database user.
Then, on the authenticated server, a password flood: one workload client's alias lookups, one at
a time, alone and while 16 anonymous clients (from another loopback address) guess a user's
password, in alternating rounds. The tables and the issues' goals (authenticated ≥ 90% of
unauthenticated requests/s; connections within the rendered bound; the workload's median during
the flood within 3x its median alone) replace the tracking block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import local_platform as c
from benchmarks.measure import (
    connections_per_process,
    group_cpu_seconds,
    group_rss_mb,
    machine,
    say,
    write_report,
)
from infra.mlflow_server import ENGINES_PER_PROCESS, connections_used, pool_for, request_threads

START, END = "<!-- tracking-benchmark:start -->", "<!-- tracking-benchmark:end -->"
WORKLOADS = ("log_metric", "log_batch (100 metrics)", "search_runs", "alias lookup")
MODEL = "bench-model"
GOAL = 0.90  # issue 18: authenticated requests/s at least 90% of the unauthenticated server's
BATCH_METRICS = 100
FLOOD_CLIENTS = 16
FLOOD_GOAL = 3.0  # issue 30: the workload's median during the flood within 3x its median alone
FLOOD_ADDRESS = "127.0.0.2"  # the guessers' own address (the workload's is 127.0.0.1)


def client_process(env: dict, jobs, ready, out) -> None:
    """One client process for the whole run: per job, its own MlflowClient for that server and a
    run of its own, then requests back to back until the deadline.

    Every client has its run before the clock starts (the barrier), so the measured window holds
    only requests; those sent during the warm-up are not counted."""
    os.environ.update(env)
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    while (job := jobs.get()) is not None:
        url, workload, experiment, warmup, seconds = job
        fresh_connections()
        client = MlflowClient(tracking_uri=url)
        run_id = client.create_run(experiment).info.run_id
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
                    client.search_runs([experiment], max_results=10)
                else:
                    client.get_model_version_by_alias(MODEL, "champion")
            except Exception:  # counted, never raised: a failed request is a result
                failed = True
            if began >= measured_from:
                latencies.append(time.monotonic() - began)
                errors += failed
            step += 1
        out.put((latencies, errors, step + 1))  # every request sent, its run's creation too


def fresh_connections() -> None:
    """Drop MLflow's cached HTTP sessions, closing their keep-alive connections: each phase
    connects anew. uvicorn's workers share one listening socket and a client keeps the worker it
    first reached, so with connections kept for the whole run one uneven split (say 12 + 4)
    would weigh on one server's every round; drawn anew, rounds are independent samples."""
    import gc

    from mlflow.utils import request_utils

    request_utils._cached_get_request_session.cache_clear()
    gc.collect()  # the dropped sessions' sockets close now, not at some later collection


class Clients:
    """`n` client processes, started once (importing MLflow takes seconds each) and given one
    phase at a time."""

    def __init__(self, n: int, env: dict) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.out, self.ready = ctx.Queue(), ctx.Barrier(n + 1)
        self.jobs = [ctx.Queue() for _ in range(n)]
        self.procs = [ctx.Process(target=client_process, args=(env, q, self.ready, self.out))
                      for q in self.jobs]  # fmt: skip
        for proc in self.procs:
            proc.start()

    def phase(self, url: str, workload: str, experiment: str, args) -> dict:
        for q in self.jobs:
            q.put((url, workload, experiment, args.warmup, args.duration))
        self.ready.wait(timeout=300)  # every client has its run
        results = [self.out.get(timeout=args.warmup + args.duration + 120) for _ in self.jobs]
        return {
            "latencies": [x * 1000 for lat, _, _ in results for x in lat],
            "errors": sum(e for _, e, _ in results),
            "sent": sum(n for _, _, n in results),
            "seconds": args.duration,
        }

    def close(self) -> None:
        for q in self.jobs:
            q.put(None)
        for proc in self.procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()


def summary(phases: list[dict]) -> dict:
    """One row from a server's rounds of a workload."""
    latencies = np.array([x for ph in phases for x in ph["latencies"]])
    return {
        "rps": len(latencies) / sum(ph["seconds"] for ph in phases),
        "p50": float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
        "p99": float(np.percentile(latencies, 99)) if len(latencies) else float("nan"),
        "errors": sum(ph["errors"] for ph in phases),
        "requests": len(latencies),
        "rss": max(ph["rss"] for ph in phases),
        "connections": max(ph["connections"] for ph in phases),
        "cpu_ms": 1000 * sum(ph["cpu"] for ph in phases) / sum(ph["sent"] for ph in phases),
        "splits": ", ".join("+".join(map(str, ph["split"])) for ph in phases),
        "round_rps": [len(ph["latencies"]) / ph["seconds"] for ph in phases],
    }


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
    fresh_connections()  # this process's connection would count among the clients' per worker
    return {"experiment": experiment}


class Sampler:
    """Peak server RSS (its process group), peak PostgreSQL connections of user mlflow, the CPU
    the server used, and how the clients' connections were spread over its workers."""

    def __init__(self, pgid: int, port: int, pg_port: int, superuser_password: str) -> None:
        import psycopg2

        self.pgid, self.port, self.rss, self.connections, self.cpu = pgid, port, 0.0, 0, 0.0
        self.split: list[int] = []  # the clients' connections per server process, most first
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
            split = [n for n in connections_per_process(self.pgid, self.port) if n]
            if sum(split) >= sum(self.split):  # once every client is connected
                self.split = split
            with self._conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'mlflow'")
                self.connections = max(self.connections, cur.fetchone()[0])
            time.sleep(0.2)

    def __enter__(self):
        self._cpu_before = group_cpu_seconds(self.pgid)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.cpu = group_cpu_seconds(self.pgid) - self._cpu_before
        self._stop.set()
        self._thread.join()
        self._conn.close()


def guessing(url: str, ca: str, stop, out) -> None:
    """FLOOD_CLIENTS threads guessing the trainer's password from FLOOD_ADDRESS until `stop`;
    puts the answers' status counts."""
    import collections
    import uuid

    import requests

    class FromAddress(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            kwargs["source_address"] = (FLOOD_ADDRESS, 0)
            super().init_poolmanager(*args, **kwargs)

    counts = collections.Counter()

    def guess() -> None:
        session = requests.Session()
        session.mount("https://", FromAddress())
        while not stop.is_set():
            try:
                answer = session.get(f"{url}/api/2.0/mlflow/experiments/search",
                                     params={"max_results": 1}, auth=("trainer", uuid.uuid4().hex),
                                     verify=ca, timeout=60)  # fmt: skip
                counts[answer.status_code] += 1
            except requests.RequestException:
                counts["error"] += 1

    threads = [threading.Thread(target=guess) for _ in range(FLOOD_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put(dict(counts))


def flood(server: dict, args) -> dict:
    """The workload's alias lookups alone and during the flood, in alternating rounds (alone,
    flooded, alone, ...): per-request latencies in ms, and the guessers' answers."""
    import requests

    env = server["env"]
    session, ca = requests.Session(), env["MLFLOW_TRACKING_SERVER_CERT_PATH"]
    auth = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
    url = f"{server['proc'].url}/api/2.0/mlflow/registered-models/alias"

    def lookups(seconds: float) -> list[float]:
        times, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            began = time.perf_counter()
            answer = session.get(url, params={"name": MODEL, "alias": "champion"}, auth=auth,
                                 verify=ca, timeout=60)  # fmt: skip
            answer.raise_for_status()
            times.append((time.perf_counter() - began) * 1000)
        return times

    ctx = multiprocessing.get_context("spawn")
    result = {"alone": [], "flooded": [], "guesses": {}}
    lookups(args.warmup)
    for _ in range(args.rounds // 2 or 1):
        result["alone"] += lookups(args.duration)
        stop, out = ctx.Event(), ctx.Queue()
        guessers = ctx.Process(target=guessing, args=(server["proc"].url, ca, stop, out))
        guessers.start()
        time.sleep(args.warmup)  # the flood's first guesses: checked, then refused
        result["flooded"] += lookups(args.duration)
        stop.set()
        for status, n in out.get(timeout=120).items():
            result["guesses"][status] = result["guesses"].get(status, 0) + n
        guessers.join(timeout=30)
    return result


def render_block(results: dict, args, took: float, machine_line: str) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    pool = pool_for(args.db_max_connections, args.workers)
    lines = [
        START,
        f"Generated by `make benchmark` (`python -m scripts.benchmark_tracking`) on {now} in "
        f"{took:.0f} s.",
        "",
        f"- Machine: {machine_line}.",
        f"- Servers: `mlflow server` as rendered for the VM (HTTPS, PostgreSQL backend, S3 "
        f"artifacts on moto, pools of {sum(pool)} connections, {request_threads(*pool)} requests "
        f"at once per worker, credential and auth read caches {args.auth_cache} s), "
        f"{args.workers} workers, both up, loaded one at a time: with MLflow's basic-auth app "
        "inside the mlops-auth plugin, and the same rendering with MLflow's app without auth "
        "(`mlops-open`: only the plugin's thread bound).",
        f"- Load: the same {args.clients} client processes (MlflowClient, as the `trainer` user; "
        "the open server ignores the credentials) for both, each sending its next request as "
        "soon as the last answered, started together once each has a run of its own on the "
        f"server; per workload {args.rounds} rounds per server in alternating order (A B, B A), "
        f"each {args.warmup:g} s of warm-up then {args.duration:g} s measured; figures over the "
        "rounds. Server CPU: user + system seconds of the server's processes over the phase, "
        "per request sent (warm-up included; the clients, on the same 2 cores, use the rest). "
        "Peak memory: the server's processes' resident memory; peak connections: PostgreSQL's "
        "sessions of the server's database user; both sampled every 0.2 s. Clients per "
        "worker: how each round's connections were spread over the server's workers (every "
        "phase connects anew; a worker serves the connections it accepted).",
        "",
        "| workload | server | requests/s | p50 ms | p99 ms | errors | server CPU ms per request "
        "| peak PostgreSQL connections | peak server memory MB | clients per worker, by round |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for workload in args.workloads:
        for server in ("authenticated", "unauthenticated"):
            r = results[server][workload]
            lines.append(
                f"| {workload} | {server} | {r['rps']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} | "
                f"{r['errors']} | {r['cpu_ms']:.1f} | {r['connections']} | {r['rss']:,.0f} | "
                f"{r['splits']} |"
            )
    lines += [
        "",
        "Goal figures: the authenticated server's requests/s over the rounds against the "
        "unauthenticated one's; in brackets each round's (a round of one against the round of "
        "the other next to it in time).",
        "",
        "| goal | figure | result |",
        "|---|---:|---|",
    ]
    for workload in args.workloads:
        auth, bare = results["authenticated"][workload], results["unauthenticated"][workload]
        share = auth["rps"] / bare["rps"] if bare["rps"] else 0.0
        rounds = "/".join(f"{a / b:.0%}" if b else "-"
                          for a, b in zip(auth["round_rps"], bare["round_rps"], strict=True))  # fmt: skip
        met = share >= GOAL and auth["errors"] == 0
        lines.append(
            f"| {workload}: authenticated ≥ {GOAL:.0%} of unauthenticated req/s, no errors | "
            f"{share:.0%} ({rounds}) | {'met' if met else '**missed**'} |"
        )
    peak = max(r["connections"] for server in ("authenticated", "unauthenticated")
               for r in results[server].values())  # fmt: skip
    bound = connections_used(args.workers, *pool)
    lines.append(
        f"| peak PostgreSQL connections ≤ the computed bound ({bound}: {args.workers} workers "
        f"and the master, {ENGINES_PER_PROCESS} pools each, max_connections "
        f"{args.db_max_connections}) | {peak} | {'met' if peak <= bound else '**missed**'} |"
    )
    if results.get("flood"):
        f = results["flood"]
        alone, flooded = np.median(f["alone"]), np.median(f["flooded"])
        guesses = ", ".join(f"{n:,} × {status}" for status, n in sorted(f["guesses"].items(),
                                                                        key=str))  # fmt: skip
        lines.append(
            f"| password flood (issue 30): the workload's median ≤ {FLOOD_GOAL:g}× its median "
            f"alone | {flooded:.1f} ms vs {alone:.1f} ms ({flooded / alone:.2f}×; "
            f"p99 {np.percentile(f['flooded'], 99):.1f} vs {np.percentile(f['alone'], 99):.1f} "
            f"ms; the guessers got {guesses}) | "
            f"{'met' if flooded <= FLOOD_GOAL * alone else '**missed**'} |"
        )
        lines += [
            "",
            f"Password flood: on the authenticated server, one client (the `trainer` user) "
            f"looking up the model's alias one request at a time, alone and while "
            f"{FLOOD_CLIENTS} anonymous clients from another loopback address guess `trainer`'s "
            f"password as fast as they are answered; rounds of each: {args.rounds // 2 or 1}, "
            f"{args.duration:g} s measured after {args.warmup:g} s. A worker checks at most "
            "10 failed passwords a minute from one address, then answers 429.",
        ]
    lines.append(END)
    return "\n".join(lines)


def start_server(server: str, auth: bool, root: Path, moto, tls, procs: list, args) -> dict:
    """PostgreSQL of its own (neither server sees the other's runs) and the MLflow server as
    rendered, with or without the auth app; an experiment and an aliased model to work on."""
    cluster = c.pg_init(root / server / "pgdata", root / server / "pg-superuser")
    pg = c.pg_start(cluster, c.free_port(), root / server / "postgresql.log")
    procs.append(pg)
    db_password = c.new_password()
    c.pg_ensure_databases(pg.extra["port"], cluster.superuser_password, "mlflow",
                          db_password, ["mlflow", "mlflow_auth"])  # fmt: skip
    admin = c.MlflowCredentials("admin", c.new_password(), tls.ca_cert)
    users = c.workload_users(lambda _: c.new_password(), tls.ca_cert)
    say(f"starting the {server} MLflow server ({args.workers} workers, "
        f"{pg.extra['server'].source} PostgreSQL)")  # fmt: skip
    port = c.free_port()
    proc = c.mlflow_start(
        port=port, db_port=pg.extra["port"], db_password=db_password,
        admin=admin, users={n: u.password for n, u in users.items()},
        secret_key=c.new_password(), artifacts_destination="s3://bench-artifacts/mlflow",
        store_env=c.s3_store_env(moto.url), tls=tls, workdir=root / server / "mlflow",
        log=root / server / "mlflow.log", workers=args.workers, auth=auth,
        db_max_connections=args.db_max_connections,
    )  # fmt: skip
    procs.append(proc)
    env = users["trainer"].env(proc.url)
    return {"proc": proc, "port": port, "pg": pg, "superuser": cluster.superuser_password, "env": env,
            "experiment": prepare(env)["experiment"]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.benchmark_tracking",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--duration", type=float, default=6,
                        help="seconds measured per phase (6)")  # fmt: skip
    parser.add_argument("--warmup", type=float, default=2, help="seconds not counted (2)")
    # Many short rounds: on a shared VM one server's requests/s move 10-30% between
    # consecutive phases, so the goal's figure is an average over alternating samples.
    parser.add_argument("--rounds", type=int, default=6,
                        help="phases per server and workload, in alternating order (6)")  # fmt: skip
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
    servers: dict[str, dict] = {}
    clients = None
    phases: dict[tuple[str, str], list[dict]] = {}
    try:
        say("starting moto_server")
        moto = c.moto_start(c.free_port(), root / "moto.log")
        procs.append(moto)
        c.ensure_bucket(moto.url, "bench-artifacts")
        tls = c.make_tls(root / "tls")
        for server, auth in (("authenticated", True), ("unauthenticated", False)):
            servers[server] = start_server(server, auth, root, moto, tls, procs, args)
        # The same clients for both, as the trainer user (the open server ignores who they say).
        clients = Clients(args.clients, servers["authenticated"]["env"])
        order = list(servers)
        for workload in args.workloads:
            for _ in range(args.rounds):
                for server in order:
                    s = servers[server]
                    say(f"{server}: {workload}, {args.clients} clients, {args.duration:g} s")
                    with Sampler(s["proc"].pid, s["port"], s["pg"].extra["port"],
                                 s["superuser"]) as sample:  # fmt: skip
                        ph = clients.phase(s["proc"].url, workload, s["experiment"], args)
                    ph |= {"rss": sample.rss, "connections": sample.connections,
                           "cpu": sample.cpu, "split": sample.split}  # fmt: skip
                    phases.setdefault((server, workload), []).append(ph)
                    rps = len(ph["latencies"]) / ph["seconds"]
                    say(f"    {rps:,.0f} req/s, errors {ph['errors']}, "
                        f"{1000 * ph['cpu'] / ph['sent']:.1f} ms of server CPU a request, "
                        f"{ph['connections']} connections, {ph['rss']:,.0f} MB, "
                        f"clients per worker {'+'.join(map(str, ph['split']))}")  # fmt: skip
                order.reverse()  # A B, B A, ...: a machine that drifts favours neither
        say(f"authenticated: password flood, {FLOOD_CLIENTS} guessing clients")
        flooded = flood(servers["authenticated"], args)
    finally:
        if clients is not None:
            clients.close()
        for proc in reversed(procs):
            proc.stop(timeout=5)
        shutil.rmtree(root, ignore_errors=True)
    results = {
        server: {w: summary(phases[(server, w)]) for w in args.workloads} for server in servers
    }
    results["flood"] = flooded
    block = render_block(results, args, time.monotonic() - began,
                         machine(("mlflow", "sqlalchemy", "psycopg2-binary", "uvicorn")))  # fmt: skip
    out = args.out or Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
    write_report(block, out, START, END)
    print(block)
    return 0
