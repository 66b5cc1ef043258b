"""The bulk path: Store.put_many and `dalga import` (JSON lines, CSV) on MariaDB."""

import io
import json
import subprocess
import sys

import pytest
from helpers import settings_on, unique_table
from processes import dalga_env

from celery_dalga.bulk import BadRecord, import_jobs
from celery_dalga.client import Client
from celery_dalga.config import Settings
from celery_dalga.spec import parse_spec


@pytest.fixture
def store(mariadb_url, make_store):
    return make_store(mariadb_url)


@pytest.mark.parametrize(
    "params",
    [
        {"interval": "P1D", "location": "Europe/Istanbul"},
        {"one-off": "1", "immediate": "1"},
        {"cron": "0 9 * * *"},
        {"schedule": "R3/2030-01-01T00:00:00Z/PT1H"},
        {"first-run": "2031-01-01T00:00:00Z", "one-off": "1"},
    ],
)
def test_put_many_writes_what_put_writes(any_db_url, make_store, params):
    from dataclasses import asdict
    from datetime import UTC, datetime

    store = make_store(any_db_url)
    store.clock = lambda: datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
    bodies = ["plain", "quotes ' \" and \\ backslash", "é ünïcode 😀", "b" * 60000, "null"]
    for body in bodies:
        store.put(parse_spec("one", body, params))
    assert store.put_many([parse_spec("many", body, params) for body in bodies]) == len(bodies)
    for body in bodies:
        one, many = asdict(store.get("one", body)), asdict(store.get("many", body))
        assert {**one, "id": 0, "key": "", "path": ""} == {**many, "id": 0, "key": "", "path": ""}


def test_put_many_upserts_and_keeps_a_running_lease(store):
    first = [parse_spec("feeds", str(i), {"interval": "60", "immediate": "1"}) for i in range(5)]
    assert store.put_many(first) == 5
    running = store.claim(1)[0]
    again = [parse_spec("feeds", str(i), {"interval": "PT5M"}) for i in range(5)]
    store.put_many(again)
    jobs = {j.body: j for j in store.page()}
    assert len(jobs) == 5 and all(j.interval == "PT5M" for j in jobs.values())
    assert jobs[running.body].running and jobs[running.body].next_run < jobs["4"].next_run


def test_import_json_lines_and_csv(store):
    lines = "\n".join(
        json.dumps({"path": "p", "body": str(i), "interval": 60, "immediate": True})
        for i in range(1200)
    )
    client = Client(Settings(), store=store)
    assert import_jobs(client, io.StringIO(lines), "jsonl", batch=500, progress=False) == 1200
    table = "path,body,cron,location\nr,a,0 9 * * *,Europe/Istanbul\nr,b,*/5 * * * *,\n"
    assert import_jobs(client, io.StringIO(table), "csv", progress=False) == 2
    assert len(store.page(limit=2000)) == 1202
    assert store.get("r", "a").location == "Europe/Istanbul"


@pytest.mark.parametrize(
    "bad",
    [
        '{"path": "p", "body": "x", "interval": "soon"}',
        "not json",
        '{"path": "p", "body": "", "interval": 1}',
        "[1, 2]",
    ],
)
def test_a_bad_line_stops_the_import_and_names_the_line(store, bad):
    lines = '{"path": "p", "body": "ok", "interval": 60}\n' + bad + "\n"
    with pytest.raises(BadRecord, match="line 2"):
        import_jobs(Client(Settings(), store=store), io.StringIO(lines), "jsonl", progress=False)


def test_dalga_import_command(mariadb_url, tmp_path):
    settings = settings_on(mariadb_url, unique_table())
    source = tmp_path / "jobs.jsonl"
    source.write_text(
        "\n".join(
            json.dumps({"path": "cli", "body": str(i), "interval": "PT1H"}) for i in range(50)
        )
    )
    env = dalga_env(settings)
    subprocess.run([sys.executable, "-m", "celery_dalga.cli", "create-table"], env=env, check=True)
    done = subprocess.run(
        [sys.executable, "-m", "celery_dalga.cli", "import", str(source)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "imported 50 jobs" in done.stdout
    source.write_text('{"path": "cli", "body": "x", "interval": "never"}\n')
    done = subprocess.run(
        [sys.executable, "-m", "celery_dalga.cli", "import", str(source)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "line 1" in done.stderr and "Traceback" not in done.stderr
    from celery_dalga.process import store_for

    store = store_for(settings)
    assert len(store.page()) == 50
    store.drop_table()
