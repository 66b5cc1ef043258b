"""The engine, the database's clock, and transactions run again after a deadlock or a dead
connection."""

import threading
from datetime import UTC, datetime

import pytest
from helpers import spec
from sqlalchemy import text

from celery_dalga.store import dialects


def test_database_clock_is_used_when_no_clock_is_set(store):
    assert abs((store.now() - datetime.now(UTC)).total_seconds()) < 5


@pytest.mark.parametrize("server", ["mariadb", "postgres"])
def test_database_clock_is_read_once_and_carried_forward(request, make_store, server):
    import time

    from sqlalchemy import event

    store = make_store(request.getfixturevalue(f"{server}_url"))
    reads = []
    event.listen(
        store.engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, *rest: reads.append(statement),
    )
    first = store.now()
    time.sleep(0.3)
    second = store.now()
    assert len(reads) == 1
    assert 0.25 < (second - first).total_seconds() < 1.0
    with store.engine.connect() as conn:
        database = dialects.read_clock(conn)
    assert abs((store.now() - database).total_seconds()) < 0.1


def test_a_killed_connection_is_replaced_without_an_error(mariadb_url, make_store):
    store = make_store(mariadb_url)
    store.put(spec(interval="60"))
    with store.engine.connect() as conn:  # the pool's one idle connection, after this block
        victim = conn.execute(text("SELECT CONNECTION_ID()")).scalar_one()
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT CONNECTION_ID()")).scalar_one() == victim
    killer = make_store(mariadb_url).engine
    with killer.connect() as conn:
        conn.execute(text(f"KILL CONNECTION {victim}"))
    killer.dispose()
    assert store.get("feeds", "1").interval == "60"
    assert store.put(spec(interval="30")).interval == "30"


def test_the_clock_is_read_on_a_fresh_connection_when_the_pooled_one_died(mariadb_url, make_store):
    store = make_store(mariadb_url)
    with store.engine.connect() as conn:  # the pool's one idle connection, after this block
        victim = conn.execute(text("SELECT CONNECTION_ID()")).scalar_one()
    killer = make_store(mariadb_url).engine
    with killer.connect() as conn:
        conn.execute(text(f"KILL CONNECTION {victim}"))
    killer.dispose()
    assert abs((store.now() - datetime.now(UTC)).total_seconds()) < 5


def test_a_real_deadlock_is_classified_as_transient(mariadb_url, make_store):

    from sqlalchemy.exc import OperationalError

    from celery_dalga.store import is_transient

    store = make_store(mariadb_url)
    a = store.put(spec(body="a", interval="60")).id
    b = store.put(spec(body="b", interval="60")).id
    table, errors, barrier = store.table.name, [], threading.Barrier(2)

    def lock(first: int, second: int) -> None:
        try:
            with store.engine.begin() as conn:
                conn.execute(text(f"SELECT id FROM {table} WHERE id = {first} FOR UPDATE"))
                barrier.wait()
                conn.execute(text(f"SELECT id FROM {table} WHERE id = {second} FOR UPDATE"))
        except OperationalError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=lock, args=ab) for ab in ((a, b), (b, a))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(errors) == 1 and is_transient(errors[0])
    assert not is_transient(ValueError("not a database error"))


def test_a_transaction_that_loses_a_real_deadlock_is_run_again(mariadb_url, make_store):

    from celery_dalga.store.engine import rerun_transient

    store = make_store(mariadb_url)
    a = store.put(spec(body="a", interval="60")).id
    b = store.put(spec(body="b", interval="60")).id
    table, barrier, attempts = store.table.name, threading.Barrier(2, timeout=10), []

    def heavier() -> None:  # modifies rows, so InnoDB picks the other one as the victim
        with store.engine.begin() as conn:
            conn.execute(text(f"UPDATE {table} SET error_count = 1 WHERE id = {b}"))
            barrier.wait()
            conn.execute(text(f"UPDATE {table} SET error_count = 1 WHERE id = {a}"))

    @rerun_transient
    def victim() -> None:
        attempts.append(1)
        with store.engine.begin() as conn:
            conn.execute(text(f"SELECT id FROM {table} WHERE id = {a} FOR UPDATE"))
            if len(attempts) == 1:
                barrier.wait()
            conn.execute(text(f"SELECT id FROM {table} WHERE id = {b} FOR UPDATE"))

    other = threading.Thread(target=heavier)
    other.start()
    victim()
    other.join(30)
    assert len(attempts) == 2
    assert store.get("feeds", "a").error_count == 1
