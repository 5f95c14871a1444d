"""The service stacks' configuration (`mlops-services:` keys), validated before anything is declared."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from infra import alerting
from infra.config import ConfigError, decode, explain, stack_kind
from infra.sleep import SleepSchedule

NAMESPACE = "mlops-services"

DEFAULTS: dict[str, dict[str, Any]] = {
    "dev": {
        "apiMinTasks": 1,
        "apiMaxTasks": 2,
        "logRetentionDays": 7,
        "trainingSchedule": "0 6 * * 1",
        "scoringShards": 2,
    },
    "staging": {
        "apiMinTasks": 1,
        "apiMaxTasks": 3,
        "logRetentionDays": 30,
        "trainingSchedule": "0 6 * * 1",
        "scoringShards": 2,
    },
    "prod": {
        "apiMinTasks": 2,
        "apiMaxTasks": 10,
        "logRetentionDays": 90,
        "trainingSchedule": "0 5 1 * *",
        "scoringShards": 4,
    },
}
# vCPUs -> the memory sizes (MiB) a task may have: Fargate's combinations (AWS Batch and ECS);
# Cloud Run allows up to 4 GiB per CPU.
FARGATE_MEMORY = {
    1: range(2048, 8192 + 1, 1024),
    2: range(4096, 16384 + 1, 1024),
    4: range(8192, 30720 + 1, 1024),
}
# Cloud Run: at least 2 GiB with 4 CPUs, at most 4 GiB per CPU.
CLOUD_RUN_MIN_MEMORY = {1: 512, 2: 512, 4: 2048}
MONTH = "{month}"
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
    """A prebuilt image reference; when set (with the other three), nothing is built."""
    trainingImage: str | None = None
    scoringImage: str | None = None
    monitoringImage: str | None = None
    streamingImage: str | None = None
    """With streaming on, a prebuilt stack names this one too."""
    trainData: str | None = None
    valData: str | None = None
    trainingDataPrefix: str | None = None
    """Continuous training: a prefix TLC months are copied into; each run validates on the
    newest month and trains on the trainingMonths before it (instead of trainData/valData)."""
    trainingMonths: int = Field(default=1, ge=1, le=36)
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
    """GCP: allow unauthenticated invocation of the model API (Cloud Run's invoker check off: no
    allUsers binding, which an organisation restricting member domains refuses)."""
    sleepSchedule: SleepSchedule | None = None
    """dev and staging: the model API has no task at night, its alerts are muted, and no job may
    be scheduled then (infra.sleep; set it as on the platform stack, which stops the tracking
    server)."""
    schedulerRegion: str | None = Field(default=None, pattern=r"^[a-z]+-[a-z]+[0-9]+$")
    """GCP: where the Cloud Scheduler jobs live (default: gcp:region). Cloud Scheduler is not
    offered in every region Cloud Run is (its locations page); a job calls its Cloud Run job's
    URL in any region."""
    imagesKept: int = Field(default=20, ge=1, le=1000)
    """Versions of each image the registry keeps: ECR expires the rest; Artifact Registry deletes
    the rest once 30 days old."""
    certificateArn: str | None = None
    """AWS: an ACM certificate; adds HTTPS and redirects HTTP to it."""
    logRetentionDays: int
    modelRefreshSeconds: int = Field(default=30, ge=1, le=3600)
    scoringInput: str
    """TLC files the monthly scoring job reads, `{month}` standing for the month (default:
    trainData with its YYYY-MM replaced by {month}). On GCP its bucket needs uniform bucket-level
    access: the job's read access is limited to this prefix by an IAM condition."""
    scoringOutput: str | None = None
    """Prefix for the part files (default: batch-predictions/{month}/ in the artifact bucket)."""
    scoringShards: int = Field(ge=1, le=100)
    """Parallel tasks (AWS Batch array size, Cloud Run task count)."""
    scoringSchedule: str = "0 6 25 * *"
    """Five-field cron, UTC. TLC publishes a month about two months later."""
    scoringMonthsBack: int = Field(default=2, ge=0, le=24)
    """Which month a scheduled run scores: this many months before the run's month."""
    scoringCpu: Literal[1, 2, 4] = 1
    """vCPUs per scoring task."""
    scoringMemoryMb: int = 4096
    predictionLog: bool = True
    """The model API logs its predictions under predictions/ in the artifact bucket."""
    monitoringSchedule: str = "0 7 * * *"
    """Five-field cron, UTC: when the monitor checks the champion."""
    monitoringDays: int = Field(default=7, ge=1, le=90)
    """Days of logged traffic compared with the training reference."""
    driftThreshold: float = Field(default=0.1, gt=0, le=1)
    driftShare: float = Field(default=0.5, gt=0, le=1)
    maxRmseIncrease: float = Field(default=0.1, gt=0, le=10)
    """Degraded when the realised RMSE exceeds the validation RMSE by more than this share."""
    retrainOnDegraded: bool = True
    alertEmail: str | None = None
    """Where alerts go: an email address (AWS: an SNS subscription to confirm from the mail; GCP:
    a notification channel). Neither this nor alertWebhook: no alerts (said at `pulumi up`)."""
    alertWebhook: str | None = None
    """Where alerts go, also or instead: an https:// URL (AWS: an SNS subscription, which the
    endpoint confirms; GCP: a webhook notification channel)."""
    alertApi5xxPercent: float = Field(default=1.0, gt=0, le=100)
    """Alert when more than this share (%) of the model API's answers in 5 minutes are 5xx."""
    alertApiP95Ms: int = Field(default=500, ge=1, le=60_000)
    """Alert when the model API's p95 latency over 5 minutes exceeds this (ms)."""
    streaming: bool = True
    """Streaming predictions: ride events on a stream in, their predictions on a stream out (AWS:
    Kinesis, a Lambda function; GCP: Pub/Sub, a Cloud Run service behind a push subscription)."""
    streamShards: int | None = Field(default=None, ge=1, le=500)
    """AWS: the input stream's shards (provisioned mode); unset: on-demand mode."""
    streamBatchSize: int = Field(default=100, ge=1, le=10_000)
    """AWS: records per Lambda invocation at most."""
    streamBatchWindowSeconds: int = Field(default=1, ge=0, le=300)
    """AWS: how long Lambda gathers records before invoking with fewer than streamBatchSize."""
    streamMaxAttempts: int = Field(default=5, ge=5, le=100)
    """Deliveries of a failing record (a batch on AWS, a message on GCP) before it goes to the
    dead letters: AWS retries (attempts - 1, bisecting the batch) then the SQS queue; GCP's
    subscription forwards it to the dead-letter topic (Pub/Sub allows 5-100)."""
    streamMemoryMb: int = Field(default=1024, ge=512, le=10_240)
    """AWS: the Lambda function's memory (its CPU grows with it); GCP: the Cloud Run service's."""

    @field_validator("trainData", "valData")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(("s3://", "gs://")) or len(value.split("/")) < 4:
            raise ValueError(
                f"{value!r}: must be s3://bucket/key or gs://bucket/key of a TLC parquet file"
            )
        return value

    @field_validator("trainingDataPrefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is not None and (
            not value.startswith(("s3://", "gs://")) or not value.split("://", 1)[1].strip("/")
        ):
            raise ValueError(f"{value!r}: must be s3://bucket/prefix/ or gs://bucket/prefix/")
        return value

    @field_validator("scoringInput", "scoringOutput")
    @classmethod
    def _scoring_uri(cls, value: str | None) -> str | None:
        if value is not None and (
            not value.startswith(("s3://", "gs://")) or len(value.split("/")) < 4
        ):
            raise ValueError(f"{value!r}: must be s3://bucket/key or gs://bucket/key")
        return value

    @field_validator("trainingSchedule", "scoringSchedule", "monitoringSchedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"{value!r}: must be a five-field cron expression like '0 6 * * 1'")
        try:
            for name, text in zip(CRON_FIELDS, value.split(), strict=True):
                cron_values(name, text)
        except CronError as exc:
            raise ValueError(f"{value!r}: {exc}") from None
        return value

    _alert_email = field_validator("alertEmail")(staticmethod(alerting.email))
    _alert_webhook = field_validator("alertWebhook")(staticmethod(alerting.webhook))

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
        images = self.image_keys
        if len({bool(getattr(self, key)) for key in images}) != 1:
            raise ConfigError(
                f"{', '.join(f'{NAMESPACE}:{k}' for k in images)}: set all {len(images)} "
                "(prebuilt) or none (built here)"
            )
        if self.streamingImage and not self.streaming:
            raise ConfigError(f"{NAMESPACE}:streamingImage: set with streaming off")
        scheme = "s3://" if self.cloud == "aws" else "gs://"
        for key in ("trainData", "valData", "trainingDataPrefix", "scoringInput", "scoringOutput"):
            if getattr(self, key) and not getattr(self, key).startswith(scheme):
                raise ConfigError(
                    f"{NAMESPACE}:{key}: on {self.cloud} the data must be at {scheme}…"
                )
        if self.cloud == "aws":
            for key in ("trainingSchedule", "scoringSchedule", "monitoringSchedule"):
                try:
                    aws_cron(getattr(self, key))
                except CronError as exc:
                    raise ConfigError(f"{NAMESPACE}:{key}: {exc}") from None
        self.check_sleep()
        if self.cloud == "aws" and self.scoringMemoryMb not in FARGATE_MEMORY[self.scoringCpu]:
            allowed = FARGATE_MEMORY[self.scoringCpu]
            raise ConfigError(
                f"{NAMESPACE}:scoringMemoryMb: {self.scoringMemoryMb} with scoringCpu "
                f"{self.scoringCpu}: Fargate allows {allowed.start}-{allowed.stop - 1} "
                f"in steps of {allowed.step}"
            )
        low = CLOUD_RUN_MIN_MEMORY[self.scoringCpu]
        if self.cloud == "gcp" and not low <= self.scoringMemoryMb <= 4096 * self.scoringCpu:
            raise ConfigError(
                f"{NAMESPACE}:scoringMemoryMb: {self.scoringMemoryMb} with scoringCpu "
                f"{self.scoringCpu}: Cloud Run allows {low}-{4096 * self.scoringCpu}"
            )

    def check_sleep(self) -> None:
        """No job scheduled while the stack (and its platform) sleeps: it would fail."""
        night = self.sleepSchedule
        if night and self.kind == "prod":
            raise ConfigError(
                f"{NAMESPACE}:sleepSchedule: prod stacks stay up; allowed on dev and staging"
            )
        if night and self.cloud == "aws" and self.apiMinTasks < 1:
            # With no task there is no CPU for target tracking to scale on: the morning's
            # bounds are what bring the API back.
            raise ConfigError(
                f"{NAMESPACE}:apiMinTasks: 0 with a sleepSchedule would leave the model API "
                "without a task after the night; allowed: 1 or more"
            )
        if night and self.streaming:
            # Events in the night would fail for want of the model and, retried, end in the
            # dead letters: the stream handler needs the tracking server awake.
            raise ConfigError(
                f"{NAMESPACE}:sleepSchedule: a stack that sleeps cannot stream (rides arriving "
                "at night would end in the dead letters); set mlops-services:streaming: false"
            )
        for key in ("trainingSchedule", "scoringSchedule", "monitoringSchedule"):
            why = night.conflict(getattr(self, key)) if night else None
            if why:
                raise ConfigError(
                    f"{NAMESPACE}:{key}: {getattr(self, key)!r} {why}, when the platform "
                    f"sleeps or is starting (sleepSchedule: {night.describe()}): schedule it "
                    f"between {night.listening} and {night.sleep} {night.timeZone}"
                    + (" on weekdays, or set sleepSchedule days: daily" if "weekend" in why
                       else "")
                )  # fmt: skip

    @property
    def alerts_on(self) -> bool:
        return bool(self.alertEmail or self.alertWebhook)

    @property
    def image_keys(self) -> tuple[str, ...]:
        """The settings naming the images this stack runs (all prebuilt, or none)."""
        keys = ("modelApiImage", "trainingImage", "scoringImage", "monitoringImage")
        return (*keys, "streamingImage") if self.streaming else keys

    @property
    def images(self) -> tuple[str, ...]:
        """The images this stack runs (services.deploy.images.TARGETS)."""
        names = ("model-api", "training", "scoring", "monitoring")
        return (*names, "streaming") if self.streaming else names

    @property
    def prebuilt(self) -> bool:
        return bool(self.modelApiImage)

    def prebuilt_refs(self) -> dict[str, str]:
        """Image name -> the prebuilt reference the stack names for it."""
        return {name: str(getattr(self, key)) for name, key in zip(self.images, self.image_keys,
                                                                    strict=True)}  # fmt: skip

    @property
    def training_command(self) -> list[str]:
        """The scheduled training run's arguments: a fixed pair of months or the newest ones."""
        if self.trainingDataPrefix:
            return ["--data-prefix", self.trainingDataPrefix, "--months", str(self.trainingMonths)]
        return ["--train", str(self.trainData), "--val", str(self.valData)]

    @property
    def training_data(self) -> list[str]:
        """What the training job reads: its two months, or every key under its prefix."""
        if self.trainingDataPrefix:
            return [self.trainingDataPrefix.rstrip("/") + "/" + MONTH]
        return [str(self.trainData), str(self.valData)]

    @property
    def scoring_templated(self) -> bool:
        """Whether a scheduled run needs --month (its input or output names the month)."""
        return MONTH in self.scoringInput or MONTH in (self.scoringOutput or MONTH)


def monitoring_command(cfg: ServicesConfig, prediction_log: str | None) -> list[str]:
    """The scheduled monitor's arguments, but for how it starts training (a deploy-time value):
    the last monitoringDays of traffic, the month the scoring job scores for quality, and its
    decision and figures published as metrics (monitoring.metrics) for the alerts."""
    args = ["--prediction-log", prediction_log] if prediction_log else []
    args += ["--metrics", "cloudwatch" if cfg.cloud == "aws" else "cloud-monitoring",
             "--metrics-stack", cfg.stack]  # fmt: skip
    args += [
        "--days", str(cfg.monitoringDays),
        "--actuals", cfg.scoringInput,
        "--drift-threshold", f"{cfg.driftThreshold:g}",
        "--drift-share", f"{cfg.driftShare:g}",
        "--max-rmse-increase", f"{cfg.maxRmseIncrease:g}",
    ]  # fmt: skip
    if MONTH in cfg.scoringInput:
        args.append(f"--month=-{cfg.scoringMonthsBack}" if cfg.scoringMonthsBack else "--month=0")
    return args


def scoring_command(cfg: ServicesConfig) -> list[str]:
    """The scoring job's arguments for a scheduled run, all but --output (a deploy-time value)."""
    args = ["--input", cfg.scoringInput, "--shards", str(cfg.scoringShards)]
    if cfg.scoring_templated:
        args.append(f"--month=-{cfg.scoringMonthsBack}" if cfg.scoringMonthsBack else "--month=0")
    return args


def batch_job_name(stack: str) -> str:
    """The scoring job's AWS Batch job name: letters, digits, hyphens and underscores only."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"mlops-{stack}-scoring")[:128]


def monthly(uri: str) -> str | None:
    """A TLC file URI with its YYYY-MM replaced by {month}; None if its name has none."""
    head, _, name = uri.rpartition("/")
    templated, count = re.subn(r"\d{4}-(0[1-9]|1[0-2])", MONTH, name, count=1)
    return f"{head}/{templated}" if count else None


def read_prefix(uri: str) -> str:
    """What a role must read for this URI: the key itself, or every key where {month} varies."""
    return uri.split(MONTH, 1)[0] + "*" if MONTH in uri else uri


DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
# Field -> (lowest, highest, names for lowest, lowest+1, ...): cron's own ranges.
CRON_FIELDS = {
    "minute": (0, 59, ()),
    "hour": (0, 23, ()),
    "day of month": (1, 31, ()),
    "month": (1, 12, MONTH_NAMES),
    "day of week": (0, 7, (*DAY_NAMES, "SUN")),
}


class CronError(ValueError):
    pass


def cron_values(field: str, text: str) -> list[int] | None:
    """The values a cron field selects (None for `*`); CronError naming the field otherwise."""
    low, high, names = CRON_FIELDS[field]

    def number(token: str) -> int:
        token = token.upper()
        if token in names:
            return low + names.index(token)
        if not token.isdigit() or not low <= int(token) <= high:
            raise CronError(f"{field}: {token!r} is not in {low}-{high}")
        return int(token)

    if text == "*":
        return None
    values: set[int] = set()
    for part in text.split(","):
        span, _, step = part.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            raise CronError(f"{field}: step {step!r} must be a positive number")
        if span == "*":
            first, last = low, high
        elif "-" in span:
            first, last = (number(t) for t in span.split("-", 1))
            if first > last:
                raise CronError(f"{field}: range {span!r} runs backwards")
        else:
            first = last = number(span)
            if step:
                last = high
        values.update(range(first, last + 1, int(step or 1)))
    return sorted(values)


def aws_cron(expr: str) -> str:
    """Standard five-field cron -> EventBridge Scheduler's cron(m h dom mon dow year).

    EventBridge numbers weekdays 1-7 from Sunday (cron: 0-7, 0 and 7 Sunday), so weekdays are
    written as names; and it cannot combine a day of month with a day of week (cron runs on
    either), so one of them must be `*`. Raises CronError naming the field otherwise."""
    fields = expr.split()
    if len(fields) != 5:
        raise CronError(
            f"{expr!r}: must be five fields (minute hour day-of-month month day-of-week)"
        )
    minute, hour, dom, month, dow = fields
    for name, text in zip(CRON_FIELDS, fields, strict=True):
        cron_values(name, text)
    days = cron_values("day of week", dow)
    if days is None:
        return f"cron({minute} {hour} {dom} {month} ? *)"
    if dom != "*":
        raise CronError(
            f"{expr!r}: set a day of month or a day of week, not both (EventBridge cannot run "
            "on either, as cron does)"
        )
    weekdays = ",".join(dict.fromkeys(DAY_NAMES[d % 7] for d in days))
    return f"cron({minute} {hour} ? {month} {weekdays} *)"


def load(raw: dict[str, Any], stack: str) -> ServicesConfig:
    kind = stack_kind(stack)
    values = {}
    for key, value in raw.items():
        name = key.split(":", 1)[1] if key.startswith(f"{NAMESPACE}:") else key
        if ":" not in name:
            values[name] = decode(value)
    if "cloud" not in values:
        raise ConfigError(f"{NAMESPACE}:cloud is required; allowed: aws, gcp")
    if "trainingDataPrefix" not in values:
        for key in ("trainData", "valData"):
            if key not in values:
                raise ConfigError(
                    f"{NAMESPACE}:{key} is required (or trainingDataPrefix): the s3:// or "
                    "gs:// URI of a TLC month"
                )
    if "scoringInput" not in values:
        derived = monthly(str(values["trainData"])) if "trainData" in values else None
        if derived is None:
            raise ConfigError(
                f"{NAMESPACE}:scoringInput is required (no trainData with a YYYY-MM to "
                "derive it from): the TLC files to score, e.g. "
                "s3://bucket/yellow/yellow_tripdata_{month}.parquet"
            )
        values["scoringInput"] = derived
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
