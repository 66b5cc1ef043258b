"""Kala's README examples, run with the real curl against `dalga run` and, as the peer check,
against Kala's server itself (tests/kala_source.py): every `$ curl ...` line of
../shared/kala-4eb4f7a/kala/README.md, read from the file and run as written, with only the
port changed, the README's job ids replaced by the ids the server made, and `-s -w` added so
the test sees the status. Then the README's "Notes on Dependent Jobs", each rule, with curl in
the README's style (remote jobs calling the recording endpoint, so the order can be seen).

Where the README's own answers are out of date, Kala's current code is what counts: the create
example's start (2017) is in the past, which Kala answers with a 400, so it is run as written
and then with its year moved forward; the stats keys are the snake_case ones Kala writes now."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from endpoint_server import Endpoint
from kala_source import KALA, kala_server, missing, start_kala
from processes import Process, free_port, start, stop, wait_http
from waiting import wait_until

README = KALA / "README.md"
README_PORT = "http://127.0.0.1:8000"
CREATED_ID = "93b65499-b211-49ce-57e0-19e735cc5abd"  # the job the README creates, lists, deletes
OTHER_ID = "5d5be920-c716-4c99-60e1-055cad95b40f"  # the job its stats/start/disable/enable use
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
STATS_KEYS = {
    "active_jobs",
    "disabled_jobs",
    "jobs",
    "error_count",
    "success_count",
    "next_run_at",
    "last_attempted_run",
    "created",
}
JOB_KEYS = {
    "name",
    "id",
    "command",
    "owner",
    "disabled",
    "dependent_jobs",
    "parent_jobs",
    "on_failure_job",
    "schedule",
    "retries",
    "epsilon",
    "next_run_at",
    "resume_at_next_scheduled_time",
    "metadata",
    "type",
    "remote_properties",
    "is_done",
}


def readme_commands() -> list[str]:
    """Every `$ curl ...` line of Kala's README, in order."""
    if not README.is_file():
        missing(f"Kala's README is not at {README}")
    if shutil.which("curl") is None:
        missing("curl is not installed")
    return [line[2:] for line in README.read_text().splitlines() if line.startswith("$ curl ")]


class Server:
    """A server with Kala's API at `url`, and the endpoint its remote jobs may call."""

    def __init__(self, url: str, endpoint: Endpoint) -> None:
        self.url = url
        self.endpoint = endpoint
        self.ids: dict[str, str] = {}  # README id -> the server's

    def curl(self, command: str) -> tuple[int, str]:
        """Run a README curl command line on this server: its status and body."""
        command = command.replace(README_PORT, self.url)
        for readme_id, real_id in self.ids.items():
            command = command.replace(readme_id, real_id)
        args = [*shlex.split(command), "-s", "-w", "\n%{http_code}"]
        out = subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout
        body, _, status = out.rpartition("\n")
        return int(status), body

    def json(self, command: str, status: int = 200) -> dict:
        got, body = self.curl(command)
        assert got == status, (command, got, body)
        return json.loads(body)

    def create(self, job: dict) -> str:
        """Create a job as the README does: `curl .../api/v1/job/ -d '<json>'`."""
        answer = self.json(f"curl {README_PORT}/api/v1/job/ -d {shlex.quote(json.dumps(job))}", 201)
        assert UUID.match(answer["id"]), answer
        return answer["id"]

    def remote(self, name: str, **fields) -> str:
        """Create a remote job that POSTs to the endpoint's path kala/<name>."""
        url = f"{self.endpoint.base_url}kala/{name}"
        job = {"name": name, "type": 1, "remote_properties": {"url": url, "method": "POST"}}
        return self.create({**job, **fields})

    def get(self, job_id: str) -> dict:
        return self.json(f"curl {README_PORT}/api/v1/job/{job_id}/")["job"]

    def absent(self, job_id: str) -> bool:
        return self.curl(f"curl {README_PORT}/api/v1/job/{job_id}/")[0] == 404

    def post(self, action: str, job_id: str) -> None:
        status, body = self.curl(f"curl {README_PORT}/api/v1/job/{action}/{job_id}/ -X POST")
        assert (status, body) == (204, ""), (action, status, body)

    def delete(self, job_id: str) -> None:
        status, body = self.curl(f"curl {README_PORT}/api/v1/job/{job_id}/ -X DELETE")
        assert (status, body) == (204, ""), (status, body)


def start_dalga_run(endpoint: Endpoint, cwd: Path) -> tuple[Process, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALGA_")}
    env.update(
        DALGA_PORT=str(port),
        DALGA_BASE_URL=f"http://127.0.0.1:{free_port()}/",
        DALGA_ALLOWED_REMOTE_HOSTS=f"127.0.0.1:{endpoint.port}",
        DALGA_LOCAL_JOBS="true",  # the README's jobs are local jobs
        DALGA_MAX_INTERVAL="0.2",
        PYTHONUNBUFFERED="1",
    )
    proc = start([sys.executable, "-m", "celery_dalga.cli", "run"], env, cwd, "run.log")
    wait_http(f"http://127.0.0.1:{port}/status", proc)
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(params=["dalga run", "kala"])
def server(request, endpoint, tmp_path, tmp_path_factory) -> Iterator[Server]:
    """`dalga run`, or Kala's own server (the peer: the README's answers as Kala gives them)."""
    if request.param == "kala":
        proc, url = start_kala(kala_server(tmp_path_factory.getbasetemp()), tmp_path)
    else:
        proc, url = start_dalga_run(endpoint, tmp_path)
    try:
        yield Server(url, endpoint)
    finally:
        code = stop(proc)
        if request.param != "kala":
            assert code == 0, proc.log()


def test_the_readme_examples(server):
    (
        stats,
        listing,
        create,
        listing_again,
        get,
        delete,
        get_again,
        job_stats,
        start_job,
        disable,
        enable,
        stats_again,
    ) = readme_commands()

    answer = server.json(stats)
    assert set(answer["Stats"]) == STATS_KEYS and answer["Stats"]["jobs"] == 0
    assert server.json(listing) == {"jobs": {}}

    # As written: its start, 2017, is in the past, and Kala refuses that.
    status, body = server.curl(create)
    assert status == 400 and isinstance(json.loads(body)["error"], str), body
    assert server.json(listing_again) == {"jobs": {}}

    # The same job a year from now.
    year = datetime.now(UTC).year + 1
    create_future = create.replace("2017-06-04T", f"{year}-06-04T")
    server.ids[CREATED_ID] = server.json(create_future, 201)["id"]
    jobs = server.json(listing_again)["jobs"]
    job = jobs[server.ids[CREATED_ID]]
    assert list(jobs) == [server.ids[CREATED_ID]] and JOB_KEYS <= set(job)
    schedule = f"R2/{year}-06-04T19:25:16.828696-07:00/PT10S"
    assert job["name"] == "test_job" and job["id"] == server.ids[CREATED_ID]
    assert job["command"] == json.loads(shlex.split(create)[-1])["command"]
    assert job["schedule"] == schedule and job["epsilon"] == "PT5S" and job["retries"] == 0
    assert job["owner"] == "" and job["disabled"] is False and job["type"] == 0
    assert not job["dependent_jobs"] and not job["parent_jobs"] and job["is_done"] is False
    first_run = datetime.fromisoformat(f"{year}-06-04T19:25:16.828696-07:00")
    assert abs(datetime.fromisoformat(job["next_run_at"]) - first_run) < timedelta(seconds=1)
    assert server.json(get) == {"job": job}
    assert server.curl(delete) == (204, "")
    assert server.curl(get_again)[0] == 404
    assert server.json(listing) == {"jobs": {}}

    # stats, start, disable and enable on another job.
    server.ids[OTHER_ID] = server.json(create_future, 201)["id"]
    assert not server.json(job_stats)["job_stats"]  # Kala: null
    assert server.curl(start_job) == (204, "")  # its command is not there: the run fails
    wait_until(lambda: server.json(job_stats)["job_stats"], 30, "no stat after the start")
    (stat,) = server.json(job_stats)["job_stats"]
    assert stat["job_id"] == server.ids[OTHER_ID] and stat["success"] is False
    assert stat["number_of_retries"] == 0
    assert server.curl(disable) == (204, "")
    assert server.get(server.ids[OTHER_ID])["disabled"] is True
    assert server.json(stats_again)["Stats"]["disabled_jobs"] == 1
    assert server.curl(enable) == (204, "")
    assert server.get(server.ids[OTHER_ID])["disabled"] is False
    answer = server.json(stats_again)["Stats"]
    assert (answer["jobs"], answer["active_jobs"], answer["disabled_jobs"]) == (1, 1, 0)
    assert (answer["error_count"], answer["success_count"]) == (1, 0)


def test_the_readme_rules_of_dependent_jobs(server):
    endpoint = server.endpoint
    hourly = "R/" + (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    parent = server.remote("parent", schedule=hourly + "/PT1H")
    other_parent = server.remote("other-parent", schedule=hourly + "/PT1H")
    first = server.remote("first", parent_jobs=[parent])
    second = server.remote("second", parent_jobs=[parent])
    shared = server.remote("shared", parent_jobs=[parent, other_parent])
    disabled = server.remote("disabled", parent_jobs=[parent])
    server.post("disable", disabled)
    assert server.get(parent)["dependent_jobs"] == [first, second, shared, disabled]
    assert server.get(shared)["parent_jobs"] == [parent, other_parent]
    assert not endpoint.calls  # a child has no schedule of its own; the parent's is an hour away

    # "Dependent jobs follow a rule of First In First Out"; "A child will always have to wait
    # until a parent job finishes before it runs"; "If a child job is disabled, its parent job
    # will still run, but it will not."
    endpoint.delays["kala/parent"] = [0.5]
    server.post("start", parent)
    calls = [endpoint.wait_for(f"kala/{name}", 1)[0] for name in ("parent", "first", "second")]
    (shared_call,) = endpoint.wait_for("kala/shared", 1)
    assert calls[0].done <= calls[1].at < calls[2].at
    # A child with another parent too runs after this one, beside its siblings in
    # celery-dalga (docs/coming-from-kala.md), after them in Kala.
    assert calls[0].done <= shared_call.at
    assert not endpoint.calls_to("kala/disabled")

    # "A child will not run if its parent job does not": a parent whose run fails.
    failing = server.remote("failing", schedule=hourly + "/PT1H")
    orphan = server.remote("orphan", parent_jobs=[failing])
    endpoint.script["kala/failing"] = [500] * 10
    server.post("start", failing)
    endpoint.wait_for("kala/failing", 1)
    wait_until(lambda: server.get(failing)["metadata"]["error_count"] >= 1, 30, "no error")
    orphan_stats = server.json(f"curl {README_PORT}/api/v1/job/stats/{orphan}/")
    assert not endpoint.calls_to("kala/orphan") and not orphan_stats["job_stats"]

    # "If a child job is deleted, its parent job will continue to stay around."
    # (Kala updates parents and children after it answers a delete.)
    server.delete(first)
    assert server.absent(first)
    wait_until(
        lambda: server.get(parent)["dependent_jobs"] == [second, shared, disabled],
        10,
        lambda: f"the parent's children: {server.get(parent)['dependent_jobs']}",
    )

    # "If a parent job is deleted, unless its child jobs have another parent, they will be
    # deleted as well."
    server.delete(parent)
    assert server.absent(parent)
    wait_until(lambda: server.absent(second) and server.absent(disabled), 10, "the children stay")
    wait_until(
        lambda: server.get(shared)["parent_jobs"] == [other_parent],
        10,
        lambda: f"the shared child's parents: {server.get(shared)['parent_jobs']}",
    )
    assert server.get(other_parent)["dependent_jobs"] == [shared]
