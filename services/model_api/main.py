"""ASGI entrypoint, `services.model_api.main:app`: imported once by each worker that
`python -m services.model_api.serve` starts, so this is where a worker tunes its process."""

import logging

from services.model_api import worker
from services.model_api.app import create_app
from services.model_api.settings import get_settings
from trip_model.serving import ModelHolder

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
settings = get_settings()
worker.tune(settings)
holder = ModelHolder(settings, after_swap=worker.settle_heap)
app = create_app(settings, holder)
