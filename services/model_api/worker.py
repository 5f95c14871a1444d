"""What one API worker sets for its whole process, in one place, once, when it starts.

`services.model_api.main` (the module each worker imports, once) calls `tune` and gives the model
holder `settle_heap` to run after each swap. An app built any other way (tests, benchmarks) leaves
its process as it found it.
"""

from __future__ import annotations

import gc
import os
import sys

from services.model_api.settings import Settings

SWITCH_INTERVAL_S = 0.001
"""How soon a thread holding the GIL hands it over (CPython's default is 5 ms)."""


def tune(settings: Settings) -> None:
    # The prediction log's flushes hold the GIL for milliseconds at a time (joining the buffer,
    # building the table, boto3's request); at the default interval a request that arrives
    # meanwhile waits that long at each of its steps (docs/benchmarks.md: the prediction log).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    # The registry client's own defaults (7 retries with backoff, 120 s timeouts) would hide an
    # outage for minutes and hold a fresh instance's first answer as long. A worker talks to the
    # registry only from the model holder (and the model download), so the settings are its.
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.registry_retries)
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(settings.registry_timeout_seconds)


def settle_heap() -> None:
    """Collect what the last model left, then freeze the heap: Python's full collections walk
    every tracked object, and a worker's heap (MLflow, pandas, scikit-learn, the model) made each
    one a pause that landed on whichever requests were waiting (the p99; docs/benchmarks.md).
    Frozen objects are never walked again, so later collections see only what requests and the
    prediction log allocate. Run after each swap, when the old model has been let go; the
    unfreeze first lets its cycles be collected rather than kept forever."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
