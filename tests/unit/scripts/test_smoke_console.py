"""scripts.smoke's diagnosis of the tracking server's bootstrap: replicated servers (an Auto
Scaling group's ARN, a managed instance group's id) have no one console to read, and it says so
without trying."""

from __future__ import annotations

import pytest

from scripts import smoke


@pytest.mark.parametrize("group", [
    "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:0mock:"
    "autoScalingGroupName/mlops-servers",
    "projects/p/regions/europe-west1/instanceGroupManagers/mlflow-prod",
])  # fmt: skip
def test_replicated_servers_are_not_read_as_one_vm(group, monkeypatch):
    def never(_):
        raise AssertionError("no console is read")

    monkeypatch.setattr(smoke, "read_console", never)
    assert smoke.vm_says(group).startswith("replicated servers (trackingReplicas)")
