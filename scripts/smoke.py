"""Post-deploy smoke test of a running platform: exit 0 when every check passes, 1 otherwise.

    python -m scripts.smoke dev           # a deployed stack (reads both projects' outputs)
    python -m scripts.smoke --local       # the local platform of `make demo`
    python -m scripts.smoke --tracking-uri URI --model-api-url URL   # credentials and CA from MLFLOW_TRACKING_*

First it waits (up to --wait seconds) until the model API serves a model: that proves the API
reached the registry and loaded a version through the tracking server. For a deployed stack it
also reads the tracking VM's serial console meanwhile: a bootstrap that failed (the line
`MLFLOW BOOTSTRAP FAILED at step ...` of the fetcher or infra/vm_bootstrap.sh) fails the smoke test at once,
with that line. Then, where the tracking
server is reachable from here: anonymous requests are refused; a run is logged with the tracking
credentials; an artifact is uploaded and read back through the server's proxy; the registered
model has a champion, the version the API serves. A runner outside the stack's allowedCidrs (a
GitHub-hosted one) cannot reach the tracking server: it says so and checks through the API only.
Then the API predicts. Last, where the stack streams (docs/streaming.md), a ride event is put on
the input stream or topic and its prediction read from the output, from the version the API
serves.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
RIDE = {"PULocationID": 43, "DOLocationID": 151, "trip_distance": 1.8}
VERDICT = re.compile(r"MLFLOW BOOTSTRAP (DONE|FAILED[^\r\n]*)")
COMPUTE_API = "https://compute.googleapis.com/compute/v1"
CONSOLE_EVERY = 15.0


class SmokeFailure(Exception):
    pass


def outputs(project_dir: Path, stack: str) -> dict:
    result = subprocess.run(
        [
            "pulumi",
            "stack",
            "output",
            "--json",
            "--show-secrets",
            "--stack",
            stack,
            "--cwd",
            str(project_dir),
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SmokeFailure(
            f"pulumi stack output ({project_dir.name}/{stack}): {result.stderr.strip()[-300:]}"
        )
    return json.loads(result.stdout)


def target(args) -> tuple[str, str, str, dict[str, str], str | None, dict | None]:
    """(tracking URI, model API URL, registered model, credentials env, tracking VM or None,
    where ride events stream or None)."""
    if args.local:
        endpoints = json.loads((ROOT / ".local/endpoints.json").read_text())
        env = dict(line.split("=", 1) for line in (ROOT / ".local/mlflow.env").read_text().split())
        stream = None
        if "rideEventsStream" in endpoints:
            aws = dict(line.split("=", 1) for line in (ROOT / ".local/s3.env").read_text().split())
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
                os.environ.setdefault(key, aws[key])
            stream = {"events": endpoints["rideEventsStream"],
                      "predictions": endpoints["ridePredictionsStream"],
                      "endpoint": endpoints["streamsEndpointUrl"]}  # fmt: skip
        return (
            endpoints["trackingUri"], endpoints["modelApiUrl"], endpoints["registeredModel"], env,
            None, stream,
        )  # fmt: skip
    if args.stack:
        platform, services = outputs(ROOT, args.stack), outputs(ROOT / "services", args.stack)
        env = {
            "MLFLOW_TRACKING_USERNAME": platform["adminUsername"],
            "MLFLOW_TRACKING_PASSWORD": platform["adminPassword"],
        }
        if platform["trackingCaCert"]:  # the platform's own CA (public); empty with a domain
            ca = Path(tempfile.mkdtemp()) / "tracking-ca.pem"
            ca.write_text(platform["trackingCaCert"])
            env["MLFLOW_TRACKING_SERVER_CERT_PATH"] = str(ca)
        vm = platform.get("trackingInstance")
        stream = None
        if "rideEventsStream" in services:
            stream = {"events": services["rideEventsStream"],
                      "predictions": services["ridePredictionsStream"], "endpoint": None}  # fmt: skip
        elif "rideEventsTopic" in services:
            stream = {"topic": services["rideEventsTopic"],
                      "subscription": services["ridePredictionsSubscription"]}  # fmt: skip
        return platform["trackingUri"], services["modelApiUrl"], args.model, env, vm, stream
    if not (args.tracking_uri and args.model_api_url):
        raise SmokeFailure("give a STACK, --local, or --tracking-uri and --model-api-url")
    names = (
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_SERVER_CERT_PATH",
    )
    env = {k: os.environ[k] for k in names if k in os.environ}
    return args.tracking_uri, args.model_api_url, args.model, env, None, None


def kinesis_round_trip(stream: dict, event: dict, wait: float) -> dict:
    """Put `event` on the input stream; its prediction from the output stream (from now on)."""
    import boto3

    from streaming import kinesis

    client = boto3.client("kinesis", endpoint_url=stream["endpoint"])
    prediction, _ = kinesis.round_trip(
        client, stream["events"], stream["predictions"], event, wait, poll_seconds=0.5
    )
    if prediction is None:
        raise SmokeFailure(
            f"no prediction for {event['ride_id']} on {stream['predictions']} within {wait:.0f}s"
        )
    return prediction


def pubsub_round_trip(stream: dict, event: dict, wait: float) -> dict:
    """Publish `event` to the events topic; its prediction from the predictions subscription
    (only that message is acknowledged: the subscription's other readers keep theirs)."""
    from streaming.pubsub import Topic

    topic = Topic(stream["topic"])
    topic.publish([{"data": base64.b64encode(json.dumps(event).encode()).decode()}])
    url = topic.url.rsplit("/v1/", 1)[0] + f"/v1/{stream['subscription']}"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        answer = topic.session.post(f"{url}:pull", json={"maxMessages": 100}, timeout=30)
        for received in answer.json().get("receivedMessages", []):
            prediction = json.loads(base64.b64decode(received["message"]["data"]))
            if prediction.get("ride_id") == event["ride_id"]:
                topic.session.post(f"{url}:acknowledge", json={"ackIds": [received["ackId"]]},
                                   timeout=30)  # fmt: skip
                return prediction
        time.sleep(1)
    raise SmokeFailure(f"no prediction for {event['ride_id']} on {stream['subscription']} "
                       f"within {wait:.0f}s")  # fmt: skip


def bootstrap_verdict(console: str) -> str | None:
    """The last verdict infra/vm_bootstrap.sh wrote to the VM's serial console, if any."""
    found = VERDICT.findall(console)
    return f"MLFLOW BOOTSTRAP {found[-1]}" if found else None


def vm_says(instance: str) -> str:
    """The tracking VM's bootstrap verdict from its console, or why there is none (diagnostics:
    the model API's /ready stays the check)."""
    if ":autoScalingGroup:" in instance or "/instanceGroupManagers/" in instance:
        return (
            "replicated servers (trackingReplicas): no one console; the load balancers check them"
        )
    try:
        return bootstrap_verdict(read_console(instance)) or "no bootstrap verdict on its console"
    except Exception as exc:
        return f"its console is not readable from here ({exc.__class__.__name__})"


def read_console(instance: str) -> str:
    """The tracking VM's serial console: an EC2 instance ARN or a GCE instance path (the
    platform's trackingInstance output). Needs ec2:GetConsoleOutput or
    compute.instances.getSerialPortOutput, which the deploy identities have."""
    if instance.startswith("arn:aws:ec2:"):
        import boto3
        from botocore.exceptions import ClientError

        ec2 = boto3.client("ec2", region_name=instance.split(":")[3])
        instance_id = instance.rsplit("/", 1)[-1]
        try:  # the newest output; Nitro instances only
            return ec2.get_console_output(InstanceId=instance_id, Latest=True).get("Output", "")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "UnsupportedOperation":
                raise
            return ec2.get_console_output(InstanceId=instance_id).get("Output", "")
    if instance.startswith("projects/"):
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/compute.readonly"]
        )
        response = AuthorizedSession(credentials).get(
            f"{COMPUTE_API}/{instance}/serialPort", params={"port": 1}, timeout=30
        )
        if response.status_code >= 400:
            raise SmokeFailure(f"serial port output: HTTP {response.status_code}")
        return response.json().get("contents", "")
    raise SmokeFailure(f"trackingInstance is not an EC2 ARN or a GCE instance path: {instance!r}")


def check(name: str, fn) -> None:
    try:
        detail = fn()
    except SmokeFailure as exc:
        raise SmokeFailure(f"{name}: {exc}") from None
    except Exception as exc:  # any failure of a step is that step's failure
        raise SmokeFailure(f"{name}: {exc.__class__.__name__}: {str(exc).strip()[:300]}") from exc
    print(f"ok   {name}{': ' + detail if detail else ''}", flush=True)


def run(
    tracking_uri: str,
    api_url: str,
    model_name: str,
    env: dict[str, str],
    instance: str | None,
    stream: dict | None = None,
    wait: float = 600,
) -> None:
    os.environ.update(env)
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    verify = env.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True  # the platform's CA
    state: dict = {}

    def anonymous_refused():
        url = f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/experiments/search"
        status = requests.get(url, params={"max_results": 1}, timeout=15, verify=verify).status_code
        if status != 401:
            raise SmokeFailure(f"anonymous request answered {status}, expected 401")
        return "401 without credentials"

    def log_run():
        mlflow.set_experiment("smoke-test")
        with mlflow.start_run(run_name=f"smoke-{uuid.uuid4().hex[:8]}") as active:
            mlflow.log_param("check", "smoke")
            mlflow.log_metric("ok", 1.0)
            state["content"] = f"smoke {uuid.uuid4()}"
            mlflow.log_text(state["content"], "smoke/check.txt")
        state["run_id"] = active.info.run_id
        return active.info.run_id

    def artifact_round_trip():
        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(
                run_id=state["run_id"], artifact_path="smoke/check.txt", dst_path=tmp
            )
            if Path(path).read_text() != state["content"]:
                raise SmokeFailure("artifact read back differs from what was written")
        return "written and read back through the server"

    def champion():
        version = client.get_model_version_by_alias(model_name, "champion")
        state["version"] = str(version.version)
        return f"{model_name} v{version.version}"

    def api_ready():
        deadline = time.monotonic() + wait
        console_at = time.monotonic()
        while True:
            try:
                ready = requests.get(f"{api_url.rstrip('/')}/ready", timeout=15)
                body = ready.json()
            except (requests.RequestException, ValueError) as exc:
                ready, body = None, {"reason": exc.__class__.__name__}
            if ready is not None and ready.status_code == 200:
                state["served"] = str(body.get("model_version"))
                return f"v{state['served']}, loaded from the registry through the tracking server"
            status = ready.status_code if ready is not None else "no answer"
            if instance and time.monotonic() >= console_at:  # a failed bootstrap fails at once
                console_at = time.monotonic() + CONSOLE_EVERY
                verdict = vm_says(instance)
                if verdict.startswith("MLFLOW BOOTSTRAP FAILED"):
                    raise SmokeFailure(f"/ready: {status} {body}; the tracking VM says: {verdict}")
            if time.monotonic() > deadline:
                vm = f"; the tracking VM: {vm_says(instance)}" if instance else ""
                raise SmokeFailure(f"/ready after {wait:.0f}s: {status} {body}{vm}")
            time.sleep(2)

    def tracking_reachable() -> bool:
        try:
            return requests.get(f"{tracking_uri.rstrip('/')}/health", timeout=10, verify=verify).ok
        except requests.exceptions.SSLError as exc:  # reached, but not the server we trust
            raise SmokeFailure(f"tracking server {tracking_uri}: TLS verification failed") from exc
        except requests.RequestException:
            return False

    def champion_is_served():
        if state["version"] != state["served"]:
            raise SmokeFailure(
                f"the API serves v{state['served']}, the champion is v{state['version']}"
            )
        return f"v{state['served']}"

    def predicts():
        prediction = requests.post(f"{api_url.rstrip('/')}/predict", json=RIDE, timeout=15)
        body = prediction.json()
        if (
            prediction.status_code != 200
            or body.get("model_version") != state["served"]
            or not body.get("duration", 0) > 0
        ):
            raise SmokeFailure(f"/predict: {prediction.status_code} {body}")
        return f"{body['duration']:.2f} min from v{body['model_version']}"

    check("model API serves a model", api_ready)
    if tracking_reachable():
        check("tracking server refuses anonymous requests", anonymous_refused)
        check("run logged with the tracking credentials", log_run)
        check("artifact round trip through the proxy", artifact_round_trip)
        check("registered model has a champion", champion)
        check("the API serves the champion", champion_is_served)
    else:
        print(
            f"skip tracking server checks: {tracking_uri} is not reachable from here (outside "
            "the stack's allowedCidrs?); the API reached it, above",
            flush=True,
        )
    check("model API predicts", predicts)

    def streams():
        event = {"ride_id": f"smoke-{uuid.uuid4().hex[:8]}", "ride": RIDE}
        round_trip = kinesis_round_trip if "events" in stream else pubsub_round_trip
        # A first batch may start a function or an instance, which loads the model first.
        prediction = round_trip(stream, event, min(wait, 300))
        if prediction.get("model_version") != state["served"] or not prediction["duration"] > 0:
            raise SmokeFailure(f"{event['ride_id']}: {prediction}")
        return f"{prediction['duration']:.2f} min from v{prediction['model_version']}"

    if stream:
        check("a ride event streams in and its prediction out", streams)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/smoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", nargs="?", help="deployed stack (dev, staging, prod)")
    parser.add_argument("--local", action="store_true", help="the platform `make demo` runs")
    parser.add_argument("--tracking-uri")
    parser.add_argument("--model-api-url")
    parser.add_argument("--model", default="nyc-taxi-duration", help="registered model name")
    parser.add_argument(
        "--wait", type=float, default=600, help="seconds the API may take to serve a model (600)"
    )
    args = parser.parse_args(argv)
    try:
        run(*target(args), wait=args.wait)
    except SmokeFailure as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
