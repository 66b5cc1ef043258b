"""The `dalga` command as a user runs it: create-table spellings, `dalga web`, `dalga run`."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from processes import free_port, start, stop, wait_http
from sqlalchemy import create_engine, inspect

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


def test_dalga_web_serves_the_api_and_stops_on_sigterm(tmp_path):
    port = free_port()
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
