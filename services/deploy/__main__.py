"""The mlops-services Pulumi program: read and validate config, deploy onto the platform, export."""

import pulumi

from infra.config import ConfigError
from services.deploy.config import from_pulumi

try:
    cfg = from_pulumi()
except ConfigError as exc:
    raise pulumi.RunError(str(exc)) from None

if cfg.cloud == "aws":
    from services.deploy.aws import build
else:
    from services.deploy.gcp import build

pulumi.export("cloud", cfg.cloud)
for key, value in build(cfg).items():
    pulumi.export(key, value)
