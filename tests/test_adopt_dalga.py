"""A Dalga deployment switches in place: `dalga create-table` adopts Dalga's own table (its
DDL, its rows as Dalga writes them), and `dalga` with Dalga's config runs every job once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from dalga_source import dalga_ddl
from helpers import settings_on
from processes import free_port, start, stop, wait_http
from sqlalchemy import create_engine, text
from waiting import stays

from celery_dalga import adopt
from celery_dalga.jobs import job_key
from celery_dalga.process import store_for
from celery_dalga.store import TableError

DALGA = [sys.executable, "-m", "celery_dalga.cli"]

INSTANCE = 3141592653  # a Dalga instance id (a random uint32)
NON_ASCII = "çağrı ü €"


def dalga_rows(due: datetime, past: datetime) -> list[tuple]:
    """(path, body, interval, location, next_run, next_sched, instance_id) as Dalga v4 writes
    them: '' for a one-off interval and for UTC, next_run NULL when paused, instance_id set
    while a run is in flight, next_run after next_sched while a failed run waits to retry."""
    later = due + timedelta(seconds=5)
    return [
        ("once", "1", "", "", due, due, None),
        ("tick", "every 60", "PT60S", "", due, due, None),
        ("minute", NON_ASCII, "PT1M", "Europe/Istanbul", due, due, None),
        ("paused", "p", "PT5M", "Europe/Istanbul", None, due, None),
        ("running", "r", "PT1H", "", past, past, INSTANCE),
        ("retrying", "x", "PT10M", "", later, due, None),
    ]


@pytest.fixture
def dalga_table(mariadb_url):
    """make(due, past) -> the name of a fresh table made and filled as Dalga does it."""
    engine = create_engine(mariadb_url)
    names: list[str] = []

    def make(due: datetime, past: datetime) -> str:
        name = f"dalga_{uuid.uuid4().hex[:8]}"
        names.append(name)
        with engine.begin() as conn:
            for ddl in dalga_ddl(name):
                conn.execute(text(ddl))
            conn.execute(
                text(f"INSERT INTO `{name}_instances` VALUES (:id, UTC_TIMESTAMP())"),
                {"id": INSTANCE},
            )
            for path, body, interval, location, next_run, next_sched, instance in dalga_rows(
                due, past
            ):
                conn.execute(
                    text(
                        f"INSERT INTO `{name}` (path, body, `interval`, location, next_run,"
                        " next_sched, instance_id) VALUES (:p, :b, :i, :l, :r, :s, :n)"
                    ),
                    dict(
                        p=path,
                        b=body,
                        i=interval,
                        l=location,
                        r=naive(next_run),
                        s=naive(next_sched),
                        n=instance,
                    ),
                )
        return name

    yield make
    with engine.begin() as conn:
        for name in names:
            for table in (name, f"{name}_runs", f"{name}_instances"):
                conn.execute(text(f"DROP TABLE IF EXISTS `{table}`"))
    engine.dispose()


def naive(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None)


def snapshot(url: str, name: str) -> tuple:
    """The tables' DDL and every row, to compare before and after."""
    engine = create_engine(url)
    with engine.connect() as conn:
        ddl = [
            conn.execute(text(f"SHOW CREATE TABLE `{t}`")).one()[1]
            for t in (name, f"{name}_instances", f"{name}_runs")
        ]
        rows = conn.execute(text(f"SELECT * FROM `{name}` ORDER BY id")).all()
    engine.dispose()
    return ddl, rows


DUE = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
PAST = datetime(2030, 1, 1, 0, 0, 0, tzinfo=UTC)


@pytest.fixture
def stop_instances():
    from celery_dalga import process

    yield
    process.stop()


def test_the_upgrade_keeps_every_job_its_next_run_schedule_and_location(
    dalga_table, mariadb_url, stop_instances
):
    from webapi import create_app

    name = dalga_table(DUE, PAST)
    with create_engine(mariadb_url).connect() as conn:
        ids = dict(conn.execute(text(f"SELECT path, id FROM `{name}`")).all())
    settings = settings_on(mariadb_url, name)
    store = store_for(settings)
    with pytest.raises(TableError, match="run `dalga create-table`"):
        store.check_table()
    store.create_table()
    store.check_table()

    with store.engine.connect() as conn:
        keys = conn.execute(text(f"SELECT path, body, job_key FROM `{name}`")).all()
    assert len(keys) == 6 and all(key == job_key(path, body) for path, body, key in keys)
    api = create_app(settings, store).test_client()
    shown = {}
    for path, body, *_ in dalga_rows(DUE, PAST):
        answer = api.get(f"/jobs/{quote(path)}/{quote(body)}")
        assert answer.status_code == 200, answer.json
        job = answer.json
        assert job["id"] == ids[path]
        shown[path] = {k: job[k] for k in ("interval", "location", "next_run", "next_sched")}
        assert (job["path"], job["body"], job["instance_id"]) == (path, body, None)
    assert shown == {
        "once": dict(
            interval="P0D",
            location="UTC",
            next_run="2030-01-02T03:04:05Z",
            next_sched="2030-01-02T03:04:05Z",
        ),
        "tick": dict(
            interval="PT60S",
            location="UTC",
            next_run="2030-01-02T03:04:05Z",
            next_sched="2030-01-02T03:04:05Z",
        ),
        "minute": dict(
            interval="PT1M",
            location="Europe/Istanbul",
            next_run="2030-01-02T06:04:05+03:00",
            next_sched="2030-01-02T06:04:05+03:00",
        ),
        "paused": dict(
            interval="PT5M",
            location="Europe/Istanbul",
            next_run=None,
            next_sched="2030-01-02T06:04:05+03:00",
        ),
        "running": dict(
            interval="PT1H",
            location="UTC",
            next_run="2030-01-01T00:00:00Z",
            next_sched="2030-01-01T00:00:00Z",
        ),
        "retrying": dict(
            interval="PT10M",
            location="UTC",
            next_run="2030-01-02T03:04:10Z",
            next_sched="2030-01-02T03:04:05Z",
        ),
    }
    once, paused = store.get("once", "1"), store.get("paused", "p")
    assert once is not None and once.one_off and once.enabled
    assert paused is not None and not paused.enabled
    assert api.get("/status").json["total_jobs"] == 6
    # the table takes new jobs, also one whose (path, body) Dalga's key took for another's
    assert api.put("/jobs/tick/EVERY%2060?interval=PT1M").status_code == 201
    assert store.get("tick", "every 60") is not None


def test_upgrading_again_changes_nothing(dalga_table, mariadb_url):
    name = dalga_table(DUE, PAST)
    store_for(settings_on(mariadb_url, name)).create_table()
    before = snapshot(mariadb_url, name)
    store_for(settings_on(mariadb_url, name)).create_table()
    assert snapshot(mariadb_url, name) == before


def test_an_upgrade_cut_short_is_refused_then_finished_by_running_it_again(
    dalga_table, mariadb_url
):
    whole, cut = dalga_table(DUE, PAST), dalga_table(DUE, PAST)
    store_for(settings_on(mariadb_url, whole)).create_table()
    store = store_for(settings_on(mariadb_url, cut))
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        adopt._drop_foreign_keys(conn, cut)
        adopt._replace_instances(conn, store.instances)
        adopt._id_primary_key(conn, cut)
        adopt._add_columns(conn, store.table)
        adopt._copy(conn, cut, chunk=2)  # copied; no indexes yet; Dalga's columns still there
    with pytest.raises(TableError, match="cut short"):
        store.check_table()
    store.create_table()
    (ddl, rows), (whole_ddl, whole_rows) = snapshot(mariadb_url, cut), snapshot(mariadb_url, whole)
    assert [d.replace(cut, "T") for d in ddl] == [d.replace(whole, "T") for d in whole_ddl]
    assert rows == whole_rows


def test_dalga_with_dalgas_config_runs_each_job_of_dalgas_table_once_at_its_time(
    tmp_path, dalga_table, mariadb_url, endpoint
):
    now = datetime.now(UTC).replace(microsecond=0)
    due, past = now + timedelta(seconds=20), now - timedelta(seconds=30)
    name = dalga_table(due, past)
    port = free_port()
    (tmp_path / "dalga.toml").write_text(
        "[mysql]\n"
        'host = "127.0.0.1"\n'
        "port = 3306\n"
        f'db = "{mariadb_url.rsplit("/", 1)[1]}"\n'
        f'table = "{name}"\n'
        'user = "root"\n'
        'password = ""\n'
        "\n[listen]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        "\n[endpoint]\n"
        f'baseURL = "{endpoint.base_url}"\n'
        'timeout = "5s"\n'
        "\n[jobs]\n"
        'scanFrequency = "500ms"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALGA_")}
    env["PYTHONUNBUFFERED"] = "1"
    created = subprocess.run(
        DALGA + ["-config", "dalga.toml", "-create-tables"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert created.returncode == 0, created.stderr
    assert f"table {name!r} adopted" in created.stderr
    proc = start(DALGA + ["-config", "dalga.toml"], env, tmp_path, "dalga.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/status", proc, timeout=60)
        up = datetime.now(UTC)
        paths = ("once", "tick", "minute", "running", "retrying")
        for path in paths:
            endpoint.wait_for(path, 1, timeout=90)
        stays(  # a window for a second call of any job to show (there must be none)
            lambda: [len(endpoint.calls_to(p)) for p in (*paths, "paused")] == [1] * 5 + [0],
            3,
            lambda: f"calls: {[c.path for c in endpoint.calls]}",
        )
    finally:
        code = stop(proc, timeout=30)
    log = proc.log_path.read_text()
    assert code == 0, log
    offset = time.time() - time.monotonic()
    expected = {  # path: (body, Dalga-Sched, not called before)
        "once": ("1", due, due),
        "tick": ("every 60", due, due),
        "minute": (NON_ASCII, due, due),
        "running": ("r", past, past),
        "retrying": ("x", due, due + timedelta(seconds=5)),
    }
    for path, (body, sched, earliest) in expected.items():
        (call,) = endpoint.calls_to(path)
        called = datetime.fromtimestamp(call.at + offset, UTC)
        assert call.body == body
        assert datetime.fromisoformat(call.sched) == sched
        assert (
            earliest - timedelta(seconds=0.5) <= called <= max(earliest, up) + timedelta(seconds=15)
        ), (path, called, earliest, up)
    assert endpoint.calls_to("paused") == []


def going_back(table: str) -> list[str]:
    """The statements of docs/coming-from-dalga.md's "Going back to Dalga", for `table`."""
    page = (Path(__file__).parents[1] / "docs" / "coming-from-dalga.md").read_text()
    block = page.split("## Going back to Dalga", 1)[1].split("```sql\n", 1)[1].split("```", 1)[0]
    named = re.sub(r"\bdalga(?=\b|_instances|_runs|_links)", table, block).replace(
        "ix_dalga_", f"ix_{table}_"
    )
    return [statement.strip() for statement in named.split(";") if statement.strip()]


def dalga_shape(conn, name: str) -> tuple:
    """A table's columns (name, type, nullable) and indexes (name, unique, columns), in any
    order, the table's name left out."""
    columns = conn.execute(
        text(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t"
        ),
        {"t": name},
    ).all()
    indexes = conn.execute(
        text(
            "SELECT INDEX_NAME, NON_UNIQUE, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX)"
            " FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()"
            " AND TABLE_NAME = :t GROUP BY INDEX_NAME, NON_UNIQUE"
        ),
        {"t": name},
    ).all()
    return sorted(map(tuple, columns)), sorted(map(tuple, indexes))


def test_going_back_as_the_docs_say_gives_dalga_its_table_and_jobs(dalga_table, mariadb_url):
    adopted, untouched = dalga_table(DUE, PAST), dalga_table(DUE, PAST)
    store_for(settings_on(mariadb_url, adopted)).create_table()
    engine = create_engine(mariadb_url)
    columns = "id, path, body, `interval`, location, next_run, next_sched"
    with engine.begin() as conn:
        for statement in going_back(adopted):
            conn.execute(text(statement))
        assert dalga_shape(conn, adopted) == dalga_shape(conn, untouched)
        back, before = (
            conn.execute(text(f"SELECT {columns}, instance_id FROM `{t}` ORDER BY id")).all()
            for t in (adopted, untouched)
        )
    engine.dispose()
    assert [row[:-1] for row in back] == [row[:-1] for row in before]
    assert all(row.instance_id is None for row in back)


def test_dalga_v2s_table_with_intervals_in_seconds_is_adopted(mariadb_url):
    """Dalga v2: interval INT UNSIGNED (0 = one-off), next_run NOT NULL, no location, no
    next_sched, no id."""
    name = f"dalga_{uuid.uuid4().hex[:8]}"
    engine = create_engine(mariadb_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE `{name}_instances` (id INT UNSIGNED NOT NULL,"
                " updated_at DATETIME NOT NULL, PRIMARY KEY (id)) DEFAULT CHARSET=utf8mb4"
            )
        )
        conn.execute(
            text(
                f"CREATE TABLE `{name}` (path VARCHAR(255) NOT NULL, body VARCHAR(255) NOT NULL,"
                " `interval` INT UNSIGNED NOT NULL, next_run DATETIME NOT NULL,"
                " instance_id INT UNSIGNED, PRIMARY KEY (path, body), KEY (next_run),"
                f" FOREIGN KEY (instance_id) REFERENCES `{name}_instances` (id)"
                " ON DELETE SET NULL) DEFAULT CHARSET=utf8mb4"
            )
        )
        conn.execute(
            text(
                f"INSERT INTO `{name}` (path, body, `interval`, next_run) VALUES"
                f" ('a', '{NON_ASCII}', 0, '2030-01-02 03:04:05'),"
                " ('b', '2', 300, '2030-01-02 03:04:05')"
            )
        )
    try:
        store = store_for(settings_on(mariadb_url, name))
        store.create_table()
        one_off, periodic = store.get("a", NON_ASCII), store.get("b", "2")
        assert one_off is not None and periodic is not None
        assert (one_off.one_off, one_off.interval, one_off.location) == (True, None, "UTC")
        assert (periodic.one_off, periodic.interval) == (False, "300")
        assert periodic.next_run == periodic.next_sched == DUE
    finally:
        with engine.begin() as conn:
            for table in (name, f"{name}_runs", f"{name}_instances"):
                conn.execute(text(f"DROP TABLE IF EXISTS `{table}`"))
        engine.dispose()
