"""GCS artifact bucket: uniform bucket-level access, public access prevention enforced, versioned,
old versions expire. dev can be force-destroyed; prod is protected and retained."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra import outputs as out
from infra.config import PlatformConfig


class ArtifactBucket(pulumi.ComponentResource):
    name: pulumi.Output[str]

    def __init__(self, name: str, cfg: PlatformConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:gcp:ArtifactBucket", name, None, opts)
        bucket = gcp.storage.Bucket(
            f"{name}-bucket",
            location=cfg.gcpRegion,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning=gcp.storage.BucketVersioningArgs(enabled=True),
            force_destroy=not cfg.protect,
            lifecycle_rules=[
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                        days_since_noncurrent_time=cfg.noncurrentVersionDays, with_state="ARCHIVED"
                    ),
                ),
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(
                        type="AbortIncompleteMultipartUpload"
                    ),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(age=7),
                ),
                # What the service stacks write, kept as long as the stack says: deleting the
                # live version leaves a noncurrent one, which the first rule deletes.
                *(
                    gcp.storage.BucketLifecycleRuleArgs(
                        action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                        condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                            age=days, matches_prefixes=[prefix], with_state="LIVE"
                        ),
                    )
                    for prefix, days in out.expiring(cfg)
                ),
            ],
            labels={"project": "mlops-platform", "stack": cfg.stack},
            opts=pulumi.ResourceOptions(
                parent=self, protect=cfg.protect, retain_on_delete=cfg.protect
            ),
        )
        self.name = bucket.name
        self.register_outputs({"name": bucket.name})
