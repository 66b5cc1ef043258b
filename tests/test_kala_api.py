"""Kala's API (/api/v1, webapi.kala) on a real MariaDB table: every route with and without its
trailing slash, every status, Kala's job JSON both ways, dependent jobs with many parents,
on_failure_job, Kala's bugs done right, and hostile input that stores nothing."""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import fields
from typing import Any

import pytest
from helpers import Clock, answer, settings_on, unique_table
from sqlalchemy import func, select

from celery_dalga import Client, kinds, process
from celery_dalga.config import Settings
from celery_dalga.jobs import Run, job_key
from celery_dalga.process import store_for
from celery_dalga.spec import JobSpec
from celery_dalga.store.links import Related
from webapi import create_app

URL = "http://127.0.0.1:1/hook"  # base_url's host: a remote job may call it
START = "2026-06-01T12:01:00Z"  # a minute after the test clock's start
ZERO = "0001-01-01T00:00:00Z"
KALA_ORDER = [
    *("name", "id", "command", "owner", "disabled", "dependent_jobs", "parent_jobs"),
    *("on_failure_job", "schedule", "retries", "epsilon", "next_run_at", "TemplateDelimiters"),
    *("resume_at_next_scheduled_time", "metadata", "type", "remote_properties", "is_done"),
]
# what Kala's Go client sends for job.Job{Name: "go", Command: "true"}: every field
GO_CLIENT_JOB = {
    "name": "go",
    "id": "",
    "command": "true",
    "owner": "",
    "disabled": False,
    "dependent_jobs": None,
    "parent_jobs": None,
    "on_failure_job": "",
    "schedule": f"R/{START}/PT10S",
    "retries": 0,
    "epsilon": "",
    "next_run_at": ZERO,
    "TemplateDelimiters": "",
    "resume_at_next_scheduled_time": False,
    "metadata": {
        "success_count": 0,
        "last_success": ZERO,
        "error_count": 0,
        "last_error": ZERO,
        "last_attempted_run": ZERO,
        "number_of_finished_runs": 0,
    },
    "type": 0,
    "remote_properties": {
        "url": "",
        "method": "",
        "body": "",
        "headers": None,
        "timeout": 0,
        "expected_response_codes": None,
    },
    "stats": None,
    "is_done": False,
}


class Stub(kinds.Kind):
    """Stands for the remote and local kinds where they are not registered (they are another
    module's): takes any options, delivers every run."""

    def __init__(self, name: str):
        self.name = name

    def validate(self, spec: JobSpec, settings: Settings) -> None:
        pass

    def deliver(
        self,
        settings: Settings,
        runs: list[Run],
        instance_id: int,
        app: Any,
        start_by: float = math.inf,
    ) -> list[kinds.Result]:
        now = time.monotonic()
        return [kinds.Result.since(now, kinds.Delivery.DELIVERED, "stub") for _ in runs]


@pytest.fixture(scope="module", autouse=True)
def remote_and_local_kinds():
    added = [name for name in ("remote", "local") if name not in kinds.registry]
    for name in added:
        kinds.register(Stub(name))
    yield
    for name in added:
        kinds.registry.pop(name)


def make_api(url: str, **extra):
    """A test client of the app on a fresh table, its store (.store) on a hand-moved clock."""
    if "local_jobs" in {f.name for f in fields(Settings)}:
        extra.setdefault("local_jobs", True)
    settings = settings_on(url, unique_table(), **extra)
    store = store_for(settings)
    store.create_table()
    store.clock = Clock()
    client = create_app(settings, store).test_client()
    client.store = store
    return client


@pytest.fixture
def api(mariadb_url):
    client = make_api(mariadb_url)
    yield client
    process.stop()
    client.store.drop_table()


def remote(**fields: Any) -> dict[str, Any]:
    return {"name": "ping", "type": 1, "remote_properties": {"url": URL}, **fields}


def create(api, job: dict[str, Any], path: str = "/api/v1/job/") -> str:
    resp = api.post(path, json=job)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


def refused(api, job: Any) -> str:
    """The error of a create that must be a 400 in Kala's shape and store nothing."""
    before = api.get("/api/v1/job/").get_json()["jobs"]
    resp = api.post("/api/v1/job/", json=job)
    assert resp.status_code == 400, resp.data
    assert api.get("/api/v1/job/").get_json()["jobs"] == before
    assert list(resp.get_json()) == ["error"]
    return resp.get_json()["error"]


def kala_job(api, job_id: str) -> dict[str, Any]:
    resp = api.get(f"/api/v1/job/{job_id}/")
    assert resp.status_code == 200
    return resp.get_json()["job"]


def run_due(api, status: int = 200, advance: float = 1.0) -> list[Run]:
    """Claim what is due, answer every run with status, then let time pass."""
    runs = api.store.claim(100)
    for run in runs:
        answer(api.store, run, status)
    api.store.clock.advance(advance)
    return runs


# -- create and read -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/job/", "/api/v1/job"])
def test_create_is_201_with_a_uuid_and_the_job_reads_back_in_kalas_json(api, path):
    job_id = create(api, remote(owner="ops@example.com", schedule=f"R/{START}/PT10S"), path)
    assert str(uuid.UUID(job_id, version=4)) == job_id
    for url in (f"/api/v1/job/{job_id}/", f"/api/v1/job/{job_id}"):
        resp = api.get(url)
        assert resp.status_code == 200 and resp.mimetype == "application/json"
        assert list(json.loads(resp.data)) == ["job"]
    job = kala_job(api, job_id)
    assert list(job) == KALA_ORDER
    assert {k: job[k] for k in ("name", "id", "owner", "type", "disabled", "is_done")} == {
        "name": "ping",
        "id": job_id,
        "owner": "ops@example.com",
        "type": 1,
        "disabled": False,
        "is_done": False,
    }
    assert job["remote_properties"] == {
        "url": URL,
        "method": "GET",
        "body": "",
        "headers": {"Content-Type": ["application/json"]},  # Kala's default, written back
        "timeout": 0,
        "expected_response_codes": [200],
    }
    assert job["next_run_at"] == START and job["schedule"] == f"R/{START}/PT10S"
    assert job["metadata"]["last_success"] == ZERO and job["metadata"]["success_count"] == 0
    listed = api.get("/api/v1/job").get_json()
    assert listed == {"jobs": {job_id: job}}


def test_the_go_clients_full_job_is_taken_and_a_local_job_keeps_its_command(api):
    job_id = create(api, GO_CLIENT_JOB)
    job = kala_job(api, job_id)
    assert (job["type"], job["command"], job["remote_properties"]["url"]) == (0, "true", "")
    dalga = api.get(f"/jobs/kala/{job_id}").get_json()
    assert (dalga["kind"], dalga["options"]["command"]) == ("local", "true")


def test_a_kala_job_is_a_job_like_any_other_in_jobs_status_metrics_and_the_ui(api):
    job_id = create(api, remote(schedule=f"R/{START}/PT10S"))
    api.put("/jobs/dalga/1?interval=60")
    listed = api.get("/jobs?path=kala").get_json()["jobs"]
    assert [(j["path"], j["body"], j["kind"]) for j in listed] == [("kala", job_id, "remote")]
    assert listed[0]["options"]["kala"]["name"] == "ping"
    assert listed[0]["options"]["url"] == URL
    assert api.get("/status").get_json()["total_jobs"] == 2
    assert job_id in api.get("/ui/jobs?q=kala").get_data(as_text=True)
    assert api.get(f"/ui/job?path=kala&body={job_id}").status_code == 200
    assert b"dalga_jobs 2.0" in api.get("/metrics").data
    assert [j["id"] for j in api.get("/api/v1/job/").get_json()["jobs"].values()] == [job_id]


def test_kalas_rn_is_n_plus_one_runs_and_the_history_outlives_the_finished_job(api):
    job_id = create(api, remote(schedule=f"R2/{START}/PT10S", retries=1))
    assert api.get(f"/jobs/kala/{job_id}").get_json()["schedule"].startswith("R3/")
    api.store.clock.advance(60)
    for _ in range(3):
        assert len(run_due(api, advance=10)) == 1
    assert run_due(api) == []
    assert api.get(f"/api/v1/job/{job_id}/").status_code == 404  # finished: deleted
    stats = api.get(f"/api/v1/job/stats/{job_id}/").get_json()["job_stats"]
    assert [list(s) for s in stats] == [
        ["job_id", "ran_at", "number_of_retries", "success", "execution_duration"]
    ] * 3
    assert all(s["job_id"] == job_id and s["success"] for s in stats)


def test_r_repeats_forever_r0_runs_once_at_start_and_no_schedule_runs_once_now(api):
    forever = api.get(f"/jobs/kala/{create(api, remote(schedule=f'R/{START}/PT1M'))}")
    assert forever.get_json()["schedule"].startswith("R/")
    once_at = api.get(f"/jobs/kala/{create(api, remote(schedule=f'R0/{START}/whatever'))}")
    assert (once_at.get_json()["one_off"], once_at.get_json()["next_run"]) == (True, START)
    now = create(api, remote())
    assert api.get(f"/jobs/kala/{now}").get_json()["one_off"] is True
    assert [run.body for run in run_due(api)] == [now]


def test_a_start_in_the_past_is_a_400_that_says_so(api):
    error = refused(api, remote(schedule="R/2017-06-04T19:25:16.828696-07:00/PT10S"))
    assert error.startswith("schedule: starts at 2017-06-05T02:25:16.828696Z, in the past")


def test_a_start_without_an_offset_is_utc_as_in_kala(api):
    job_id = create(api, remote(schedule="R/2026-06-01T12:05:00/PT10S"))
    assert kala_job(api, job_id)["next_run_at"] == "2026-06-01T12:05:00Z"


def test_retries_and_epsilon_are_the_jobs_own(api):
    job_id = create(api, remote(schedule=f"R/{START}/PT10S", retries=3, epsilon="PT5S"))
    dalga = api.get(f"/jobs/kala/{job_id}").get_json()
    assert (dalga["retries"], dalga["epsilon"]) == (3, 5.0)
    assert (kala_job(api, job_id)["retries"], kala_job(api, job_id)["epsilon"]) == (3, "PT5S")


# -- refusals: Kala's 400s, saying what is wrong -------------------------------------------


@pytest.mark.parametrize(
    ("job", "error"),
    [
        ({"type": 1, "remote_properties": {"url": URL}}, "name: must be given"),
        ({"name": "x", "type": 0}, "command: a local job (type 0) needs a command"),
        ({"name": "x", "type": 1}, "remote_properties.url: a remote job (type 1) needs a url"),
        ({"name": "x", "type": 2, "command": "true"}, "type: 2 is not 0 (local) or 1 (remote)"),
        ({"name": "x", "type": "1"}, "type: must be a whole number, not a string"),
        (remote(name=5), "name: must be a string, not a number"),
        (remote(retries="3"), "retries: must be a whole number, not a string"),
        (remote(retries=-1), "retries: must be between 0 and 1000"),
        (remote(retries=True), "retries: must be a whole number, not a boolean"),
        (remote(disabled="yes"), "disabled: must be true or false"),
        (remote(parent_jobs="x"), "parent_jobs: must be an array"),
        (remote(parent_jobs=["nope"]), "parent_jobs[0]: 'nope' is not a Kala job id"),
        (remote(dependent_jobs=[str(uuid.uuid4())]), "dependent_jobs: is set by the server"),
        (remote(TemplateDelimiters="{{ }}"), "TemplateDelimiters: templates are not supported"),
        (remote(shedule="R/x/y"), "shedule: not a field of Kala's job"),
        (remote(schedule="every minute"), "schedule: 'every minute' is not R[n]/<start>/<period>"),
        (remote(schedule=f"X/{START}/PT1S"), "schedule: 'X' is not R or R<n>"),
        (remote(schedule="R/yesterday/PT1S"), "schedule: its start:"),
        (remote(schedule=f"R/{START}/PT0.1S"), "schedule: runs every 0.1 s, less than min_inter"),
        (remote(schedule=f"R/{START}/soon"), "schedule: 'soon' is not whole seconds or an ISO"),
        (remote(epsilon="P1D"), "epsilon: 'P1D' has days"),
        (remote(disabled=True), "disabled: a job without a schedule runs at once"),
        (
            {"name": "x", "type": 1, "remote_properties": {"url": URL, "headers": [{"k": "v"}]}},
            "remote_properties.headers: must be an object of string arrays",
        ),
        (
            {"name": "x", "type": 1, "remote_properties": {"url": URL, "headers": {"A": "v"}}},
            "remote_properties.headers.A: must be an array of strings",
        ),
        (
            {"name": "x", "type": 1, "remote_properties": {"url": URL, "timeout": 1.5}},
            "remote_properties.timeout: must be a whole number",
        ),
        (
            {"name": "x", "type": 1, "remote_properties": {"url": URL, "verb": "GET"}},
            "remote_properties.verb: not a field of remote_properties",
        ),
        (
            {
                "name": "x",
                "type": 1,
                "remote_properties": {"url": URL, "expected_response_codes": [200, 42]},
            },
            "remote_properties.expected_response_codes[1]: 42 is not an HTTP status",
        ),
        ([remote()], "job: must be a JSON object, not an array"),
    ],
)
def test_bad_jobs_are_400s_naming_the_field_and_store_nothing(api, job, error):
    assert refused(api, job).startswith(error)


@pytest.mark.parametrize(
    ("job", "error"),
    [
        (remote(name="a\r\nb"), "name: must not contain control characters"),
        (remote(owner="a\x00b"), "owner: must not contain control characters"),
        (
            {"name": "x", "type": 1, "remote_properties": {"url": URL + "\r\nHost: evil"}},
            "remote_properties.url: must not contain control characters",
        ),
        (
            {
                "name": "x",
                "type": 1,
                "remote_properties": {"url": URL, "headers": {"A": ["v\r\nX-Evil: 1"]}},
            },
            "remote_properties.headers.A: must not contain CR, LF or NUL",
        ),
        (
            {"name": "x", "type": 1, "remote_properties": {"url": URL, "headers": {"A\r\nB": []}}},
            "remote_properties.headers: ",
        ),
        ({"name": "x", "type": 0, "command": "rm\x00 -rf"}, "command: must not contain control"),
        (remote(name="n" * 256), "name: longer than 255 characters"),
        (
            {"name": "x", "type": 1, "remote_properties": {"url": URL, "body": "b" * 9000}},
            "remote_properties: the job's fields take",
        ),
    ],
)
def test_crlf_nul_and_oversized_fields_are_400s(api, job, error):
    assert refused(api, job).startswith(error)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"{", "job: the request body is not JSON"),
        (b"", "job: the request body is not JSON"),
        (b'{"name": NaN}', "job: the request body is not JSON (NaN is not a JSON value)"),
        (b"\xff\xfe", "job: the request body is not JSON"),
        (b"[" * 100000 + b"]" * 100000, "job: the request body is not JSON"),
    ],
)
def test_a_body_that_is_not_json_is_a_400(api, data, error):
    resp = api.post("/api/v1/job/", data=data, content_type="application/json")
    assert resp.status_code == 400 and resp.get_json()["error"].startswith(error)


def test_curl_d_as_in_kalas_readme_sends_a_form_and_is_read_as_json(api):
    data = json.dumps(remote(schedule=f"R/{START}/PT10S", name="a&b=c"))
    resp = api.post("/api/v1/job/", data=data, content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 201
    assert kala_job(api, resp.get_json()["id"])["name"] == "a&b=c"


def test_a_huge_body_is_a_413(api):
    job = remote(name="x" * (4 * 65535 + 70000))
    resp = api.post("/api/v1/job/", json=job)
    assert resp.status_code == 413 and "larger than" in resp.get_json()["error"]
    assert api.get("/api/v1/job/").get_json() == {"jobs": {}}


def test_a_kinds_refusal_names_the_kala_field(api, monkeypatch):
    from celery_dalga.spec import InvalidParameter

    def refuse(spec, settings):
        raise InvalidParameter("options", "url: host 'evil.example' is not allowed")

    monkeypatch.setattr(kinds.registry["remote"], "validate", refuse)
    error = refused(api, remote())
    assert error == "remote_properties: url: host 'evil.example' is not allowed"


# -- the other routes ------------------------------------------------------------------------


@pytest.mark.parametrize("slash", ["/", ""])
def test_every_route_with_and_without_its_trailing_slash(api, slash):
    job_id = create(api, remote(schedule=f"R/{START}/PT10S"), "/api/v1/job" + slash)
    base = "/api/v1/job"
    assert api.get(base + slash).status_code == 200
    assert api.get(f"{base}/{job_id}{slash}").status_code == 200
    assert api.get(f"{base}/stats/{job_id}{slash}").get_json() == {"job_stats": []}
    assert api.post(f"{base}/disable/{job_id}{slash}").status_code == 204
    assert kala_job(api, job_id)["disabled"] is True
    assert api.post(f"{base}/enable/{job_id}{slash}").status_code == 204
    assert kala_job(api, job_id)["disabled"] is False
    assert api.post(f"{base}/start/{job_id}{slash}").status_code == 204
    assert api.get("/api/v1/stats" + slash).status_code == 200
    assert api.delete(f"{base}/{job_id}{slash}").status_code == 204
    assert api.get(f"{base}/{job_id}{slash}").status_code == 404
    create(api, remote(schedule=f"R/{START}/PT10S"))
    assert api.delete(f"{base}/all{slash}").status_code == 204
    assert api.get(base + slash).get_json() == {"jobs": {}}


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/api/v1/job/{id}/"),
        ("delete", "/api/v1/job/{id}/"),
        ("get", "/api/v1/job/stats/{id}/"),
        ("post", "/api/v1/job/start/{id}/"),
        ("post", "/api/v1/job/disable/{id}/"),
        ("post", "/api/v1/job/enable/{id}/"),
    ],
)
@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "all-but-not-a-uuid", "%00", "a%2Fb"])
def test_an_unknown_or_malformed_id_is_a_404_json_error(api, method, url, job_id):
    resp = getattr(api, method)(url.format(id=job_id))
    assert resp.status_code == 404 and "error" in resp.get_json()


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("put", "/api/v1/job/", 405),
        ("delete", "/api/v1/job/", 405),
        ("post", "/api/v1/stats/", 405),
        ("get", "/api/v1/job/start/{id}/", 405),
        ("put", "/api/v1/job/{id}/", 405),
        ("get", "/api/v1/job/all/", 404),  # the job "all": none (Kala: 404 too)
        ("get", "/api/v1/nothing/", 404),
    ],
)
def test_a_wrong_method_is_a_405_with_json(api, method, url, status):
    job_id = create(api, remote(schedule=f"R/{START}/PT10S"))
    resp = getattr(api, method)(url.format(id=job_id))
    assert resp.status_code == status and "error" in resp.get_json()


def test_delete_all_deletes_kalas_jobs_not_dalgas(api):
    for _ in range(3):
        create(api, remote(schedule=f"R/{START}/PT10S"))
    api.put("/jobs/dalga/1?interval=60")
    assert api.delete("/api/v1/job/all/").status_code == 204
    assert api.get("/api/v1/job/").get_json() == {"jobs": {}}
    assert [j["path"] for j in api.get("/jobs").get_json()["jobs"]] == ["dalga"]


def test_app_stats_have_the_keys_kalas_current_code_writes(api):
    job_id = create(api, remote(schedule=f"R/{START}/PT10S"))
    create(api, remote(schedule=f"R/{START}/PT20S"))
    api.post(f"/api/v1/job/disable/{job_id}/")
    stats = api.get("/api/v1/stats/").get_json()
    assert list(stats) == ["Stats"]
    assert stats["Stats"] == {
        "active_jobs": 1,
        "disabled_jobs": 1,
        "jobs": 2,
        "error_count": 0,
        "success_count": 0,
        "next_run_at": START,
        "last_attempted_run": ZERO,
        "created": "2026-06-01T12:00:00Z",
    }


def test_metadata_counts_runs_and_failures(api):
    job_id = create(api, remote(schedule=f"R/{START}/PT10S"))
    api.store.clock.advance(60)
    run_due(api, 500, advance=10)
    run_due(api, 200)
    meta = kala_job(api, job_id)["metadata"]
    assert (meta["success_count"], meta["error_count"], meta["number_of_finished_runs"]) == (
        1,
        1,
        2,
    )
    assert meta["last_success"] == meta["last_attempted_run"] == "2026-06-01T12:01:10Z"
    stats = api.get(f"/api/v1/job/stats/{job_id}").get_json()["job_stats"]
    assert [s["success"] for s in stats] == [False, True]


# -- Kala's bugs done right ------------------------------------------------------------------


def test_start_triggers_one_run_and_starting_twice_is_still_one_run_in_flight(api):
    job_id = create(api, remote(schedule="R/2026-06-01T13:00:00Z/PT1H"))
    assert api.post(f"/api/v1/job/start/{job_id}/").status_code == 204
    assert api.post(f"/api/v1/job/start/{job_id}/").status_code == 204
    assert [run.manual for run in api.store.claim(10)] == [True]
    assert api.post(f"/api/v1/job/start/{job_id}/").status_code == 204
    assert api.store.claim(10) == []  # the run in flight holds the row
    assert kala_job(api, job_id)["next_run_at"] != ZERO


def test_disable_then_enable_twice_keeps_one_schedule(api):
    job_id = create(api, remote(schedule=f"R/{START}/PT10S"))
    for _ in range(2):
        assert api.post(f"/api/v1/job/disable/{job_id}/").status_code == 204
        assert api.post(f"/api/v1/job/enable/{job_id}/").status_code == 204
        assert api.post(f"/api/v1/job/enable/{job_id}/").status_code == 204
    api.store.clock.advance(60)
    assert len(run_due(api)) == 1 and run_due(api) == []


def test_enable_runs_a_missed_slot_at_once_unless_resume_at_next_scheduled_time(api):
    catch_up = create(api, remote(schedule=f"R/{START}/PT1H"))
    wait = create(api, remote(schedule=f"R/{START}/PT1H", resume_at_next_scheduled_time=True))
    for job_id in (catch_up, wait):
        api.post(f"/api/v1/job/disable/{job_id}/")
    api.store.clock.advance(600)
    for job_id in (catch_up, wait):
        api.post(f"/api/v1/job/enable/{job_id}/")
    assert kala_job(api, catch_up)["next_run_at"] == START
    assert kala_job(api, wait)["next_run_at"] == "2026-06-01T13:01:00Z"
    assert kala_job(api, wait)["resume_at_next_scheduled_time"] is True


def test_created_disabled_with_a_schedule_does_not_run(api):
    job_id = create(api, remote(schedule=f"R/{START}/PT10S", disabled=True))
    assert kala_job(api, job_id)["disabled"] is True
    api.store.clock.advance(60)
    assert run_due(api) == []


# -- dependent jobs and on_failure_job -------------------------------------------------------


def test_an_unknown_parent_or_on_failure_job_is_a_400_and_nothing_is_stored(api):
    ghost = str(uuid.uuid4())
    assert refused(api, remote(parent_jobs=[ghost])) == f"parent_jobs: no Kala job {ghost}"
    parent = create(api, remote(schedule=f"R/{START}/PT10S"))
    assert refused(api, remote(parent_jobs=[parent, ghost])).startswith("parent_jobs: no Kala")
    assert refused(api, remote(parent_jobs=[parent, parent])).startswith("parent_jobs: names")
    assert refused(api, remote(on_failure_job=ghost)) == f"on_failure_job: no Kala job {ghost}"
    assert refused(api, remote(parent_jobs=[parent], schedule=f"R/{START}/PT1M")).startswith(
        "schedule: a job with parent_jobs runs after its parents"
    )


def test_a_child_runs_after_each_success_of_any_of_its_parents(api):
    a = create(api, remote(schedule=f"R/{START}/PT1H"))
    b = create(api, remote(schedule="R/2026-06-01T12:01:05Z/PT1H"))
    child = create(api, remote(parent_jobs=[a, b]))
    only_a = create(api, remote(parent_jobs=[a]))
    assert kala_job(api, child)["parent_jobs"] == [a, b]
    assert kala_job(api, a)["dependent_jobs"] == [child, only_a]
    assert kala_job(api, b)["dependent_jobs"] == [child]
    assert kala_job(api, child)["next_run_at"] == ZERO
    api.store.clock.advance(60)
    assert [r.body for r in run_due(api)] == [a]
    assert sorted(r.body for r in run_due(api)) == sorted([child, only_a])
    api.store.clock.advance(5)
    assert [r.body for r in run_due(api, 500)] == [b]  # failed: its children wait
    assert run_due(api) == []
    assert api.post(f"/api/v1/job/start/{b}/").status_code == 204
    assert [(r.body, r.manual) for r in run_due(api)] == [(b, True)]
    assert [r.body for r in run_due(api)] == [child]


def test_a_single_parents_children_run_one_after_another_in_creation_order(api):
    parent = create(api, remote(schedule=f"R/{START}/PT1M"))
    first, second = (create(api, remote(parent_jobs=[parent])) for _ in range(2))
    api.store.clock.advance(60)
    rounds = [[r.body for r in run_due(api)] for _ in range(4)]
    assert rounds == [[parent], [first], [second], []]


def test_a_child_goes_with_its_last_parent(api):
    a = create(api, remote(schedule=f"R/{START}/PT10S"))
    b = create(api, remote(schedule=f"R/{START}/PT10S"))
    child = create(api, remote(parent_jobs=[a, b]))
    grandchild = create(api, remote(parent_jobs=[child]))
    assert api.delete(f"/api/v1/job/{a}/").status_code == 204
    assert kala_job(api, child)["parent_jobs"] == [b]
    assert api.get(f"/jobs/kala/{child}").get_json()["parent_key"] is not None
    assert kala_job(api, b)["dependent_jobs"] == [child]
    api.store.clock.advance(60)
    assert [r.body for r in run_due(api)] == [b]
    assert [r.body for r in run_due(api)] == [child]  # still woken, by its parent left
    assert api.delete(f"/api/v1/job/{b}/").status_code == 204
    for gone in (child, grandchild):
        assert api.get(f"/api/v1/job/{gone}/").status_code == 404
    assert api.get("/api/v1/job/").get_json() == {"jobs": {}}


def test_deleting_a_parent_that_is_also_a_grandparent_deletes_the_child_once_orphaned(api):
    a = create(api, remote(schedule=f"R/{START}/PT10S"))
    b = create(api, remote(parent_jobs=[a]))
    c = create(api, remote(parent_jobs=[a, b]))
    assert api.delete(f"/api/v1/job/{a}/").status_code == 204
    assert api.get("/api/v1/job/").get_json() == {"jobs": {}}
    assert api.get(f"/api/v1/job/{c}/").status_code == 404


def test_a_loop_of_parents_is_refused(api):
    a = create(api, remote(schedule=f"R/{START}/PT10S"))
    b = create(api, remote(parent_jobs=[a]))
    resp = api.put(f"/jobs/kala/{a}?parent=kala/{b}")
    assert resp.status_code == 400 and "depend on itself" in resp.get_json()["error"]


def test_on_failure_job_runs_when_a_run_fails_after_its_retries(api):
    alarm = create(api, remote(schedule="R/2026-06-02T12:00:00Z/PT1H"))
    job_id = create(api, remote(schedule=f"R/{START}/PT1M", retries=1, on_failure_job=alarm))
    assert kala_job(api, job_id)["on_failure_job"] == alarm
    api.store.clock.advance(60)
    assert [(r.body, r.manual) for r in run_due(api, 500, advance=5)] == [(job_id, False)]
    assert [r.body for r in run_due(api, 500)] == [job_id]  # the retry fails too
    assert [(r.body, r.manual) for r in run_due(api)] == [(alarm, True)]
    api.store.clock.advance(60)
    assert [r.body for r in run_due(api)] == [job_id]  # succeeds: no alarm
    assert run_due(api) == []
    assert api.delete(f"/api/v1/job/{alarm}/").status_code == 204
    assert kala_job(api, job_id)["on_failure_job"] == ""


def test_one_off_and_child_jobs_are_rows_and_survive_a_restart(api, mariadb_url):
    parent = create(api, remote(schedule=f"R/{START}/PT10S"))
    child = create(api, remote(parent_jobs=[parent]))
    once = create(api, remote(schedule=f"R0/{START}/PT0S"))
    settings = settings_on(mariadb_url, api.store.table.name)
    again = create_app(settings, store_for(settings)).test_client()
    assert set(again.get("/api/v1/job/").get_json()["jobs"]) == {parent, child, once}


# -- the guard -------------------------------------------------------------------------------


def test_a_cross_origin_post_is_refused_and_tokens_are_asked(mariadb_url):
    api = make_api(mariadb_url, api_tokens="w:write")
    try:
        evil = {"Origin": "http://evil.example", "Authorization": "Bearer w"}
        resp = api.post("/api/v1/job/", json=remote(), headers=evil)
        assert resp.status_code == 403 and "origin" in resp.get_json()["error"]
        assert api.post("/api/v1/job/", json=remote()).status_code == 401
        assert api.get("/api/v1/job/").status_code == 401
        writer = {"Authorization": "Bearer w"}
        assert api.get("/api/v1/job/", headers=writer).get_json() == {"jobs": {}}
        resp = api.post("/api/v1/job/", json=remote(schedule=f"R/{START}/PT1M"), headers=writer)
        assert resp.status_code == 201
    finally:
        process.stop()
        api.store.drop_table()


# -- the links on every database ---------------------------------------------------------------


def test_links_wake_and_delete_alike_on_every_database(any_db_url):
    """Many parents and an on-failure job, through the store (MariaDB, PostgreSQL, SQLite)."""
    client = Client(settings_on(any_db_url, unique_table()))
    store = client.store
    store.create_table()
    store.clock = Clock()
    try:
        for name in ("a", "b", "alarm"):
            retries = 0 if name == "b" else None  # b's failure is final at once
            client.schedule("p", name, interval=60, immediate=name != "alarm", retries=retries)
        client.schedule("c", "1", parent=("p", "a"))
        client.schedule("c", "only-a", parent=("p", "a"))
        store.link(job_key("c", "1"), [job_key("p", "a"), job_key("p", "b")], None)
        store.link(job_key("p", "b"), [], job_key("p", "alarm"))
        related = store.related([job_key("c", "1"), job_key("p", "a"), job_key("p", "b")])
        assert related[job_key("c", "1")].parents == [("p", "a"), ("p", "b")]
        assert related[job_key("p", "a")].children == [("c", "1"), ("c", "only-a")]
        assert related[job_key("p", "b")].on_failure == ("p", "alarm")
        runs = store.claim(10)
        assert sorted(r.body for r in runs) == ["a", "b"]
        for run in runs:
            answer(store, run, 200 if run.body == "a" else 500)
        store.clock.advance(1)
        assert sorted(r.body for r in store.claim(10)) == ["1", "alarm", "only-a"]
        assert store.delete("p", "a")
        assert store.get("c", "only-a") is None
        assert store.get("c", "1").parent_key == job_key("p", "b")
        assert store.delete("p", "b")
        assert store.get("c", "1") is None
        assert store.related([job_key("p", "alarm")])[job_key("p", "alarm")] == Related()
    finally:
        process.stop()
        store.drop_table()


def test_dalgas_delete_all_forgets_the_links_too(api):
    a = create(api, remote(schedule=f"R/{START}/PT10S"))
    b = create(api, remote(schedule=f"R/{START}/PT10S", on_failure_job=a))
    create(api, remote(parent_jobs=[a, b]))
    with api.store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(api.store.links)).scalar() == 3
    assert api.delete("/jobs?confirm=all").get_json() == {"deleted": 3}
    with api.store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(api.store.links)).scalar() == 0
