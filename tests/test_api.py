"""The HTTP API on a real MariaDB table: every route, and bad input that changes nothing."""

import json
from urllib.parse import quote

import pytest
from helpers import api_client

from celery_dalga.runs import Attempt


@pytest.fixture
def api(mariadb_url):
    with api_client(mariadb_url) as client:
        yield client


def test_put_returns_201_with_the_committed_job_in_dalgas_fields_first(api):
    resp = api.put("/jobs/check_feed/1234?interval=60")
    assert resp.status_code == 201 and resp.mimetype == "application/json"
    job = resp.get_json()
    dalga = ["path", "body", "interval", "location", "next_run", "next_sched", "instance_id"]
    assert list(json.loads(resp.data))[:7] == dalga
    assert [job[k] for k in dalga[:4]] == ["check_feed", "1234", "PT60S", "UTC"]
    assert job["next_run"] == job["next_sched"] and job["next_run"].endswith("Z")
    assert job["instance_id"] is None
    assert api.store.get("check_feed", "1234") is not None
    assert api.get("/jobs/check_feed/1234").get_json() == job


def test_intervals_and_times_are_written_as_dalga_writes_them(api):
    resp = api.put("/jobs/reports/daily", data={"interval": "P1D", "location": "Europe/Istanbul"})
    assert resp.status_code == 201
    job = resp.get_json()
    assert job["interval"] == "P1D" and job["next_sched"].endswith("+03:00")
    assert api.put("/jobs/reports/5m?interval=PT5M").get_json()["interval"] == "PT5M"
    once = api.put("/jobs/remind/1?one-off=true&interval=60").get_json()
    assert once["interval"] == "P0D"
    assert api.put("/jobs/cron/1?cron=0+9+*+*+*").get_json()["interval"] == ""


def test_a_running_job_shows_the_instance_that_claimed_it(api):
    api.put("/jobs/a/b?interval=60&immediate=true")
    api.store.claim(10, instance_id=4294967295)
    assert api.get("/jobs/a/b").get_json()["instance_id"] == 4294967295


def test_nested_paths_and_percent_encoded_bodies(api):
    resp = api.put("/jobs/api/v1/feeds/caf%C3%A9%201?interval=60")
    assert resp.status_code == 201
    assert (resp.get_json()["path"], resp.get_json()["body"]) == ("api/v1/feeds", "café 1")


def test_get_missing_is_404_json(api):
    resp = api.get("/jobs/nothing/here")
    assert resp.status_code == 404 and resp.get_json() == {"error": "job not found"}


def test_delete_is_204_also_when_the_job_is_gone_as_in_dalga(api):
    api.put("/jobs/a/b?interval=60")
    assert api.delete("/jobs/a/b").status_code == 204
    assert api.get("/jobs/a/b").status_code == 404
    assert api.delete("/jobs/a/b").status_code == 204


def test_post_triggers_a_run_without_changing_the_schedule(api):
    before = api.put("/jobs/a/b?interval=3600").get_json()
    resp = api.post("/jobs/a/b")
    assert resp.status_code == 200
    after = resp.get_json()
    assert after["next_sched"] == before["next_sched"] and after["triggered_at"]
    assert api.post("/jobs/a/missing").status_code == 404


def test_patch_disables_and_enables(api):
    api.put("/jobs/a/b?interval=60")
    off = api.patch("/jobs/a/b?disable=true")
    assert off.status_code == 200 and off.get_json()["enabled"] is False
    assert off.get_json()["next_run"] is None
    api.put("/jobs/a/running?interval=60&immediate=true")
    api.store.claim(10)
    assert api.patch("/jobs/a/running?disable=true").get_json()["next_run"] is None
    on = api.patch("/jobs/a/b?enable=yes")
    assert on.status_code == 200 and on.get_json()["enabled"] is True and on.get_json()["next_run"]
    assert api.patch("/jobs/a/missing?enable=true").status_code == 404


@pytest.mark.parametrize(
    "query", ["", "?disable=maybe", "?disable=", "?disable=true&enable=true", "?paused=1"]
)
def test_patch_needs_exactly_one_switch(api, query):
    api.put("/jobs/a/b?interval=60")
    resp = api.patch("/jobs/a/b" + query)
    assert resp.status_code == 400 and "error" in resp.get_json()
    assert api.store.get("a", "b").enabled


def test_list_is_keyset_paginated_and_filters_by_path(api):
    for i in range(5):
        api.put(f"/jobs/{'x' if i < 3 else 'y'}/{i}?interval=60")
    first = api.get("/jobs?limit=2").get_json()
    assert [j["body"] for j in first["jobs"]] == ["0", "1"]
    rest = api.get(f"/jobs?limit=10&after={first['next_after']}").get_json()
    assert [j["body"] for j in rest["jobs"]] == ["2", "3", "4"] and rest["next_after"] is None
    assert [j["body"] for j in api.get("/jobs?path=y").get_json()["jobs"]] == ["3", "4"]


def test_dalgas_listing_with_sort_by_reverse_limit_and_continue(api):
    for i, interval in enumerate([50, 10, 40, 20, 30]):
        api.put(f"/jobs/{'x' if i % 2 else 'y'}/{i}?interval={interval}")
    pages, url = [], "/jobs?sort-by=next-sched&limit=2"
    while True:
        page = api.get(url).get_json()
        if not page["jobs"]:
            assert page["cursor"] == ""
            break
        pages.append([j["body"] for j in page["jobs"]])
        url = f"/jobs/continue?cursor={quote(page['cursor'])}"
    assert pages == [["1", "3"], ["4", "2"], ["0"]]
    backwards = api.get("/jobs?reverse=true&limit=3").get_json()
    assert [j["body"] for j in backwards["jobs"]] == ["4", "3", "2"]
    more = api.get(f"/jobs/continue?cursor={quote(backwards['cursor'])}").get_json()
    assert [j["body"] for j in more["jobs"]] == ["1", "0"]
    by_path = api.get("/jobs?path=x&sort-by=insert-order&limit=1").get_json()
    after = api.get(f"/jobs/continue?cursor={quote(by_path['cursor'])}").get_json()
    assert [j["body"] for j in by_path["jobs"] + after["jobs"]] == ["1", "3"]
    assert len(api.get("/jobs?limit=0").get_json()["jobs"]) == 5  # 0: the largest page


def test_dalgas_client_list_with_an_empty_path_lists_every_path(api):
    """Dalga's client.List(ctx, "", "", false, 0) sends every parameter, empty ones too."""
    for path in ("x", "y", "z"):
        api.put(f"/jobs/{path}/1?interval=60")
    page = api.get("/jobs?limit=0&path=&reverse=false&sort-by=").get_json()
    assert [j["path"] for j in page["jobs"]] == ["x", "y", "z"] and page["cursor"]
    one = api.get("/jobs?limit=0&path=y&reverse=false&sort-by=").get_json()
    assert [j["path"] for j in one["jobs"]] == ["y"]


def test_dalgas_client_list_continue_sends_the_cursor_unescaped_to_jobs(api):
    """Dalga's client.ListContinue(ctx, cursor) asks GET /jobs?cursor=<cursor> without
    escaping it: the `+` of the cursor arrives as a space."""
    for body in range(3):
        api.put(f"/jobs/a~b/{body}?interval=60")
    api.put("/jobs/other/0?interval=60")
    page = api.get("/jobs?limit=1&path=a~b&reverse=false&sort-by=").get_json()
    bodies, cursor = [j["body"] for j in page["jobs"]], page["cursor"]
    assert "+" in cursor  # the path a~b makes one; a test without it would prove nothing
    while cursor:
        page = api.get("/jobs?cursor=" + cursor).get_json()
        bodies += [j["body"] for j in page["jobs"]]
        cursor = page["cursor"]
    assert bodies == ["0", "1", "2"] and page["jobs"] == []


@pytest.mark.parametrize(
    "query",
    [
        "?cursor=",
        "?cursor=%20%20",
        "?cursor=e30=&limit=5",
        "?cursor=e30=&cursor=e30=",
        "?cursor=" + "A" * 100_000,
        "?cursor=bm90IGpzb24=",
    ],
)
def test_jobs_with_a_bad_cursor_or_more_than_a_cursor_is_400(api, query):
    api.put("/jobs/a/1?interval=60")
    resp = api.get("/jobs" + query)
    assert resp.status_code == 400 and resp.get_json()["error"]


@pytest.mark.parametrize(
    "query",
    [
        "?limit=abc",
        "?limit=-1",
        "?after=-1",
        "?page=2",
        "?sort-by=name",
        "?reverse=sideways",
        "?sort-by=next-sched&after=3",
    ],
)
def test_list_rejects_bad_arguments(api, query):
    resp = api.get("/jobs" + query)
    assert resp.status_code == 400 and resp.get_json()["error"]


@pytest.mark.parametrize("cursor", ["", "not-base64!", "bm90IGpzb24=", "e30=", "W10="])
def test_continue_rejects_cursors_it_did_not_give(api, cursor):
    resp = api.get(f"/jobs/continue?cursor={cursor}")
    assert resp.status_code == 400 and resp.get_json()["parameter"] == "cursor"


def test_status_in_dalgas_fields(api):
    api.put("/jobs/a/1?interval=60&immediate=true")
    api.put("/jobs/a/2?interval=60")
    status = api.get("/status").get_json()
    assert {k: status[k] for k in ("total_jobs", "pending_jobs", "running_jobs")} == {
        "total_jobs": 2,
        "pending_jobs": 1,
        "running_jobs": 0,
    }
    assert isinstance(status["lag"], int) and status["lag_seconds"] >= 0
    assert 0 <= status["instance_id"] < 2**32 and status["total_instances"] >= 1
    assert status["instance_running_jobs"] == 0


def test_path_segments_are_decoded_twice_as_dalga_does(api):
    resp = api.put("/jobs/feed%2Bx/a+b%2520c?interval=60")
    assert (resp.get_json()["path"], resp.get_json()["body"]) == ("feed x", "a b c")
    bad = api.put("/jobs/a/100%25?interval=60")  # "100%" after the first decoding
    assert bad.status_code == 400 and bad.get_json()["parameter"] == "body"


BAD_PUTS = [
    ("/jobs/a/b?interval=abc", "interval"),
    ("/jobs/a/b?interval=-1", "interval"),
    ("/jobs/a/b?interval=0", "interval"),
    ("/jobs/a/b?interval=99999999999999999999", "interval"),
    ("/jobs/a/b?interval=60&first-run=yesterday", "first-run"),
    ("/jobs/a/b?interval=60&first-run=99999-01-01T00:00:00Z", "first-run"),
    ("/jobs/a/b?interval=60&location=Mars/Base", "location"),
    ("/jobs/a/b?cron=not-a-cron", "cron"),
    ("/jobs/a/b?schedule=R5/soon/PT1S", "schedule"),
    ("/jobs/a/b?interval=60&cron=*%20*%20*%20*%20*", "cron"),
    ("/jobs/a/b?one-off=true&immediate=true&interval=60", "interval"),
    ("/jobs/a/b?one-off=true", "interval"),
    ("/jobs/a/b?interval=60&immediate=true&first-run=2030-01-01T00:00:00Z", "first-run"),
    ("/jobs/a/b?interval=60&one-off=perhaps", "one-off"),
    ("/jobs/a/b", "interval"),
    ("/jobs//b?interval=60", "path"),
    ("/jobs/a/?interval=60", "body"),
    ("/jobs/b?interval=60", "path"),
    ("/jobs/a/" + "x" * 65536 + "?interval=60", "body"),
    ("/jobs/a/b%00c?interval=60", "body"),
]


@pytest.mark.parametrize(("url", "parameter"), BAD_PUTS)
def test_bad_input_is_400_naming_the_parameter_and_writes_nothing(api, url, parameter):
    resp = api.put(url)
    assert resp.status_code == 400, resp.data
    assert resp.get_json()["parameter"] == parameter
    assert parameter in resp.get_json()["error"]
    assert api.store.page() == []


def test_bad_put_on_an_existing_job_leaves_it_unchanged(api):
    before = api.put("/jobs/a/b?interval=60").get_json()
    assert api.put("/jobs/a/b?interval=60&location=Nowhere").status_code == 400
    assert api.get("/jobs/a/b").get_json() == before


def test_unknown_routes_and_methods_are_json(api):
    assert api.get("/nope").get_json()["error"]
    resp = api.post("/jobs")
    assert resp.status_code == 405 and resp.get_json()["error"]


def test_history_stats_and_app_stats_routes(api):
    api.put("/jobs/a/b/c?interval=60&immediate=true")  # path a/b, body c
    (run,) = api.store.claim(10)
    api.store.settle([Attempt(run, 200, "HTTP 200", 0.0)], 7)
    (attempt,) = api.get("/jobs/a/b/c/runs").get_json()["runs"]
    assert (attempt["status"], attempt["outcome"], attempt["instance_id"]) == (200, "done", 7)
    assert attempt["lateness"] >= 0 and attempt["finished"].endswith("Z")
    (stat,) = api.get("/jobs/a/b/c/stats").get_json()["job_stats"]
    assert stat["Success"] is True and stat["NumberOfRetries"] == 0
    stats = api.get("/stats").get_json()["Stats"]
    assert (stats["Jobs"], stats["ActiveJobs"], stats["SuccessCount"]) == (1, 1, 1)
    assert api.get("/jobs/a/b/missing/stats").status_code == 404
    assert api.get("/jobs/a/b/missing/runs").get_json() == {"runs": []}
    assert api.put("/jobs/x/runs?interval=60").get_json()["body"] == "runs"  # a body "runs"


def test_delete_all_needs_confirm_all(api):
    for i in range(3):
        api.put(f"/jobs/a/{i}?interval=60")
    assert api.delete("/jobs").status_code == 400
    assert api.delete("/jobs?confirm=yes").status_code == 400
    assert api.store.status()["total_jobs"] == 3
    assert api.delete("/jobs?confirm=all").get_json() == {"deleted": 3}
    assert api.store.status()["total_jobs"] == 0


def test_insert_if_absent_answers_409_with_the_job_there(api):
    assert api.put("/jobs/a/b?interval=60&if-absent=true").status_code == 201
    resp = api.put("/jobs/a/b?interval=5&if-absent=true")
    assert resp.status_code == 409 and resp.get_json()["job"]["interval"] == "PT60S"
    assert resp.get_json()["error"] == "job already scheduled"


def test_dependent_jobs_and_per_job_settings_over_http(api):
    api.put("/jobs/p/1?interval=60")
    child = api.put("/jobs/c/1?parent=p/1&retries=3&retry-interval=PT2S&epsilon=30").get_json()
    assert child["next_run"] is None and child["parent_key"] is not None
    assert (child["retries"], child["retry_interval"], child["epsilon"]) == (3, 2.0, 30.0)
    resp = api.put("/jobs/c/2?parent=nobody/1")
    assert resp.status_code == 400 and resp.get_json()["parameter"] == "parent"
    api.delete("/jobs/p/1")
    assert api.get("/jobs/c/1").status_code == 404


@pytest.mark.parametrize(
    ("query", "form", "parameter"),
    [
        ("?interval=60", None, "interval"),
        ("?cron=*+*+*+*+*", None, "cron"),
        ("", {"interval": "60"}, "interval"),
        ("?first-run=2030-01-01T00:00:00Z", None, "first-run"),
        ("?now=1", None, "now"),
        ("?interval=60&interval=70", None, "interval"),
        ("?interval=" + "9" * 10_000, None, "interval"),
    ],
)
def test_post_with_scheduling_parameters_is_400_saying_put_schedules(api, query, form, parameter):
    """The RabbitMQ-era Dalga's POST ?interval= changed the interval; here POST runs now, so
    a POST with parameters is refused rather than run with its parameters ignored."""
    before = api.put("/jobs/a/b?interval=3600").get_json()
    resp = api.post("/jobs/a/b" + query, data=form)
    assert resp.status_code == 400 and resp.get_json()["parameter"] == parameter
    if "given more than once" not in resp.get_json()["error"]:
        assert "PUT schedules" in resp.get_json()["error"]
    assert api.get("/jobs/a/b").get_json() == before  # not run, not changed


def test_the_2013_schedule_and_cancel_routes(api):
    """/schedule?routing_key=&body=&interval= and /cancel?routing_key=&body= (query or form),
    routing_key being the path; 200 as in that Dalga."""
    resp = api.post("/schedule?routing_key=check_feed&body=1234&interval=60")
    assert resp.status_code == 200
    job = api.get("/jobs/check_feed/1234").get_json()
    assert (job["interval"], job["path"], job["body"]) == ("PT60S", "check_feed", "1234")
    again = api.put(
        "/schedule", data={"routing_key": "check_feed", "body": "1234", "interval": "5"}
    )
    assert again.status_code == 200 and again.get_json()["interval"] == "PT5S"
    assert (
        api.post("/cancel", data={"routing_key": "check_feed", "body": "1234"}).status_code == 200
    )
    assert api.get("/jobs/check_feed/1234").status_code == 404
    assert api.delete("/cancel?routing_key=check_feed&body=1234").status_code == 200  # gone: 200


@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        ("/schedule?routing_key=a&body=b", "interval"),
        ("/schedule?routing_key=a&body=b&interval=0", "interval"),
        ("/schedule?routing_key=a&body=b&interval=-1", "interval"),
        ("/schedule?routing_key=a&body=b&interval=soon", "interval"),
        ("/schedule?routing_key=a&body=b&interval=" + "9" * 10_000, "interval"),
        ("/schedule?routing_key=&body=b&interval=60", "routing_key"),
        ("/schedule?body=b&interval=60", "routing_key"),
        ("/schedule?routing_key=a&interval=60", "body"),
        ("/schedule?routing_key=a&body=b&interval=60&cron=x", "cron"),
        ("/schedule?routing_key=a&routing_key=c&body=b&interval=60", "routing_key"),
        ("/schedule?routing_key=a/../x&body=b&interval=60", "path"),
        ("/schedule?routing_key=a&body=" + "x" * 70_000 + "&interval=60", "body"),
        ("/cancel?routing_key=a", "body"),
        ("/cancel?routing_key=a&body=b&interval=60", "interval"),
    ],
)
def test_the_2013_routes_refuse_bad_input_and_write_nothing(api, url, parameter):
    resp = api.post(url)
    assert resp.status_code == 400 and resp.get_json()["parameter"] == parameter
    assert api.store.page() == []


@pytest.mark.parametrize("route", ["/schedule", "/cancel"])
def test_the_2013_routes_do_not_write_on_a_get(api, route):
    resp = api.get(route + "?routing_key=a&body=b&interval=60")
    assert resp.status_code == 405 and "POST" in resp.get_json()["error"]
    assert api.store.page() == []


def test_a_one_off_jobs_epsilon_skips_it_when_claimed_too_late(api):
    """A one-off 11 s late with epsilon=5 is not sent and stays, disabled; with epsilon=30
    it is sent."""
    from datetime import UTC, datetime, timedelta

    past = quote((datetime.now(UTC) - timedelta(seconds=11)).isoformat(timespec="seconds"))
    api.put(f"/jobs/late/1?one-off=true&first-run={past}&epsilon=5")
    api.put(f"/jobs/soon/1?one-off=true&first-run={past}&epsilon=30")
    (run,) = api.store.claim(10)
    assert run.path == "soon"
    late = api.get("/jobs/late/1").get_json()
    assert (late["enabled"], late["next_run"]) == (False, None) and "epsilon" in late["last_error"]
