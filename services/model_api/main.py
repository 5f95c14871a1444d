"""ASGI entrypoint, `services.model_api.main:app`: run by `python -m services.model_api.serve`."""

import logging

from services.model_api.app import create_app

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
app = create_app()
