"""CLI: python -m training (--train URI [URI ...] --val URI | --data-prefix URI [--months N])
[--model linear lightgbm] [--margin 0.0]."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import requests

import storage
import tracking_ca
import training
from training.data import DataError
from training.models import MODEL_NAMES, Candidate
from training.months import newest

log = logging.getLogger("training")


class SetupError(Exception):
    """The tracking server cannot be used (unreachable, refuses our credentials, misconfigured)."""


def check_tracking_server(uri: str, timeout: float = 10.0) -> None:
    """Fail fast, with a one-line reason, before any data is read or model trained."""
    if not uri:
        raise SetupError("MLFLOW_TRACKING_URI is not set")
    if not uri.startswith(("http://", "https://")):
        return  # a local store (file path, sqlite) needs no server
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    auth = (user, password) if user and password else None
    url = f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search"
    try:
        resp = requests.get(
            url, params={"max_results": 1}, auth=auth, timeout=timeout, verify=tracking_ca.verify()
        )
    except requests.exceptions.SSLError as exc:
        raise SetupError(
            f"tracking server {uri}: its certificate is not trusted; set "
            f"{tracking_ca.CERT_PATH_ENV} to the platform's CA (trackingCaCert)"
        ) from exc
    except requests.RequestException as exc:
        raise SetupError(
            f"tracking server {uri} is unreachable ({exc.__class__.__name__})"
        ) from exc
    if resp.status_code == 401:
        who = f"user {user!r}" if auth else "no credentials"
        hint = "" if auth else "; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        raise SetupError(f"tracking server {uri} refused {who} (HTTP 401){hint}")
    if resp.status_code == 403:
        raise SetupError(f"tracking server {uri}: user {user!r} may not read experiments (403)")
    if resp.status_code >= 400:
        raise SetupError(f"tracking server {uri} answered HTTP {resp.status_code}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training",
        description="Train NYC taxi trip-duration models on one month of TLC trip records, "
        "validate on another, log and register them in MLflow as "
        f"'{training.REGISTERED_MODEL}', and move the 'champion' alias only to a better model "
        "(otherwise the new version becomes 'challenger'). The tracking server comes from "
        "MLFLOW_TRACKING_URI, credentials from MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD; s3:// data honours AWS_ENDPOINT_URL.",
    )
    p.add_argument(
        "--train",
        nargs="+",
        metavar="URI",
        help="training month(s): local path, s3:// or gs:// URI",
    )
    p.add_argument("--val", metavar="URI", help="validation month: local path, s3:// or gs:// URI")
    p.add_argument(
        "--data-prefix",
        metavar="URI",
        help="instead of --train/--val: a folder or s3:// / gs:// prefix of TLC monthly files "
        "(green_tripdata_YYYY-MM.parquet ...); validate on the newest month, train on the "
        "--months before it",
    )
    p.add_argument(
        "--months",
        type=int,
        default=1,
        help="with --data-prefix: training months before the newest (default: %(default)s)",
    )
    p.add_argument(
        "--colour",
        choices=["green", "yellow"],
        help="with --data-prefix: which fleet's files, when the prefix holds both",
    )
    p.add_argument(
        "--model",
        nargs="+",
        choices=MODEL_NAMES,
        default=list(MODEL_NAMES),
        help="models to train, in order; each gets its own run and registered version "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=0.0,
        help="relative improvement over the champion's val RMSE needed to take the alias, "
        "e.g. 0.01 for 1%% (default: %(default)s)",
    )
    p.add_argument("--model-name", default=training.REGISTERED_MODEL, help="registered model name")
    p.add_argument("--experiment", default="nyc-taxi-duration", help="MLflow experiment name")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not 0 <= args.margin < 1:
        parser().error(f"--margin must be in [0, 1), got {args.margin}")
    if args.data_prefix and (args.train or args.val):
        parser().error("give either --train and --val, or --data-prefix, not both")
    if not args.data_prefix and not (args.train and args.val):
        parser().error("give --train and --val, or --data-prefix")
    if args.months < 1:
        parser().error(f"--months must be at least 1, got {args.months}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # Fail in seconds, not after MLflow's minutes of retries, when the server is down.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")

    from mlflow.exceptions import MlflowException

    from training.train import run

    try:
        tracking_ca.trust()
        check_tracking_server(os.environ.get("MLFLOW_TRACKING_URI", ""))
        train_uris, val_uri = args.train, args.val
        if args.data_prefix:
            window = newest(
                storage.list_files(args.data_prefix), args.months, args.colour, args.data_prefix
            )
            log.info("%s: %s", args.data_prefix, window.describe())
            train_uris, val_uri = window.train, window.val
        results = run(
            train_uris,
            val_uri,
            [Candidate(name) for name in args.model],
            model_name=args.model_name,
            experiment=args.experiment,
            margin=args.margin,
        )
    except (DataError, SetupError, storage.StorageError, tracking_ca.TrustError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MlflowException as exc:
        first = str(exc.message if hasattr(exc, "message") else exc).strip().splitlines()[0]
        print(f"error: MLflow: {first}", file=sys.stderr)
        return 1
    except requests.RequestException as exc:
        print(f"error: tracking server: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    for r in results:
        print(f"{r.model}: val RMSE {r.val_rmse:.4f} -> {args.model_name} v{r.version} @{r.alias}")
    return 0


if __name__ == "__main__":
    code = main()
    if code:
        # Leave without interpreter teardown after a failure: native thread pools (pyarrow) have
        # been seen aborting in it ("terminate called without an active exception"), which would
        # add a second line to the one-line error.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
