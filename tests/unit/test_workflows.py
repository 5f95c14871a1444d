"""The GitHub workflows: actionlint-clean, keyless, one deployment per stack, prod reviewed."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github/workflows").glob("*.yml"))


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / ".github/workflows" / name).read_text())


def test_cloud_auth_is_keyless():
    for path in WORKFLOWS:
        text = path.read_text()
        assert "aws-access-key-id" not in text and "credentials_json" not in text, path.name
        assert yaml.safe_load(text)["permissions"]["id-token"] == "write", path.name


def test_one_deployment_at_a_time_per_stack_and_prod_behind_an_environment():
    deploy = load("deploy.yml")["jobs"]["deploy"]
    assert deploy["concurrency"] == {
        "group": "deploy-${{ needs.stack.outputs.name }}",
        "cancel-in-progress": False,
    }
    assert deploy["environment"] == "${{ needs.stack.outputs.name }}"
    runs = [s.get("run", "") for s in deploy["steps"]]
    assert any(r.startswith("scripts/deploy ") for r in runs) and any(
        r.startswith("scripts/smoke ") for r in runs
    )


def test_branches_of_the_workflows_are_the_mapped_ones():
    from scripts.delivery import BRANCH_TO_STACK

    deploy_on = load("deploy.yml")[True]["push"]["branches"]  # YAML reads `on` as True
    pr_on = load("pull-request.yml")[True]["pull_request"]["branches"]
    assert sorted(deploy_on) == sorted(pr_on) == sorted(BRANCH_TO_STACK)


def test_pull_requests_run_tests_then_preview_with_a_comment():
    jobs = load("pull-request.yml")["jobs"]
    assert any("bash .ci/run" in s.get("run", "") for s in jobs["test"]["steps"])
    assert jobs["preview"]["needs"] == "test"
    runs = " ".join(s.get("run", "") for s in jobs["preview"]["steps"])
    assert "scripts/preview" in runs and "gh pr comment" in runs


def test_previews_use_a_read_only_identity_never_the_deploy_one():
    """A pull request's code runs in the preview job: it must not hold deploy rights."""

    def identities(workflow: str, job: str) -> set[str]:
        found = set()
        for step in load(workflow)["jobs"][job]["steps"]:
            with_ = step.get("with") or {}
            found |= {v for k, v in with_.items() if k in ("role-to-assume", "service_account")}
        return found

    assert identities("pull-request.yml", "preview") == {
        "${{ vars.AWS_PREVIEW_ROLE_ARN }}",
        "${{ vars.GCP_PREVIEW_SERVICE_ACCOUNT }}",
    }
    assert identities("deploy.yml", "deploy") == {
        "${{ vars.AWS_ROLE_ARN }}",
        "${{ vars.GCP_SERVICE_ACCOUNT }}",
    }
    docs = (ROOT / "docs" / "delivery.md").read_text()  # how to set them up
    for variable in ("AWS_PREVIEW_ROLE_ARN", "GCP_PREVIEW_SERVICE_ACCOUNT", ":pull_request"):
        assert variable in docs, variable


def test_certificates_renew_weekly_for_every_stack_without_a_reviewer():
    """A scheduled run per stack, through scripts/renew-cert (which targets only the certificate
    and its secret), never alongside that stack's deploy, and not in the stack's own (reviewed)
    environment."""
    from scripts.delivery import BRANCH_TO_STACK

    workflow = load("renew-certificates.yml")
    assert workflow[True]["schedule"] and "workflow_dispatch" in workflow[True]
    job = workflow["jobs"]["renew"]
    assert sorted(job["strategy"]["matrix"]["stack"]) == sorted(BRANCH_TO_STACK.values())
    assert job["concurrency"]["group"] == "deploy-${{ matrix.stack }}"
    assert job["environment"] == "certificate-renewal"
    runs = [s.get("run", "") for s in job["steps"]]
    assert 'scripts/renew-cert "${{ matrix.stack }}"' in runs
    assert not any(r.startswith(("scripts/deploy", "pulumi ")) for r in runs)
