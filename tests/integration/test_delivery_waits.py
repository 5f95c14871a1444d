"""scripts/deploy's waits for the model API, against a model API on loopback (a server in a thread)."""

from __future__ import annotations

import pytest

from scripts.delivery import DeliveryError, ensure_champion


def test_a_first_deploy_trains_once_and_waits_for_the_model(fake_api):
    """An empty registry: the API says no version exists, the training job runs once, and
    deploy returns when the API serves what it trained."""
    started = []

    def train():
        started.append(1)
        fake_api["ready"] = True  # the job registered a champion; the API picked it up
        return "arn:aws:ecs:task/training-1"

    out = ensure_champion(fake_api["url"], train, timeout=30, poll=0.05)
    assert started == [1] and out == "serving v1 (trained by arn:aws:ecs:task/training-1)"


def test_a_model_api_that_never_gets_ready_is_an_error_with_its_reason(fake_api):
    started = []
    with pytest.raises(DeliveryError, match="not ready after 1s: alias champion not found"):
        ensure_champion(fake_api["url"], lambda: started.append(1) or "job", timeout=1, poll=0.05)
    assert started == [1]  # trained once, not once per poll


def test_a_failed_tracking_vm_bootstrap_ends_the_wait_at_once(fake_api):
    """Its console's verdict (scripts.smoke.vm_says) ends the wait at once: a training job could
    not reach the tracking server either."""
    started, asked = [], []
    line = "MLFLOW BOOTSTRAP FAILED at step python (exit 1); see /var/log/cloud-init-output.log"

    def vm():
        asked.append(1)
        return "no bootstrap verdict on its console" if len(asked) < 3 else line

    with pytest.raises(
        DeliveryError, match=r"bootstrap failed: MLFLOW BOOTSTRAP FAILED at step py"
    ):
        ensure_champion(fake_api["url"], lambda: started.append(1) or "job", 30, 0.05, vm)
    assert started == [1] and len(asked) == 3  # trained on the first poll; failed on the third
