"""The engine a store runs on, and running a transaction again when the database rolled it back
or dropped its connection."""

from __future__ import annotations

import logging
import os
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

log = logging.getLogger(__name__)

MYSQL_TRANSIENT = {1213, 1205}  # deadlock found; lock wait timeout
SQLSTATE_TRANSIENT = {"40001", "40P01"}  # serialization failure; deadlock detected


def is_transient(exc: BaseException) -> bool:
    """A deadlock or serialization failure (the database rolled the transaction back), or a
    connection found dead (the pool has dropped it and its peers; a rerun reconnects)."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if exc.orig is None:
        return False
    args = getattr(exc.orig, "args", ())
    code = args[0] if args else None
    return code in MYSQL_TRANSIENT or getattr(exc.orig, "sqlstate", None) in SQLSTATE_TRANSIENT


def _log_rerun(state: Any) -> None:
    log.warning("transaction rolled back (%s), running it again", state.outcome.exception())


rerun_transient = retry(
    retry=retry_if_exception(is_transient),
    stop=stop_after_attempt(6),
    wait=wait_random_exponential(multiplier=0.01, max=0.3),
    before_sleep=_log_rerun,
    reraise=True,
)


def private_sqlite_file(url: str) -> None:
    """Create the file of a SQLite URL (the jobs' sqlite:///, or the embedded broker's
    sqla+sqlite:///) readable and writable by its owner only, unless it exists: it holds job
    bodies. SQLite gives its -wal and -shm files the database file's mode."""
    parsed = make_url(url.removeprefix("sqla+"))
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return
    if not path.startswith("file:"):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def make_engine(url: str) -> Engine:
    """An engine for the store; SQLite in WAL mode with immediate transactions. Connections are
    not pinged on checkout: a dead one fails its statement, the pool drops all connections
    of that age, and rerun_transient runs the transaction again on a fresh one."""
    if url.startswith("sqlite"):
        private_sqlite_file(url)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA busy_timeout=30000")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    options: dict[str, Any] = {"pool_recycle": 3600}
    if url.startswith(("mysql", "mariadb")):
        options.update(isolation_level="READ COMMITTED", connect_args={"charset": "utf8mb4"})
    return create_engine(url, **options)
