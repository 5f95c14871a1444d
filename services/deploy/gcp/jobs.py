"""The GCP jobs, each a Cloud Run job run on a cron by Cloud Scheduler (as the scheduler's
account) and reaching the tracking server through Direct VPC egress, created after the grants it
needs, so a run right after the first deploy meets no missing permission:

    TrainingJob     reads the training data's buckets
    MonitoringJob   reads the prediction log and the months with actual durations; on `degraded`
                    it runs the training job
    ScoringJob      one task per shard (CLOUD_RUN_TASK_INDEX): reads the input months, writes
                    under the output prefix
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

import pulumi
import pulumi_gcp as gcp
from pulumi_gcp import cloudrunv2 as run

from services.deploy.components import NAME, SCORING_PREFIX, child
from services.deploy.config import ServicesConfig, monitoring_command, scoring_command
from services.deploy.gcp.common import Platform, gs_prefix, prefix_condition
from services.deploy.gcp.identities import Identities


@dataclass(frozen=True)
class JobSpec:
    """One job's container and schedule; `label` names its account, MLflow user and resources."""

    label: str
    image: pulumi.Input[str]
    args: pulumi.Input[list[str]]
    limits: dict[str, str]
    timeout: str
    cron: str
    tasks: int | None = None
    """In parallel, one shard each (the scoring job); None: one."""


def scheduled_job(
    parent: pulumi.Resource, cfg: ServicesConfig, platform: Platform, ids: Identities,
    spec: JobSpec, grants: list[pulumi.Resource],
) -> run.Job:  # fmt: skip
    """The Cloud Run job (one retry per task), the scheduler's right to run it, its schedule."""
    access = run.JobTemplateTemplateVpcAccessArgs(
        network_interfaces=[run.JobTemplateTemplateVpcAccessNetworkInterfaceArgs(
            network=platform.network, subnetwork=platform.subnet
        )],
        egress="PRIVATE_RANGES_ONLY",
    )  # fmt: skip
    envs = platform.envs(spec.label, run.JobTemplateTemplateContainerEnvArgs,
                         run.JobTemplateTemplateContainerEnvValueSourceArgs,
                         run.JobTemplateTemplateContainerEnvValueSourceSecretKeyRefArgs)  # fmt: skip
    job = run.Job(
        f"{NAME}-{spec.label}",
        location=platform.region,
        deletion_protection=False,
        template=run.JobTemplateArgs(
            task_count=spec.tasks,
            parallelism=spec.tasks,
            template=run.JobTemplateTemplateArgs(
                service_account=ids.accounts[spec.label].email,
                max_retries=1,
                timeout=spec.timeout,
                vpc_access=access,
                containers=[run.JobTemplateTemplateContainerArgs(
                    image=spec.image, args=spec.args, envs=envs,
                    resources=run.JobTemplateTemplateContainerResourcesArgs(limits=spec.limits),
                )],
            ),
        ),
        opts=child(parent, depends_on=[ids.password_access[spec.label], *grants]),
    )  # fmt: skip
    run.JobIamMember(
        f"{NAME}-{spec.label}-scheduler-run",
        name=job.name,
        location=platform.region,
        role="roles/run.invoker",
        member=ids.member("scheduler"),
        opts=child(parent),
    )
    gcp.cloudscheduler.Job(
        f"{NAME}-{spec.label}-schedule",
        region=cfg.schedulerRegion or platform.region,
        schedule=spec.cron,
        time_zone="Etc/UTC",
        http_target=gcp.cloudscheduler.JobHttpTargetArgs(
            http_method="POST",
            # The Admin API's jobs.run: what Cloud Scheduler calls, with its own account.
            uri=pulumi.Output.concat("https://run.googleapis.com/v2/", platform.job_path(job),
                                     ":run"),
            oauth_token=gcp.cloudscheduler.JobHttpTargetOauthTokenArgs(
                service_account_email=ids.accounts["scheduler"].email
            ),
        ),
        opts=child(parent),
    )  # fmt: skip
    return job


class TrainingJob(pulumi.ComponentResource):
    job: run.Job

    def __init__(
        self, cfg: ServicesConfig, platform: Platform, ids: Identities, image: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):  # fmt: skip
        super().__init__("mlops:services:gcp:TrainingJob", f"{NAME}-training-job", None, opts)
        # The training data: read access on those buckets only.
        grants = [
            gcp.storage.BucketIAMMember(
                f"{NAME}-training-data-{i}",
                bucket=bucket,
                role="roles/storage.objectViewer",
                member=ids.member("training"),
                opts=child(self),
            )  # fmt: skip
            for i, bucket in enumerate(sorted({urlparse(u).netloc for u in cfg.training_data}))
        ]
        spec = JobSpec("training", image, cfg.training_command, {"cpu": "2", "memory": "4Gi"},
                       "3600s", cfg.trainingSchedule)  # fmt: skip
        self.job = scheduled_job(self, cfg, platform, ids, spec, grants)
        self.register_outputs({"job": self.job.name})


class MonitoringJob(pulumi.ComponentResource):
    """Daily: the logged traffic against the champion's reference, its RMSE on the month the
    scoring job scores. Listing the log's files cannot be narrowed to a prefix by an IAM
    condition: the monitor may read the artifact bucket (as it may through MLflow)."""

    job: run.Job

    def __init__(
        self, cfg: ServicesConfig, platform: Platform, ids: Identities, image: pulumi.Input[str],
        training: TrainingJob, prediction_log: pulumi.Input[str] | None,
        opts: pulumi.ResourceOptions | None = None,
    ):  # fmt: skip
        super().__init__("mlops:services:gcp:MonitoringJob", f"{NAME}-monitoring-job", None, opts)
        viewer, me = "roles/storage.objectViewer", ids.member("monitoring")
        actuals_bucket, actuals_prefix = gs_prefix(cfg.scoringInput)
        grants: list[pulumi.Resource] = [
            gcp.storage.BucketIAMMember(
                f"{NAME}-monitoring-log", bucket=platform.artifact_bucket, role=viewer,
                member=me, opts=child(self),
            ),
            gcp.storage.BucketIAMMember(
                f"{NAME}-monitoring-actuals", bucket=actuals_bucket, role=viewer, member=me,
                condition=prefix_condition("monitoring actuals", actuals_bucket, actuals_prefix),
                opts=child(self),
            ),
        ]  # fmt: skip
        # Its metrics (monitoring.metrics): writing time series is granted per project only.
        grants.append(gcp.projects.IAMMember(
            f"{NAME}-monitoring-metrics", project=platform.project,
            role="roles/monitoring.metricWriter", member=me, opts=child(self),
        ))  # fmt: skip
        retrain: pulumi.Input[list[str]] = []
        if cfg.retrainOnDegraded:
            grants.append(run.JobIamMember(
                f"{NAME}-monitoring-runs-training", name=training.job.name,
                location=platform.region, role="roles/run.invoker",  # jobs.run, no overrides
                member=me, opts=child(self),
            ))  # fmt: skip
            retrain = platform.job_path(training.job).apply(
                lambda path: ["--retrain", "cloud-run", "--cloud-run-job", path]
            )
        args = pulumi.Output.all(prediction_log, retrain).apply(
            lambda a: [*monitoring_command(cfg, a[0]), *a[1]]
        )
        spec = JobSpec("monitoring", image, args, {"cpu": "1", "memory": "2Gi"}, "3600s",
                       cfg.monitoringSchedule)  # fmt: skip
        self.job = scheduled_job(self, cfg, platform, ids, spec, grants)
        self.register_outputs({"job": self.job.name})


class ScoringJob(pulumi.ComponentResource):
    job: run.Job
    output: pulumi.Output[str]
    """Where the shards write (the stack's scoringOutput, or the artifact bucket's scoring/)."""

    def __init__(
        self, cfg: ServicesConfig, platform: Platform, ids: Identities, image: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):  # fmt: skip
        super().__init__("mlops:services:gcp:ScoringJob", f"{NAME}-scoring-job", None, opts)
        if cfg.scoringOutput:
            out_bucket, out_prefix = gs_prefix(cfg.scoringOutput.rstrip("/") + "/{month}")
            self.output = pulumi.Output.from_input(cfg.scoringOutput)
        else:
            out_bucket, out_prefix = platform.artifact_bucket, SCORING_PREFIX.split("{", 1)[0]
            self.output = pulumi.Output.concat(
                "gs://", platform.artifact_bucket, "/", SCORING_PREFIX
            )
        in_bucket, in_prefix = gs_prefix(cfg.scoringInput)
        me = ids.member("scoring")
        grants = [
            # The input bucket needs uniform bucket-level access for a conditional grant
            # (docs/deploy-gcp.md).
            gcp.storage.BucketIAMMember(
                f"{NAME}-scoring-input", bucket=in_bucket, role="roles/storage.objectViewer",
                member=me, condition=prefix_condition("scoring input", in_bucket, in_prefix),
                opts=child(self),
            ),
            # objectUser, not objectCreator: a retried shard replaces its part (a delete).
            gcp.storage.BucketIAMMember(
                f"{NAME}-scoring-output", bucket=out_bucket, role="roles/storage.objectUser",
                member=me, condition=prefix_condition("scoring output", out_bucket, out_prefix),
                opts=child(self),
            ),
        ]  # fmt: skip
        args = self.output.apply(lambda out: [*scoring_command(cfg), "--output", out])
        limits = {"cpu": str(cfg.scoringCpu), "memory": f"{cfg.scoringMemoryMb}Mi"}
        spec = JobSpec("scoring", image, args, limits, "10800s", cfg.scoringSchedule,
                       tasks=cfg.scoringShards)  # fmt: skip
        self.job = scheduled_job(self, cfg, platform, ids, spec, grants)
        self.register_outputs({"job": self.job.name})
