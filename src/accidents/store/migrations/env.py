"""Alembic environment of the prediction log (accidents.store.prediction_log.migrate runs it).

The caller hands over an open connection (config.attributes["connection"]); the version table
is the log's own, so the log may share a database with other applications' tables.
"""

from __future__ import annotations

from alembic import context

from accidents.store import drift_results, estimates, received_alerts  # noqa: F401  (their tables join the log's metadata)
from accidents.store.prediction_log import VERSION_TABLE, create_log_engine, default_url, metadata

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:  # plain `alembic` command line: the default URL
        engine = create_log_engine(default_url())
        with engine.begin() as own:
            _migrate(own)
        engine.dispose()
    else:
        _migrate(connection)


def _migrate(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection, target_metadata=metadata, version_table=VERSION_TABLE, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


run()
