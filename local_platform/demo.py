"""`make demo`'s platform on this machine, in .local/ (command line: scripts/local_platform.py).

`up` starts PostgreSQL (data in .local/pgdata), moto_server as the S3 endpoint (objects kept across
restarts by replaying its recording), the MLflow server rendered by infra.mlflow_server with auth on
and HTTPS only (a CA of its own in .local/tls), trains the baseline and then the stronger model on
generated TLC-shaped data as the `trainer` user, starts the model API as the `model-api` user, the
ride event streams on a moto_server of their own (moto's recording, which keeps the bucket, would
record every poll) with the stream consumer as the `streaming` user, and prints one prediction of
each. Everything keeps running in the background; `down` stops it by pid and
keeps the data. Running `up` again while the platform runs only reports it. `backup` writes both
databases to the bucket (infra.db_backup) and prints the key; `restore KEY` stops the MLflow
server, recreates the databases from that backup and starts the server again."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

import local_platform as c

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".local"
SECRETS = LOCAL / "secrets"
LOGS = LOCAL / "logs"
PIDS = LOCAL / "pids.json"
ENDPOINTS = LOCAL / "endpoints.json"
TLS = LOCAL / "tls"
MLFLOW_ENV = LOCAL / "mlflow.env"
TRACKING = LOCAL / "tracking.json"
"""What restarting the MLflow server needs (its port, PostgreSQL's, moto's URL, workers)."""
S3_ENV = LOCAL / "s3.env"
DATA = LOCAL / "data"
BUCKET = "mlflow-artifacts"
ADMIN_USER = "admin"
MODEL_NAME = "nyc-taxi-duration"
# Preferred ports; a taken one is replaced by a free one, and the output says so.
PORTS = {"postgresql": 5432, "s3": 5001, "streams": 5002, "tracking": 5000, "model_api": 8000}
# What each component's command line contains, so `down` never signals a recycled pid.
MARKERS = {
    "stream-consumer": "streaming.consumer",
    "model-api": "services.model_api.serve",
    "mlflow-server": "mlflow",
    "moto_server": "moto_server",
    "moto-streams": "moto_server",
    "postgresql": "postgres",
}
BALANCER = "tracking-balancer"
"""With replicas: HAProxy on the tracking port, the servers as mlflow-server@<slot>."""
SAMPLE = {"PULocationID": 43, "DOLocationID": 151, "trip_distance": 1.8}


def say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def secret(name: str) -> str:
    """A generated secret kept in .local/secrets (dir 700, files 600), made on first use."""
    SECRETS.mkdir(parents=True, exist_ok=True)
    SECRETS.chmod(0o700)
    path = SECRETS / name
    if not path.exists():
        path.write_text(c.new_password())
        path.chmod(0o600)
    return path.read_text().strip()


def pick_port(name: str) -> int:
    preferred = PORTS[name]
    if c.port_is_free(preferred):
        return preferred
    port = c.free_port()
    say(f"port {preferred} ({name}) is taken; using {port}")
    return port


def write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    path.chmod(0o600)


def marker(name: str) -> str:
    """What the component's command line contains (a replica by its kind's)."""
    return "haproxy" if name == BALANCER else MARKERS.get(name.split("@")[0], name)


def running() -> dict[str, int]:
    """Components from pids.json whose process is still alive (and still ours)."""
    if not PIDS.exists():
        return {}
    alive = {}
    for name, pid in json.loads(PIDS.read_text()).items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if c.pid_alive(pid) and marker(name) in cmdline:
            alive[name] = pid
    return alive


def expected() -> set[str]:
    """The components `up` started: with replicas, the balancer and a server per slot."""
    tracking = json.loads(TRACKING.read_text()) if TRACKING.exists() else {}
    if tracking.get("replicas", 1) < 2:
        return set(MARKERS)
    servers = {f"mlflow-server@{slot}" for slot in tracking["servers"]}
    return (set(MARKERS) - {"mlflow-server"}) | servers | {BALANCER}


def record_pid(name: str, pid: int) -> None:
    pids = json.loads(PIDS.read_text()) if PIDS.exists() else {}
    pids[name] = pid
    PIDS.write_text(json.dumps(pids, indent=2))


def ensure_data() -> tuple[Path, Path]:
    from training.generate import write_month

    months = []
    for month in (1, 2):
        path = DATA / f"green_tripdata_2024-{month:02d}.parquet"
        if not path.exists():
            write_month(path, 2024, month, rows=20_000, seed=0, colour="green")
        months.append(path)
    return months[0], months[1]


def train(env: dict[str, str], train_path: Path, val_path: Path) -> None:
    # Baseline first, then the stronger model: the second run exercises the promotion gate.
    for model in ("linear", "lightgbm"):
        say(f"training {model} (log: {LOGS / 'training.log'})")
        with open(LOGS / "training.log", "a") as log:
            result = subprocess.run(
                [sys.executable, "-m", "training", "--train", str(train_path), "--val",
                 str(val_path), "--model", model],
                env={**os.environ, **c.QUIET, **env},
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=ROOT,
            )  # fmt: skip
        if result.returncode != 0:
            raise c.ComponentError(
                f"training {model} failed; last lines of {LOGS / 'training.log'}:\n"
                + c.log_tail(LOGS / "training.log")
            )
        print("    " + result.stdout.strip().replace("\n", "\n    "), flush=True)


SHIFTED = DATA / "green_tripdata_2024-03.parquet"
PREDICTION_LOG = f"s3://{BUCKET}/predictions/"


def ensure_shifted_month() -> Path:
    """A third month unlike the first two (longer trips, slower roads), for the monitor to see."""
    from training.generate import write_month

    if not SHIFTED.exists():
        write_month(SHIFTED, 2024, 3, rows=20_000, seed=0, colour="green", shift=0.3)
    return SHIFTED


def send_traffic(api_url: str, month: Path, batches: int = 5) -> int:
    """Rides of the month through the API in 1,000-ride batches, as clients would send them."""
    import pandas as pd

    from trip_model.rides import MAX_TRIP_DISTANCE

    frame = pd.read_parquet(month, columns=["PULocationID", "DOLocationID", "trip_distance"])
    frame = frame[frame["trip_distance"].between(0, MAX_TRIP_DISTANCE, inclusive="left")]
    rides = frame.sample(n=batches * 1000, random_state=3).to_dict(orient="records")
    for i in range(batches):
        resp = requests.post(
            f"{api_url}/predict/batch", json={"rides": rides[i * 1000 : (i + 1) * 1000]}, timeout=60
        )
        resp.raise_for_status()
    return len(rides)


def wait_for_log(endpoint: str, rides: int, timeout: float = 60.0) -> None:
    """Until the API's prediction log holds today's rides (it writes every few seconds here)."""
    import io

    import pyarrow.parquet as pq

    s3 = c.s3_client(endpoint)
    prefix = f"predictions/date={time.strftime('%Y-%m-%d', time.gmtime())}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        keys = [
            o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        ]
        logged = sum(
            pq.ParquetFile(
                io.BytesIO(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read())
            ).metadata.num_rows
            for k in keys
        )
        if logged >= rides:
            return
        time.sleep(1)
    raise c.ComponentError(f"the prediction log did not reach {rides} rides in {timeout:.0f}s")


def monitor(env: dict[str, str], month: Path) -> tuple[str, str]:
    """One monitoring run over today's traffic and the shifted month, retraining if degraded:
    (its summary, the run's page in the MLflow UI, where report.html is)."""
    say("monitoring: today's logged traffic and the new month's actual durations")
    retrain = shlex.join(
        [sys.executable, "-m", "training", "--data-prefix", f"s3://{BUCKET}/tlc/", "--months", "2",
         "--model", "lightgbm"]
    )  # fmt: skip
    with open(LOGS / "monitoring.log", "a") as log:
        result = subprocess.run(
            [sys.executable, "-m", "monitoring", "--prediction-log", PREDICTION_LOG, "--days", "1",
             "--actuals", f"s3://{BUCKET}/tlc/{month.name}", "--retrain", "command",
             "--retrain-command", retrain],
            env={**os.environ, **c.QUIET, **env}, stdout=subprocess.PIPE, stderr=log, text=True,
            cwd=ROOT,
        )  # fmt: skip
    if result.returncode != 0:
        raise c.ComponentError(
            f"monitoring failed; last lines of {LOGS / 'monitoring.log'}:\n"
            + c.log_tail(LOGS / "monitoring.log")
        )
    summary = result.stdout.strip().splitlines()[-1]
    run_id = re.search(r"MLflow run ([0-9a-f]{32})", summary)[1]
    uri = env["MLFLOW_TRACKING_URI"]
    run = requests.get(
        f"{uri}/api/2.0/mlflow/runs/get",
        params={"run_id": run_id},
        auth=(env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]),
        verify=env["MLFLOW_TRACKING_SERVER_CERT_PATH"],
        timeout=30,
    )
    run.raise_for_status()
    experiment = run.json()["run"]["info"]["experiment_id"]
    return summary, f"{uri}/#/experiments/{experiment}/runs/{run_id}"


def credentials() -> tuple[c.MlflowCredentials, dict[str, c.MlflowCredentials]]:
    tls = c.make_tls(TLS)
    admin = c.MlflowCredentials(ADMIN_USER, secret("mlflow-admin"), tls.ca_cert)
    return admin, c.workload_users(lambda name: secret(f"mlflow-{name}"), tls.ca_cert)


def start_tracking(tracking: dict, port: int | None = None) -> c.Proc:
    """The MLflow server as `up` starts it (TRACKING says where its pieces are); its launcher
    backs the databases up to the bucket before migrating a schema that is behind. With
    replicas, one of them on `port`, behind the balancer on the tracking port."""
    admin, users = credentials()
    replicated = port is not None
    return c.mlflow_start(
        port=port if replicated else tracking["port"],
        db_port=tracking["dbPort"],
        db_password=secret("mlflow-db"),
        admin=admin,
        users={name: user.password for name, user in users.items()},
        secret_key=secret("mlflow-flask-key"),
        artifacts_destination=f"s3://{BUCKET}/mlflow",
        store_env=c.s3_store_env(tracking["s3"]),
        tls=c.make_tls(TLS),
        workdir=LOCAL / "mlflow",
        log=LOGS / (f"mlflow-server-{port}.log" if replicated else "mlflow-server.log"),
        workers=tracking["workers"],
        backups=f"s3://{BUCKET}",
        behind=tracking["port"] if replicated else None,
    )


def start_replicas(tracking: dict) -> c.Proc:
    """`replicas` servers behind HAProxy on the tracking port (local_platform.balancer); the
    balancer's Proc, whose url clients use."""
    balancer = c.balancer_start(tracking["port"], tracking["replicas"], TLS / "ca.pem",
                                LOCAL / "balancer", LOGS / "balancer.log")  # fmt: skip
    record_pid(BALANCER, balancer.proc.pid)
    tracking["balancer"] = {"socket": str(balancer.sock), "slots": balancer.slots}
    tracking["servers"] = {}
    for slot in balancer.slots[: tracking["replicas"]]:
        server = start_tracking(tracking, c.free_port())
        record_pid(f"mlflow-server@{slot}", server.pid)
        balancer.enter(slot, int(server.url.rsplit(":", 1)[1]))
        tracking["servers"][slot] = server.url
    write_private(TRACKING, json.dumps(tracking))
    return balancer.proc


class Started:
    """A server another `scripts.local_platform` run started: stopped by its pid."""

    def __init__(self, pid: int, url: str) -> None:
        self.pid, self.url = pid, url

    def stop(self, timeout: float = 20.0) -> None:
        c.stop_pid(self.pid, timeout=timeout)


def roll_tracking(args: argparse.Namespace) -> int:
    """Replace the replicated tracking servers one at a time, as the clouds do: a new one, wait
    until the balancer finds it healthy, drain the old one, stop it."""
    tracking = json.loads(TRACKING.read_text()) if TRACKING.exists() else {}
    alive = running()
    if tracking.get("replicas", 1) < 2 or BALANCER not in alive:
        print("error: the local platform runs no replicated tracking servers: "
              "make demo TRACKING_REPLICAS=2 first", file=sys.stderr)  # fmt: skip
        return 1
    balancer = c.Balancer(Path(tracking["balancer"]["socket"]), tracking["balancer"]["slots"])
    servers = {slot: Started(alive[f"mlflow-server@{slot}"], url)
               for slot, url in tracking["servers"].items()
               if f"mlflow-server@{slot}" in alive}  # fmt: skip
    started = time.monotonic()

    def start() -> c.Proc:
        return start_tracking(tracking, c.free_port())

    try:
        now = c.roll(balancer, servers, start, lambda msg: say(
            f"{time.monotonic() - started:4.0f}s {msg}"))  # fmt: skip
    except c.ComponentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    pids = json.loads(PIDS.read_text())
    for slot in servers:
        pids.pop(f"mlflow-server@{slot}", None)
    for slot, server in now.items():
        pids[f"mlflow-server@{slot}"] = server.pid
    PIDS.write_text(json.dumps(pids, indent=2))
    tracking["servers"] = {slot: server.url for slot, server in now.items()}
    write_private(TRACKING, json.dumps(tracking))
    say(f"rolled {len(now)} tracking servers in {time.monotonic() - started:.0f}s; clients "
        f"kept {c.LOOPBACK}:{tracking['port']} throughout")  # fmt: skip
    return 0


def backup_context() -> tuple[dict, dict[str, str], object]:
    """The running platform's database URIs, the environment (password, S3) and the bucket."""
    from infra import db_backup

    alive = running()
    missing = {"postgresql", "moto_server"} - set(alive)
    if missing or not TRACKING.exists():
        raise c.ComponentError(
            f"the local platform is not running ({', '.join(sorted(missing)) or 'no state'}): "
            "make demo first"
        )
    tracking = json.loads(TRACKING.read_text())
    base = f"postgresql+psycopg2://mlflow@{c.LOOPBACK}:{tracking['dbPort']}"
    uris = {"tracking": f"{base}/mlflow", "auth": f"{base}/mlflow_auth"}
    env = {**os.environ, **c.s3_store_env(tracking["s3"]), "PGPASSWORD": secret("mlflow-db")}
    os.environ.update(env)  # the in-process S3 and PostgreSQL clients
    return uris, env, db_backup.Bucket(f"s3://{BUCKET}")


def backup(args: argparse.Namespace) -> int:
    """Dump both databases into the bucket (backups/…) and print the key."""
    from infra.db_backup import BackupError, backup

    try:
        uris, env, bucket = backup_context()
        folder = backup(uris, bucket, "manual", env)
    except (c.ComponentError, BackupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    say(f"backed up the tracking and auth databases to {bucket.url}/{folder}")
    say(f"restore with: make restore BACKUP={folder}")
    print(folder)
    return 0


def restore(args: argparse.Namespace) -> int:
    """Stop the MLflow server, recreate both databases from the backup, start it again."""
    from infra.db_backup import BackupError, restore

    try:
        uris, env, bucket = backup_context()
        if json.loads(TRACKING.read_text()).get("replicas", 1) > 1:
            raise c.ComponentError(
                "restore works on one tracking server: make demo-down, then make demo"
            )
        alive = running()
        if "mlflow-server" in alive:
            say(f"stopping mlflow-server (pid {alive['mlflow-server']})")
            c.stop_pid(alive["mlflow-server"], timeout=30)
        manifest = restore(uris, bucket, args.backup, env)
        say(f"restored {args.backup} (made by MLflow {manifest['mlflowVersion']} at "
            f"{manifest['created']}); starting the MLflow server")  # fmt: skip
        mlflow = start_tracking(json.loads(TRACKING.read_text()))
    except (c.ComponentError, BackupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    record_pid("mlflow-server", mlflow.pid)
    say(f"MLflow server at {mlflow.url} again")
    return 0


def up(args: argparse.Namespace) -> int:
    alive = running()
    if alive and ENDPOINTS.exists():
        if set(alive) == expected():
            say("the local platform is already running")
            return report(json.loads(ENDPOINTS.read_text()))
        say(f"some components are down ({', '.join(sorted(expected() - set(alive)))}); restarting")
        down(args)
    LOGS.mkdir(parents=True, exist_ok=True)
    PIDS.unlink(missing_ok=True)
    started = time.monotonic()
    try:
        # PostgreSQL's own user (as root) passes through .local/ to its data; what is inside
        # keeps its own modes (secrets 700, env files 600). Nothing outside .local/ is changed.
        LOCAL.chmod(LOCAL.stat().st_mode | 0o011)
        cluster = c.pg_init(LOCAL / "pgdata", SECRETS / "postgres-superuser")
        server = cluster.server
        say(f"starting {server.source} PostgreSQL {server.major} (data in .local/pgdata)")
        pg = c.pg_start(cluster, pick_port("postgresql"), LOGS / "postgresql.log")
        record_pid("postgresql", pg.pid)
        db_password = secret("mlflow-db")
        c.pg_ensure_databases(
            pg.extra["port"], cluster.superuser_password, "mlflow", db_password,
            ["mlflow", "mlflow_auth"],
        )  # fmt: skip

        say("starting moto_server as the S3 endpoint")
        moto = c.moto_start(pick_port("s3"), LOGS / "moto.log", LOCAL / "s3" / "moto_recording")
        record_pid("moto_server", moto.pid)
        c.ensure_bucket(moto.url, BUCKET)
        s3_env = {**c.FAKE_AWS, "AWS_ENDPOINT_URL": moto.url}
        write_private(S3_ENV, "".join(f"{k}={v}\n" for k, v in s3_env.items()))

        say(
            "starting the MLflow server (PostgreSQL backend, S3 artifacts, HTTPS, basic auth in the mlops-auth plugin)"
        )
        admin, users = credentials()
        tracking = {"port": pick_port("tracking"), "dbPort": pg.extra["port"],
                    "s3": moto.url, "workers": args.workers, "replicas": args.replicas}  # fmt: skip
        write_private(TRACKING, json.dumps(tracking))
        if args.replicas > 1:
            say(f"{args.replicas} MLflow servers behind HAProxy on the tracking port")
            mlflow = start_replicas(tracking)
        else:
            mlflow = start_tracking(tracking)
            record_pid("mlflow-server", mlflow.pid)
        # A person works as the admin; each workload as its own user (infra.mlflow_server).
        write_private(MLFLOW_ENV, "".join(f"{k}={v}\n" for k, v in admin.env(mlflow.url).items()))
        trainer_env = users["trainer"].env(mlflow.url)
        reader_env = users["model-api"].env(mlflow.url)

        say("generating two months of TLC-shaped trip data")
        train_path, val_path = ensure_data()
        s3 = c.s3_client(moto.url)
        for month in (train_path, val_path):  # for the scoring example: TLC files in S3
            s3.upload_file(str(month), BUCKET, f"tlc/{month.name}")
        train(trainer_env, train_path, val_path)

        say("starting the model API (prediction log on)")
        api = c.model_api_start(
            pick_port("model_api"),
            LOGS / "model-api.log",
            {
                **reader_env,
                **s3_env,
                "MODEL_API_REFRESH_SECONDS": "10",
                "MODEL_API_PREDICTION_LOG": PREDICTION_LOG,
                "MODEL_API_PREDICTION_LOG_FLUSH_SECONDS": "2",
            },
        )
        record_pid("model-api", api.pid)
        c.wait_until(api, c.http_ok(f"{api.url}/ready"), 180, "ready with a model")

        say("starting the ride event streams (moto) and the stream consumer")
        streams_moto = c.moto_start(pick_port("streams"), LOGS / "moto-streams.log")
        record_pid("moto-streams", streams_moto.pid)
        streams = c.ensure_streams(streams_moto.url)
        consumer = c.stream_consumer_start(
            streams,
            LOGS / "stream-consumer.log",
            {
                **users["streaming"].env(mlflow.url),
                "STREAMING_REFRESH_SECONDS": "10",
                "STREAMING_PREDICTION_LOG": PREDICTION_LOG,
                # The log goes to the bucket's endpoint; the streams are on their own.
                "AWS_ENDPOINT_URL_S3": moto.url,
            },
        )
        record_pid("stream-consumer", consumer.pid)

        say("a new month arrives, unlike the first two; its rides go through the API")
        shifted = ensure_shifted_month()
        s3.upload_file(str(shifted), BUCKET, f"tlc/{shifted.name}")
        wait_for_log(moto.url, send_traffic(api.url, shifted))
        decision, report_url = monitor({**trainer_env, **s3_env}, shifted)
    except c.ComponentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        say("stopping what was started")
        down(args)
        return 1
    say(decision)
    endpoints = {
        "monitoringReport": report_url,
        "trackingUri": mlflow.url,
        "trackingReplicas": args.replicas,
        "trackingCaCert": str(TLS / "ca.pem"),
        "modelApiUrl": api.url,
        "s3EndpointUrl": moto.url,
        "artifactBucket": BUCKET,
        "registeredModel": MODEL_NAME,
        "streamsEndpointUrl": streams.endpoint,
        "rideEventsStream": streams.events,
        "ridePredictionsStream": streams.predictions,
        "rideEventsDeadLetterQueue": streams.dead_letter,
    }
    ENDPOINTS.write_text(json.dumps(endpoints, indent=2) + "\n")
    say(f"up in {time.monotonic() - started:.0f}s")
    return report(endpoints)


def report(endpoints: dict[str, str]) -> int:
    api = endpoints["modelApiUrl"]
    resp = requests.post(f"{api}/predict", json=SAMPLE, timeout=10)
    streams = c.Streams(endpoints["streamsEndpointUrl"], endpoints["rideEventsStream"],
                        endpoints["ridePredictionsStream"], endpoints["rideEventsDeadLetterQueue"])  # fmt: skip
    event = {"ride_id": f"demo-{int(time.time())}", "ride": SAMPLE}
    streamed, _ = c.round_trip(streams, event)
    count = endpoints.get("trackingReplicas", 1)
    replicas = (f"\n                          {count} servers behind HAProxy; make demo-roll replaces "
                "them one at a time") if count > 1 else ""  # fmt: skip
    print(
        f"""
  MLflow tracking server  {endpoints["trackingUri"]}   (user {ADMIN_USER}; password in {MLFLOW_ENV.relative_to(ROOT)}; CA {(TLS / "ca.pem").relative_to(ROOT)}){replicas}
  workload users          trainer (training, monitoring), model-api (model API), streaming (stream consumer); passwords in {SECRETS.relative_to(ROOT)}/
  model API               {api}/docs
  S3 endpoint (moto)      {endpoints["s3EndpointUrl"]}   bucket {endpoints["artifactBucket"]} (credentials in {S3_ENV.relative_to(ROOT)})
  ride event streams      {streams.events} -> {streams.predictions} (Kinesis on {streams.endpoint}; bad records: SQS {streams.dead_letter})
  prediction log          {PREDICTION_LOG}date=YYYY-MM-DD/
  monitoring report       {endpoints.get("monitoringReport", "(none yet)")}  (report.html under Artifacts)
  endpoints               {ENDPOINTS.relative_to(ROOT)}
  logs                    {LOGS.relative_to(ROOT)}/

  curl -s -X POST {api}/predict -H 'content-type: application/json' \\
       -d '{json.dumps(SAMPLE)}'
  -> {resp.status_code} {resp.text}

  python -m scripts.stream put '{json.dumps(event)}'
  python -m scripts.stream read --ride-id {event["ride_id"]}
  -> {json.dumps(streamed) if streamed else "no prediction within 30 s: see " + str((LOGS / "stream-consumer.log").relative_to(ROOT))}

  stop with: make demo-down   (data is kept in .local/)
""",
        flush=True,
    )
    return 0 if resp.ok and streamed else 1


def down(args: argparse.Namespace | None = None) -> int:
    alive = running()
    if not alive:
        say("nothing of the local platform is running")
    # Reverse dependency order: clients before the servers they use.
    replicas = sorted(name for name in alive if name.startswith("mlflow-server@"))
    for name in ("stream-consumer", "model-api", "moto-streams", BALANCER, *replicas,
                 "mlflow-server", "moto_server", "postgresql"):  # fmt: skip
        if name in alive:
            say(f"stopping {name} (pid {alive[name]})")
            c.stop_pid(alive[name], timeout=30, sig=c.STOP_SIGNALS.get(name, signal.SIGTERM))
    PIDS.unlink(missing_ok=True)
    left = running()
    if left:
        print(f"error: still running: {left}", file=sys.stderr)
        return 1
    return 0


def status(args: argparse.Namespace) -> int:
    alive = running()
    for name in sorted(expected(), key=lambda n: (n not in MARKERS, n)):
        line = f"running, pid {alive[name]}" if name in alive else "stopped"
        if name == "postgresql" and name in alive:  # which server: the system's or the embedded
            argv0 = Path(f"/proc/{alive[name]}/cmdline").read_bytes().split(b"\0")[0].decode()
            line += f": {c.pg_describe(argv0)}"
        print(f"{name:17} {line}")
    return 0 if set(alive) == expected() else 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.local_platform",
        description="Run the MLOps platform on this machine (state and data in .local/).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start everything, train, serve, print a prediction")
    p_up.add_argument("--workers", type=int, default=2, help="MLflow server workers (default 2)")
    p_up.add_argument("--replicas", type=int, default=1, choices=range(1, 5), metavar="1-4",
                      help="MLflow servers; 2 or more run behind HAProxy on the tracking port, "
                      "as trackingReplicas does on the clouds (default 1)")  # fmt: skip
    sub.add_parser("roll", help="replace the replicated tracking servers one at a time, as the "
                   "clouds' rolling updates do (after up --replicas 2)")  # fmt: skip
    sub.add_parser("down", help="stop every process `up` started; keep the data")
    sub.add_parser("status", help="which components are running")
    sub.add_parser("backup", help="dump both databases into the bucket; prints the key")
    sub.add_parser(
        "restore", help="stop the MLflow server, restore a backup, start the server again"
    ).add_argument("backup", help="the key `backup` printed (backups/<time>-<reason>)")
    args = parser.parse_args(argv)
    commands = {"up": up, "down": down, "status": status, "backup": backup, "restore": restore,
                "roll": roll_tracking}  # fmt: skip
    return commands[args.command](args)
