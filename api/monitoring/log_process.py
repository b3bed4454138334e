"""The prediction log's insert process: turns packed batches into rows and inserts them.

Why a process of its own: building rows and binding ~40 values a row in the driver is Python
work that holds the GIL for ~5 us a row. In a thread of the API it competed with the event loop:
1,000-row requests served ~1.45x slower with logging on (bench/results/). In this process it
runs on the other core; the API's writer thread only packs arrays and pipes them here.

Protocol over two pipes (multiprocessing.connection framing): the API first sends the database
URL and busy timeout (on the pipe, not the command line: a URL may hold a password), then per
write one pickled list of `PackedRows` (one per model: the seed's, the report-time model's,
inserted in one transaction); this process answers ("ok", rows), ("error", message) when the
database refused (worth a retry) or ("invalid", message) when the payload cannot become rows. It holds no
state between writes (each is one transaction), so the API can resend a failed write or restart
this process at any time. It exits when the API closes its pipe (also when the API dies), and
ignores SIGINT/SIGTERM, so a Ctrl-C or a stop of the process group leaves the API time to
drain its queue through it.

    python -m api.monitoring.log_process <read fd> <write fd>
"""

from __future__ import annotations

import pickle
import signal
import sys
from typing import Any

import numpy as np
from sqlalchemy import Boolean, Float
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from accidents.features import FEATURE_NAMES
from accidents.store.prediction_log import create_log_engine, predictions
from api.monitoring.packed_rows import PackedRows


class InsertStatement:
    """The log's INSERT compiled once for the engine's dialect, executed as one driver-level
    executemany: SQLAlchemy Core's per-row parameter processing cost ~60 us a row here (about
    8,000 rows/s); positional tuples through `exec_driver_sql` reach the goal of >= 20,000 rows/s.
    Bind processors (SQLite's datetime format) run once per batch, on the shared columns only.
    This one writes the seed's rows (/predict: the 28 feature columns); ReportInsertStatement
    the report-time model's (/v2/predict: its inputs as JSON in report_features)."""

    SHARED = ("logged_at", "request_id", "model_version", "model_source", "caller_role")
    PER_BATCH = ("threshold", "shadow", "champion_version", "model")
    COLUMNS = (*SHARED, "accident_id", *FEATURE_NAMES, "probability", "predicted_class", "threshold",
               "shadow", "champion_version", "champion_probability", "champion_class", "model")  # fmt: skip

    def __init__(self, engine: Engine):
        dialect = engine.dialect
        compiled = predictions.insert().compile(dialect=dialect, column_keys=list(self.COLUMNS))
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        order = list(compiled.positiontup or self.COLUMNS)
        if order != list(self.COLUMNS):
            raise RuntimeError(f"unexpected parameter order of the log's INSERT: {order}")
        processors = {
            name: predictions.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self.COLUMNS
        }
        # Per-row columns get Python floats, ints, bools, str or None from rows(): a Float's `to_float`
        # or a Boolean's int conversion would return them unchanged for the drivers (sqlite3 and
        # psycopg take bools); any other conversion would be skipped, so refuse it.
        plain = (Float, Boolean)
        per_row = [name for name in self.COLUMNS[len(self.SHARED) :]
                   if processors[name] is not None and not isinstance(predictions.c[name].type, plain)]  # fmt: skip
        if per_row:
            raise RuntimeError(f"columns needing per-row conversion: {per_row}")
        self._shared = [processors[name] for name in self.SHARED]
        # PostgreSQL with psycopg 3: COPY ... FROM STDIN, one round trip for the whole batch
        # (executemany gave ~5,000 rows/s there); every other database: one executemany.
        self.copy_sql = None
        if dialect.name == "postgresql" and dialect.driver == "psycopg":
            quoted = ", ".join(dialect.identifier_preparer.quote(name) for name in self.COLUMNS)
            self.copy_sql = f"COPY {dialect.identifier_preparer.format_table(predictions)} ({quoted}) FROM STDIN"

    def rows(self, packed: PackedRows) -> list[tuple[Any, ...]]:
        """One parameter tuple per row, in COLUMNS order (NaN -> NULL)."""
        width = len(self.SHARED)
        shared = [tuple(value if convert is None else convert(value)
                        for convert, value in zip(self._shared, values[:width], strict=True)) + values[width:]
                  for values in packed.shared]  # fmt: skip
        per_row_shared = [shared[index] for index in np.repeat(np.arange(len(shared)), packed.sizes).tolist()]
        champion_probabilities = packed.champion_probabilities.astype(object)
        champion_probabilities[np.isnan(packed.champion_probabilities)] = None
        missing = np.isnan(packed.champion_classes)
        champion_classes = np.where(missing, 0, packed.champion_classes).astype(np.int64).astype(object)
        champion_classes[missing] = None
        return self._rows(packed, per_row_shared, champion_probabilities.tolist(), champion_classes.tolist())

    def _rows(self, packed: PackedRows, per_row_shared: list[tuple[Any, ...]], champion_probabilities: list[Any],
              champion_classes: list[Any]) -> list[tuple[Any, ...]]:  # fmt: skip
        width = len(self.SHARED)
        features = packed.features.astype(object)
        features[np.isnan(packed.features)] = None
        return [
            (*common[:width], accident_id, *row, p, c, *common[width:-1], cp, cc, common[-1])
            for common, accident_id, row, p, c, cp, cc in zip(
                per_row_shared, packed.accident_ids, features.tolist(), packed.probabilities.tolist(),
                packed.classes.tolist(), champion_probabilities, champion_classes, strict=True)
        ]  # fmt: skip

    def execute(self, connection: Connection, rows: list[tuple[Any, ...]]) -> None:
        if self.copy_sql is None:
            if not self.positional:
                rows = [dict(zip(self.COLUMNS, row, strict=True)) for row in rows]
            connection.exec_driver_sql(self.sql, rows)
            return
        driver = connection.connection.driver_connection  # psycopg.Connection, in this transaction
        with driver.cursor() as cursor, cursor.copy(self.copy_sql) as copy:
            for row in rows:
                copy.write_row(row)


class ReportInsertStatement(InsertStatement):
    """The report-time model's rows (/v2/predict): the same columns but the seed's 28 (NULL), and
    its inputs as one JSON object per row in report_features, named by the batch's feature_names
    (orjson writes NaN as null). Built here, in the insert process, off the API's GIL."""

    COLUMNS = (*InsertStatement.SHARED, "accident_id", "probability", "predicted_class", "threshold", "shadow",
               "champion_version", "champion_probability", "champion_class", "model", "report_features")  # fmt: skip

    def _rows(self, packed: PackedRows, per_row_shared: list[tuple[Any, ...]], champion_probabilities: list[Any],
              champion_classes: list[Any]) -> list[tuple[Any, ...]]:  # fmt: skip
        import orjson

        width = len(self.SHARED)
        names = packed.feature_names
        if names is None or packed.features.shape[1] != len(names):
            raise ValueError(f"{packed.model} rows need their feature names: {names!r}, {packed.features.shape}")
        inputs = [orjson.dumps(dict(zip(names, row, strict=True))).decode() for row in packed.features.tolist()]
        return [
            (*common[:width], accident_id, p, c, *common[width:-1], cp, cc, common[-1], features)
            for common, accident_id, features, p, c, cp, cc in zip(
                per_row_shared, packed.accident_ids, inputs, packed.probabilities.tolist(),
                packed.classes.tolist(), champion_probabilities, champion_classes, strict=True)
        ]  # fmt: skip


class Statements:
    """The statement of each kind of rows: the seed's (feature_names None), anything else's."""

    def __init__(self, engine: Engine):
        self.seed = InsertStatement(engine)
        self.named = ReportInsertStatement(engine)

    def of(self, packed: PackedRows) -> InsertStatement:
        return self.seed if packed.feature_names is None else self.named


def insert(engine: Engine, statements: Statements, groups: list[PackedRows]) -> int:
    """The packed rows (one PackedRows per model) in one transaction; rows written."""
    built = []
    for packed in groups:
        statement = statements.of(packed)
        built.append((statement, statement.rows(packed)))
    with engine.begin() as connection:
        for statement, rows in built:
            statement.execute(connection, rows)
    return sum(len(rows) for _, rows in built)


def serve(read_fd: int, write_fd: int) -> None:
    from multiprocessing.connection import Connection as Pipe

    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.SIG_IGN)  # the API ends this process by closing its pipe
    requests, replies = Pipe(read_fd, writable=False), Pipe(write_fd, readable=False)
    try:
        url, busy_timeout_seconds = requests.recv()  # first message: where to write (not in argv: ps)
    except (EOFError, OSError):
        return
    engine = create_log_engine(url, busy_timeout_seconds)
    statements = Statements(engine)
    while True:
        try:
            payload = requests.recv_bytes()
        except (EOFError, OSError):
            break
        try:
            # the API's own process wrote it, on a pipe only the two processes hold
            packed = pickle.loads(payload)  # noqa: S301
            replies.send(("ok", insert(engine, statements, packed)))
        except (SQLAlchemyError, OSError) as error:
            replies.send(("error", str(getattr(error, "orig", error))))
        except Exception as error:  # a payload that cannot become rows: answered, not retried, never fatal
            replies.send(("invalid", f"{type(error).__name__}: {error}"))
    engine.dispose()


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
