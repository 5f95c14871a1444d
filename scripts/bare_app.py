"""The ceiling for `make benchmark`: a bare FastAPI app with nothing but a no-op answer, served the
way the model API is (services.model_api.serve --app scripts.bare_app:app: same workers, a
listening socket each), so the model API's figures can be read against what the framework and
server alone cost on this machine."""

from __future__ import annotations

from fastapi import FastAPI, Request

app = FastAPI()


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@app.post("/noop")
async def noop(request: Request) -> dict:
    await request.body()  # read what /predict would read
    return {"status": "ok"}
