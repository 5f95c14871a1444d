"""GCP: an Artifact Registry repository and images, the model API as a Cloud Run service with
Direct VPC egress to the tracking server, the training job as a Cloud Run job triggered by Cloud
Scheduler, and the scoring job as a Cloud Run job with one task per shard, triggered monthly;
each with its own service account."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlparse

import pulumi
import pulumi_docker_build as docker_build
import pulumi_gcp as gcp

import tracking_ca
from infra import outputs as platform_out
from infra.gcp.apis import SERVICES_APIS, enable_apis
from infra.mlflow_server import user_for
from services.deploy import images
from services.deploy.config import (
    ServicesConfig,
    monitoring_command,
    read_prefix,
    scoring_command,
)
from services.deploy.platform_ref import PlatformRef

API_PORT = 8000
IMAGE_DAYS = 30  # an image version older than this goes, unless among the newest imagesKept
# The bucket expires both (platform settings scoringOutputDays, predictionLogDays).
SCORING_PREFIX = platform_out.SCORING_PREFIX + "{month}/"
PREDICTIONS = platform_out.PREDICTIONS_PREFIX


def account_id(stack: str, role: str) -> str:
    """A service account id (6-30 of a-z, 0-9, -): `mlops-STACK-ROLE`, or for a long stack name
    a cut of it with a hash, so two roles never share one (scoring/scheduler would when cut)."""
    full = re.sub(r"[^a-z0-9-]", "-", f"mlops-{stack}-{role}".lower())
    if len(full) <= 30:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:6]
    return f"{full[:23].rstrip('-')}-{digest}"


def prefix_condition(title: str, bucket: pulumi.Input[str], uri_prefix: str):
    """An IAM condition limiting a bucket role to object names under a prefix (the bucket must
    have uniform bucket-level access)."""
    return gcp.storage.BucketIAMMemberConditionArgs(
        title=title,
        expression=pulumi.Output.concat(
            'resource.name.startsWith("projects/_/buckets/', bucket, "/objects/", uri_prefix, '")'
        ),
    )


def gs_prefix(uri: str) -> tuple[str, str]:
    """(bucket, object-name prefix) that covers a gs:// URI where {month} varies."""
    parsed = urlparse(read_prefix(uri).removesuffix("*"))
    return parsed.netloc, parsed.path.lstrip("/")


def build(cfg: ServicesConfig) -> dict[str, object]:
    enable_apis(SERVICES_APIS)
    platform = PlatformRef(cfg)
    tracking_uri = platform.require(platform_out.TRACKING_PRIVATE_URI)
    network = platform.require(platform_out.VPC_ID)
    subnet = platform.require(platform_out.PUBLIC_SUBNET_IDS).apply(lambda ids: ids[0])
    ca_pem = platform.require(platform_out.TRACKING_CA_CERT)
    password_secrets = {
        user: platform.require(key) for user, key in platform_out.PASSWORD_SECRETS.items()
    }
    artifact_bucket = platform.require(platform_out.ARTIFACT_BUCKET)
    gcp_config = pulumi.Config("gcp")
    project, region = gcp_config.require("project"), gcp_config.require("region")
    name = "mlops"

    if cfg.prebuilt:
        api_image: pulumi.Input[str] = cfg.modelApiImage
        training_image: pulumi.Input[str] = cfg.trainingImage
        scoring_image: pulumi.Input[str] = cfg.scoringImage
        monitoring_image: pulumi.Input[str] = cfg.monitoringImage
    else:
        repo = gcp.artifactregistry.Repository(
            f"{name}-images",
            repository_id=f"mlops-{cfg.stack}",
            format="DOCKER",
            location=region,
            # A KEEP rule alone deletes nothing: versions older than 30 days go, but for the
            # newest imagesKept (a version both rules match is kept).
            cleanup_policy_dry_run=False,
            cleanup_policies=[
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="delete-old",
                    action="DELETE",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        tag_state="ANY", older_than=f"{IMAGE_DAYS * 86400}s"
                    ),
                ),
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="keep-newest",
                    action="KEEP",
                    most_recent_versions=gcp.artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs(
                        keep_count=cfg.imagesKept
                    ),
                ),
            ],
        )
        host = f"{region}-docker.pkg.dev"
        registry = docker_build.RegistryArgs(
            address=host,
            username="oauth2accesstoken",
            password=gcp.organizations.get_client_config_output().access_token,
        )
        base = pulumi.Output.concat(host, "/", project, "/", repo.repository_id)
        api_image = images.build("model-api", base.apply(lambda b: f"{b}/model-api"), registry)
        training_image = images.build("training", base.apply(lambda b: f"{b}/training"), registry)
        scoring_image = images.build("scoring", base.apply(lambda b: f"{b}/scoring"), registry)
        monitoring_image = images.build(
            "monitoring", base.apply(lambda b: f"{b}/monitoring"), registry
        )

    def job_path(job: gcp.cloudrunv2.Job) -> pulumi.Output[str]:
        return pulumi.Output.concat("projects/", project, "/locations/", region, "/jobs/", job.name)

    def run_uri(job: gcp.cloudrunv2.Job) -> pulumi.Output[str]:
        # The Admin API's jobs.run: what Cloud Scheduler calls, with its own service account.
        return pulumi.Output.concat("https://run.googleapis.com/v2/", job_path(job), ":run")

    def account(role: str) -> gcp.serviceaccount.Account:
        return gcp.serviceaccount.Account(
            f"{name}-{role}",
            account_id=account_id(cfg.stack, role),
            display_name=f"MLOps {role} ({cfg.stack})",
        )

    def member(sa: gcp.serviceaccount.Account) -> pulumi.Output[str]:
        return sa.email.apply(lambda e: f"serviceAccount:{e}")

    api_sa, training_sa, scheduler_sa = account("api"), account("training"), account("scheduler")
    scoring_sa, monitoring_sa = account("scoring"), account("monitoring")
    # What each job may do, granted before the job exists, so a run right after the first
    # deploy does not meet a missing permission.
    grants: dict[str, list[pulumi.Resource]] = {"training": [], "scoring": [], "monitoring": []}
    for label, sa in (
        ("api", api_sa), ("training", training_sa), ("scoring", scoring_sa),
        ("monitoring", monitoring_sa),
    ):  # fmt: skip
        # Each account reads its workload's MLflow password only (not the admin's).
        workload = "model-api" if label == "api" else label
        access = gcp.secretmanager.SecretIamMember(
            f"{name}-{label}-password-access",
            secret_id=password_secrets[user_for(workload)],
            role="roles/secretmanager.secretAccessor",
            member=member(sa),
        )
        grants.setdefault(label, []).append(access)
    # The training data: read access on that bucket only.
    data_buckets = sorted({urlparse(u).netloc for u in cfg.training_data})
    for i, bucket in enumerate(data_buckets):
        grants["training"].append(
            gcp.storage.BucketIAMMember(
                f"{name}-training-data-{i}",
                bucket=bucket,
                role="roles/storage.objectViewer",
                member=member(training_sa),
            )
        )

    def envs(workload: str, args_cls, source_cls, ref_cls) -> list:
        """Where the tracking server is, how to trust it (tracking_ca.trust() writes the CA to
        a file at start), and the workload's own MLflow user, its password from Secret Manager."""
        user = user_for(workload)
        return [
            args_cls(name="MLFLOW_TRACKING_URI", value=tracking_uri),
            args_cls(name=tracking_ca.CA_PEM_ENV, value=ca_pem),
            args_cls(name="MLFLOW_TRACKING_USERNAME", value=user),
            args_cls(
                name="MLFLOW_TRACKING_PASSWORD",
                value_source=source_cls(
                    secret_key_ref=ref_cls(secret=password_secrets[user], version="latest")
                ),
            ),
        ]

    egress = gcp.cloudrunv2.ServiceTemplateVpcAccessArgs(
        network_interfaces=[
            gcp.cloudrunv2.ServiceTemplateVpcAccessNetworkInterfaceArgs(
                network=network, subnetwork=subnet
            )
        ],
        egress="PRIVATE_RANGES_ONLY",
    )
    # The prediction log: the API may create objects under predictions/ in the artifact bucket.
    prediction_log: pulumi.Input[str] | None = None
    api_grants: list[pulumi.Resource] = []
    if cfg.predictionLog:
        prediction_log = pulumi.Output.concat("gs://", artifact_bucket, "/", PREDICTIONS)
        api_grants.append(
            gcp.storage.BucketIAMMember(
                f"{name}-api-prediction-log",
                bucket=artifact_bucket,
                role="roles/storage.objectCreator",  # each write is a new, uniquely named file
                member=member(api_sa),
                condition=prefix_condition("prediction log", artifact_bucket, PREDICTIONS),
            )
        )
    probe = gcp.cloudrunv2.ServiceTemplateContainerStartupProbeHttpGetArgs
    service = gcp.cloudrunv2.Service(
        f"{name}-model-api",
        opts=pulumi.ResourceOptions(depends_on=[*grants["api"], *api_grants]),
        location=region,
        deletion_protection=False,
        ingress="INGRESS_TRAFFIC_ALL",
        # Cloud Run's documented way to a public service: no allUsers binding, which an
        # organisation policy restricting member domains refuses.
        invoker_iam_disabled=cfg.apiPublic,
        template=gcp.cloudrunv2.ServiceTemplateArgs(
            service_account=api_sa.email,
            scaling=gcp.cloudrunv2.ServiceTemplateScalingArgs(
                min_instance_count=cfg.apiMinTasks, max_instance_count=cfg.apiMaxTasks
            ),
            vpc_access=egress,
            containers=[
                gcp.cloudrunv2.ServiceTemplateContainerArgs(
                    image=api_image,
                    ports=gcp.cloudrunv2.ServiceTemplateContainerPortsArgs(container_port=API_PORT),
                    envs=[
                        *envs(
                            "model-api",
                            gcp.cloudrunv2.ServiceTemplateContainerEnvArgs,
                            gcp.cloudrunv2.ServiceTemplateContainerEnvValueSourceArgs,
                            gcp.cloudrunv2.ServiceTemplateContainerEnvValueSourceSecretKeyRefArgs,
                        ),
                        gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
                            name="MODEL_API_REFRESH_SECONDS", value=str(cfg.modelRefreshSeconds)
                        ),
                        *(
                            [
                                gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
                                    name="MODEL_API_PREDICTION_LOG", value=prediction_log
                                )
                            ]
                            if prediction_log
                            else []
                        ),  # fmt: skip
                    ],
                    resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
                        limits={
                            "cpu": str(max(1, cfg.apiCpu // 1024)),
                            "memory": f"{cfg.apiMemoryMb}Mi",
                        }
                    ),
                    # The API starts without a model and says so on /ready; Cloud Run checks
                    # that the process is up (startup) and stays up (liveness).
                    startup_probe=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeArgs(
                        http_get=probe(path="/health", port=API_PORT),
                        period_seconds=5,
                        failure_threshold=24,
                    ),
                    liveness_probe=gcp.cloudrunv2.ServiceTemplateContainerLivenessProbeArgs(
                        http_get=gcp.cloudrunv2.ServiceTemplateContainerLivenessProbeHttpGetArgs(
                            path="/health", port=API_PORT
                        ),
                        period_seconds=15,
                    ),
                )
            ],
        ),
    )

    def scheduled_job(
        label: str,
        sa: gcp.serviceaccount.Account,
        image: pulumi.Input[str],
        args: pulumi.Input[list[str]],
        limits: dict[str, str],
        timeout: str,
        cron: str,
        tasks: int | None = None,
    ) -> gcp.cloudrunv2.Job:
        """A Cloud Run job (`tasks` in parallel, one retry each) reaching the tracking server
        through Direct VPC egress, run by Cloud Scheduler on `cron` as the scheduler account."""
        job = gcp.cloudrunv2.Job(
            f"{name}-{label}",
            opts=pulumi.ResourceOptions(depends_on=grants[label]),
            location=region,
            deletion_protection=False,
            template=gcp.cloudrunv2.JobTemplateArgs(
                task_count=tasks,
                parallelism=tasks,
                template=gcp.cloudrunv2.JobTemplateTemplateArgs(
                    service_account=sa.email,
                    max_retries=1,
                    timeout=timeout,
                    vpc_access=gcp.cloudrunv2.JobTemplateTemplateVpcAccessArgs(
                        network_interfaces=[
                            gcp.cloudrunv2.JobTemplateTemplateVpcAccessNetworkInterfaceArgs(
                                network=network, subnetwork=subnet
                            )
                        ],
                        egress="PRIVATE_RANGES_ONLY",
                    ),
                    containers=[
                        gcp.cloudrunv2.JobTemplateTemplateContainerArgs(
                            image=image,
                            args=args,
                            envs=envs(
                                label,
                                gcp.cloudrunv2.JobTemplateTemplateContainerEnvArgs,
                                gcp.cloudrunv2.JobTemplateTemplateContainerEnvValueSourceArgs,
                                gcp.cloudrunv2.JobTemplateTemplateContainerEnvValueSourceSecretKeyRefArgs,
                            ),
                            resources=gcp.cloudrunv2.JobTemplateTemplateContainerResourcesArgs(
                                limits=limits
                            ),
                        )
                    ],
                ),
            ),
        )
        gcp.cloudrunv2.JobIamMember(
            f"{name}-{label}-scheduler-run",
            name=job.name,
            location=region,
            role="roles/run.invoker",
            member=member(scheduler_sa),
        )
        gcp.cloudscheduler.Job(
            f"{name}-{label}-schedule",
            region=cfg.schedulerRegion or region,
            schedule=cron,
            time_zone="Etc/UTC",
            http_target=gcp.cloudscheduler.JobHttpTargetArgs(
                http_method="POST",
                uri=run_uri(job),
                oauth_token=gcp.cloudscheduler.JobHttpTargetOauthTokenArgs(
                    service_account_email=scheduler_sa.email
                ),
            ),
        )
        return job

    job = scheduled_job(
        "training",
        training_sa,
        training_image,
        cfg.training_command,
        {"cpu": "2", "memory": "4Gi"},
        "3600s",
        cfg.trainingSchedule,
    )

    # --- monitoring job -------------------------------------------------------------------
    # Daily: the logged traffic against the champion's reference, its RMSE on the month the
    # scoring job scores; on degraded it executes the training job above.
    # Listing the log's files cannot be narrowed to a prefix by an IAM condition: the monitor
    # may read the artifact bucket (as it may through MLflow, with the credentials it has).
    grants["monitoring"].append(
        gcp.storage.BucketIAMMember(
            f"{name}-monitoring-log",
            bucket=artifact_bucket,
            role="roles/storage.objectViewer",
            member=member(monitoring_sa),
        )
    )
    actuals_bucket, actuals_prefix = gs_prefix(cfg.scoringInput)
    grants["monitoring"].append(
        gcp.storage.BucketIAMMember(
            f"{name}-monitoring-actuals",
            bucket=actuals_bucket,
            role="roles/storage.objectViewer",
            member=member(monitoring_sa),
            condition=prefix_condition("monitoring actuals", actuals_bucket, actuals_prefix),
        )
    )
    retrain: pulumi.Input[list[str]] = []
    if cfg.retrainOnDegraded:
        grants["monitoring"].append(
            gcp.cloudrunv2.JobIamMember(
                f"{name}-monitoring-runs-training",
                name=job.name,
                location=region,
                role="roles/run.invoker",  # jobs.run without overrides
                member=member(monitoring_sa),
            )
        )
        retrain = job_path(job).apply(
            lambda path: ["--retrain", "cloud-run", "--cloud-run-job", path]
        )
    monitoring_job = scheduled_job(
        "monitoring",
        monitoring_sa,
        monitoring_image,
        pulumi.Output.all(prediction_log, retrain).apply(
            lambda a: [*monitoring_command(cfg, a[0]), *a[1]]
        ),
        {"cpu": "1", "memory": "2Gi"},
        "3600s",
        cfg.monitoringSchedule,
    )

    # --- scoring job ----------------------------------------------------------------------
    # One Cloud Run task per shard, each picking its shard from CLOUD_RUN_TASK_INDEX.
    if cfg.scoringOutput:
        output_bucket, output_prefix = gs_prefix(cfg.scoringOutput.rstrip("/") + "/{month}")
        out_bucket: pulumi.Input[str] = output_bucket
        scoring_output: pulumi.Input[str] = cfg.scoringOutput
    else:
        out_bucket, output_prefix = artifact_bucket, SCORING_PREFIX.split("{", 1)[0]
        scoring_output = pulumi.Output.concat("gs://", artifact_bucket, "/", SCORING_PREFIX)
    input_bucket, input_prefix = gs_prefix(cfg.scoringInput)
    # The input bucket needs uniform bucket-level access for a conditional grant
    # (docs/deploy-gcp.md).
    scoring_input = gcp.storage.BucketIAMMember(
        f"{name}-scoring-input",
        bucket=input_bucket,
        role="roles/storage.objectViewer",
        member=member(scoring_sa),
        condition=prefix_condition("scoring input", input_bucket, input_prefix),
    )
    # objectUser, not objectCreator: a retried shard replaces its part, which needs delete.
    scoring_output_grant = gcp.storage.BucketIAMMember(
        f"{name}-scoring-output",
        bucket=out_bucket,
        role="roles/storage.objectUser",
        member=member(scoring_sa),
        condition=prefix_condition("scoring output", out_bucket, output_prefix),
    )
    grants["scoring"] += [scoring_input, scoring_output_grant]
    scoring_job = scheduled_job(
        "scoring",
        scoring_sa,
        scoring_image,
        pulumi.Output.from_input(scoring_output).apply(
            lambda out: [*scoring_command(cfg), "--output", out]
        ),
        {"cpu": str(cfg.scoringCpu), "memory": f"{cfg.scoringMemoryMb}Mi"},
        "10800s",
        cfg.scoringSchedule,
        tasks=cfg.scoringShards,
    )

    return {
        "modelApiUrl": service.uri,
        "trainingJob": job_path(job),
        "modelApiImage": api_image,
        "trainingImage": training_image,
        "scoringImage": scoring_image,
        "monitoringImage": monitoring_image,
        "monitoringJob": job_path(monitoring_job),
        "predictionLog": prediction_log,
        "scoringJob": job_path(scoring_job),
        "scoringInput": cfg.scoringInput,
        "scoringOutput": scoring_output,
        "scoringShards": cfg.scoringShards,
    }
