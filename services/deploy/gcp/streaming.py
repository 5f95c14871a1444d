"""Streaming predictions on GCP: ride events published to a Pub/Sub topic, pushed one message at
a time to the handler (streaming.push) on Cloud Run, their predictions published to another.

    topics         ride events (producers publish here), ride predictions, dead letters; each
                   topic read by someone has a pull subscription, which keeps its messages 7 days
                   (a topic alone keeps nothing)
    service        the streaming image on Cloud Run as `python -m streaming.push`: internal
                   ingress (Pub/Sub of the same project counts as internal), invokers checked,
                   Direct VPC egress to the tracking server, its own account and MLflow user
    push           the subscription on the events topic: an OIDC token of the push account (the
                   only invoker), streamMaxAttempts deliveries with backoff, then the dead-letter
                   topic; a bad record the handler publishes there itself, with its reason

Pub/Sub's service agent forwards to the dead-letter topic: it may publish there and acknowledge
on the push subscription, and sign the push account's tokens (needed where the agent predates
April 2021). Delivery is at least once; a prediction carries its ride_id and model version.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp
from pulumi_gcp import cloudrunv2 as run

from services.deploy.components import NAME, PREDICTIONS
from services.deploy.config import ServicesConfig
from services.deploy.gcp.common import Platform, prefix_condition
from services.deploy.gcp.identities import Identities

PORT = 8080
MAX_INSTANCES = 10
KEEP = "604800s"  # 7 days, a subscription's default
PUSH_PATH = "/pubsub/push"
ACK_DEADLINE_SECONDS = 120
"""Also the push request's timeout: the first request of a new instance loads the model."""


def cpus_for(memory_mb: int) -> str:
    """The fewest CPUs Cloud Run allows with this memory: more than 4 GiB takes 2, more than
    8 GiB takes 4."""
    return "1" if memory_mb <= 4096 else "2" if memory_mb <= 8192 else "4"


class StreamingService(pulumi.ComponentResource):
    events: gcp.pubsub.Topic
    predictions: gcp.pubsub.Topic
    dead_letters: gcp.pubsub.Topic
    push: gcp.pubsub.Subscription

    def __init__(
        self, cfg: ServicesConfig, platform: Platform, ids: Identities,
        image: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None,
    ):  # fmt: skip
        super().__init__("mlops:services:gcp:StreamingService", f"{NAME}-streaming", None, opts)
        mine = pulumi.ResourceOptions(parent=self)
        self.events = gcp.pubsub.Topic(f"{NAME}-ride-events", opts=mine)
        self.predictions = gcp.pubsub.Topic(f"{NAME}-ride-predictions", opts=mine)
        self.dead_letters = gcp.pubsub.Topic(f"{NAME}-ride-events-dead-letter", opts=mine)
        self.readers = {
            label: gcp.pubsub.Subscription(
                f"{NAME}-{label}",
                topic=topic.id,
                message_retention_duration=KEEP,
                expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),  # never
                opts=mine,
            )
            for label, topic in (("ride-predictions", self.predictions),
                                 ("ride-events-dead-letter", self.dead_letters))
        }  # fmt: skip
        service = self.service(cfg, platform, ids, image)
        self.push = self.subscription(cfg, ids, service)
        self.register_outputs({"events": self.events.name})

    def service(
        self, cfg: ServicesConfig, platform: Platform, ids: Identities, image: pulumi.Input[str]
    ) -> run.Service:
        """The handler's Cloud Run service, after the grants its account needs."""
        member = ids.member("streaming")
        grants: list[pulumi.Resource] = [ids.password_access["streaming"]]
        for label, topic in (
            ("predictions", self.predictions),
            ("dead-letters", self.dead_letters),
        ):
            grants.append(gcp.pubsub.TopicIAMMember(
                f"{NAME}-streaming-publishes-{label}", topic=topic.name,
                role="roles/pubsub.publisher", member=member,
                opts=pulumi.ResourceOptions(parent=self),
            ))  # fmt: skip
        env = run.ServiceTemplateContainerEnvArgs
        envs = [
            *platform.envs("streaming", env, run.ServiceTemplateContainerEnvValueSourceArgs,
                           run.ServiceTemplateContainerEnvValueSourceSecretKeyRefArgs),
            env(name="STREAMING_OUTPUT", value=self.predictions.id),
            env(name="STREAMING_DEAD_LETTER", value=self.dead_letters.id),
            env(name="STREAMING_REFRESH_SECONDS", value=str(cfg.modelRefreshSeconds)),
        ]  # fmt: skip
        if cfg.predictionLog:
            bucket = platform.artifact_bucket
            envs.append(env(name="STREAMING_PREDICTION_LOG",
                            value=pulumi.Output.concat("gs://", bucket, "/", PREDICTIONS)))  # fmt: skip
            grants.append(gcp.storage.BucketIAMMember(
                f"{NAME}-streaming-prediction-log", bucket=bucket,
                role="roles/storage.objectCreator", member=member,
                condition=prefix_condition("prediction log", bucket, PREDICTIONS),
                opts=pulumi.ResourceOptions(parent=self),
            ))  # fmt: skip
        health = run.ServiceTemplateContainerStartupProbeHttpGetArgs(path="/health", port=PORT)
        container = run.ServiceTemplateContainerArgs(
            image=image,
            commands=["python", "-m", "streaming.push"],  # the image's default is Lambda's
            ports=run.ServiceTemplateContainerPortsArgs(container_port=PORT),
            envs=envs,
            resources=run.ServiceTemplateContainerResourcesArgs(
                limits={"cpu": cpus_for(cfg.streamMemoryMb), "memory": f"{cfg.streamMemoryMb}Mi"}
            ),
            startup_probe=run.ServiceTemplateContainerStartupProbeArgs(
                http_get=health, period_seconds=5, failure_threshold=24
            ),
        )
        egress = run.ServiceTemplateVpcAccessArgs(
            network_interfaces=[run.ServiceTemplateVpcAccessNetworkInterfaceArgs(
                network=platform.network, subnetwork=platform.subnet
            )],
            egress="PRIVATE_RANGES_ONLY",
        )  # fmt: skip
        return run.Service(
            f"{NAME}-streaming",
            location=platform.region,
            deletion_protection=False,
            ingress="INGRESS_TRAFFIC_INTERNAL_ONLY",
            template=run.ServiceTemplateArgs(
                service_account=ids.accounts["streaming"].email,
                scaling=run.ServiceTemplateScalingArgs(
                    min_instance_count=0, max_instance_count=MAX_INSTANCES
                ),
                timeout=f"{ACK_DEADLINE_SECONDS}s",
                vpc_access=egress,
                containers=[container],
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=grants),
        )

    def subscription(
        self, cfg: ServicesConfig, ids: Identities, service: run.Service
    ) -> gcp.pubsub.Subscription:
        """The push subscription, after every grant its deliveries need, and the agent's right
        to acknowledge what it forwards to the dead letters."""
        mine = pulumi.ResourceOptions(parent=self)
        invoker = run.ServiceIamMember(
            f"{NAME}-streaming-invoker", name=service.name, location=service.location,
            role="roles/run.invoker", member=ids.member("push"), opts=mine,
        )  # fmt: skip
        # Made here rather than waiting for Pub/Sub's first use: a grant needs it to exist.
        agent = gcp.projects.ServiceIdentity(
            f"{NAME}-pubsub-agent", service="pubsub.googleapis.com", opts=mine
        )
        token = gcp.serviceaccount.IAMMember(
            f"{NAME}-push-token", service_account_id=ids.accounts["push"].name,
            role="roles/iam.serviceAccountTokenCreator", member=agent.member, opts=mine,
        )  # fmt: skip
        forward = gcp.pubsub.TopicIAMMember(
            f"{NAME}-pubsub-agent-dead-letters", topic=self.dead_letters.name,
            role="roles/pubsub.publisher", member=agent.member, opts=mine,
        )  # fmt: skip
        push = gcp.pubsub.Subscription(
            f"{NAME}-ride-events-push",
            topic=self.events.id,
            ack_deadline_seconds=ACK_DEADLINE_SECONDS,
            push_config=gcp.pubsub.SubscriptionPushConfigArgs(
                push_endpoint=pulumi.Output.concat(service.uri, PUSH_PATH),
                oidc_token=gcp.pubsub.SubscriptionPushConfigOidcTokenArgs(
                    service_account_email=ids.accounts["push"].email, audience=service.uri
                ),
            ),
            dead_letter_policy=gcp.pubsub.SubscriptionDeadLetterPolicyArgs(
                dead_letter_topic=self.dead_letters.id,
                max_delivery_attempts=cfg.streamMaxAttempts,
            ),
            retry_policy=gcp.pubsub.SubscriptionRetryPolicyArgs(
                minimum_backoff="10s", maximum_backoff="600s"
            ),
            message_retention_duration=KEEP,
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[invoker, token, forward]),
        )
        gcp.pubsub.SubscriptionIAMMember(
            f"{NAME}-pubsub-agent-acknowledges", subscription=push.name,
            role="roles/pubsub.subscriber", member=agent.member, opts=mine,
        )  # fmt: skip
        return push
