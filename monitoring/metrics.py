"""The monitor's decision and figures as metrics, for the stacks' alerts and dashboards.

Each run publishes one point of each metric, with the dimensions Stack (the service stack) and
Model (the registered model):

    degraded       1 when the run decided `degraded`, else 0
    drift          1 when the traffic drifted from the training reference, else 0 (not published
                   when drift was not computed)
    drift_share    the share of columns that drifted
    realised_rmse  the champion's RMSE on the month with actual durations
    rmse_ratio     realised_rmse / the validation RMSE

to CloudWatch (`--metrics cloudwatch`: namespace NAMESPACE, metric names as above in CamelCase)
or Cloud Monitoring (`--metrics cloud-monitoring`: custom metrics under PREFIX, a gauge each, the
dimensions as labels, on the `global` resource of the credentials' project). A publish that fails
fails the run (exit 1): an alert that is silently never raised is worse than a failed job, whose
own alert then fires. The service stacks' alarms name these metrics through this module.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitoring.outcome import Outcome

NAMESPACE = "MLOps/Monitoring"
PREFIX = "custom.googleapis.com/mlops/monitoring/"
DIMENSIONS = ("Stack", "Model")
METRICS = {
    "degraded": "Degraded",
    "drift": "Drift",
    "drift_share": "DriftShare",
    "realised_rmse": "RealisedRmse",
    "rmse_ratio": "RmseRatio",
}
"""Metric -> its CloudWatch name (Cloud Monitoring: PREFIX + the metric)."""
BACKENDS = ("cloudwatch", "cloud-monitoring")


class MetricsError(RuntimeError):
    """The metrics were not published; the message says where and why."""


def figures(outcome: Outcome) -> dict[str, float]:
    """What a run found, as the metrics publish it (only what it computed)."""
    found = {"degraded": float(outcome.decision == "degraded")}
    if outcome.drift is not None:
        found |= {"drift": float(outcome.drift.drifted), "drift_share": outcome.drift.drifted_share}
    if outcome.quality is not None:
        found["realised_rmse"] = outcome.quality.rmse
        if outcome.val_rmse:
            found["rmse_ratio"] = outcome.quality.rmse / outcome.val_rmse
    return found


def dimensions(stack: str, model: str) -> dict[str, str]:
    return dict(zip(DIMENSIONS, (stack, model), strict=True))


def publish(backend: str, found: dict[str, float], dims: dict[str, str]) -> str:
    """Publish the figures; where they went."""
    try:
        if backend == "cloudwatch":
            return _cloudwatch(found, dims)
        if backend == "cloud-monitoring":
            return _cloud_monitoring(found, dims)
    except MetricsError:
        raise
    except Exception as exc:  # any failure to publish is this one's
        raise MetricsError(f"{backend}: {exc.__class__.__name__}: {str(exc)[:300]}") from exc
    raise MetricsError(f"--metrics {backend!r}: allowed: {', '.join(BACKENDS)}")


def _cloudwatch(found: dict[str, float], dims: dict[str, str]) -> str:
    import boto3

    now = dt.datetime.now(dt.UTC)
    data = [
        {"MetricName": METRICS[name], "Value": value, "Timestamp": now,
         "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]}
        for name, value in found.items()
    ]  # fmt: skip
    boto3.client("cloudwatch").put_metric_data(Namespace=NAMESPACE, MetricData=data)
    return f"CloudWatch {NAMESPACE}: {', '.join(METRICS[n] for n in found)}"


def _cloud_monitoring(found: dict[str, float], dims: dict[str, str]) -> str:
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, project = google.auth.default(
        scopes=["https://www.googleapis.com/auth/monitoring.write"]
    )
    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or project
    if not project:
        raise MetricsError("cloud-monitoring: no project (set GOOGLE_CLOUD_PROJECT)")
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    series = [
        {"metric": {"type": PREFIX + name, "labels": {k.lower(): v for k, v in dims.items()}},
         "resource": {"type": "global", "labels": {"project_id": project}},
         "metricKind": "GAUGE", "valueType": "DOUBLE",
         "points": [{"interval": {"endTime": now}, "value": {"doubleValue": value}}]}
        for name, value in found.items()
    ]  # fmt: skip
    answer = AuthorizedSession(credentials).post(
        f"https://monitoring.googleapis.com/v3/projects/{project}/timeSeries",
        json={"timeSeries": series}, timeout=60,
    )  # fmt: skip
    if answer.status_code != 200:
        raise MetricsError(f"cloud-monitoring: HTTP {answer.status_code} {answer.text[:300]}")
    return f"Cloud Monitoring {PREFIX}*: {', '.join(found)}"
