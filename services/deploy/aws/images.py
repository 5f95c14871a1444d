"""The stack's images on AWS (the streaming one with streaming on): an ECR repository each
(scanned on push, encrypted, the newest `imagesKept` kept) and the image built from its target of
the repository's Dockerfile and pushed there (services.deploy.images). Lambda pulls the streaming
image itself: its repository's policy lets the account's functions read it."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

from services.deploy import images
from services.deploy.aws.common import tags
from services.deploy.components import NAME, child
from services.deploy.config import ServicesConfig


def lifecycle(kept: int) -> str:
    """ECR's lifecycle policy: expire all but the `kept` newest images."""
    return json.dumps({"rules": [{
        "rulePriority": 1,
        "description": f"keep the {kept} newest images",
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": kept},
        "action": {"type": "expire"},
    }]})  # fmt: skip


def lambda_pull_policy() -> pulumi.Output[str]:
    """Lambda may read the image, for this account's functions only (Lambda's documented
    repository permissions for a function from a container image)."""
    caller = aws.get_caller_identity_output()
    region = aws.get_region_output()
    return pulumi.Output.all(caller.account_id, region.region).apply(
        lambda a: json.dumps({"Version": "2012-10-17", "Statement": [{
            "Sid": "LambdaPull",
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "Condition": {"StringLike": {
                "aws:sourceArn": f"arn:aws:lambda:{a[1]}:{a[0]}:function:*"
            }},
        }]})
    )  # fmt: skip


class Images(pulumi.ComponentResource):
    refs: dict[str, pulumi.Output[str]]
    """Image name (model-api, training, scoring, monitoring) -> its pushed reference."""

    def __init__(self, cfg: ServicesConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:services:aws:Images", f"{NAME}-images", None, opts)
        self.refs = {}
        for image in cfg.images:
            repo = aws.ecr.Repository(
                f"{NAME}-{image}",
                image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                    scan_on_push=True
                ),
                encryption_configurations=[
                    aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="AES256")
                ],
                force_delete=cfg.kind != "prod",
                tags=tags(cfg.stack),
                opts=child(self),
            )
            aws.ecr.LifecyclePolicy(
                f"{NAME}-{image}-lifecycle",
                repository=repo.name,
                policy=lifecycle(cfg.imagesKept),
                opts=child(self),
            )
            token = aws.ecr.get_authorization_token_output(
                registry_id=repo.registry_id, opts=pulumi.InvokeOutputOptions(parent=self)
            )
            registry = docker_build.RegistryArgs(
                address=repo.repository_url, username=token.user_name, password=token.password
            )
            after = []
            if image == "streaming":
                after.append(aws.ecr.RepositoryPolicy(
                    f"{NAME}-{image}-lambda-pull",
                    repository=repo.name,
                    policy=lambda_pull_policy(),
                    opts=child(self),
                ))  # fmt: skip
            # The function is created from this reference: Lambda may pull it by then (without
            # the policy, creating it needs the deployer to be allowed to set one).
            self.refs[image] = images.build(
                image, repo.repository_url, registry, child(self, depends_on=after)
            )
        self.register_outputs({})
