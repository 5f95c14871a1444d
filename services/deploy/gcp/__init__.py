"""The service stack on GCP, one component per piece, each module saying what it creates:

    identities  a service account per workload and for Cloud Scheduler; password grants
    images      an Artifact Registry repository and the images built and pushed
    model_api   the model API: a Cloud Run service with Direct VPC egress
    jobs        training, monitoring and scoring: Cloud Run jobs on Cloud Scheduler crons
    streaming   streaming predictions: Pub/Sub topics, a push subscription, a Cloud Run service
    alerts      the monitor's metrics, notification channels, alert policies
    dashboard   one Cloud Monitoring dashboard per stack

The stack first turns on the APIs it uses (infra.gcp.apis); every resource waits for them.
"""

from __future__ import annotations

import pulumi

from infra import outputs as platform_out
from infra.gcp.accounts import account_id
from infra.gcp.apis import SERVICES_APIS, STREAMING_API, enable_apis
from services.deploy.config import ServicesConfig
from services.deploy.gcp.alerts import Watched, stack_alerts
from services.deploy.gcp.common import Platform
from services.deploy.gcp.dashboard import Charted, Dashboard
from services.deploy.gcp.identities import Identities
from services.deploy.gcp.images import Images
from services.deploy.gcp.jobs import MonitoringJob, ScoringJob, TrainingJob
from services.deploy.gcp.model_api import ModelApiService
from services.deploy.gcp.night import stack_night
from services.deploy.gcp.streaming import StreamingService
from services.deploy.platform_ref import PlatformRef, password_secrets

__all__ = ["account_id", "build"]


def platform_of(cfg: ServicesConfig) -> Platform:
    ref = PlatformRef(cfg)
    ref.compare_nights(cfg)
    gcp_config = pulumi.Config("gcp")
    return Platform(
        tracking_uri=ref.require(platform_out.TRACKING_PRIVATE_URI),
        network=ref.require(platform_out.VPC_ID),
        subnet=ref.require(platform_out.PUBLIC_SUBNET_IDS).apply(lambda ids: ids[0]),
        ca_pem=ref.require(platform_out.TRACKING_CA_CERT),
        password_secrets={user: ref.require(key) for user, key in password_secrets(cfg).items()},
        artifact_bucket=ref.require(platform_out.ARTIFACT_BUCKET),
        tracking_instance=ref.require(platform_out.TRACKING_INSTANCE),
        project=gcp_config.require("project"),
        region=gcp_config.require("region"),
    )


def build(cfg: ServicesConfig) -> dict[str, object]:
    enable_apis((*SERVICES_APIS, STREAMING_API) if cfg.streaming else SERVICES_APIS)
    platform = platform_of(cfg)
    refs = cfg.prebuilt_refs() if cfg.prebuilt else Images(cfg, platform).refs
    ids = Identities(cfg, platform)
    api = ModelApiService(cfg, platform, ids, refs["model-api"])
    training = TrainingJob(cfg, platform, ids, refs["training"])
    monitoring = MonitoringJob(cfg, platform, ids, refs["monitoring"], training, api.prediction_log)
    scoring = ScoringJob(cfg, platform, ids, refs["scoring"])
    outputs = {
        "modelApiUrl": api.url,
        "trainingJob": platform.job_path(training.job),
        "modelApiImage": refs["model-api"],
        "trainingImage": refs["training"],
        "scoringImage": refs["scoring"],
        "monitoringImage": refs["monitoring"],
        "monitoringJob": platform.job_path(monitoring.job),
        "predictionLog": api.prediction_log,
        "scoringJob": platform.job_path(scoring.job),
        "scoringInput": cfg.scoringInput,
        "scoringOutput": scoring.output,
        "scoringShards": cfg.scoringShards,
    }
    streaming = StreamingService(cfg, platform, ids, refs["streaming"]) if cfg.streaming else None
    Dashboard(cfg.stack, Charted(
        api_service=api.service.name,
        jobs=[training.job.name, monitoring.job.name, scoring.job.name],
        tracking_instance=platform.tracking_instance,
        push_subscription=streaming.push.name if streaming else None,
        dead_letters=streaming.readers["ride-events-dead-letter"].name if streaming else None,
    ))  # fmt: skip
    alerting = stack_alerts(cfg, Watched(
        api_service=api.service.name,
        jobs=[training.job.name, monitoring.job.name, scoring.job.name],
        dead_letters=streaming.readers["ride-events-dead-letter"].name if streaming else None,
    ))  # fmt: skip
    stack_night(cfg, platform, alerting)
    if streaming is not None:
        outputs |= {
            "rideEventsTopic": streaming.events.id,
            "ridePredictionsTopic": streaming.predictions.id,
            "ridePredictionsSubscription": streaming.readers["ride-predictions"].id,
            "streamingDeadLetterSubscription": streaming.readers["ride-events-dead-letter"].id,
            "streamingImage": refs["streaming"],
        }
    return outputs
