"""The HTTP API on a real MariaDB table: every route, and bad input that changes nothing."""

import pytest
from helpers import settings_on, unique_table

from celery_dalga.store import store_for
from webapi import create_app


@pytest.fixture
def api(mariadb_url):
    settings = settings_on(mariadb_url, unique_table())
    store = store_for(settings)
    store.create_table()
    client = create_app(settings, store).test_client()
    client.store = store
    yield client
    store.drop_table()


def test_put_returns_201_with_the_committed_job(api):
    resp = api.put("/jobs/check_feed/1234?interval=60")
    assert resp.status_code == 201
    job = resp.get_json()
    assert (job["path"], job["body"], job["interval"], job["location"]) == (
        "check_feed",
        "1234",
        60,
        "UTC",
    )
    assert job["next_run"] == job["next_sched"] and job["next_run"].endswith("Z")
    assert api.store.get("check_feed", "1234") is not None
    assert api.get("/jobs/check_feed/1234").get_json() == job


def test_put_takes_form_parameters_and_iso_intervals(api):
    resp = api.put("/jobs/reports/daily", data={"interval": "P1D", "location": "Europe/Istanbul"})
    assert resp.status_code == 201
    assert resp.get_json()["interval"] == "P1D"
    assert api.put("/jobs/reports/5m?interval=PT5M").get_json()["interval"] == 300


def test_nested_paths_and_percent_encoded_bodies(api):
    resp = api.put("/jobs/api/v1/feeds/caf%C3%A9%201?interval=60")
    assert resp.status_code == 201
    assert (resp.get_json()["path"], resp.get_json()["body"]) == ("api/v1/feeds", "café 1")


def test_get_missing_is_404_json(api):
    resp = api.get("/jobs/nothing/here")
    assert resp.status_code == 404 and resp.get_json() == {"error": "job not found"}


def test_delete_is_204_then_404(api):
    api.put("/jobs/a/b?interval=60")
    assert api.delete("/jobs/a/b").status_code == 204
    assert api.delete("/jobs/a/b").status_code == 404


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
    on = api.patch("/jobs/a/b?enable=yes")
    assert on.status_code == 200 and on.get_json()["enabled"] is True and on.get_json()["next_run"]
    assert api.patch("/jobs/a/missing?enable=true").status_code == 404


@pytest.mark.parametrize("query", ["", "?disable=maybe", "?disable=true&enable=true", "?paused=1"])
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


@pytest.mark.parametrize("query", ["?limit=0", "?limit=abc", "?after=-1", "?page=2"])
def test_list_rejects_bad_arguments(api, query):
    resp = api.get("/jobs" + query)
    assert resp.status_code == 400 and resp.get_json()["error"]


def test_status_reports_totals(api):
    api.put("/jobs/a/1?interval=60&immediate=true")
    api.put("/jobs/a/2?interval=60")
    status = api.get("/status").get_json()
    assert status["total"] == 2 and status["pending"] == 1 and status["running"] == 0
    assert status["lag"] >= 0


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
]


@pytest.mark.parametrize(("url", "parameter"), BAD_PUTS)
def test_bad_input_is_400_naming_the_parameter_and_writes_nothing(api, url, parameter):
    resp = api.put(url)
    assert resp.status_code == 400, resp.data
    assert resp.get_json()["parameter"] == parameter
    assert parameter in resp.get_json()["error"]
    assert api.store.list() == []


def test_bad_put_on_an_existing_job_leaves_it_unchanged(api):
    before = api.put("/jobs/a/b?interval=60").get_json()
    assert api.put("/jobs/a/b?interval=60&location=Nowhere").status_code == 400
    assert api.get("/jobs/a/b").get_json() == before


def test_unknown_routes_and_methods_are_json(api):
    assert api.get("/nope").get_json()["error"]
    resp = api.post("/jobs")
    assert resp.status_code == 405 and resp.get_json()["error"]
