"""The local kind (Kala's local job, go-quartz's ShellJob): off unless local_jobs is on; the
command runs in the worker without a shell, within callback_timeout (then it is killed), its
exit status the outcome and the start of its output in history."""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import pytest
from helpers import api_client, settings_on
from waiting import wait_until

from celery_dalga import kinds
from celery_dalga.client import Client
from celery_dalga.config import Settings
from celery_dalga.kinds import Delivery
from celery_dalga.runs import Outcome
from celery_dalga.spec import InvalidParameter, JobSpec, parse_spec
from celery_dalga.tasks import deliver

ON = Settings(local_jobs=True)
PYTHON = shlex.quote(sys.executable)


def spec(options: Any, body: str = "1") -> JobSpec:
    params = {"interval": "60", "immediate": "true"}
    return replace(parse_spec("local", body, params), kind="local", options=options)


def python(code: str, *args: str) -> dict[str, str]:
    """The options of a job that runs this Python code (args as written on a command line)."""
    return {"command": " ".join([PYTHON, "-c", shlex.quote(code), *args])}


# -- at PUT ----------------------------------------------------------------------------------


def test_local_jobs_are_off_by_default():
    assert Settings().local_jobs is False
    with pytest.raises(InvalidParameter, match="local jobs are off.*DALGA_LOCAL_JOBS") as refused:
        kinds.validate(spec({"command": "true"}), Settings())
    assert refused.value.parameter == "kind"


def test_a_put_of_a_local_job_is_a_400_while_they_are_off(mariadb_url):
    with api_client(mariadb_url) as api:
        options = quote(json.dumps({"command": "touch /tmp/pwned"}))
        answer = api.put(f"/jobs/l/1?interval=60&kind=local&options={options}")
        assert answer.status_code == 400
        assert "local jobs are off" in answer.get_json()["error"]
        assert api.get("/jobs/l/1").status_code == 404


def test_with_local_jobs_on_a_command_line_is_taken():
    kinds.validate(spec({"command": "echo 'a b' c"}), ON)
    kinds.validate(spec({"command": "x", "kala": {"name": "n"}}), ON)  # Kala's fields


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (None, 'takes {"command": <a command line>}'),
        ({}, 'takes {"command": <a command line>}'),
        ({"command": "true", "shell": True}, 'takes {"command"'),
        ({"cmd": "true"}, 'takes {"command"'),
        ({"command": ""}, "command must be a command line"),
        ({"command": "   "}, "command must be a command line"),
        ({"command": 1}, "command must be a command line"),
        ({"command": ["ls", "-l"]}, "command must be a command line"),
        ({"command": {"a": [{"b": None}]}}, "command must be a command line"),
        ({"command": None}, "command must be a command line"),
        ({"command": "ls\x00 -l"}, "without NUL"),
        ({"command": "x" * 4097}, "at most 4096 characters"),
        ({"command": "echo 'unbalanced"}, "No closing quotation"),
        ({"command": 'echo "a'}, "No closing quotation"),
    ],
)
def test_a_bad_command_is_refused_saying_what_is_wrong(options, says):
    with pytest.raises(InvalidParameter) as refused:
        kinds.validate(spec(options), ON)
    assert refused.value.parameter == "options" and says in str(refused.value)


# -- running ---------------------------------------------------------------------------------


@pytest.fixture
def local(mariadb_url, make_store):
    """(store, settings with local_jobs on, callback_timeout 2) on MariaDB."""
    store = make_store(mariadb_url)
    return store, settings_on(mariadb_url, store.table.name, local_jobs=True)


def run_once(store, settings, *bodies: str):
    claimed = {run.body: run for run in store.claim(100)}
    return deliver(settings, [claimed[b] for b in bodies])


def test_exit_0_delivers_and_another_status_fails_with_the_output_in_history(local):
    store, settings = local
    store.put(spec(python("print('fine')"), "ok"))
    code = "import sys; print('out ' * 400); print('broken', file=sys.stderr); sys.exit(3)"
    store.put(spec(python(code), "fail"))
    assert run_once(store, settings, "ok", "fail") == [Outcome.DONE, Outcome.RETRY]
    assert store.get("local", "ok").success_count == 1
    failed = store.get("local", "fail")
    assert failed.last_error.startswith("exit status 3: out out")
    assert len(failed.last_error) < 1100  # the start of the output
    (retry,) = Client(settings, store=store).history("local", "fail")
    assert retry["error"].startswith("exit status 3: out") and retry["status"] is None


def test_the_command_runs_without_a_shell(local, tmp_path):
    """Variables, ;, backticks and globs are literal arguments, as written."""
    store, settings = local
    code = "import sys; print(sys.argv[1:]); sys.exit(1)"
    store.put(spec(python(code, "$HOME; rm -rf / `id` $(id) * | cat > x && echo"), "literal"))
    assert run_once(store, settings, "literal") == [Outcome.RETRY]
    shown = store.get("local", "literal").last_error
    args = ["$HOME;", "rm", "-rf", "/", "`id`", "$(id)", "*", "|", "cat", ">", "x", "&&", "echo"]
    assert shown == f"exit status 1: {args!r}"


def test_a_command_past_the_timeout_is_killed_with_what_it_started(local, tmp_path):
    store, settings = local  # callback_timeout 2
    pids = tmp_path / "pids"
    code = (
        "import os, subprocess, sys, time; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}'); "
        "print('started', flush=True); time.sleep(60)"
    )
    store.put(spec(python(code), "slow"))
    started = time.monotonic()
    assert run_once(store, settings, "slow") == [Outcome.RETRY]
    assert time.monotonic() - started < 20  # killed at 2 s, not after its 60 s of sleep
    assert store.get("local", "slow").last_error == "killed after 2 s: started"
    for pid in map(int, pids.read_text().split()):
        wait_until(lambda pid=pid: gone(pid), 5, f"process {pid} to end")


def gone(pid: int) -> bool:
    """Whether the process has ended (a zombie waiting to be reaped has)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_missing_program_fails(local):
    store, settings = local
    store.put(spec({"command": "/nonexistent/program --flag"}, "missing"))
    assert run_once(store, settings, "missing") == [Outcome.RETRY]
    assert "cannot run '/nonexistent/program'" in store.get("local", "missing").last_error


def test_a_worker_with_local_jobs_off_fails_the_run_without_running_it(local, tmp_path):
    store, settings = local
    marker = tmp_path / "ran"
    store.put(spec(python(f"open({str(marker)!r}, 'w')"), "off"))
    claimed = store.claim(10)
    assert deliver(replace(settings, local_jobs=False), claimed) == [Outcome.RETRY]
    assert not marker.exists()
    assert "local jobs are off" in store.get("local", "off").last_error


def test_commands_run_at_once_and_none_starts_after_start_by():
    from test_runs import NOW, job

    kind = kinds.registry["local"]
    sleep = job(kind="local", options=python("import time; time.sleep(1)")).run(NOW, "t")
    started = time.monotonic()
    results = kind.deliver(replace(ON, callback_timeout=5), [sleep] * 4, 1, None)
    assert [r.delivery for r in results] == [Delivery.DELIVERED] * 4
    assert time.monotonic() - started < 2.5  # four at once, not one after another
    late = kind.deliver(ON, [sleep], 1, None, start_by=time.monotonic() - 1)
    assert [r.delivery for r in late] == [Delivery.NOT_SENT]
