"""The mlops-platform Pulumi program: read and validate config, build the chosen cloud, export."""

import pulumi

from infra.config import NAMESPACE, ConfigError, from_pulumi

try:
    cfg = from_pulumi()
except ConfigError as exc:
    # One clear message instead of a Python traceback in `pulumi up`.
    raise pulumi.RunError(str(exc)) from None

admin_password = pulumi.Config(NAMESPACE).get_secret("adminPassword")

if cfg.cloud == "aws":
    from infra.aws.platform import build
else:
    raise pulumi.RunError(
        f"{NAMESPACE}:cloud: gcp is not available yet in this version; allowed now: aws"
    )

for key, value in build(cfg, admin_password).items():
    pulumi.export(key, value)
