"""The listings' pages: every order, both ways, with and without a path, keep each job once
across page boundaries when sort keys tie (on MariaDB, PostgreSQL and SQLite); and on MariaDB
each statement walks its index from the keyset and stops at the page (its plan, read with
ANALYZE, so that a statement that sorts or scans the table fails here, not at a million jobs)."""

from __future__ import annotations

import re

import pytest
from helpers import spec
from sqlalchemy import func, select, text

from celery_dalga.store import TableError
from celery_dalga.store.jobs import listing
from celery_dalga.wire import Cursor

ORDERS = [
    (sort_by, reverse, path)
    for sort_by in ("insert-order", "next-sched")
    for reverse in (False, True)
    for path in (None, "a")
]


def ordered(jobs, sort_by, reverse, path):
    """What a listing should give, worked out here: untimed jobs first in next-sched order."""
    jobs = [j for j in jobs if path is None or j.path == path]
    if sort_by == "insert-order":
        key = lambda j: (j.id,)  # noqa: E731
    else:
        key = lambda j: (j.next_sched is not None, j.next_sched or 0, j.id)  # noqa: E731
    return sorted(jobs, key=key, reverse=reverse)


def keyset(job, sort_by):
    return (job.id,) if sort_by == "insert-order" else (job.next_sched, job.id)


@pytest.mark.parametrize("sort_by, reverse, path", ORDERS)
@pytest.mark.parametrize("size", [1, 2, 3])
def test_pages_keep_each_job_once_when_sort_keys_tie(store, clock, sort_by, reverse, path, size):
    """Jobs put at one instant with one interval share their next_sched; dependent jobs have
    none. Walking the pages, through the cursor's text as a client would, lists each once."""
    store.put(spec(path="a", body="parent", interval="60"))
    for i in range(9):
        store.put(spec(path="ab"[i % 2], body=str(i), interval=str(60 if i % 3 else 120)))
    for i in range(3):
        store.put(spec(path="ab"[i % 2], body=f"child{i}", parent="a/parent"))
    everything = store.page(limit=1000)
    assert sum(j.next_sched is None for j in everything) == 3
    seen, after = [], None
    while page := store.page(path, sort_by, reverse, after, size):
        assert len(page) <= size
        seen += page
        cursor = Cursor.after(page[-1], path, sort_by, reverse, size).encode()
        after = Cursor.decode(cursor).last
    want = ordered(everything, sort_by, reverse, path)
    assert [j.key for j in seen] == [j.key for j in want]


@pytest.mark.parametrize("size", [1, 2, 5])
def test_the_search_pages_by_path_then_id(store, size):
    for i in range(12):
        store.put(
            spec(path=["feed/b", "feed/a", "feedx", "mail"][i % 4], body=str(i), interval="60")
        )
    store.put(spec(path="fee%_!", body="1", interval="60"))  # LIKE's wildcards, escaped
    seen, after = [], None
    while page := store.page(path_prefix="feed/", after=after, limit=size):
        seen += page
        after = (page[-1].path, page[-1].id)
    assert [(j.path, j.body) for j in seen] == sorted(
        [(j.path, j.body) for j in store.page(limit=100) if j.path.startswith("feed/")],
        key=lambda pb: (pb[0], int(pb[1])),
    )
    assert [j.path for j in store.page(path_prefix="fee%_")] == ["fee%_!"]


LIMIT = 10
FILLED = 20_000


@pytest.fixture
def filled(mariadb_url, make_store):
    """A MariaDB table of 20,000 jobs: paths a and b, 2,000 jobs to a next_sched, every
    50th one without (a dependent job's); its statistics analyzed."""
    store = make_store(mariadb_url)
    store.put_many([spec(path="ab"[i % 2], body=str(i), interval="60") for i in range(100)])
    t = store.table.name
    columns = [c.name for c in store.table.c if c.name != "id"]
    made = {
        "job_key": "SHA2(CONCAT(job_key, '-', seq), 256)",
        "body": "CONCAT(body, '-', seq)",
        "next_sched": "IF(seq % 50, TIMESTAMP('2030-01-01') + INTERVAL (seq % 10) SECOND, NULL)",
    }
    names = ", ".join(f"`{c}`" for c in columns)
    values = ", ".join(made.get(c, f"`{c}`") for c in columns)
    with store.engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO `{t}` ({names}) SELECT {values} FROM `{t}` "
                f"CROSS JOIN seq_1_to_{FILLED // 100 - 1}"
            )
        )
        conn.execute(text(f"ANALYZE TABLE `{t}`"))
    return store


def forms(store):
    """Every listing form, from the start and from a keyset deep in the table."""
    t = store.table
    with store.engine.connect() as conn:
        deep = conn.execute(
            select(t).where(t.c.id >= FILLED * 6 // 10, t.c.next_sched.is_not(None)).limit(1)
        ).first()
        untimed = conn.execute(
            select(t).where(t.c.id >= FILLED // 2, t.c.next_sched.is_(None)).limit(1)
        ).first()
        assert (
            conn.execute(
                select(func.count()).select_from(t).where(t.c.next_sched == deep.next_sched)
            ).scalar()
            > 10 * LIMIT
        )  # ties: a keyset that scanned them would show
    for sort_by, reverse, path in ORDERS:
        order = {"sort_by": sort_by, "reverse": reverse, "path": path}
        yield order, None
        if sort_by == "insert-order":
            yield order, (deep.id,)
        else:
            yield order, (deep.next_sched, deep.id)
            yield order, (None, untimed.id)
    yield {"path_prefix": "a"}, None
    yield {"path_prefix": "a"}, (deep.path, deep.id)
    yield {"parent_key": "x" * 64}, None


def test_each_listing_statement_walks_an_index_and_stops_at_the_page(filled):
    t = filled.table
    indexes = {"PRIMARY", *(ix.name for ix in t.indexes)}
    checked = 0
    with filled.engine.connect() as conn:
        for form, after in forms(filled):
            for query in listing(t, after=after, limit=LIMIT, dialect=conn.dialect.name, **form):
                sql = str(
                    query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
                )
                plan = conn.exec_driver_sql(
                    "ANALYZE FORMAT=JSON " + sql.replace("%", "%%")
                ).scalar()
                where = f"{form} after {after}: {plan}"
                assert "filesort" not in plan and "temporary_table" not in plan, where
                assert re.findall(r'"access_type": "(\w+)"', plan) in (
                    ["range"],
                    ["ref"],
                    ["index"],
                ), where
                assert re.findall(r'"key": "(\w+)"', plan)[0] in indexes, where
                rows = [float(r) for r in re.findall(r'"r_rows": ([0-9.e+]+)', plan)]
                assert rows and max(rows) <= LIMIT, where
                checked += 1
    assert checked == 31


def test_a_table_without_the_listing_indexes_gains_them_in_place(store):
    """A table of an earlier version: check_table asks for `dalga create-table`, which builds
    the indexes and keeps the jobs."""
    store.put(spec(interval="60"))
    t = store.table.name
    with store.engine.begin() as conn:
        for index in ("next_sched_id", "path_next_sched_id"):
            on = f" ON {t}" if store.engine.dialect.name in ("mysql", "mariadb") else ""
            conn.execute(text(f"DROP INDEX ix_{t}_{index}{on}"))
    with pytest.raises(TableError, match="lacks indexes"):
        store.check_table()
    store.create_table()
    store.check_table()
    assert [j.body for j in store.page(sort_by="next-sched", path="feeds")] == ["1"]
