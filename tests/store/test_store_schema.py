"""The tables: created, upgraded in place (columns of later versions), checked."""

from dataclasses import replace

import pytest
from helpers import spec
from sqlalchemy import text

from celery_dalga.store import TableError


def test_create_table_is_idempotent(store):
    store.create_table()
    store.create_table()
    assert store.page() == []


def test_create_table_adds_the_columns_a_table_of_an_earlier_version_lacks(store):
    with store.engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {store.table.name} DROP COLUMN attempts"))
    with store.engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {store.table.name} (job_key, path, body, location, one_off, enabled,"
                " success_count, error_count) VALUES ('k', 'p', 'b', 'UTC', :no, :yes, 0, 0)"
            ),
            {"no": False, "yes": True},
        )
    store.create_table()
    assert store.get("p", "b") is None  # the key is a hash; the row is there all the same
    assert [job.attempts for job in store.page()] == [0]
    assert store.put(spec(interval="60")).attempts == 0


def test_a_table_of_an_earlier_version_gains_the_kind_columns_in_place(store):
    """A jobs table made before callback kinds (no kind, no options): check_table asks for
    `dalga create-table`, which adds them and keeps the jobs."""
    store.put(spec(interval="60"))
    with store.engine.begin() as conn:
        for column in ("kind", "options"):
            conn.execute(text(f"ALTER TABLE {store.table.name} DROP COLUMN {column}"))
    with pytest.raises(TableError, match="lacks columns"):
        store.check_table()
    store.create_table()
    store.check_table()
    job = store.get("feeds", "1")
    assert (job.interval, job.kind, job.options) == ("60", None, None)
    kinded = replace(spec(body="2", interval="60"), kind="kala", options={"method": "GET"})
    assert (store.put(kinded).kind, store.get("feeds", "2").options) == ("kala", {"method": "GET"})
