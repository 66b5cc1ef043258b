"""PUT /jobs, the bulk endpoint, on a real MariaDB table: JSON lines of `dalga import`'s
records, all or nothing per request, within its limits; hostile input writes nothing."""

import json
import threading

import pytest
from helpers import api_client, settings_on, unique_table

from celery_dalga import process
from celery_dalga.process import store_for
from webapi import create_app

NDJSON = {"Content-Type": "application/x-ndjson"}


@pytest.fixture
def api(mariadb_url):
    with api_client(mariadb_url) as client:
        yield client


def lines(*records: dict) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def feeds(count: int, start: int = 0, **params) -> str:
    return lines(*({"path": "feeds", "body": str(i), **params} for i in range(start, count)))


def bodies(api) -> set[str]:
    return {job.body for job in api.store.page(limit=1000)}


def test_a_bulk_put_schedules_every_job_as_put_would(api):
    answer = api.put(
        "/jobs",
        data=feeds(300, interval=300) + lines({"path": "cron", "body": "x", "cron": "0 9 * * *"}),
        headers=NDJSON,
    )
    assert answer.status_code == 200 and answer.get_json() == {"jobs": 301}
    assert len(bodies(api)) == 301
    one = api.put("/jobs/feeds/single?interval=300").get_json()
    bulk = api.get("/jobs/feeds/7").get_json()
    assert bulk["interval"] == one["interval"] == "PT300S"
    assert api.get("/jobs/cron/x").get_json()["cron"] == "0 9 * * *"


def test_both_json_lines_types_are_taken_and_others_are_a_415(api):
    for kind in ("application/jsonl", "application/x-ndjson; charset=utf-8"):
        answer = api.put("/jobs", data=feeds(1, interval=60), headers={"Content-Type": kind})
        assert answer.status_code == 200, kind
    for kind in (
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "text/csv",
        "application/x-ndjson; charset=latin-1",
    ):
        answer = api.put("/jobs", data=feeds(3, 1, interval=60), headers={"Content-Type": kind})
        assert answer.status_code == 415, kind
        assert "JSON lines" in answer.get_json()["error"], kind
    assert api.put("/jobs", data=feeds(3, 1, interval=60)).status_code == 415
    assert bodies(api) == {"0"}


def test_records_take_put_parameters_as_json_values(api):
    record = {
        "path": "remote",
        "body": "1",
        "interval": 60,
        "immediate": True,
        "retries": 3,
        "location": "Europe/Istanbul",
    }
    assert api.put("/jobs", data=lines(record), headers=NDJSON).status_code == 200
    job = api.get("/jobs/remote/1").get_json()
    assert job["location"] == "Europe/Istanbul" and job["next_run"] == job["next_sched"]


@pytest.mark.parametrize("method", ["post", "patch"])
def test_other_methods_on_jobs_are_a_405(api, method):
    answer = getattr(api, method)("/jobs", data=feeds(1, interval=60), headers=NDJSON)
    assert answer.status_code == 405
    assert bodies(api) == set()


def test_query_parameters_are_refused(api):
    answer = api.put("/jobs?interval=60", data=feeds(2), headers=NDJSON)
    assert answer.status_code == 400 and answer.get_json()["parameter"] == "interval"
    assert bodies(api) == set()


@pytest.mark.parametrize("body", ["", "\n\n  \n"])
def test_an_empty_body_is_a_400(api, body):
    answer = api.put("/jobs", data=body, headers=NDJSON)
    assert answer.status_code == 400 and "no jobs" in answer.get_json()["error"]


@pytest.mark.parametrize(
    ("bad", "parameter", "message"),
    [
        ({"path": "p", "body": "x", "interval": "soon"}, "interval", "interval"),
        ({"path": "p", "body": "", "interval": 60}, "body", "body"),
        ({"path": "p", "body": "x"}, "interval", "interval"),
        ({"path": "p", "body": "x", "interval": 60, "colour": "red"}, "colour", "colour"),
        (
            {"path": "p", "body": "x", "interval": 60, "retry-interval": "PT0.5S"},
            "retry-interval",
            "min_interval",
        ),
        ({"path": "p", "body": "x", "parent": "no/such"}, "parent", "no job"),
        ({"path": "p", "body": "x", "interval": None}, "interval", "null"),
        ({"path": "p", "body": "x", "interval": 60, "task": "os.system"}, "task", "task"),
        ({"path": "../etc", "body": "x", "interval": 60}, "path", "path"),
        ({"path": "p\r\nX-Evil: 1", "body": "x", "interval": 60}, "path", "control"),
        ({"path": "p", "body": "a\u0000b", "interval": 60}, "body", "NUL"),
    ],
)
def test_a_bad_record_in_the_middle_writes_nothing_and_names_line_and_parameter(
    api, bad, parameter, message
):
    body = feeds(5, interval=60) + lines(bad) + feeds(10, 5, interval=60)
    answer = api.put("/jobs", data=body, headers=NDJSON)
    error = answer.get_json()
    assert answer.status_code == 400, error
    assert error["line"] == 6 and error["parameter"] == parameter
    assert error["error"].startswith("line 6: ") and message in error["error"]
    assert bodies(api) == set()


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        "[1, 2]",
        '"a string"',
        '{"path": "p", "body": "x", "interval": 60',
        '{"path": "p", "path": "q", "body": "x", "interval": 60}',
        '{"path": "p\x00", "body": "x", "interval": 60}',
        '{"path": "p\r", "body": "x", "interval": 60}',
        "[" * 100_000,
        '{"path": "p", "body": "x", "interval": ' + "9" * 5000 + "}",
        "NaN",
    ],
)
def test_a_line_that_is_no_json_object_writes_nothing(api, bad):
    body = feeds(3, interval=60) + bad + "\n" + feeds(5, 3, interval=60)
    answer = api.put("/jobs", data=body, headers=NDJSON)
    assert answer.status_code == 400 and answer.get_json()["line"] in (4, 5), answer.get_json()
    assert bodies(api) == set()


def test_a_name_given_twice_is_named(api):
    body = '{"path": "p", "body": "x", "interval": 60, "interval": 5}\n'
    answer = api.put("/jobs", data=body, headers=NDJSON)
    assert answer.status_code == 400 and answer.get_json()["parameter"] == "interval"
    assert "more than once" in answer.get_json()["error"]


def test_crlf_line_ends_are_taken(api):
    body = feeds(3, interval=60).replace("\n", "\r\n")
    assert api.put("/jobs", data=body, headers=NDJSON).get_json() == {"jobs": 3}


def test_invalid_utf8_is_a_400_naming_its_line(api):
    body = feeds(2, interval=60).encode() + b'{"path": "p", "body": "\xff\xfe", "interval": 60}\n'
    answer = api.put("/jobs", data=body, headers=NDJSON)
    assert answer.status_code == 400 and answer.get_json()["line"] == 3
    assert "UTF-8" in answer.get_json()["error"]
    assert bodies(api) == set()


def test_too_many_records_or_too_many_bytes_is_a_413_and_writes_nothing(mariadb_url):
    settings = settings_on(mariadb_url, unique_table(), bulk_max_jobs=10, bulk_max_bytes=2000)
    store = store_for(settings)
    store.create_table()
    try:
        api = create_app(settings, store).test_client()
        assert api.put("/jobs", data=feeds(10, interval=60), headers=NDJSON).status_code == 200
        many = api.put("/jobs", data=feeds(21, 10, interval=60), headers=NDJSON)
        assert many.status_code == 413 and "more than 10 jobs" in many.get_json()["error"]
        big = lines({"path": "p", "body": "x" * 3000, "interval": 60})
        huge = api.put("/jobs", data=big, headers=NDJSON)
        assert huge.status_code == 413 and "larger than 2000" in huge.get_json()["error"]
        assert len(store.page()) == 10
    finally:
        process.stop()
        store.drop_table()


def test_the_bulk_limit_is_its_own_not_the_single_puts(api):
    """A request of a few MB passes on PUT /jobs while a single PUT's body limit stays."""
    body = feeds(4000, interval=60, location="America/Argentina/ComodRivadavia")
    assert len(body) > 3 * 65535 + 65536
    assert api.put("/jobs", data=body, headers=NDJSON).get_json() == {"jobs": 4000}
    answer = api.put("/jobs/a/b", data={"interval": "60", "x": "y" * 300_000})
    assert answer.status_code == 413


def test_duplicate_jobs_in_one_request_end_as_the_last_line_says(api):
    body = lines(
        {"path": "dup", "body": "1", "interval": 60},
        {"path": "dup", "body": "1", "interval": 120},
        {"path": "dup", "body": "2", "interval": 60, "if-absent": True},
        {"path": "dup", "body": "2", "interval": 90, "if-absent": True},
    )
    assert api.put("/jobs", data=body, headers=NDJSON).get_json() == {"jobs": 4}
    assert api.get("/jobs/dup/1").get_json()["interval"] == "PT120S"
    assert api.get("/jobs/dup/2").get_json()["interval"] == "PT60S"


def test_if_absent_leaves_an_existing_job_as_dalga_import_does(api):
    api.put("/jobs/feeds/0?interval=60")
    answer = api.put("/jobs", data=feeds(3, interval=300, **{"if-absent": True}), headers=NDJSON)
    assert answer.status_code == 200 and answer.get_json() == {"jobs": 3}
    assert api.get("/jobs/feeds/0").get_json()["interval"] == "PT60S"
    assert api.get("/jobs/feeds/2").get_json()["interval"] == "PT300S"
    again = api.put("/jobs", data=feeds(3, interval=300, **{"if-absent": True}), headers=NDJSON)
    assert again.status_code == 200


def test_parents_within_the_request_and_cycles(api):
    chain = lines(
        {"path": "child", "body": "1", "parent": "root/1"},
        {"path": "root", "body": "1", "interval": 60},
    )
    assert api.put("/jobs", data=chain, headers=NDJSON).get_json() == {"jobs": 2}
    assert api.get("/jobs/child/1").get_json()["next_run"] is None
    loop = lines(
        {"path": "a", "body": "1", "parent": "b/1"},
        {"path": "b", "body": "1", "parent": "a/1"},
    )
    answer = api.put("/jobs", data=loop, headers=NDJSON)
    assert answer.status_code == 400 and answer.get_json()["parameter"] == "parent"
    itself = lines({"path": "a", "body": "1", "parent": "a/1"})
    answer = api.put("/jobs", data=itself, headers=NDJSON)
    assert answer.status_code == 400 and "itself" in answer.get_json()["error"]
    onto_root = lines({"path": "root", "body": "1", "parent": "child/1"})
    answer = api.put("/jobs", data=onto_root, headers=NDJSON)
    assert answer.status_code == 400 and answer.get_json()["line"] == 1
    assert bodies(api) == {"1"} and len(api.store.page()) == 2
    assert api.get("/jobs/root/1").get_json()["interval"] == "PT60S"


def test_tokens_hosts_and_origins_guard_the_bulk_put(tmp_path, request):
    settings = settings_on(
        f"sqlite:///{tmp_path}/jobs.sqlite3",
        unique_table(),
        api_tokens="reader:read,writer:write",
    )
    store_for(settings).create_table()
    api = create_app(settings).test_client()
    request.addfinalizer(process.stop)
    body = feeds(2, interval=60)
    assert api.put("/jobs", data=body, headers=NDJSON).status_code == 401
    read = {**NDJSON, "Authorization": "Bearer reader"}
    assert api.put("/jobs", data=body, headers=read).status_code == 403
    write = {**NDJSON, "Authorization": "Bearer writer"}
    evil = api.put("/jobs", data=body, headers={**write, "Origin": "https://evil.example"})
    assert evil.status_code == 403
    no_token = api.put("/jobs", data=body, headers={**NDJSON, "Origin": "https://evil.example"})
    assert no_token.status_code == 403
    foreign = api.put("/jobs", data=body, headers=write, base_url="http://evil.example")
    assert foreign.status_code == 403
    assert api.get("/jobs", headers=write).get_json()["jobs"] == []
    assert api.put("/jobs", data=body, headers=write).get_json() == {"jobs": 2}


def test_concurrent_bulk_puts_of_overlapping_jobs(api):
    """Eight requests rescheduling the same 500 jobs (each its own interval) at once: no
    5xx, and every job ends as one of the requests wrote it, each request whole."""
    answers: list[int] = []

    def put(seconds: int) -> None:
        body = feeds(500, interval=seconds)
        answers.append(api.put("/jobs", data=body, headers=NDJSON).status_code)

    threads = [threading.Thread(target=put, args=(60 + i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * 8
    intervals = {job.interval for job in api.store.page(limit=1000)}
    assert len(api.store.page(limit=1000)) == 500 and len(intervals) == 1
    assert intervals <= {str(60 + i) for i in range(8)}
