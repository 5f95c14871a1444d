"""The model API on GCP: a Cloud Run service reaching the tracking server through Direct VPC
egress, scaled between the stack's bounds, public or not (apiPublic), and, with the prediction
log on, the one grant it needs: creating objects under predictions/ in the artifact bucket."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp
from pulumi_gcp import cloudrunv2 as run

from services.deploy.components import API_PORT, NAME, PREDICTIONS, child
from services.deploy.config import ServicesConfig
from services.deploy.gcp.common import Platform, prefix_condition
from services.deploy.gcp.identities import Identities


def container(cfg: ServicesConfig, platform: Platform, image, prediction_log):
    env = run.ServiceTemplateContainerEnvArgs
    envs = [
        *platform.envs("model-api", env, run.ServiceTemplateContainerEnvValueSourceArgs,
                       run.ServiceTemplateContainerEnvValueSourceSecretKeyRefArgs),
        env(name="MODEL_API_REFRESH_SECONDS", value=str(cfg.modelRefreshSeconds)),
    ]  # fmt: skip
    if prediction_log is not None:
        envs.append(env(name="MODEL_API_PREDICTION_LOG", value=prediction_log))
    return run.ServiceTemplateContainerArgs(
        image=image,
        ports=run.ServiceTemplateContainerPortsArgs(container_port=API_PORT),
        envs=envs,
        resources=run.ServiceTemplateContainerResourcesArgs(
            limits={"cpu": str(max(1, cfg.apiCpu // 1024)), "memory": f"{cfg.apiMemoryMb}Mi"}
        ),
        # The API starts without a model and says so on /ready; Cloud Run checks that the
        # process is up (startup) and stays up (liveness).
        startup_probe=run.ServiceTemplateContainerStartupProbeArgs(
            http_get=run.ServiceTemplateContainerStartupProbeHttpGetArgs(
                path="/health", port=API_PORT
            ),
            period_seconds=5,
            failure_threshold=24,
        ),
        liveness_probe=run.ServiceTemplateContainerLivenessProbeArgs(
            http_get=run.ServiceTemplateContainerLivenessProbeHttpGetArgs(
                path="/health", port=API_PORT
            ),
            period_seconds=15,
        ),
    )


class ModelApiService(pulumi.ComponentResource):
    url: pulumi.Output[str]
    prediction_log: pulumi.Output[str] | None
    """Where the API logs its predictions (gs://bucket/predictions/), None with the log off."""

    def __init__(
        self, cfg: ServicesConfig, platform: Platform, ids: Identities,
        image: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None,
    ):  # fmt: skip
        super().__init__("mlops:services:gcp:ModelApiService", f"{NAME}-model-api-service", None,
                         opts)  # fmt: skip
        grants: list[pulumi.Resource] = [ids.password_access["api"]]
        self.prediction_log = None
        if cfg.predictionLog:
            bucket = platform.artifact_bucket
            self.prediction_log = pulumi.Output.concat("gs://", bucket, "/", PREDICTIONS)
            grants.append(gcp.storage.BucketIAMMember(
                f"{NAME}-api-prediction-log",
                bucket=bucket,
                role="roles/storage.objectCreator",  # each write is a new, uniquely named file
                member=ids.member("api"),
                condition=prefix_condition("prediction log", bucket, PREDICTIONS),
                opts=child(self),
            ))  # fmt: skip
        egress = run.ServiceTemplateVpcAccessArgs(
            network_interfaces=[run.ServiceTemplateVpcAccessNetworkInterfaceArgs(
                network=platform.network, subnetwork=platform.subnet
            )],
            egress="PRIVATE_RANGES_ONLY",
        )  # fmt: skip
        self.service = service = run.Service(
            f"{NAME}-model-api",
            location=platform.region,
            deletion_protection=False,
            ingress="INGRESS_TRAFFIC_ALL",
            # Cloud Run's documented way to a public service: no allUsers binding, which an
            # organisation policy restricting member domains refuses.
            invoker_iam_disabled=cfg.apiPublic,
            template=run.ServiceTemplateArgs(
                service_account=ids.accounts["api"].email,
                scaling=run.ServiceTemplateScalingArgs(
                    # A stack that sleeps keeps no instance warm: Cloud Run charges nothing
                    # while none runs, day or night (the first request after a pause waits
                    # for one to start).
                    min_instance_count=0 if cfg.sleepSchedule else cfg.apiMinTasks,
                    max_instance_count=cfg.apiMaxTasks,
                ),
                vpc_access=egress,
                containers=[container(cfg, platform, image, self.prediction_log)],
            ),
            opts=child(self, depends_on=grants),
        )
        self.url = service.uri
        self.register_outputs({"url": self.url})
