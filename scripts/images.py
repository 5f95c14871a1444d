"""Build the four images and check two of them for real against a throwaway local platform.

    python -m scripts.images [--check] [--stand-in-base]

Builds taxi-model-api, taxi-training, taxi-scoring and taxi-monitoring, each from its target of
the root Dockerfile (GIT_COMMIT from `git rev-parse HEAD`), and prints each one's build time and
size. With --check it then starts a platform on loopback (PostgreSQL, moto, the MLflow server with
auth and HTTPS), runs the training image once as `trainer` (it must register a version and make it
champion) and the model API image as `model-api` on a port of its own (it must become healthy by
Docker's HEALTHCHECK, serve that version and predict), and stops everything. Containers use the
host's network (the platform listens on 127.0.0.1) and get the platform's CA as a read-only file.

For machines with a Docker daemon. --stand-in-base is for one that cannot pull python:3.11-slim
(no Docker Hub): it makes a local image under that tag with debootstrap (Debian bookworm, its
Python 3.11, pip, venv, and this machine's CA certificates), as root.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from services.deploy.images import DOCKERFILE, ROOT, TARGETS

# Each local image's tag and its build target in DOCKERFILE (the same targets the stacks build).
IMAGES = {f"taxi-{name}": target for name, target in TARGETS.items()}
BASE = "python:3.11-slim"


class ImageError(RuntimeError):
    pass


def docker(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=capture, text=True)
    if check and result.returncode != 0:
        tail = (result.stderr or result.stdout or "").strip().splitlines()[-5:]
        raise ImageError(f"docker {' '.join(args[:3])} failed: " + " | ".join(tail))
    return result


def git_commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() if done.returncode == 0 else "unknown"


@dataclass(frozen=True)
class Built:
    tag: str
    seconds: float
    size_mb: float


def build(tag: str, target: str, commit: str) -> Built:
    """One image, with the host's network for its downloads (a daemon without a bridge)."""
    started = time.monotonic()
    docker(
        "build", "--network", "host", "--build-arg", f"GIT_COMMIT={commit}",
        "-f", str(DOCKERFILE), "--target", target, "-t", tag, str(ROOT),
    )  # fmt: skip
    seconds = time.monotonic() - started
    size = int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())
    return Built(tag, seconds, size / 1e6)


def stand_in_base(workdir: Path) -> None:
    """python:3.11-slim made here: Debian bookworm's Python 3.11 where the official image has its
    own (/usr/local/bin/python, pip), trusting this machine's CAs (a TLS-inspecting proxy's)."""
    if shutil.which("debootstrap") is None:
        raise ImageError(
            "--stand-in-base needs debootstrap (apt-get install -y debootstrap), as root"
        )
    rootfs = workdir / "rootfs"
    subprocess.run(
        ["debootstrap", "--variant=minbase",
         "--include=python3,python3-pip,python3-venv,ca-certificates",
         "bookworm", str(rootfs), "http://deb.debian.org/debian"],
        check=True, capture_output=True,
    )  # fmt: skip
    for name in ("python", "python3"):
        (rootfs / "usr/local/bin" / name).symlink_to("/usr/bin/python3")
    pip = rootfs / "usr/local/bin/pip"
    pip.write_text('#!/bin/sh\nexec /usr/bin/python3 -m pip "$@"\n')
    pip.chmod(0o755)
    (rootfs / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink(missing_ok=True)
    for cert in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        shutil.copy(cert, rootfs / "usr/local/share/ca-certificates" / cert.name)
    subprocess.run(
        ["chroot", str(rootfs), "update-ca-certificates"], check=True, capture_output=True
    )
    shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(
        ["docker", "import",
         "--change", "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
         "--change", "ENV LANG=C.UTF-8",
         "--change", "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
         "--change", 'CMD ["python3"]', "-", BASE],
        stdin=tar.stdout, check=True, capture_output=True,
    )  # fmt: skip
    tar.wait()


def container_env(creds, tracking_uri: str) -> list[str]:
    """The tracking server and the workload's own user; the CA as the file mounted at /ca.pem."""
    env = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_TRACKING_USERNAME": creds.username,
        "MLFLOW_TRACKING_PASSWORD": creds.password,
        "MLFLOW_TRACKING_SERVER_CERT_PATH": "/ca.pem",
    }
    return [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]


def check(commit: str) -> list[str]:
    """Run the training and model API images against a throwaway platform; what was seen."""
    import requests

    import local_platform as c
    from training.generate import write_month

    seen = []
    data = Path(tempfile.mkdtemp(prefix="mlops-images-"))
    data.chmod(0o755)
    api = f"mlops-images-api-{int(time.time())}"
    try:
        for month in (1, 2):
            write_month(data / f"green_tripdata_2024-{month:02d}.parquet", 2024, month,
                        rows=20_000, seed=0, colour="green").chmod(0o644)  # fmt: skip
        with c.throwaway_platform() as platform:
            ca = data / "ca.pem"
            shutil.copy(platform.ca_cert, ca)
            ca.chmod(0o644)
            mounts = ["-v", f"{ca}:/ca.pem:ro", "-v", f"{data}:/data:ro"]
            trainer = platform.users["trainer"]
            started = time.monotonic()
            trained = docker(
                "run", "--rm", "--network", "host", *mounts,
                *container_env(trainer, platform.tracking_uri),
                "taxi-training", "--train", "/data/green_tripdata_2024-01.parquet",
                "--val", "/data/green_tripdata_2024-02.parquet", "--model", "lightgbm",
            )  # fmt: skip
            line = next(
                (x for x in (trained.stdout + trained.stderr).splitlines() if "@champion" in x),
                None,
            )
            if line is None:
                raise ImageError(
                    "the training image registered no champion: " + trained.stderr[-500:]
                )
            seen.append(f"training image: {line.strip()} ({time.monotonic() - started:.0f} s)")
            version = re.search(r" v(\d+) @champion", line).group(1)
            run = _the_run(platform, version)
            seen.append(f"training image: run tagged git_commit={run['git_commit']}")
            if run["git_commit"] != commit:
                raise ImageError(f"the run's git_commit is {run['git_commit']}, not {commit}")

            port = c.free_port()  # not 8000: the HEALTHCHECK must follow UVICORN_PORT
            docker(
                "run", "-d", "--name", api, "--network", "host", "-v", f"{ca}:/ca.pem:ro",
                *container_env(platform.users["model-api"], platform.tracking_uri),
                "-e", f"UVICORN_PORT={port}", "-e", "MODEL_API_RETRY_SECONDS=1",
                "--health-interval", "2s", "--health-start-period", "5s", "taxi-model-api",
            )  # fmt: skip
            deadline, health = time.monotonic() + 180, ""
            while time.monotonic() < deadline:
                health = docker("inspect", "--format", "{{.State.Health.Status}}", api).stdout
                if health.strip() == "healthy":
                    break
                time.sleep(1)
            else:
                raise ImageError(f"the API container is {health.strip()!r} after 180 s")
            url = f"http://127.0.0.1:{port}"
            ready = _wait_ready(f"{url}/ready", 120)
            if ready["model_version"] != version:
                raise ImageError(f"the API serves v{ready['model_version']}, not v{version}")
            answer = requests.post(
                f"{url}/predict", json={"PULocationID": 43, "DOLocationID": 151, "trip_distance": 1.8},
                timeout=10,
            ).json()  # fmt: skip
            seen.append(f"model API image on port {port}: healthy, serves v{version} as model-api: "
                        f"{json.dumps(answer)}")  # fmt: skip
            for who, text in (("training", trained.stdout + trained.stderr),
                              ("API", docker("logs", api).stderr)):  # fmt: skip
                if "git executable" in text.lower() or "gitpython" in text.lower():
                    raise ImageError(f"GitPython's missing-git warning is in the {who} output")
            seen.append("no GitPython warning in the training or API output")
    finally:
        docker("rm", "-f", api, check=False)
        shutil.rmtree(data, ignore_errors=True)
    return seen


def _wait_ready(url: str, timeout: float) -> dict:
    import requests

    deadline, body = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        try:
            body = requests.get(url, timeout=5).json()
            if body.get("status") == "ready":
                return body
        except requests.RequestException:
            pass
        time.sleep(1)
    raise ImageError(f"{url} not ready after {timeout:.0f} s: {body}")


def _the_run(platform, version: str) -> dict:
    from mlflow import MlflowClient

    from infra.vm_launcher import environ

    with environ(platform.admin.env(platform.tracking_uri)):
        client = MlflowClient(platform.tracking_uri)
        run_id = client.get_model_version("nyc-taxi-duration", version).run_id
        return dict(client.get_run(run_id).data.tags)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.images", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--check", action="store_true", help="run training and the API against a local platform"
    )
    parser.add_argument(
        "--stand-in-base", action="store_true", help=f"make {BASE} locally first (debootstrap)"
    )
    args = parser.parse_args(argv)
    if shutil.which("docker") is None:
        print("error: no docker command; this script needs a Docker daemon", file=sys.stderr)
        return 2
    try:
        if args.stand_in_base:
            with tempfile.TemporaryDirectory() as work:
                stand_in_base(Path(work))
        commit = git_commit()
        for tag, target in IMAGES.items():
            built = build(tag, target, commit)
            print(
                f"{built.tag:16} {built.size_mb:7.0f} MB  built in {built.seconds:5.0f} s",
                flush=True,
            )
        if args.check:
            for line in check(commit):
                print(line, flush=True)
    except (ImageError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
