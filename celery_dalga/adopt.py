"""Adopting Dalga's own jobs table in place, on MariaDB or MySQL (where Dalga ran).

Dalga's table (v4: id, path, body, interval, location, next_run, next_sched, instance_id; v3
without id; v1 and v2 with the interval in whole seconds and no location or next_sched)
becomes a celery-dalga jobs table, every job kept, without copying the table under a lock:

1. drop Dalga's foreign key to <table>_instances, and replace that table (heartbeats only);
2. make `id` the primary key (an online rebuild; v1 to v3 have no id and block writes while
   it is added);
3. rename Dalga's next_run, next_sched and interval to dalga_* and add this version's columns
   beside them: their types differ (DATETIME without fractions, NOT NULL), and changing a
   column's type would copy the table under a lock;
4. fill the new columns from Dalga's, CHUNK rows by id a transaction;
5. build the indexes online, then drop the dalga_* columns.

Each step looks at the table first, so running it again, or after an interruption, finishes
what is left and changes nothing else; the dalga_* columns are there until the last step.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import Integer, Table, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import CreateColumn, CreateIndex, UniqueConstraint

log = logging.getLogger(__name__)

CHUNK = 10_000
RENAMED = ("next_run", "next_sched", "interval")  # Dalga's types differ from this version's
OLD = "dalga_"  # the prefix of Dalga's renamed columns while their values are copied
DALGA_COLUMNS = {"path", "body", "interval", "next_run"}  # in every version of Dalga's table


def is_dalgas(columns: dict[str, Any]) -> bool:
    """Whether a table with these columns (name -> reflected column) is Dalga's own jobs table,
    of any version, or one whose adoption was cut short."""
    unfinished = any(OLD + name in columns for name in RENAMED)
    return unfinished or ("job_key" not in columns and DALGA_COLUMNS <= columns.keys())


def adopt(engine: Engine, table: Table, instances: Table, chunk: int = CHUNK) -> None:
    """Turn Dalga's table `table.name` into `table`, and its instances table into `instances`."""
    log.info("adopting Dalga's table %r in place", table.name)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        _drop_foreign_keys(conn, table.name)
        _replace_instances(conn, instances)
        _id_primary_key(conn, table.name)
        _add_columns(conn, table)
        _copy(conn, table.name, chunk)
        _add_indexes(conn, table)
        _drop_dalgas_columns(conn, table.name)
    log.info("table %r adopted: celery-dalga serves its jobs now", table.name)


def _q(name: str | None) -> str:
    return f"`{name}`"


def _columns(conn: Connection, name: str) -> dict[str, Any]:
    return {c["name"]: c for c in inspect(conn).get_columns(name)}


def _alter(conn: Connection, name: str, what: str, changes: list[str], lock: str = "NONE") -> None:
    """One ALTER TABLE, logged as `what`; LOCK=NONE lets reads and writes go on while it runs."""
    if changes:
        started = time.monotonic()
        conn.execute(text(f"ALTER TABLE {_q(name)} {', '.join(changes)}, LOCK={lock}"))
        took = time.monotonic() - started
        log.info("table %r: %s in %.1f s (LOCK=%s)", name, what, took, lock)


def _drop_foreign_keys(conn: Connection, name: str) -> None:
    """Dalga's instance_id points at <table>_instances, whose rows go after a minute of
    silence; celery-dalga's claims would break that reference."""
    inspector = inspect(conn)
    drops = [f"DROP FOREIGN KEY {_q(fk['name'])}" for fk in inspector.get_foreign_keys(name)]
    if drops:
        drops += [
            f"DROP INDEX {_q(ix['name'])}"
            for ix in inspector.get_indexes(name)
            if ix["column_names"] == ["instance_id"]
        ]
    _alter(conn, name, "dropped the foreign key to Dalga's instances table", drops)


def _replace_instances(conn: Connection, instances: Table) -> None:
    """Dalga's <table>_instances (id, updated_at) holds heartbeats only: drop it, make ours."""
    if inspect(conn).has_table(instances.name) and "kind" not in _columns(conn, instances.name):
        conn.execute(text(f"DROP TABLE {_q(instances.name)}"))
        log.info("dropped Dalga's instances table %r (heartbeats only)", instances.name)
    instances.create(conn, checkfirst=True)


def _id_primary_key(conn: Connection, name: str) -> None:
    """Dalga's primary key is (path, body), compared without case; a job is (path, body)
    exactly, so `id` becomes the primary key and job_key the unique one."""
    inspector = inspect(conn)
    primary = inspector.get_pk_constraint(name)["constrained_columns"]
    if primary == ["id"]:
        return
    drop = ["DROP PRIMARY KEY"] if primary else []
    if "id" in _columns(conn, name):
        unique_id = [
            f"DROP INDEX {_q(ix['name'])}"
            for ix in inspector.get_indexes(name)
            if ix["column_names"] == ["id"]
        ]
        _alter(conn, name, "made id the primary key", [*drop, "ADD PRIMARY KEY (id)", *unique_id])
    else:  # Dalga before v4; adding an AUTO_INCREMENT column blocks writes
        add = "ADD COLUMN id BIGINT NOT NULL AUTO_INCREMENT FIRST"
        primary = [add, *drop, "ADD PRIMARY KEY (id)"]
        _alter(conn, name, "added id, the primary key", primary, lock="SHARED")


def _add_columns(conn: Connection, table: Table) -> None:
    """Rename Dalga's columns whose type changes and add every column the table lacks, in one
    instant ALTER."""
    present = _columns(conn, table.name)
    renames = []
    if "job_key" not in present:
        renames = [f"RENAME COLUMN {_q(c)} TO {_q(OLD + c)}" for c in RENAMED if c in present]
        present = {(OLD + c if c in RENAMED else c): v for c, v in present.items()}
    dialect = conn.dialect
    adds = [
        f"ADD COLUMN {CreateColumn(c).compile(dialect=dialect)}"
        for c in table.columns
        if c.name not in present
    ]
    what = f"renamed {len(renames)} of Dalga's columns to {OLD}*, added {len(adds)} columns"
    _alter(conn, table.name, what, renames + adds)


def _copy(conn: Connection, name: str, chunk: int) -> None:
    """Fill the new columns from Dalga's, `chunk` rows by id a transaction: job_key as
    celery_dalga.jobs.job_key computes it, one-off where Dalga's interval is empty (v1, v2:
    0), enabled unless Dalga's next_run is NULL (paused), location '' as UTC, no run in flight
    (Dalga's instance is gone). Rows whose values are there already are written again, the
    same."""
    present = _columns(conn, name)
    if OLD + "next_run" not in present:
        return
    if isinstance(present[OLD + "interval"]["type"], Integer):
        one_off, interval = f"{OLD}interval = 0", f"NULLIF(CAST({OLD}interval AS CHAR), '0')"
    else:
        one_off, interval = f"{OLD}interval = ''", f"NULLIF({OLD}interval, '')"
    sched = OLD + ("next_sched" if OLD + "next_sched" in present else "next_run")
    update = text(
        f"UPDATE {_q(name)} SET"
        " job_key = SHA2(CONCAT(path, CHAR(0 USING utf8mb4), body), 256),"
        f" one_off = ({one_off}), `interval` = {interval},"
        " location = IF(location = '', 'UTC', location),"
        f" enabled = ({OLD}next_run IS NOT NULL), next_run = {OLD}next_run,"
        f" next_sched = {sched}, instance_id = NULL"
        " WHERE id >= :low AND id <= :high"
    )
    bound = text(f"SELECT id FROM {_q(name)} WHERE id >= :low ORDER BY id LIMIT 1 OFFSET :n")
    total, low, largest = conn.execute(
        text(f"SELECT COUNT(*), MIN(id), MAX(id) FROM {_q(name)}")
    ).one()
    done = 0
    while low is not None:
        following = conn.execute(bound, {"low": low, "n": chunk}).scalar()
        high = largest if following is None else following - 1
        done += conn.execute(update, {"low": low, "high": high}).rowcount
        log.info("table %r: copied Dalga's values of %d of %d rows", name, done, total)
        low = following


def _add_indexes(conn: Connection, table: Table) -> None:
    """Build the indexes the table lacks (matched by their columns), each online."""
    have = {tuple(ix["column_names"]) for ix in inspect(conn).get_indexes(table.name)}
    wanted = [
        (
            tuple(c.name for c in index.columns),
            str(CreateIndex(index).compile(dialect=conn.dialect)),
        )
        for index in table.indexes
    ]
    for unique in table.constraints:
        if isinstance(unique, UniqueConstraint):
            names = tuple(c.name for c in unique.columns)
            listed = ", ".join(_q(c) for c in names)
            wanted.append(
                (names, f"CREATE UNIQUE INDEX {_q(names[0])} ON {_q(table.name)} ({listed})")
            )
    for columns, ddl in sorted(wanted):  # in one order, so that every table ends up the same
        if columns not in have:
            started = time.monotonic()
            conn.execute(text(f"{ddl} LOCK=NONE"))
            took = time.monotonic() - started
            log.info("table %r: %s in %.1f s (LOCK=NONE)", table.name, ddl, took)


def _drop_dalgas_columns(conn: Connection, name: str) -> None:
    """The last step: without dalga_* columns the table is celery-dalga's."""
    present = _columns(conn, name)
    drops = [f"DROP COLUMN {_q(OLD + c)}" for c in RENAMED if OLD + c in present]
    _alter(conn, name, f"dropped Dalga's {OLD}* columns", drops)
