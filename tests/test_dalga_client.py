"""Dalga v4.0.1's own Go client, every method, against `dalga run` and against MariaDB with
separate `dalga web`, `celery beat` and `celery worker` processes (tests/dalga_real/main.go).

The client is Dalga's, built at test time from its source in the shared folder next to the
project (../shared/dalga-v4.0.1, or DALGA_TEST_SHARED/dalga-v4.0.1) with Debian's golang-go, in
a scratch module; without go or the source the tests skip, and under CI=true they fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dalga_source import SERVER_GO_MOD, SOURCE, missing
from go_build import go, go_build, scratch_go_mod
from helpers import settings_on, unique_table
from processes import celery, dalga_env, free_port, start, stop, wait_http

from celery_dalga.process import store_for

PROGRAM = Path(__file__).with_name("dalga_real") / "main.go"
DALGA = [sys.executable, "-m", "celery_dalga.cli"]


@pytest.fixture(scope="session")
def go_client(tmp_path_factory) -> Path:
    """tests/dalga_real/main.go built with Dalga's client package, offline."""
    if go() is None:
        missing("go is not installed (scripts/setup.sh dev installs golang-go)")
    if not SERVER_GO_MOD.is_file():
        missing(f"Dalga's source is not at {SOURCE}")
    work = tmp_path_factory.mktemp("dalgareal")
    go_mod = scratch_go_mod(SERVER_GO_MOD, "dalgareal")
    return go_build(work / "module", go_mod, ".", work, PROGRAM)


def run_client(client: Path, api: str, listen_port: int) -> str:
    done = subprocess.run(
        [str(client), "-api", api, "-listen", f"127.0.0.1:{listen_port}"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("ok every call")
    return done.stdout


def test_every_call_against_dalga_run(go_client, tmp_path):
    port, callbacks = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALGA_")}
    env.update(
        DALGA_PORT=str(port),
        DALGA_BASE_URL=f"http://127.0.0.1:{callbacks}/",
        DALGA_MAX_INTERVAL="0.2",
        PYTHONUNBUFFERED="1",
    )
    proc = start(DALGA + ["run"], env, tmp_path, "run.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/status", proc)
        out = run_client(go_client, f"http://127.0.0.1:{port}", callbacks)
    finally:
        assert stop(proc) == 0, proc.log_path.read_text()
    assert "TotalInstances:1 " in out  # `dalga run` is one instance: API, beat and worker


def test_every_call_against_mariadb_and_separate_processes(
    go_client, mariadb_url, redis_url, tmp_path
):
    callbacks = free_port()
    settings = settings_on(
        mariadb_url,
        unique_table(),
        f"http://127.0.0.1:{callbacks}/",
        port=free_port(),
        queue=f"goclient-{callbacks}",
    )
    store = store_for(settings)
    store.create_table()
    env = dalga_env(settings, broker_url=redis_url)
    procs = [
        start(DALGA + ["web"], env, tmp_path, "web.log"),
        start(celery("beat", "-S", "celery_dalga.Scheduler"), env, tmp_path, "beat.log"),
        start(celery("worker", "--pool", "threads", "-c", "2"), env, tmp_path, "worker.log"),
    ]
    try:
        wait_http(f"http://127.0.0.1:{settings.port}/status", procs[0])
        out = run_client(go_client, f"http://127.0.0.1:{settings.port}", callbacks)
    finally:
        codes = [stop(p) for p in procs]
        store.drop_table()
    assert codes == [0, 0, 0]
    assert "TotalInstances:3 " in out  # web, beat and worker each registered
