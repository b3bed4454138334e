"""The monitoring database: the prediction log, the drift results, the estimated performance and
their Alembic migrations."""
