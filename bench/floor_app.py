"""The framework floor of `make bench` (issue #26): the least a FastAPI server can do for a
`/predict` request, served by the same uvicorn as our API.

A bearer token checked with PyJWT (HS256, expiry and required claims, as api/core/security.py
does), a pydantic body of 28 floats (`{"features": [...]}`, the seed's format) and a constant
answer. No database, no model, no logging, no metrics: what our API does beyond this is the cost
the bench's ratios measure (bench/floor.py).

    FLOOR_JWT_SECRET=... uvicorn bench.floor_app:app --host 127.0.0.1 --port 8001

(No `from __future__ import annotations`: FastAPI must resolve the closure's dependency annotations.)
"""

import os
from typing import Annotated

import jwt
from fastapi import Depends, FastAPI, HTTPException, status
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel, Field

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "role", "ver"]
N_FEATURES = 28
ANSWER = {"model_version": "0", "threshold": 0.5, "data_source": "real",
          "predictions": [{"class": 0, "probability": 0.25, "threshold": 0.5, "model_version": "0"}]}  # fmt: skip


class Body(BaseModel):
    features: list[float] = Field(min_length=N_FEATURES, max_length=N_FEATURES)


def create_app(secret: str) -> FastAPI:
    app = FastAPI(title="framework floor")
    bearer = OAuth2PasswordBearer(tokenUrl="/token", auto_error=False)

    async def caller(token: Annotated[str | None, Depends(bearer)]) -> str:
        if not token:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "not authenticated")
        try:
            claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": REQUIRED_CLAIMS})
        except jwt.PyJWTError:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid token") from None
        return claims["sub"]

    @app.post("/predict")
    async def predict(body: Body, user: Annotated[str, Depends(caller)]) -> dict:
        return ANSWER

    @app.get("/ready")
    async def ready() -> dict:
        return {"status": "ready"}

    return app


def __getattr__(name: str) -> FastAPI:
    """`bench.floor_app:app`, built on first access from FLOOR_JWT_SECRET (no import-time work)."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()["app"] = served = create_app(os.environ["FLOOR_JWT_SECRET"])
    return served
