"""The monitoring database: the prediction log, the drift results and their Alembic migrations."""
