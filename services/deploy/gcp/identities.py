"""Who each GCP workload is: a service account per workload (the model API, training, scoring,
monitoring, and with streaming on the stream handler) and one for Cloud Scheduler (and Pub/Sub's
push: `push`); each workload's account may read its own MLflow password in Secret Manager and no
other (the admin's stays with people)."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.gcp.accounts import account_id
from infra.mlflow_server import user_for
from services.deploy.components import NAME, child
from services.deploy.config import ServicesConfig
from services.deploy.gcp.common import Platform

WORKLOADS = {"api": "model-api", "training": "training", "scoring": "scoring",
             "monitoring": "monitoring"}  # fmt: skip
"""Account label -> the workload (and its MLflow user)."""


class Identities(pulumi.ComponentResource):
    accounts: dict[str, gcp.serviceaccount.Account]
    """Label (api, training, scoring, monitoring, scheduler; streaming, push) -> its account."""
    password_access: dict[str, gcp.secretmanager.SecretIamMember]
    """Label -> the grant to read its password: a workload starts only after it."""

    def __init__(
        self, cfg: ServicesConfig, platform: Platform, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("mlops:services:gcp:Identities", f"{NAME}-identities", None, opts)
        workloads = {**WORKLOADS, **({"streaming": "streaming"} if cfg.streaming else {})}
        roles = (*WORKLOADS, "scheduler", *(("streaming", "push") if cfg.streaming else ()))
        self.accounts = {
            role: gcp.serviceaccount.Account(
                f"{NAME}-{role}",
                account_id=account_id(cfg.stack, role),
                display_name=f"MLOps {role} ({cfg.stack})",
                opts=child(self),
            )
            for role in roles
        }
        self.password_access = {
            label: gcp.secretmanager.SecretIamMember(
                f"{NAME}-{label}-password-access",
                secret_id=platform.password_secrets[user_for(workload)],
                role="roles/secretmanager.secretAccessor",
                member=self.member(label),
                opts=child(self),
            )
            for label, workload in workloads.items()
        }
        self.register_outputs({})

    def member(self, label: str) -> pulumi.Output[str]:
        return self.accounts[label].email.apply(lambda e: f"serviceAccount:{e}")
