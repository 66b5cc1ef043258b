"""Where MariaDB/MySQL, PostgreSQL and SQLite differ: the clock, upserts, JSON_TABLE.

On MariaDB and MySQL many rows travel as one JSON document that the server unpacks with
JSON_TABLE: escaping a million values one by one in the client cost more than the server's
work, and mysqlclient would send an executemany UPDATE row by row. Elsewhere rows travel by one
executemany (PostgreSQL's driver pipelines it; SQLite is local).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Integer,
    Select,
    Table,
    bindparam,
    cast,
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect

from celery_dalga.jobs import aware, naive


def is_mysql(dialect: Dialect) -> bool:
    """MariaDB or MySQL."""
    return dialect.name in ("mysql", "mariadb")


def has_server_clock(dialect: Dialect) -> bool:
    """Whether the database has a clock of its own (SQLite's is this host's)."""
    return dialect.name != "sqlite"


def read_clock(conn: Connection) -> datetime:
    """The database server's clock, now, as an aware UTC instant."""
    query = (
        "SELECT clock_timestamp() AT TIME ZONE 'UTC'"
        if conn.dialect.name == "postgresql"
        else "SELECT UTC_TIMESTAMP(6)"
    )
    return aware(conn.execute(text(query)).scalar_one())


def seconds_after(dialect: Dialect, column: Any, start: datetime) -> Any:
    """Whole seconds from `start` (a whole second, naive UTC) to the instant `column`, as
    an integer expression (floored where the column is not before start)."""
    if is_mysql(dialect):
        return func.timestampdiff(literal_column("SECOND"), start, column)
    if dialect.name == "postgresql":
        return cast(func.floor(func.extract("epoch", column - start)), Integer)
    seconds = func.strftime("%s", column)  # SQLite: text instants, whole seconds since 1970
    return cast(seconds, Integer) - int(start.replace(tzinfo=UTC).timestamp())


def uses_json_table(dialect: Dialect) -> bool:
    """Whether the server has JSON_TABLE (MariaDB 10.6+, MySQL 8.0.4+)."""
    if not is_mysql(dialect) or dialect.server_version_info is None:
        return False
    mariadb = getattr(dialect, "is_mariadb", False)
    return dialect.server_version_info >= ((10, 6) if mariadb else (8, 0, 4))


def json_document(rows: Sequence[Sequence[Any]]) -> str:
    """Rows of column values as the JSON document json_rows reads (instants as naive UTC text;
    JSON true and false become the BOOL columns' 1 and 0 on the server)."""
    return json.dumps(rows, default=_json_instant)


def _json_instant(value: Any) -> str:
    """An instant as JSON_TABLE reads it back into a DATETIME column (json.dumps' hook)."""
    if isinstance(value, datetime):
        return (naive(value) if value.tzinfo else value).isoformat(sep=" ")
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def json_rows(dialect: Dialect, table: Table, names: list[str], document: str | None) -> Select:
    """The rows of a JSON document (lists of the `names` columns' values of `table`) as a
    SELECT; JSON_TABLE gives each value its column's own type. A None document is bound later,
    as `document`."""
    columns = ", ".join(
        f"`{name}` {table.c[name].type.compile(dialect=dialect)} PATH '$[{i}]'"
        for i, name in enumerate(names)
    )
    source = text(f"JSON_TABLE(:document, '$[*]' COLUMNS ({columns})) AS j")
    return select(*(literal_column(f"j.`{name}`").label(name) for name in names)).select_from(
        source.bindparams(document=document)
    )


def upsert(
    dialect: Dialect,
    table: Table,
    keys: list[str],
    changes: Callable[[Any], dict[str, Any]],
    source: Select | None = None,
) -> Any:
    """INSERT-or-UPDATE on the unique `keys`, one atomic statement, of the executed rows or of
    `source` (a SELECT whose columns are named after the table's). `changes(new)` gives the
    columns an update sets; `new` holds the values the insert would have written."""
    stmt: Any = (mysql if is_mysql(dialect) else _dialect(dialect)).insert(table)
    new = stmt.inserted if is_mysql(dialect) else stmt.excluded
    if source is not None:
        stmt = stmt.from_select(list(source.selected_columns.keys()), source)
    if is_mysql(dialect):
        return stmt.on_duplicate_key_update(**changes(new))
    return stmt.on_conflict_do_update(index_elements=keys, set_=changes(new))


def insert_absent(dialect: Dialect, table: Table, key: str) -> Any:
    """INSERT that leaves a row with the same unique `key` as it is."""
    if is_mysql(dialect):
        return mysql.insert(table).on_duplicate_key_update({key: table.c[key]})
    return _dialect(dialect).insert(table).on_conflict_do_nothing(index_elements=[key])


def _dialect(dialect: Dialect) -> Any:
    return postgresql if dialect.name == "postgresql" else sqlite


def update_rows(
    conn: Connection, table: Table, columns: list[str], rows: list[dict[str, Any]]
) -> None:
    """Set `columns` of each row (by id), in one statement."""
    if uses_json_table(conn.dialect):
        names = ["id", *columns]
        document = json_document([[row[n] for n in names] for row in rows])
        source = json_rows(conn.dialect, table, names, document).subquery("changes")
        conn.execute(  # the IN keeps InnoDB on those rows: on a small table it would
            update(table)  # rather scan (and lock) every row for the join
            .where(table.c.id.in_([row["id"] for row in rows]), table.c.id == source.c.id)
            .values({table.c[name]: source.c[name] for name in columns})
        )
        return
    conn.execute(
        update(table)
        .where(table.c.id == bindparam("row_id"))
        .values({c: bindparam(c) for c in columns}),
        [{"row_id": row["id"], **{c: row[c] for c in columns}} for row in rows],
    )
