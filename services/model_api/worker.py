"""What one API worker sets for its whole process, in one place, once, when it starts.

`services.model_api.main` (the module each worker imports, once) calls `tune` and gives the model
holder `settle_heap` to run after each swap. An app built any other way (tests, benchmarks) leaves
its process as it found it.
"""

from __future__ import annotations

import gc
import sys

from services.model_api.settings import Settings
from trip_model.serving import tune_registry_client

SWITCH_INTERVAL_S = 0.001
"""How soon a thread holding the GIL hands it over (CPython's default is 5 ms)."""


def tune(settings: Settings) -> None:
    # The prediction log's flushes hold the GIL for milliseconds at a time (joining the buffer,
    # building the table, boto3's request); at the default interval a request that arrives
    # meanwhile waits that long at each of its steps (docs/benchmarks.md: the prediction log).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    tune_registry_client(settings)


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
