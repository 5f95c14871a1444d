"""Run the model API: `python -m services.model_api.serve` (the image's command).

Each worker process listens on its own SO_REUSEPORT socket, and the kernel spreads new connections
over them by hashing their addresses. `uvicorn --workers` shares one listening socket instead, and
a burst of new connections then lands mostly on one worker, which leaves the other cores idle
(docs/benchmarks.md).

Settings, from the environment under uvicorn's own names: UVICORN_HOST (default 127.0.0.1),
UVICORN_PORT (8000), UVICORN_WORKERS (1). It refuses to start where anything already listens, and
empties PROMETHEUS_MULTIPROC_DIR first. Access logs are off (metrics count requests). A worker
that dies stops the server with exit code 1, so the container's restart policy brings it back
whole; SIGTERM or SIGINT stop every worker gracefully.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Mapping
from multiprocessing.connection import wait
from pathlib import Path

import uvicorn

import tracking_ca

APP = "services.model_api.main:app"
log = logging.getLogger("services.model_api.serve")


class ServeError(Exception):
    pass


def settings(environ: Mapping[str, str]) -> tuple[str, int, int]:
    def number(key: str, default: str, low: int, high: int) -> int:
        raw = environ.get(key, default)
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise ServeError(f"{key}={raw!r}: must be an integer from {low} to {high}")
        return int(raw)

    host = environ.get("UVICORN_HOST", "127.0.0.1")
    return host, number("UVICORN_PORT", "8000", 1, 65535), number("UVICORN_WORKERS", "1", 1, 64)


def check_api_settings() -> None:
    """The API's MODEL_API_* settings, checked once here: a bad one is a one-line error naming the
    variable, not a traceback from every worker."""
    from pydantic import ValidationError

    from services.model_api.settings import Settings

    try:
        Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        name = f"MODEL_API_{str(err['loc'][0]).upper()}"
        raise ServeError(
            f"{name}={os.environ.get(name, '')!r}: {err['msg'].removeprefix('Value error, ')}"
        ) from None


def listen_socket(host: str, port: int, share: bool = True) -> socket.socket:
    """A socket bound to host:port; `share` (SO_REUSEPORT) lets this server's workers each bind
    one. Without it the bind fails where anything already listens, another server included."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if share:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = (
            "another server already listens there"
            if exc.errno == errno.EADDRINUSE
            else exc.strerror
        )
        raise ServeError(f"cannot listen on {host}:{port}: {why}") from exc
    return sock


def fresh_metrics_dir(environ: Mapping[str, str]) -> None:
    """prometheus_client's multiprocess files outlive their processes: a restart would carry
    the old counters on (and the old workers' pids). Emptied before any worker starts."""
    path = environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise ServeError(f"PROMETHEUS_MULTIPROC_DIR={path!r}: not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def worker(host: str, port: int, app: str = APP) -> None:
    sock = listen_socket(host, port)
    uvicorn.Server(uvicorn.Config(app, access_log=False)).run(sockets=[sock])


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m services.model_api.serve", description=(
        "Serve the model API: UVICORN_HOST, UVICORN_PORT, UVICORN_WORKERS; a listening socket "
        "per worker."))  # fmt: skip
    parser.add_argument(
        "--app", default=APP, help="the ASGI app (default: %(default)s; `make benchmark` serves "
        "its bare endpoint, scripts.bare_app:app, the same way)",
    )  # fmt: skip
    app = parser.parse_args(argv).app
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        host, port, workers = settings(os.environ)
        check_api_settings()
        tracking_ca.trust()  # before the workers start: they inherit the environment
        # Fail here, once, if anything listens there: with SO_REUSEPORT a second server would
        # start beside it and the kernel split the traffic between two models.
        listen_socket(host, port, share=False).close()
        fresh_metrics_dir(os.environ)
    except (ServeError, tracking_ca.TrustError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if workers == 1:
        worker(host, port, app)
        return 0
    spawn = multiprocessing.get_context("spawn")
    # Daemonic: should this process die unexpectedly, multiprocessing ends the workers with it.
    procs = [
        spawn.Process(
            target=worker, args=(host, port, app), name=f"model-api-worker-{n}", daemon=True
        )
        for n in range(workers)
    ]
    stopping = False

    def stop(signum=None, frame=None) -> None:
        nonlocal stopping
        stopping = stopping or signum is not None
        for proc in procs:
            if proc.exitcode is None and proc.pid:
                os.kill(proc.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for proc in procs:
        proc.start()
    if stopping:  # a signal came while starting
        stop(signal.SIGTERM)
    log.info("%d workers on %s:%d, one SO_REUSEPORT socket each", workers, host, port)
    by_sentinel = {proc.sentinel: proc for proc in procs}
    first = by_sentinel[wait(list(by_sentinel))[0]]  # the first worker to end
    if not stopping:
        first.join()  # its sentinel fires at exit, a moment before its exit code is known
        log.error("worker %s exited with code %s; stopping the others", first.pid, first.exitcode)
        stop()
    for proc in procs:
        proc.join(timeout=30)
        if proc.exitcode is None:
            proc.kill()
            proc.join()
    return 0 if stopping else 1


if __name__ == "__main__":
    sys.exit(main())
