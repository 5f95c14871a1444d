"""scripts/deploy, preview and destroy, run for real with stand-ins for the pulumi and gcloud CLIs on their PATH."""

from __future__ import annotations

import os

from tests.unit.scripts.test_delivery import (
    ROOT,
    run,
)


def test_destroy_prod_without_confirmation_refuses_and_runs_nothing(fake_pulumi):
    result = run("destroy", "prod", path=f"{fake_pulumi.parent / 'bin'}:{os.environ['PATH']}")
    assert result.returncode == 1
    assert (
        "refusing to destroy 'prod'" in result.stderr and "--confirm-destroy-prod" in result.stderr
    )
    assert not fake_pulumi.exists()  # not even `pulumi whoami`


def test_deploy_without_the_pulumi_cli_says_so():
    result = run("deploy", "dev", path="/usr/bin:/bin")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "error: the Pulumi CLI is not installed: https://www.pulumi.com/docs/install/"
    )


def test_deploy_runs_platform_then_services_with_the_policy_pack(fake_pulumi):
    result = run("deploy", "dev", path=f"{fake_pulumi.parent / 'bin'}:{os.environ['PATH']}")
    assert result.returncode == 0, result.stderr
    calls = fake_pulumi.read_text().splitlines()
    assert calls[0] == "whoami"
    # Each stack is created on a first deploy (`up --stack` alone refuses an unknown stack).
    assert calls[1] == f"stack select --create --stack dev --cwd {ROOT} --non-interactive"
    assert calls[2].startswith("up --skip-preview --stack dev --cwd " + str(ROOT) + " ")
    assert calls[3] == (
        f"stack select --create --stack dev --cwd {ROOT / 'services'} --non-interactive"
    )
    assert calls[4].startswith(f"up --skip-preview --stack dev --cwd {ROOT / 'services'} ")
    assert all(f"--policy-pack {ROOT / 'policy'}" in c for c in (calls[2], calls[4]))
    assert calls[5] == f"stack output --json --stack dev --cwd {ROOT / 'services'}"
    assert "==> serving v1" in result.stdout


def test_destroy_runs_services_then_platform(fake_pulumi):
    result = run("destroy", "staging", path=f"{fake_pulumi.parent / 'bin'}:{os.environ['PATH']}")
    assert result.returncode == 0, result.stderr
    calls = [c for c in fake_pulumi.read_text().splitlines()[1:] if c.startswith("destroy")]
    assert [c.split(" --cwd ")[1].split()[0] for c in calls] == [str(ROOT / "services"), str(ROOT)]


def test_unknown_stack_is_refused_before_pulumi(fake_pulumi):
    result = run("deploy", "qa", path=f"{fake_pulumi.parent / 'bin'}:{os.environ['PATH']}")
    assert result.returncode == 1 and "unknown stack 'qa'" in result.stderr
    assert not fake_pulumi.exists()


def test_preview_runs_both_projects_with_the_policy_pack_and_changes_nothing(fake_pulumi):
    result = run("preview", "dev", path=f"{fake_pulumi.parent / 'bin'}:{os.environ['PATH']}")
    assert result.returncode == 0, result.stderr
    calls = fake_pulumi.read_text().splitlines()[1:]
    assert len(calls) == 2 and all(c.startswith("preview --diff --stack dev") for c in calls)
    assert all("--policy-pack" in c and "--yes" not in c for c in calls)
