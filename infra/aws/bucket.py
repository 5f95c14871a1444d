"""S3 artifact bucket: versioned, encrypted, every public access blocked, bucket-owner enforced,
TLS-only, old versions expire. dev can be force-destroyed; prod is protected and retained."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from infra import outputs as out
from infra.aws.common import child, tags
from infra.config import PlatformConfig


def tls_only_policy(bucket_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


class ArtifactBucket(pulumi.ComponentResource):
    name: pulumi.Output[str]
    arn: pulumi.Output[str]
    configured: list[pulumi.Resource]

    def __init__(self, name: str, cfg: PlatformConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:aws:ArtifactBucket", name, None, opts)
        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket_prefix=f"mlflow-{cfg.stack}-",
            force_destroy=not cfg.protect,
            tags=tags(cfg.stack, f"{name}-bucket"),
            opts=child(self, protect=cfg.protect, retain_on_delete=cfg.protect),
        )
        aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child(self),
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child(self),
        )
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                status="Enabled"
            ),
            opts=child(self),
        )
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="aws:kms"
                    ),
                    bucket_key_enabled=True,
                )
            ],
            opts=child(self),
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.id,
            policy=bucket.arn.apply(tls_only_policy),
            opts=child(self),
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-old-versions",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                        noncurrent_days=cfg.noncurrentVersionDays
                    ),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=7
                    ),
                ),
                # What the service stacks write, kept as long as the stack says: expiring the
                # current version leaves a noncurrent one, which the rule above deletes.
                *(
                    aws.s3.BucketLifecycleConfigurationRuleArgs(
                        id=f"expire-{prefix.rstrip('/')}",
                        status="Enabled",
                        filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=prefix),
                        expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=days),
                    )
                    for prefix, days in out.expiring(cfg)
                ),
            ],
            opts=child(self),
        )
        self.name = bucket.bucket
        self.arn = bucket.arn
        # What an object written by the program waits for: versioned and encrypted from the start.
        self.configured = [versioning, encryption]
        self.register_outputs({"name": bucket.bucket, "arn": bucket.arn})
