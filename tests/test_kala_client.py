"""Kala's own Go client, every call, against `dalga run` and against MariaDB with separate
`dalga web`, `celery beat` and `celery worker` processes (tests/kala_real/main.go), and the
same program against Kala's server itself (the peer check: what the program asserts is what
Kala does).

The client is Kala's, built at test time from its source in the shared folder next to the
project (tests/kala_source.py); without go or the source the tests skip, and under CI=true
they fail. A remote job calls the recording endpoint (allowed by `allowed_remote_hosts`); the
local job (`local_jobs` on) touches a file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from endpoint_server import Endpoint
from helpers import settings_on, unique_table
from kala_source import kala_program, kala_server, start_kala
from processes import celery, dalga_env, free_port, start, stop, wait_http

from celery_dalga.process import store_for

DALGA = [sys.executable, "-m", "celery_dalga.cli"]


@pytest.fixture(scope="session")
def program(tmp_path_factory) -> Path:
    return kala_program(tmp_path_factory.getbasetemp())


def run_program(
    program: Path, url: str, endpoint: Endpoint, touch: Path, server: str = "celery-dalga"
) -> dict:
    """Run the program against `url` (a `server`: kala or celery-dalga); its JSON results."""
    args = ["-url", url, "-remote", endpoint.base_url, "-touch", str(touch), "-server", server]
    done = subprocess.run(
        [str(program), *args],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(done.stdout.splitlines()[-1])
    assert results["ok"] is True
    return results


def assert_calls(endpoint: Endpoint, results: dict) -> None:
    """The remote jobs' calls as Kala makes them: the job's method, body and headers, plus
    Content-Type: application/json when the job sets none; children after their parent."""
    (remote,) = endpoint.calls_to("kala/remote")  # StartJob once; its schedule is an hour away
    assert remote.body == '{"job": "kala-remote"}'
    assert ", ".join(remote.headers.get_all("X-Kala-Test")) == "one, two"
    assert remote.content_type == "application/json"
    assert len(endpoint.calls_to("kala/repeat")) == 2  # R1: two runs
    (parent,) = endpoint.calls_to("kala/parent")
    (child,) = endpoint.calls_to("kala/child")
    (child2,) = endpoint.calls_to("kala/child2")
    assert parent.at < child.at < child2.at  # first in, first out
    assert child.body == '{"job": "kala-child"}'
    assert not endpoint.calls_to("kala/past")
    stat = results["remote_stats"][0]
    assert stat["job_id"] == results["ids"]["remote"] and stat["success"] is True


def test_every_call_against_dalga_run(program, endpoint, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALGA_")}
    env.update(
        DALGA_PORT=str(port),
        DALGA_BASE_URL=f"http://127.0.0.1:{free_port()}/",  # not the endpoint's: the allow-list
        DALGA_ALLOWED_REMOTE_HOSTS=f"127.0.0.1:{endpoint.port}",
        DALGA_LOCAL_JOBS="true",
        DALGA_MAX_INTERVAL="0.2",
        PYTHONUNBUFFERED="1",
    )
    proc = start(DALGA + ["run"], env, tmp_path, "run.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/status", proc)
        results = run_program(program, f"http://127.0.0.1:{port}", endpoint, tmp_path / "ran")
    finally:
        assert stop(proc) == 0, proc.log()
    assert_calls(endpoint, results)


def test_every_call_against_mariadb_and_separate_processes(
    program, endpoint, mariadb_url, redis_url, tmp_path
):
    settings = settings_on(
        mariadb_url,
        unique_table(),
        f"http://127.0.0.1:{free_port()}/",
        port=free_port(),
        queue=f"kalaclient-{endpoint.port}",
        allowed_remote_hosts=f"127.0.0.1:{endpoint.port}",
        local_jobs=True,
        callback_timeout=10.0,  # the program's remote job asks for 10 s (a loaded machine)
        lease=20.0,
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
        url = f"http://127.0.0.1:{settings.port}"
        results = run_program(program, url, endpoint, tmp_path / "ran")
    finally:
        codes = [stop(p) for p in procs]
        store.drop_table()
    assert codes == [0, 0, 0], [p.log() for p in procs]
    assert_calls(endpoint, results)


@pytest.fixture(scope="session")
def kala(tmp_path_factory) -> Path:
    return kala_server(tmp_path_factory.getbasetemp())


def test_the_program_passes_against_kala_itself(program, kala, endpoint, tmp_path):
    proc, url = start_kala(kala, tmp_path)
    try:
        results = run_program(program, url, endpoint, tmp_path / "ran", "kala")
    finally:
        stop(proc)
    assert_calls(endpoint, results)
