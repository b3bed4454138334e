"""Exception handlers: domain errors to their status codes, database trouble to 503, anything
unexpected to a bare 500 (never a stack trace in a body)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, InternalError, OperationalError, SQLAlchemyError

from api.orchestrators import OrchestratorUnavailableError, RetrainConflictError, RunNotFoundError
from api.serving.prediction import PayloadError

logger = logging.getLogger("api")
READ_ONLY_SQL_TRANSACTION = "25006"  # PostgreSQL's SQLSTATE for a write in a read-only transaction


def store_unavailable(error: SQLAlchemyError) -> HTTPException:
    """The prediction log's store failed a read: 503 with Retry-After (the monitoring routes, the
    promotion's shadow evidence)."""
    logger.error("prediction log store unavailable: %s", getattr(error, "orig", error))
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "prediction log store unavailable: retry later",
                         headers={"Retry-After": "5"})  # fmt: skip


def add_exception_handlers(app: FastAPI) -> None:
    @app.exception_handler(PayloadError)
    async def _payload(_: Request, error: PayloadError) -> JSONResponse:
        return JSONResponse({"detail": [problem.as_dict() for problem in error.problems]}, status_code=422)

    @app.exception_handler(RetrainConflictError)
    async def _conflict(_: Request, error: RetrainConflictError) -> JSONResponse:
        return JSONResponse({"detail": str(error), "run_id": error.run_id}, status_code=status.HTTP_409_CONFLICT)

    @app.exception_handler(OrchestratorUnavailableError)
    async def _unavailable(_: Request, error: OrchestratorUnavailableError) -> JSONResponse:
        return JSONResponse(
            {"detail": f"retraining orchestrator unavailable: {error}"}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE
        )

    @app.exception_handler(RunNotFoundError)
    async def _not_found(_: Request, error: RunNotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=status.HTTP_404_NOT_FOUND)

    @app.exception_handler(OperationalError)
    async def _database_unavailable(request: Request, error: OperationalError) -> JSONResponse:
        # locked past the busy timeout, read-only, disk full, server gone: the client may retry later
        return _unavailable_database(request, error)

    @app.exception_handler(InternalError)
    async def _database_internal(request: Request, error: InternalError) -> JSONResponse:
        # PostgreSQL reports a read-only database (a failed-over replica, default_transaction_read_only)
        # as an InternalError (SQLSTATE 25006), SQLite as an OperationalError: both are a 503
        if getattr(error.orig, "sqlstate", None) == READ_ONLY_SQL_TRANSACTION:
            return _unavailable_database(request, error)
        return await _unexpected(request, error)

    @app.exception_handler(DataError)
    async def _unstorable_value(request: Request, error: DataError) -> JSONResponse:
        # Inputs are validated before they reach the database (api.db.crud.find_user, the schemas):
        # this is the safety net for a value the database refuses (PostgreSQL: NUL byte, too long).
        logger.error("database refused a value on %s %s: %s", request.method, request.url.path, error.orig)
        return JSONResponse(
            {"detail": "a value in the request cannot be stored"}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
        return JSONResponse({"detail": "internal server error"}, status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)


def _unavailable_database(request: Request, error: DBAPIError) -> JSONResponse:
    logger.error("users database unavailable on %s %s: %s", request.method, request.url.path, error.orig)
    return JSONResponse(
        {"detail": "users database unavailable (locked, read-only or unreachable): retry later"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "5"},
    )
