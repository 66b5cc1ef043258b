"""The tables (jobs, instances, history, links, load): their definitions, and creating, upgrading in
place, checking and dropping them."""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    case,
    inspect,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateColumn, CreateIndex

from celery_dalga import adopt
from celery_dalga.load import BUCKETS

log = logging.getLogger(__name__)
Instant = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
Id = BigInteger().with_variant(Integer(), "sqlite")
# a job_key (hex) as MariaDB and MySQL compare it fastest: bytes, not utf8mb4 characters
Key = String(64).with_variant(
    mysql.VARCHAR(64, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
)


class TableError(RuntimeError):
    """The table exists but is not a celery-dalga jobs table."""


def make_table(metadata: MetaData, name: str) -> Table:
    """The jobs table; `next_run` is indexed for the claim's WHERE and ORDER BY, and the
    listings' orders each have an index. Columns and indexes added after the first version are
    added in place by create_tables."""
    return Table(
        name,
        metadata,
        Column("id", Id, primary_key=True, autoincrement=True),
        Column("job_key", String(64), nullable=False, unique=True),
        Column("path", String(255), nullable=False),
        Column("body", Text, nullable=False),
        Column("interval", String(64)),
        Column("cron", String(255)),
        Column("repeat", String(255)),
        Column("location", String(64), nullable=False, default="UTC"),
        Column("one_off", Boolean, nullable=False, default=False),
        Column("exchange", String(255)),
        Column("task", String(255)),
        Column("kind", String(32)),  # the callback kind's name; NULL: chosen by exchange/task
        Column("options", Text),  # the kind's own settings, a JSON object
        Column("parent_key", String(64), index=True),
        Column("retries", Integer),
        Column("retry_interval", Float),
        Column("epsilon", Float),
        Column("enabled", Boolean, nullable=False, default=True),
        Column("next_run", Instant, index=True),
        Column("next_sched", Instant),
        Column("triggered_at", Instant),
        Column("token", String(32)),
        Column("instance_id", BigInteger),
        Column("attempts", Integer, nullable=False, default=0, server_default="0"),
        Column("success_count", Integer, nullable=False, default=0),
        Column("error_count", Integer, nullable=False, default=0),
        Column("last_success", Instant),
        Column("last_attempt", Instant),
        Column("last_error", Text),
        Column("last_duration", Float),
        Column("created_at", Instant),
        Index(f"ix_{name}_path_id", "path", "id"),
        # the listings' keyset pages in next-sched order (store.jobs.listing)
        Index(f"ix_{name}_next_sched_id", "next_sched", "id"),
        Index(f"ix_{name}_path_next_sched_id", "path", "next_sched", "id"),
    )


def make_instances_table(metadata: MetaData, name: str) -> Table:
    """The processes serving a jobs table, each with its last heartbeat (Dalga's
    <table>_instances, with what each process is)."""
    return Table(
        f"{name}_instances",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=False),
        Column("kind", String(16), nullable=False),
        Column("host", String(255), nullable=False),
        Column("pid", Integer, nullable=False),
        Column("started_at", Instant, nullable=False),
        Column("updated_at", Instant, nullable=False, index=True),
    )


def make_history_table(metadata: MetaData, name: str) -> Table:
    """Each job's last attempts: a ring of slots per job key (so a one-off job's history
    outlives the job), pruned by age."""
    return Table(
        f"{name}_runs",
        metadata,
        Column("job_key", Key, primary_key=True),
        Column("slot", Integer, primary_key=True, autoincrement=False),
        Column("sched", Instant, nullable=False),
        Column("manual", Boolean, nullable=False),
        Column("finished", Instant, nullable=False, index=True),
        Column("status", Integer),
        Column("error", Text),
        Column("duration", Float, nullable=False),
        Column("instance_id", BigInteger),
        Column("outcome", String(16), nullable=False),
    )


def make_links_table(metadata: MetaData, name: str) -> Table:
    """Links between jobs beyond a job's one parent_key (Kala's): `parent`, the other job is
    one of the job's parents (a job with several parents has them all here); `on_failure`,
    the other job runs when a run of the job fails for good. Keyed for the job's links, and
    indexed by the other job for the wake after its runs and its deletion."""
    return Table(
        f"{name}_links",
        metadata,
        Column("job_key", Key, primary_key=True),
        Column("link", String(16), primary_key=True),
        Column("other_key", Key, primary_key=True),
        Index(f"ix_{name}_links_other", "other_key", "link"),
    )


def make_load_table(metadata: MetaData, name: str) -> Table:
    """Callbacks per minute, outcome and writing process (its shard: no two processes add to
    one row): their count and a lateness histogram, one column a bucket (celery_dalga.load).
    Each process adds its tally every few seconds; pruned by age."""
    return Table(
        f"{name}_load",
        metadata,
        Column("minute", Instant, primary_key=True),
        Column("outcome", String(16), primary_key=True),
        Column("shard", BigInteger, primary_key=True, autoincrement=False),
        Column("count", BigInteger, nullable=False, default=0),
        *(Column(f"b{i:02d}", BigInteger, nullable=False, default=0) for i in range(BUCKETS)),
    )


def if_running(jobs: Table, value: Any) -> Any:
    """`value` while a run holds the row (its token is set), else NULL."""
    return case((jobs.c.token.is_not(None), value), else_=None)


def create_tables(engine: Engine, jobs: Table, instances: Table) -> None:
    """Create the tables and their indexes if they are missing, and add the columns that a jobs
    table made by an earlier version lacks; adopt Dalga's own table (celery_dalga.adopt)."""
    inspector = inspect(engine)
    if inspector.has_table(jobs.name):
        columns = {c["name"]: c for c in inspector.get_columns(jobs.name)}
        if adopt.is_dalgas(columns):
            if engine.dialect.name not in ("mysql", "mariadb"):
                raise TableError(
                    f"table {jobs.name!r} is Dalga's: it can be adopted on MariaDB or MySQL only"
                )
            adopt.adopt(engine, jobs, instances)
        elif "job_key" not in columns:
            raise TableError(
                f"table {jobs.name!r} is not a celery-dalga jobs table (it has no job_key "
                "column); give DALGA_TABLE another name"
            )
    jobs.metadata.create_all(engine, checkfirst=True)
    present = {c["name"] for c in inspect(engine).get_columns(jobs.name)}
    missing = [c for c in jobs.columns if c.name not in present]
    with engine.begin() as conn:
        for column in missing:
            added = CreateColumn(column).compile(dialect=engine.dialect)
            conn.execute(text(f"ALTER TABLE {jobs.name} ADD COLUMN {added}"))
    for index in missing_indexes(engine, jobs):
        _add_index(engine, jobs, index)


def missing_indexes(engine: Engine, jobs: Table) -> list[Index]:
    """The jobs table's indexes that the table in the database lacks (matched by columns)."""
    have = {tuple(ix["column_names"]) for ix in inspect(engine).get_indexes(jobs.name)}
    return [ix for ix in jobs.indexes if tuple(c.name for c in ix.columns) not in have]


def _add_index(engine: Engine, jobs: Table, index: Index) -> None:
    """Build an index on the existing table, online on MariaDB and MySQL (writes go on); a
    process that starts at the same time may build it first."""
    ddl = str(CreateIndex(index).compile(dialect=engine.dialect))
    online = " LOCK=NONE" if engine.dialect.name in ("mysql", "mariadb") else ""
    started = time.monotonic()
    try:
        with engine.begin() as conn:
            conn.execute(text(ddl + online))
    except DBAPIError:
        if index in missing_indexes(engine, jobs):
            raise
        return
    took = time.monotonic() - started
    log.info("table %r: %s in %.1f s", jobs.name, ddl, took)


def check_tables(engine: Engine, jobs: Table) -> None:
    """TableError unless the tables exist with every column this version writes."""
    inspector = inspect(engine)
    name = jobs.name
    if inspector.has_table(name) and adopt.is_dalgas(
        {c["name"]: c for c in inspector.get_columns(name)}
    ):
        raise TableError(
            f"table {name!r} is Dalga's own (or its adoption was cut short): "
            "run `dalga create-table` to adopt it"
        )
    for table in jobs.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            raise TableError(f"table {table.name!r} does not exist: run `dalga create-table`")
        present = {c["name"] for c in inspector.get_columns(table.name)}
        if any(c.name not in present for c in table.columns):
            raise TableError(
                f"table {table.name!r} lacks columns of this version: run `dalga create-table`"
            )
    if missing_indexes(engine, jobs):  # the listings name them (store.jobs.listing)
        raise TableError(f"table {name!r} lacks indexes of this version: run `dalga create-table`")
