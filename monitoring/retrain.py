"""Starting the training job: an ECS Fargate task, a Cloud Run job execution, or a local command.
Used by the monitor when the champion has degraded, and by scripts/run_training."""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass


class TriggerError(Exception):
    """The training job could not be started; the message says why, in one line."""


@dataclass(frozen=True)
class EcsTask:
    cluster: str
    task_definition: str
    subnets: list[str]
    security_groups: list[str]

    def start(self) -> str:
        """ecs:RunTask with the schedule's network settings; the task's ARN."""
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = boto3.client("ecs").run_task(
                cluster=self.cluster,
                taskDefinition=self.task_definition,
                launchType="FARGATE",
                count=1,
                networkConfiguration={
                    "awsvpcConfiguration": {
                        "subnets": self.subnets,
                        "securityGroups": self.security_groups,
                        "assignPublicIp": "ENABLED",
                    }
                },
            )
        except (BotoCoreError, ClientError) as exc:
            raise TriggerError(f"ecs:RunTask: {exc}") from exc
        if response.get("failures"):
            raise TriggerError(f"ecs:RunTask: {response['failures'][0]}")
        return response["tasks"][0]["taskArn"]


@dataclass(frozen=True)
class CloudRunJob:
    job: str  # projects/P/locations/L/jobs/J
    body: dict | None = None  # e.g. overrides

    def start(self) -> str:
        """Execute the job with this process's Google credentials; the execution's name."""
        import google.auth
        from google.auth.exceptions import GoogleAuthError
        from google.auth.transport.requests import AuthorizedSession

        try:
            credentials, _ = google.auth.default(
                scopes=["https://www.googleapis.com/auth/cloud-platform"]
            )
            response = AuthorizedSession(credentials).post(
                f"https://run.googleapis.com/v2/{self.job}:run", json=self.body or {}, timeout=60
            )
        except GoogleAuthError as exc:
            raise TriggerError(f"Google credentials: {exc}") from exc
        if response.status_code >= 400:
            raise TriggerError(f"run job: HTTP {response.status_code}: {response.text[:300]}")
        return response.json().get("metadata", {}).get("name", self.job)


@dataclass(frozen=True)
class Command:
    argv: list[str]

    def start(self) -> str:
        """Run it to the end (the local platform has no job runner); its last line."""
        try:
            result = subprocess.run(self.argv, capture_output=True, text=True, timeout=3600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TriggerError(f"{shlex.join(self.argv)}: {exc}") from exc
        last = (result.stdout.strip().splitlines() or result.stderr.strip().splitlines() or [""])[
            -1
        ]
        if result.returncode != 0:
            raise TriggerError(f"{shlex.join(self.argv)} exited {result.returncode}: {last}")
        return last
