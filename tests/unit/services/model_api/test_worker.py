"""A model API worker's process-wide settings: set once, by the module each worker imports, and
by nothing an app built elsewhere (a test, a benchmark) runs."""

from __future__ import annotations

import gc
import importlib
import os
import sys
import time
import weakref

import pytest

from services.model_api import worker
from services.model_api.settings import Settings

KEYS = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")


@pytest.fixture
def process_as_it_was(monkeypatch):
    """Whatever the test tunes, the process is untuned again after it."""
    for key in KEYS:
        monkeypatch.delenv(key, raising=False)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield
    sys.setswitchinterval(interval)


def test_tune_sets_the_switch_interval_and_the_registry_client(process_as_it_was):
    worker.tune(Settings(registry_retries=3, registry_timeout_seconds=9))
    assert worker.SWITCH_INTERVAL_S < 0.005
    assert sys.getswitchinterval() == pytest.approx(worker.SWITCH_INTERVAL_S)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "3"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "9"


def test_an_app_serving_a_model_leaves_the_process_untuned(
    process_as_it_was, local_store, months, tmp_path
):
    """The app, its model holder (a model loaded and swapped in) and its prediction log change
    nothing process-wide."""
    from fastapi.testclient import TestClient

    from services.model_api.app import create_app
    from training import train
    from training.models import Candidate

    train.run(str(months.train), str(months.val), [Candidate("linear")], model_name="untuned")
    settings = Settings(model_name="untuned", prediction_log=str(tmp_path / "log"))
    frozen = gc.get_freeze_count()
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 60
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get("/ready").status_code == 200
    assert sys.getswitchinterval() == pytest.approx(0.005)
    assert not any(key in os.environ for key in KEYS)
    assert gc.get_freeze_count() == frozen


def test_the_worker_module_tunes_its_process_and_settles_the_heap_after_a_swap(
    process_as_it_was, monkeypatch
):
    monkeypatch.setenv("MODEL_API_REGISTRY_RETRIES", "0")
    from services.model_api.settings import get_settings

    get_settings.cache_clear()
    sys.modules.pop("services.model_api.main", None)
    try:
        main = importlib.import_module("services.model_api.main")
    finally:
        get_settings.cache_clear()
        sys.modules.pop("services.model_api.main", None)
    assert sys.getswitchinterval() == pytest.approx(worker.SWITCH_INTERVAL_S)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    assert main.settings.registry_retries == 0
    assert main.holder.after_swap is worker.settle_heap


def test_a_settled_heap_is_frozen_and_a_replaced_model_still_collectable():
    """Full collections would walk the whole worker heap (a pause on requests): after a swap the
    heap is frozen; a model let go later is still collected, cycles and all, at the next swap,
    never kept forever by the freeze."""

    class Old:
        pass

    try:
        old = Old()
        old.cycle = old  # only the cycle collector can free it
        gone = weakref.ref(old)
        gc.freeze()  # as if it were part of the model frozen at the last swap
        del old
        worker.settle_heap()
        assert gone() is None
        assert gc.get_freeze_count() > 1_000
    finally:
        gc.unfreeze()
