"""The service stacks' configuration (`mlops-services:` keys), validated before anything is declared."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from infra.config import ConfigError, decode, explain, stack_kind

NAMESPACE = "mlops-services"

DEFAULTS: dict[str, dict[str, Any]] = {
    "dev": {
        "apiMinTasks": 1,
        "apiMaxTasks": 2,
        "logRetentionDays": 7,
        "trainingSchedule": "0 6 * * 1",
    },
    "staging": {
        "apiMinTasks": 1,
        "apiMaxTasks": 3,
        "logRetentionDays": 30,
        "trainingSchedule": "0 6 * * 1",
    },
    "prod": {
        "apiMinTasks": 2,
        "apiMaxTasks": 10,
        "logRetentionDays": 90,
        "trainingSchedule": "0 5 1 * *",
    },
}
# CloudWatch accepts only these retention periods.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    3653,
)


class ServicesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stack: str
    kind: Literal["dev", "staging", "prod"]
    cloud: Literal["aws", "gcp"]
    platformProject: str = "mlops-platform"
    platformStack: str | None = None
    """Default: this stack's name."""
    platformOrg: str | None = None
    """Default: this stack's organization."""
    modelApiImage: str | None = None
    """A prebuilt image reference; when set (with trainingImage), nothing is built."""
    trainingImage: str | None = None
    trainData: str
    valData: str
    trainingSchedule: str
    """Five-field cron, UTC (e.g. "0 6 * * 1" = Mondays 06:00)."""
    apiMinTasks: int = Field(ge=0, le=100)
    apiMaxTasks: int = Field(ge=1, le=100)
    apiCpu: int = Field(default=512, ge=256, le=4096)
    """AWS task CPU units (GCP: 1 vCPU per 1024)."""
    apiMemoryMb: int = Field(default=1024, ge=512, le=30720)
    apiAllowedCidrs: tuple[str, ...] = ("0.0.0.0/0",)
    """AWS: who may reach the load balancer."""
    apiPublic: bool = True
    """GCP: allow unauthenticated invocation of the model API."""
    certificateArn: str | None = None
    """AWS: an ACM certificate; adds HTTPS and redirects HTTP to it."""
    logRetentionDays: int
    modelRefreshSeconds: int = Field(default=30, ge=1, le=3600)

    @field_validator("trainData", "valData")
    @classmethod
    def _uri(cls, value: str) -> str:
        if not value.startswith(("s3://", "gs://")) or len(value.split("/")) < 4:
            raise ValueError(
                f"{value!r}: must be s3://bucket/key or gs://bucket/key of a TLC parquet file"
            )
        return value

    @field_validator("trainingSchedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"{value!r}: must be a five-field cron expression like '0 6 * * 1'")
        return value

    @field_validator("logRetentionDays")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(f"{value}: allowed: {', '.join(map(str, LOG_RETENTION_DAYS))}")
        return value

    def check(self) -> None:
        if self.apiMinTasks > self.apiMaxTasks:
            raise ConfigError(
                f"{NAMESPACE}:apiMinTasks ({self.apiMinTasks}) must not exceed apiMaxTasks ({self.apiMaxTasks})"
            )
        if bool(self.modelApiImage) != bool(self.trainingImage):
            raise ConfigError(
                f"{NAMESPACE}:modelApiImage and {NAMESPACE}:trainingImage: set both (prebuilt) or neither (built here)"
            )
        scheme = "s3://" if self.cloud == "aws" else "gs://"
        for key in ("trainData", "valData"):
            if not getattr(self, key).startswith(scheme):
                raise ConfigError(
                    f"{NAMESPACE}:{key}: on {self.cloud} the data must be at {scheme}…"
                )

    @property
    def prebuilt(self) -> bool:
        return bool(self.modelApiImage)


def aws_cron(expr: str) -> str:
    """Standard five-field cron -> EventBridge Scheduler's cron(m h dom mon dow year)."""
    minute, hour, dom, month, dow = expr.split()
    names = {
        "0": "SUN",
        "1": "MON",
        "2": "TUE",
        "3": "WED",
        "4": "THU",
        "5": "FRI",
        "6": "SAT",
        "7": "SUN",
    }
    if dow == "*":
        dow = "?"
    else:
        dow = ",".join(names.get(d, d.upper()) for d in dow.split(","))
        dom = "?"
    return f"cron({minute} {hour} {dom} {month} {dow} *)"


def load(raw: dict[str, Any], stack: str) -> ServicesConfig:
    kind = stack_kind(stack)
    values = {}
    for key, value in raw.items():
        name = key.split(":", 1)[1] if key.startswith(f"{NAMESPACE}:") else key
        if ":" not in name:
            values[name] = decode(value)
    if "cloud" not in values:
        raise ConfigError(f"{NAMESPACE}:cloud is required; allowed: aws, gcp")
    for key in ("trainData", "valData"):
        if key not in values:
            raise ConfigError(
                f"{NAMESPACE}:{key} is required: the s3:// or gs:// URI of a TLC month"
            )
    try:
        cfg = ServicesConfig(**{**DEFAULTS[kind], **values}, stack=stack, kind=kind)
    except ValidationError as exc:
        raise ConfigError(explain(exc, NAMESPACE, ServicesConfig, {"stack", "kind"})) from None
    cfg.check()
    return cfg


def from_pulumi() -> ServicesConfig:
    import pulumi
    from pulumi.runtime import config as runtime_config

    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return load({k: v for k, v in raw.items() if k.startswith(f"{NAMESPACE}:")}, pulumi.get_stack())
