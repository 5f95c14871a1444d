"""POST /predict and /predict/batch."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from services.model_api.metrics import PREDICTIONS
from services.model_api.model import Loaded, features
from services.model_api.schemas import Batch, BatchPrediction, Prediction, Ride

router = APIRouter(tags=["predict"])


def serving(request: Request) -> Loaded:
    # One read of the reference: the whole request uses one model version.
    loaded = request.app.state.model.current
    if loaded is None:
        raise HTTPException(status_code=503, detail=request.app.state.model.error)
    return loaded


@router.post("/predict", response_model=Prediction, summary="Predict one ride's duration")
def predict(ride: Ride, request: Request) -> Prediction:
    loaded = serving(request)
    duration = loaded.predict(features([ride.model_dump()]))[0]
    PREDICTIONS.labels(loaded.version).inc()
    return Prediction(duration=duration, model_version=loaded.version)


@router.post(
    "/predict/batch", response_model=BatchPrediction, summary="Predict many rides' durations"
)
def predict_batch(batch: Batch, request: Request) -> BatchPrediction:
    loaded = serving(request)
    durations = loaded.predict(features([r.model_dump() for r in batch.rides]))
    PREDICTIONS.labels(loaded.version).inc(len(durations))
    return BatchPrediction(durations=durations, model_version=loaded.version)
