"""CLI: python -m monitoring [--prediction-log URI [--days N | --since D --until D]]
[--actuals URI [--month M]] [--retrain ...] [--metrics cloudwatch|cloud-monitoring --metrics-stack S]."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shlex
import sys

import requests

import storage
import tracking_ca
from monitoring import EXPERIMENT, metrics
from monitoring.data import MonitoringError
from monitoring.job import Settings, monitor
from monitoring.retrain import CloudRunJob, Command, EcsTask
from trip_model.tlc import MONTH, InputError, MonthError, month_of


class UsageError(Exception):
    """A setting the monitor cannot use; the message names it."""


log = logging.getLogger("monitoring")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m monitoring",
        description="Check the served model: drift of the model API's recent traffic (its "
        "prediction log) from the champion's training reference, and its realised RMSE on a TLC "
        "month with actual durations against its validation RMSE. Decides ok, drift or degraded, "
        f"logs one MLflow run in experiment '{EXPERIMENT}' (metrics, report.html), prints one "
        "line, and on degraded starts the training job. Exits non-zero only when it cannot run. "
        "The registry comes from MLFLOW_TRACKING_URI and MLFLOW_TRACKING_USERNAME/PASSWORD.",
    )
    p.add_argument("--prediction-log", metavar="URI", help="the API's prediction log prefix")
    period = p.add_mutually_exclusive_group()
    period.add_argument(
        "--days", type=int, default=7, help="logged traffic of the last N UTC days (default: 7)"
    )
    period.add_argument("--since", type=dt.date.fromisoformat, help="first day, YYYY-MM-DD")
    p.add_argument("--until", type=dt.date.fromisoformat, help="last day (with --since; today)")
    p.add_argument("--actuals", metavar="URI", help="a TLC month with actual durations ({month})")
    p.add_argument("--month", help="for {month} in --actuals: YYYY-MM, or -2 for two months back")
    p.add_argument("--model-name", default="nyc-taxi-duration", help="registered model name")
    p.add_argument("--alias", default="champion", help="the alias the API serves")
    p.add_argument("--drift-threshold", type=float, default=0.1,
                   help="per-column distance at which a column drifts (default: %(default)s)")  # fmt: skip
    p.add_argument("--drift-share", type=float, default=0.5,
                   help="share of drifted columns that makes drift (default: %(default)s)")  # fmt: skip
    p.add_argument("--max-rmse-increase", type=float, default=0.1,
                   help="degraded above validation RMSE x (1 + this) (default: %(default)s)")  # fmt: skip
    p.add_argument(
        "--retrain",
        choices=["none", "command", "ecs", "cloud-run"],
        default="none",
        help="what starts training on degraded (default: none)",
    )
    p.add_argument("--retrain-command", help="with --retrain command: the command line to run")
    p.add_argument("--ecs-cluster", help="with --retrain ecs")
    p.add_argument("--ecs-task-definition", help="with --retrain ecs")
    p.add_argument("--ecs-subnets", help="with --retrain ecs: comma-separated")
    p.add_argument("--ecs-security-groups", help="with --retrain ecs: comma-separated")
    p.add_argument(
        "--cloud-run-job", help="with --retrain cloud-run: projects/P/locations/L/jobs/J"
    )
    p.add_argument("--metrics", choices=metrics.BACKENDS,
                   help="publish the decision and figures as metrics (monitoring/metrics.py)")  # fmt: skip
    p.add_argument("--metrics-stack", help="with --metrics: the Stack dimension (the stack's name)")
    return p


def settings_of(args, today: dt.date | None = None) -> Settings:
    today = today or dt.datetime.now(dt.UTC).date()
    if args.until and not args.since:
        raise UsageError("--until needs --since")
    since = args.since or today - dt.timedelta(days=args.days - 1)
    until = args.until or today
    if args.days < 1 or since > until:
        raise UsageError(f"the period {since}..{until} is empty (--days at least 1)")
    actuals = args.actuals
    if actuals and MONTH in actuals:
        if args.month is None:
            raise UsageError(f"--actuals holds {MONTH}: give --month (YYYY-MM or e.g. -2)")
        try:
            actuals = actuals.replace(MONTH, month_of(args.month, today))
        except MonthError as exc:
            raise UsageError(str(exc)) from None
    elif args.month is not None:
        raise UsageError(f"--month given but --actuals does not hold {MONTH}")
    for name, value, low, high in (
        ("--drift-threshold", args.drift_threshold, 0, 1),
        ("--drift-share", args.drift_share, 0, 1),
        ("--max-rmse-increase", args.max_rmse_increase, 0, 10),
    ):
        if not low < value <= high:
            raise UsageError(f"{name}: must be in ({low}, {high}], got {value}")
    return Settings(
        model_name=args.model_name,
        alias=args.alias,
        prediction_log=args.prediction_log,
        since=since,
        until=until,
        actuals=actuals,
        drift_threshold=args.drift_threshold,
        drift_share=args.drift_share,
        max_rmse_increase=args.max_rmse_increase,
    )


def trigger_of(args):
    """The training job to start on degraded, or None."""

    def need(*names: str) -> list[str]:
        values = [getattr(args, n.replace("-", "_")) for n in names]
        missing = [f"--{n}" for n, v in zip(names, values, strict=True) if not v]
        if missing:
            raise UsageError(f"--retrain {args.retrain} needs {', '.join(missing)}")
        return values

    if args.retrain == "command":
        [command] = need("retrain-command")
        return Command(shlex.split(command))
    if args.retrain == "ecs":
        cluster, task, subnets, groups = need(
            "ecs-cluster", "ecs-task-definition", "ecs-subnets", "ecs-security-groups"
        )
        return EcsTask(cluster, task, subnets.split(","), groups.split(","))
    if args.retrain == "cloud-run":
        [job] = need("cloud-run-job")
        return CloudRunJob(job)
    return None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    from mlflow.exceptions import MlflowException

    try:
        settings = settings_of(args)
        if not (settings.prediction_log or settings.actuals):
            raise UsageError("give --prediction-log and/or --actuals: nothing to monitor")
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            raise UsageError("MLFLOW_TRACKING_URI is not set")
        if args.metrics and not args.metrics_stack:
            raise UsageError("--metrics needs --metrics-stack (the alarms' Stack dimension)")
        tracking_ca.trust()
        trigger = trigger_of(args)
        outcome = monitor(settings, trigger.start if trigger else None)
    except (UsageError, InputError, tracking_ca.TrustError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (MonitoringError, storage.StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except MlflowException as exc:
        first = (str(exc.message).strip().splitlines() or ["error"])[0]
        print(f"error: MLflow: {first[:300]}", file=sys.stderr)
        return 1
    except requests.RequestException as exc:  # the registry unreachable, after MLflow's retries
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        print(f"error: {uri}: {exc.__class__.__name__}: {str(exc).splitlines()[0][:300]}",
              file=sys.stderr)  # fmt: skip
        return 1
    print(outcome.summary(settings))
    if args.metrics:
        try:
            where = metrics.publish(
                args.metrics, metrics.figures(outcome),
                metrics.dimensions(args.metrics_stack, settings.model_name),
            )  # fmt: skip
        except metrics.MetricsError as exc:
            print(f"error: metrics not published: {exc}", file=sys.stderr)
            return 1
        print(f"metrics: {where}")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    if code:
        os._exit(code)  # as training does: no interpreter teardown after a failure
    sys.exit(code)
