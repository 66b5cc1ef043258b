"""The `dalga` command as a user runs it: create-table spellings, `dalga web`, `dalga run`."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from processes import free_port, start, stop, wait_http
from sqlalchemy import create_engine, inspect, text

from celery_dalga.jobs import job_key

DALGA = [sys.executable, "-m", "celery_dalga.cli"]


def clean_env(**values) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALGA_")}
    env.update(values, PYTHONUNBUFFERED="1")
    return env


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.mark.parametrize(
    "argv",
    [
        ["create-table"],
        ["-config", "dalga.ini", "-create-table"],
        ["--config", "dalga.ini", "--create-table"],
    ],
)
def test_create_table_spellings_are_idempotent(tmp_path, argv):
    (tmp_path / "dalga.ini").write_text("[dalga]\ntable = from_ini\n")
    for _ in range(2):
        done = subprocess.run(DALGA + argv, cwd=tmp_path, env=clean_env(), capture_output=True)
        assert done.returncode == 0, done.stderr
    table = "from_ini" if "dalga.ini" in argv else "dalga"
    assert inspect(create_engine(f"sqlite:///{tmp_path}/dalga.sqlite3")).has_table(table)


def test_bad_config_is_a_clear_error(tmp_path):
    done = subprocess.run(
        DALGA + ["web"], cwd=tmp_path, env=clean_env(DALGA_PORT="x"), capture_output=True, text=True
    )
    assert done.returncode == 2 and "port" in done.stderr and "Traceback" not in done.stderr


def test_a_database_that_refuses_is_a_clear_error_without_the_password(tmp_path):
    url = "mysql://root:not-the-password@127.0.0.1:3306/test"
    done = subprocess.run(
        DALGA + ["web"],
        cwd=tmp_path,
        env=clean_env(DALGA_DATABASE_URL=url),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "Access denied" in done.stderr
    assert "Traceback" not in done.stderr and "not-the-password" not in done.stderr


def test_dalga_web_serves_the_api_and_stops_on_sigterm(tmp_path):
    port = free_port()
    subprocess.run(DALGA + ["create-table"], cwd=tmp_path, env=clean_env(), check=True)
    proc = start(DALGA + ["--port", str(port), "web"], clean_env(), tmp_path, "web.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/status", proc)
        resp = requests.put(f"http://127.0.0.1:{port}/jobs/a/b?interval=60", timeout=5)
        assert resp.status_code == 201
        assert (
            requests.get(f"http://127.0.0.1:{port}/jobs/a/b", timeout=5).json()["interval"]
            == "PT60S"
        )
    finally:
        assert stop(proc) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_dalga_run_calls_the_endpoint_and_stops_cleanly(tmp_path: Path, endpoint, sig):
    port = free_port()
    env = clean_env(
        DALGA_BASE_URL=endpoint.base_url, DALGA_PORT=str(port), DALGA_MAX_INTERVAL="0.2"
    )
    proc = start(DALGA + ["run"], env, tmp_path, "run.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/status", proc)
        requests.put(
            f"http://127.0.0.1:{port}/jobs/hello/world?one-off=true&immediate=true", timeout=5
        )
        requests.put(f"http://127.0.0.1:{port}/jobs/tick/1?interval=1&immediate=true", timeout=5)
        endpoint.wait_for("hello", 1, timeout=30)
        endpoint.wait_for("tick", 2, timeout=30)
        assert children_of(proc.pid) == []
    finally:
        code = stop(proc, sig, timeout=30)
    log = proc.log_path.read_text()
    assert code == 0, log
    assert "Traceback" not in log
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/status", timeout=2)


@pytest.mark.parametrize(
    "argv",
    [
        ["--port", "8080", "run", "--concurrency", "3"],
        ["run", "--port", "8080", "--concurrency", "3"],
        ["run", "-port", "8080"],
    ],
)
def test_options_go_before_or_after_the_subcommand(argv):
    from celery_dalga.cli import parser

    args = parser().parse_args(argv)
    assert (args.command, args.port) == ("run", 8080)


def test_version_and_debug_flags(tmp_path):
    done = subprocess.run(DALGA + ["-version"], env=clean_env(), capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("dalga (celery-dalga) ")
    debug = subprocess.run(
        DALGA + ["create-table", "-debug"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert debug.returncode == 0 and " DEBUG " in debug.stderr


def test_dalgas_sample_config_runs_unchanged(tmp_path, mariadb_url, endpoint):
    """Dalga's dalga.ini as it is, pointed at this test's database, table and ports through
    Dalga's own DALGA_<SECTION>_<KEY> variables; then Dalga's command lines."""
    from test_config import DALGA_SAMPLE_INI

    (tmp_path / "dalga.ini").write_text(DALGA_SAMPLE_INI)
    port, table = free_port(), f"dalga_{os.getpid()}"
    env = clean_env(
        DALGA_MYSQL_DB=mariadb_url.rsplit("/", 1)[1],
        DALGA_MYSQL_TABLE=table,
        DALGA_LISTEN_PORT=str(port),
        DALGA_ENDPOINT_BASEURL=endpoint.base_url,
    )
    created = subprocess.run(
        DALGA + ["-config", "dalga.ini", "-create-tables"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert created.returncode == 0, created.stderr
    assert inspect(create_engine(mariadb_url)).has_table(table)
    proc = start(DALGA + ["-config", "dalga.ini"], env, tmp_path, "dalga.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/status", proc)
        put = requests.put(f"http://127.0.0.1:{port}/jobs/ini/1?one-off=1&immediate=1", timeout=5)
        assert put.status_code == 201
        endpoint.wait_for("ini", 1, timeout=30)
    finally:
        assert stop(proc) == 0


def test_an_unknown_section_is_refused_before_anything_starts(tmp_path):
    (tmp_path / "dalga.ini").write_text("[mysql]\nhost = db\n[scheduler]\nscan = 1\n")
    done = subprocess.run(
        DALGA + ["-config", "dalga.ini", "web"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "[scheduler]" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "dalga.sqlite3").exists()  # no silent fall-back to SQLite


def test_a_table_in_dalgas_own_layout_is_adopted_by_create_table_only(tmp_path, mariadb_url):
    """Dalga v3's table (no id): `dalga call` (as web and import) refuses it and says what to
    run; `dalga create-table` adopts it, the job kept."""
    engine = create_engine(mariadb_url)
    table = f"dalga_go_{os.getpid()}"
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE {table} (path VARCHAR(255) NOT NULL, body VARCHAR(255) NOT NULL, "
                "`interval` VARCHAR(255) NOT NULL, location VARCHAR(255) NOT NULL, "
                "next_run DATETIME NULL, next_sched DATETIME NOT NULL, instance_id INT UNSIGNED, "
                "PRIMARY KEY (path, body), KEY (next_run)) DEFAULT CHARSET=utf8mb4"
            )
        )
        conn.execute(
            text(
                f"INSERT INTO {table} VALUES ('hook', 'ü', 'PT1M', '', "
                "'2030-01-01 00:00:00', '2030-01-01 00:00:00', NULL)"
            )
        )
    env = clean_env(DALGA_DATABASE_URL=mariadb_url, DALGA_TABLE=table)
    try:
        refused = subprocess.run(
            DALGA + ["call", "hook", "ü"], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert refused.returncode == 2 and "run `dalga create-table`" in refused.stderr
        done = subprocess.run(
            DALGA + ["create-table"], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        with engine.connect() as conn:
            row = conn.execute(text(f"SELECT id, job_key, `interval`, location FROM {table}")).one()
        assert tuple(row) == (1, job_key("hook", "ü"), "PT1M", "UTC")
    finally:
        with engine.begin() as conn:
            for name in (table, f"{table}_runs", f"{table}_instances"):
                conn.execute(text(f"DROP TABLE IF EXISTS {name}"))


def test_dalga_call_makes_the_callback_once_and_prints_the_outcome(tmp_path, endpoint):
    env = clean_env(DALGA_BASE_URL=endpoint.base_url)
    subprocess.run(DALGA + ["create-table"], cwd=tmp_path, env=env, check=True)
    done = subprocess.run(
        DALGA + ["call", "hook", "42"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.startswith("delivered: HTTP 200")
    (call,) = endpoint.calls_to("hook")
    assert call.body == "42" and call.sched
    endpoint.script["hook"] = [503]
    failed = subprocess.run(
        DALGA + ["call", "hook", "42"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert failed.returncode == 1 and failed.stdout.startswith("failed: HTTP 503")


def test_dalga_call_calls_a_task_job_with_the_app_given(tmp_path):
    env = clean_env(PYTHONPATH=str(Path(__file__).parent), DALGA_ALLOWED_TASKS="dalga_test.record")
    from celery_dalga.client import Client
    from celery_dalga.config import load_settings

    settings = load_settings(
        env={
            "DALGA_DATABASE_URL": f"sqlite:///{tmp_path}/dalga.sqlite3",
            "DALGA_ALLOWED_TASKS": "dalga_test.record",
        }
    )
    client = Client(settings)
    client.store.create_table()
    client.schedule("x", "ok-now", interval=60, task="dalga_test.record")
    client.schedule("x", "fail-now", interval=60, task="dalga_test.record")

    def call(body: str) -> subprocess.CompletedProcess:
        argv = ["call", "x", body, "--app", "celery_test_tasks:app"]
        return subprocess.run(DALGA + argv, cwd=tmp_path, env=env, capture_output=True, text=True)

    ok = call("ok-now")
    assert ok.returncode == 0 and ok.stdout.startswith("delivered: returned"), ok.stderr
    bad = call("fail-now")
    assert bad.returncode == 1 and "RuntimeError: asked to fail: fail-now" in bad.stdout
    assert client.get("x", "ok-now").success_count == 0  # the job itself is not changed


def test_only_create_table_and_run_create_tables(tmp_path):
    """web, import and call use the tables `dalga create-table` made, and say so when missing."""
    for argv in (["web"], ["call", "a", "1"], ["import", "-"]):
        done = subprocess.run(
            DALGA + argv, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, input=""
        )
        assert done.returncode == 2 and "dalga create-table" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert not inspect(create_engine(f"sqlite:///{tmp_path}/dalga.sqlite3")).get_table_names()


def test_the_rabbitmq_era_flags_run_dalga_web_and_the_2013_routes(tmp_path, mariadb_url):
    """Nov 2014's `dalga -mysql-* -http-* -create-table`, then `dalga -mysql-* -http-port`:
    the table, the port and the 2013 /schedule and /cancel routes."""
    port, table = free_port(), f"dalga_flags_{os.getpid()}"
    flags = ["-mysql-host", "127.0.0.1", "-mysql-db", mariadb_url.rsplit("/", 1)[1]]
    flags += ["-mysql-table", table, "-mysql-user", "root", "-mysql-password", ""]
    created = subprocess.run(
        DALGA + [*flags, "-create-table"], cwd=tmp_path, env=clean_env(), capture_output=True
    )
    assert created.returncode == 0, created.stderr
    assert inspect(create_engine(mariadb_url)).has_table(table)
    proc = start(DALGA + [*flags, "-http-port", str(port), "web"], clean_env(), tmp_path, "w.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/status", proc)
        form = {"routing_key": "check_feed", "body": "1234", "interval": "60"}
        scheduled = requests.post(url + "/schedule", data=form, timeout=5)
        assert scheduled.status_code == 200 and scheduled.json()["interval"] == "PT60S"
        assert requests.get(url + "/jobs/check_feed/1234", timeout=5).status_code == 200
        refused = requests.get(url + "/schedule", params=form, timeout=5)
        assert refused.status_code == 405 and "POST" in refused.json()["error"]
        gone = requests.post(url + "/cancel?routing_key=check_feed&body=1234", timeout=5)
        assert gone.status_code == 200 and gone.text == ""
        assert requests.get(url + "/jobs/check_feed/1234", timeout=5).status_code == 404
    finally:
        assert stop(proc) == 0
        with create_engine(mariadb_url).begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["-http-port", "eighty"], "[http] port"),
        (["-http-port", "99999999999999999999"], "[http] port"),
        (["-mysql-port", "-1"], "port number"),
        (["-rabbitmq-port", "5672x"], "port number"),
    ],
)
def test_a_bad_rabbitmq_era_flag_is_a_clear_error(tmp_path, argv, named):
    done = subprocess.run(
        DALGA + [*argv, "web"], cwd=tmp_path, env=clean_env(), capture_output=True, text=True
    )
    assert done.returncode == 2 and named in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "dalga.sqlite3").exists()


def test_the_2013_short_flags_and_the_rabbitmq_flags_turn_on_the_exchange_mode():
    from celery_dalga.cli import legacy_flags, parser

    args = parser().parse_args(["-c", "dalga.ini", "-t", "-d"])
    assert (args.config, args.create_table, args.debug) == ("dalga.ini", True, True)
    args = parser().parse_args(["-rabbitmq-exchange", "", "web", "-rabbitmq-host", "mq"])
    assert legacy_flags(args) == {"rabbitmq": {"exchange": "", "host": "mq"}}
    twice = parser().parse_args(["-mysql-host", "a", "-mysql-host", "b"])
    assert legacy_flags(twice) == {"mysql": {"host": "b"}}  # the last, as Go's flag package


def test_dalga_reads_dalga_toml_or_yaml_as_dalga_does(tmp_path, mariadb_url):
    """No -config: ./dalga.toml, as Dalga v4 (logged); -config dalga.yaml: YAML."""
    db, table = mariadb_url.rsplit("/", 1)[1], f"dalga_toml_{os.getpid()}"
    (tmp_path / "dalga.toml").write_text(f'[mysql]\ndb = "{db}"\ntable = "{table}"\n')
    (tmp_path / "dalga.yaml").write_text(f"mysql:\n  db: {db}\n  table: {table}_y\n")
    runs = [
        (["-create-tables"], "dalga.toml", table),
        (["-c", "dalga.yaml", "-t"], "dalga.yaml", table + "_y"),
    ]
    try:
        for argv, name, made in runs:
            done = subprocess.run(
                DALGA + argv, cwd=tmp_path, env=clean_env(), capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr
            assert f"config file {tmp_path / name}" in done.stderr
            assert inspect(create_engine(mariadb_url)).has_table(made)
        assert not (tmp_path / "dalga.sqlite3").exists()
    finally:
        with create_engine(mariadb_url).begin() as conn:
            for name in (table, table + "_y"):
                conn.execute(text(f"DROP TABLE IF EXISTS {name}"))


def test_a_one_off_job_missed_by_more_than_its_epsilon_is_not_sent(tmp_path, endpoint):
    """End to end with `dalga run`: a one-off 11 s late with epsilon=5 stays, disabled, and
    is never called; one with epsilon=60 is called."""
    from datetime import UTC, datetime, timedelta

    port = free_port()
    env = clean_env(
        DALGA_BASE_URL=endpoint.base_url, DALGA_PORT=str(port), DALGA_MAX_INTERVAL="0.2"
    )
    proc = start(DALGA + ["run"], env, tmp_path, "run.log")
    url = f"http://127.0.0.1:{port}"
    past = (datetime.now(UTC) - timedelta(seconds=11)).isoformat(timespec="seconds")
    try:
        wait_http(url + "/status", proc)
        for path, epsilon in (("late", 5), ("ok", 60)):
            params = {"one-off": "true", "first-run": past, "epsilon": str(epsilon)}
            assert requests.put(f"{url}/jobs/{path}/1", params=params, timeout=5).ok
        endpoint.wait_for("ok", 1, timeout=30)
        job = requests.get(url + "/jobs/late/1", timeout=5).json()
        assert job["enabled"] is False and job["next_run"] is None
        assert "epsilon" in job["last_error"] and endpoint.calls_to("late") == []
        assert requests.get(url + "/jobs/ok/1", timeout=5).status_code == 404  # done, deleted
    finally:
        assert stop(proc) == 0
