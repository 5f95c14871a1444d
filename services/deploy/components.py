"""What the service stacks' components share on both clouds: the resources' name prefix, the model
API's port, where in the artifact bucket the services write, and the options of a component's
child."""

from __future__ import annotations

import pulumi

from infra import outputs as platform_out

NAME = "mlops"
"""Every resource's name starts with it, as before the components (their URNs are kept)."""
API_PORT = 8000
# The bucket expires both (platform settings scoringOutputDays, predictionLogDays).
SCORING_PREFIX = platform_out.SCORING_PREFIX + "{month}/"
PREDICTIONS = platform_out.PREDICTIONS_PREFIX


def child(parent: pulumi.Resource, **kwargs) -> pulumi.ResourceOptions:
    """A component's child. Each was created at the stack's root before the stack had
    components: the alias keeps its URN, so `pulumi up` moves it instead of replacing it."""
    return pulumi.ResourceOptions(
        parent=parent, aliases=[pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)], **kwargs
    )
