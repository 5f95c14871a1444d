"""CLI: python -m scoring --input URI [URI ...] --output URI [--model-version V] [--shard I/N]."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys

import storage
import tracking_ca
from scoring import REGISTERED_MODEL
from scoring.job import BATCH_ROWS, run
from trip_model.tlc import MONTH, InputError, MonthError, describe, month_of

log = logging.getLogger("scoring")
# The task index each engine gives an array job's tasks.
INDEX_VARIABLES = ("AWS_BATCH_JOB_ARRAY_INDEX", "CLOUD_RUN_TASK_INDEX")


class UsageError(Exception):
    """A setting the job cannot use; the message names it."""


class RegistryError(Exception):
    """The model cannot be resolved or loaded from the registry."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m scoring",
        description="Predict the duration of every ride in NYC TLC trip files (parquet, green or "
        f"yellow) with the '{REGISTERED_MODEL}' model's champion (or a pinned version), and write "
        "one parquet file per shard: PREFIX/part-SHARD-of-SHARDS.parquet with the ride's source "
        "file and row, key columns, predicted_duration, model_version, and a reason where the ride "
        "cannot be scored. The registry comes from MLFLOW_TRACKING_URI (credentials from "
        "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD); s3:// honours AWS_ENDPOINT_URL.",
    )
    p.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="URI",
        help="TLC parquet files: local paths, s3:// or gs:// URIs; '{month}' is replaced by --month",
    )
    p.add_argument(
        "--output",
        required=True,
        metavar="URI",
        help="folder or object prefix for the part files (local, s3:// or gs://; may hold {month})",
    )
    p.add_argument("--model-name", default=REGISTERED_MODEL, help="registered model name")
    p.add_argument("--alias", default="champion", help="registry alias to score with")
    p.add_argument("--model-version", help="score with this version instead of the alias")
    shard = p.add_mutually_exclusive_group()
    shard.add_argument(
        "--shard", metavar="I/N", help="score shard I (0-based) of N; default: the whole input"
    )
    shard.add_argument(
        "--shards",
        type=int,
        metavar="N",
        help="N shards, this task's index from AWS_BATCH_JOB_ARRAY_INDEX or CLOUD_RUN_TASK_INDEX "
        "(default on Cloud Run: CLOUD_RUN_TASK_COUNT)",
    )
    p.add_argument(
        "--month",
        help="the month for {month} in --input/--output: YYYY-MM, or 0, -1, -2 ... for the "
        "current UTC month, the one before, ...",
    )
    p.add_argument(
        "--batch-rows",
        type=int,
        default=BATCH_ROWS,
        help="rows read, scored and written at a time; bounds memory (default: %(default)s)",
    )
    return p


def with_month(uris: list[str], output: str, month: str | None) -> tuple[list[str], str]:
    templated = any(MONTH in u for u in [*uris, output])
    if templated and month is None:
        raise UsageError(f"--input/--output contain {MONTH}: give --month (YYYY-MM or e.g. -2)")
    if not templated and month is not None:
        raise UsageError(f"--month given but neither --input nor --output contains {MONTH}")
    if month is None:
        return uris, output
    try:
        value = month_of(month)
    except MonthError as exc:
        raise UsageError(str(exc)) from None
    return [u.replace(MONTH, value) for u in uris], output.replace(MONTH, value)


def shard_of(args, env: dict[str, str]) -> tuple[int, int]:
    """(shard, shards) from --shard I/N, or --shards N and the engine's task index."""
    if args.shard:
        match = re.fullmatch(r"(\d+)/(\d+)", args.shard)
        if not match or not 0 <= int(match[1]) < int(match[2]):
            raise UsageError(f"--shard: {args.shard!r} must be I/N with 0 <= I < N, e.g. 0/4")
        return int(match[1]), int(match[2])
    shards = args.shards
    if shards is None:
        shards = int(env.get("CLOUD_RUN_TASK_COUNT", "1"))
    if shards < 1:
        raise UsageError(f"--shards: must be at least 1, got {shards}")
    if "CLOUD_RUN_TASK_COUNT" in env and int(env["CLOUD_RUN_TASK_COUNT"]) != shards:
        raise UsageError(
            f"--shards {shards} but this Cloud Run execution has "
            f"CLOUD_RUN_TASK_COUNT={env['CLOUD_RUN_TASK_COUNT']} tasks"
        )
    index = next((env[v] for v in INDEX_VARIABLES if v in env), None)
    if index is None:
        if shards > 1:
            raise UsageError(
                f"--shards {shards}: no task index; run as an array job (AWS Batch, Cloud Run) "
                "or give --shard I/N"
            )
        return 0, 1
    if not index.isdigit() or int(index) >= shards:
        raise UsageError(f"task index {index!r} is not in 0..{shards - 1} (--shards {shards})")
    return int(index), shards


def load_scorer(name: str, alias: str, version: str | None):
    """Resolve the version (pinned, or where the alias points now), load it, pick the path."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from trip_model.predict import choose

    client = MlflowClient()
    try:
        if version:
            client.get_model_version(name, version)
        else:
            version = str(client.get_model_version_by_alias(name, alias).version)
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    except MlflowException as exc:
        what = f"{name} v{version}" if version else f"{name}@{alias}"
        first = (str(exc.message).strip().splitlines() or ["error"])[0]
        raise RegistryError(f"{what}: {first[:300]}") from exc
    except Exception as exc:  # connection errors surface as requests/urllib3 types
        uri = os.environ.get("MLFLOW_TRACKING_URI", "(MLFLOW_TRACKING_URI not set)")
        raise RegistryError(
            f"registry at {uri}: {exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}"
        ) from exc
    return choose(model, str(version))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # Fail in seconds, not after MLflow's minutes of retries, when the registry is down.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    try:
        if args.batch_rows < 1:
            raise UsageError(f"--batch-rows: must be at least 1, got {args.batch_rows}")
        inputs, output = with_month(args.input, args.output, args.month)
        shard, shards = shard_of(args, dict(os.environ))
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            raise UsageError("MLFLOW_TRACKING_URI is not set")
        tracking_ca.trust()
        sources = [describe(uri) for uri in inputs]  # a missing input fails before the model loads
        scorer = load_scorer(args.model_name, args.alias, args.model_version)
        summary = run(sources, output, scorer, shard, shards, args.batch_rows)
    except (UsageError, InputError, tracking_ca.TrustError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (RegistryError, storage.StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary.line(scorer))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    if code:
        # As training does: no interpreter teardown after a failure, where native thread pools
        # (pyarrow) have been seen aborting and adding a second line to the one-line error.
        os._exit(code)
    sys.exit(code)
