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
    from infra.gcp.platform import build

try:
    exported = build(cfg, admin_password)
except ConfigError as exc:  # what only a provider lookup can tell (e.g. sizes offered per zone)
    raise pulumi.RunError(str(exc)) from None
for key, value in exported.items():
    pulumi.export(key, value)
