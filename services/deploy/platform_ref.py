"""The one way the service stacks read the platform: a StackReference to the platform stack of the
same name, by the output names in infra.outputs. A missing output is an error that names it."""

from __future__ import annotations

import pulumi

from infra import outputs as platform_out
from services.deploy.config import ServicesConfig


class MissingPlatformOutput(Exception):
    pass


class PlatformRef:
    def __init__(self, cfg: ServicesConfig) -> None:
        org = cfg.platformOrg or pulumi.get_organization()
        stack = cfg.platformStack or pulumi.get_stack()
        self.name = f"{org}/{cfg.platformProject}/{stack}"
        self.ref = pulumi.StackReference(self.name)

    def require(self, key: str) -> pulumi.Output:
        def present(value):
            if value is None:
                raise MissingPlatformOutput(
                    f"platform stack {self.name} has no output {key!r}; deploy the platform "
                    "first (`pulumi up` at the repository root), or set mlops-services:platformStack"
                )
            return value

        return self.ref.get_output(key).apply(present)

    def compare_nights(self, cfg: ServicesConfig) -> None:
        """Warn at `pulumi up` when this stack's sleepSchedule is not its platform's: the API
        would wait (or sleep) while the tracking server does otherwise."""
        mine = cfg.sleepSchedule.model_dump() if cfg.sleepSchedule else None

        def compare(theirs):
            if (theirs or None) != mine:
                pulumi.log.warn(
                    f"mlops-services:sleepSchedule is {mine or 'unset'} but platform stack "
                    f"{self.name} has {theirs or 'none'}: set them alike (infra/sleep.py)"
                )

        self.ref.get_output(platform_out.SLEEP_SCHEDULE).apply(compare)


def password_secrets(cfg: ServicesConfig) -> dict[str, str]:
    """MLflow user -> the platform output naming its password's secret, for the users this stack
    runs workloads as: the stream handler's only with streaming on (a stack without streaming
    needs no platform that has its user)."""
    return {
        user: key
        for user, key in platform_out.PASSWORD_SECRETS.items()
        if user != "streaming" or cfg.streaming
    }
