"""`dalga web --processes N` as a user runs it: N web processes on one port, each an instance
with its own connections, replaced when one dies, stopped together; bad counts refused."""

import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from helpers import unique_table
from processes import free_port, start, stop
from waiting import wait_until

from celery_dalga.config import Settings
from celery_dalga.process import store_for

DALGA = [sys.executable, "-m", "celery_dalga.cli"]


def env_on(url: str, table: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALGA_")}
    env.update(DALGA_DATABASE_URL=url, DALGA_TABLE=table, PYTHONUNBUFFERED="1")
    return env


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return sorted(int(p) for p in out.stdout.split())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def web(tmp_path, mariadb_url):
    """Start `dalga web --processes 3` on its own table; yields (proc, base URL, store)."""
    table = unique_table()
    env = env_on(mariadb_url, table)
    subprocess.run(DALGA + ["create-table"], cwd=tmp_path, env=env, check=True)
    port = free_port()
    argv = DALGA + ["--port", str(port), "web", "--processes", "3"]
    proc = start(argv, env, tmp_path, "web.log")
    store = store_for(Settings(database_url=mariadb_url, table=table))
    try:
        wait_until(lambda: len(children_of(proc.pid)) == 3, timeout=30)
        # the socket listens before the processes serve: the first request waits, not fails
        assert requests.get(f"http://127.0.0.1:{port}/status", timeout=60).ok, proc.log()
        yield proc, f"http://127.0.0.1:{port}", store
    finally:
        stop(proc)
        store.drop_table()


def test_processes_share_the_port_each_an_instance_and_stop_together(web):
    proc, base, store = web
    workers = children_of(proc.pid)

    def put(i: int) -> int:
        with requests.Session() as session:  # a connection of its own: any process may take it
            return session.put(f"{base}/jobs/p/{i}?interval=60", timeout=10).status_code

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(put, range(200))) == {201}
    assert len(store.page(limit=1000)) == 200
    instances = wait_until(
        lambda: sorted(i["pid"] for i in store.live_instances() if i["kind"] == "web") or None,
        timeout=10,
    )
    assert instances == workers
    assert stop(proc) == 0
    wait_until(lambda: not any(alive(pid) for pid in workers), timeout=15)
    assert store.live_instances() == []  # each deregistered on its way out


def test_a_web_process_that_dies_is_replaced(web):
    proc, base, _ = web
    before = children_of(proc.pid)
    os.kill(before[0], signal.SIGKILL)
    wait_until(
        lambda: len(now := children_of(proc.pid)) == 3 and before[0] not in now,
        timeout=30,
    )
    for i in range(20):
        assert requests.put(f"{base}/jobs/r/{i}?interval=60", timeout=10).status_code == 201
    assert "exited" in proc.log() and proc.poll() is None


@pytest.mark.parametrize("count", ["0", "-1", "65", "1e3", "two", "", "9" * 40, "1\n2"])
def test_a_bad_process_count_is_refused_before_anything_starts(tmp_path, count):
    port = free_port()
    done = subprocess.run(
        DALGA + ["--port", str(port), "web", "--processes", count],
        cwd=tmp_path,
        env=env_on("sqlite:///never.sqlite3", "t"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--processes" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr) < 2000
    assert not (tmp_path / "never.sqlite3").exists()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_a_port_in_use_is_a_clear_error(tmp_path):
    env = env_on(f"sqlite:///{tmp_path}/jobs.sqlite3", "t")
    subprocess.run(DALGA + ["create-table"], cwd=tmp_path, env=env, check=True)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            DALGA + ["--port", str(port), "web", "--processes", "2"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
