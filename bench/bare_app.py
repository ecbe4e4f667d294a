"""The floor of the framework: a bare FastAPI app serving the champion's booster, one row a request.

Usage: python -m bench.bare_app --models-dir DIR --port PORT

``POST /predict`` takes ``{"row": [...]}``, the model's float64 input row (categoricals as
training category codes, missing as null) that churnguard's scorer builds from a client's
features, validates it with a pydantic model, predicts with the same LightGBM booster on one
thread and answers ``{"probability": p}``. No features, drivers, actions, store or auth: what
uvicorn, FastAPI and pydantic cost around one booster call, for ``http_bench`` to set beside
churnguard's ``/api/v1/score`` and ``mlflow models serve``. The same uvicorn settings as
``churnguard serve`` (one worker; the collector frozen after loading, as the service does).
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel


class Row(BaseModel):
    """One model input row."""

    row: list[float | None]


class Prediction(BaseModel):
    """The booster's probability for the row."""

    probability: float


def create_app(models_dir: Path) -> FastAPI:
    """The bare app around the local last-known-good model's booster."""
    from churnguard.modeling.model import load_local_model

    booster = load_local_model(models_dir).booster
    if booster is None:
        raise SystemExit("the bare app serves a LightGBM model; this one is not")
    width = booster.num_feature()
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    async def predict(body: Row) -> Prediction:
        x = np.array([body.row], dtype=np.float64).reshape(1, width)  # None -> nan
        return Prediction(probability=float(booster.predict(x, num_threads=1)[0]))

    gc.collect()
    gc.freeze()
    return app


def main(argv: Sequence[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(create_app(args.models_dir), host="127.0.0.1", port=args.port, workers=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
