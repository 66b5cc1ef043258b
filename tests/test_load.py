"""GET /load, POST /spread and the UI's load view (webapi/load.py, webapi/ui.py): the load is
computed at most once a period per app and says its age; the spread answers its counts and
refuses hostile input, read tokens and other origins; a real worker's deliveries show up in
the load by outcome, with their lateness."""

from __future__ import annotations

import re

import pytest
from helpers import Clock, api_client, settings_on, unique_table
from waiting import wait_until

from celery_dalga.process import store_for
from celery_dalga.store import load as load_module
from webapi import create_app

TOKENS = "reader-token:read,writer-token:write"


@pytest.fixture(params=["mariadb", "sqlite"])
def api(request, tmp_path):
    url = (
        request.getfixturevalue("mariadb_url")
        if request.param == "mariadb"
        else f"sqlite:///{tmp_path}/load.sqlite3"
    )
    with api_client(url) as client:
        client.store.clock = Clock()
        yield client


@pytest.fixture
def computed(monkeypatch):
    """The load computations made."""
    calls = []
    real = load_module.load

    def compute(db):
        calls.append(db)
        return real(db)

    monkeypatch.setattr(load_module, "load", compute)
    return calls


def test_the_load_is_computed_once_a_period_and_says_its_age(api, computed):
    clock = api.store.clock
    for i in range(5):
        api.put(f"/jobs/feeds/{i}?interval=60&first-run=2026-06-01T12:02:30Z")
    first = api.get("/load").get_json()
    assert first["due_per_minute"]["counts"][2] == 5 and first["peak_minute"]["index"] == 2
    assert (
        first["due_per_second"]["counts"][150] == 5
        and len(first["due_per_second"]["counts"]) == 600
    )
    assert first["age_seconds"] == 0 and first["computed_at"] == first["now"]
    assert len(first["callbacks_per_minute"]) == 360 and "√2" in first["lateness"]
    api.put("/jobs/feeds/9?interval=60&first-run=2026-06-01T12:02:30Z")
    clock.advance(0.5)
    again = api.get("/load").get_json()
    assert again["due_per_minute"]["counts"][2] == 5 and again["age_seconds"] == 0.5
    assert len(computed) == 1
    api.get("/ui/load")
    assert len(computed) == 1  # the UI reads the same cache
    cache = api.application.extensions["dalga-load"].snapshot
    clock.advance(cache.period)  # stale: recomputed (in the background once it takes 50 ms)
    api.get("/load")
    cache.wait(10)
    assert api.get("/load").get_json()["due_per_minute"]["counts"][2] == 6
    assert len(computed) == 2


def test_get_load_takes_no_parameters(api):
    answer = api.get("/load?hours=1000")
    assert answer.status_code == 400 and answer.get_json()["parameter"] == "hours"
    assert api.post("/load").status_code == 405


def test_post_spread_answers_its_counts(api):
    for i in range(4):
        api.put(f"/jobs/feeds/{i}?interval=400&immediate=true")
    api.put("/jobs/feeds/cron?cron=0 * * * *")
    api.put("/jobs/mail/1?interval=400&immediate=true")
    answer = api.post("/spread?path-prefix=feeds")
    assert answer.status_code == 200
    assert answer.get_json() == {"path-prefix": "feeds", "moved": 4, "skipped": 1}
    seconds = sorted(
        (api.store.get("feeds", str(i)).next_run - api.store.clock.now).total_seconds()
        for i in range(4)
    )
    assert seconds == [0, 100, 200, 300]
    assert api.store.get("mail", "1").next_run == api.store.clock.now
    form = api.post("/spread", data={"path-prefix": ""})
    assert form.get_json() == {"path-prefix": "", "moved": 5, "skipped": 1}


@pytest.mark.parametrize(
    "url, parameter",
    [
        ("/spread", "path-prefix"),
        ("/spread?path-prefix=" + "p" * 256, "path-prefix"),
        ("/spread?path-prefix=a%00b", "path-prefix"),
        ("/spread?path-prefix=a%0Ab", "path-prefix"),
        ("/spread?path-prefix=a&interval=60", "interval"),
        ("/spread?path-prefix=a&path-prefix=b", "path-prefix"),
    ],
)
def test_hostile_spreads_are_400s_that_move_nothing(api, url, parameter):
    api.put("/jobs/a/1?interval=400&immediate=true")
    answer = api.post(url)
    assert answer.status_code == 400 and answer.get_json()["parameter"] == parameter
    assert api.store.get("a", "1").next_run == api.store.clock.now


def test_spread_takes_only_post(api):
    for method in ("get", "put", "delete", "patch"):
        answer = getattr(api, method)("/spread?path-prefix=a")
        assert answer.status_code == 405 and "error" in answer.get_json()


@pytest.fixture
def secured(tmp_path):
    settings = settings_on(f"sqlite:///{tmp_path}/jobs.sqlite3", unique_table(), api_tokens=TOKENS)
    store = store_for(settings)
    store.create_table()
    client = create_app(settings, store).test_client()
    client.store = store
    return client


def test_tokens_and_origins_guard_the_spread(secured):
    writer, reader = (
        {"Authorization": "Bearer writer-token"},
        {"Authorization": "Bearer reader-token"},
    )
    assert secured.post("/spread?path-prefix=a").status_code == 401
    refused = secured.post("/spread?path-prefix=a", headers=reader)
    assert refused.status_code == 403 and "only read" in refused.get_json()["error"]
    evil = secured.post(
        "/spread?path-prefix=a", headers={**writer, "Origin": "http://evil.example"}
    )
    assert evil.status_code == 403
    assert secured.get("/load", headers=reader).status_code == 200
    assert secured.get("/load").status_code == 401
    assert secured.post("/spread?path-prefix=a", headers=writer).status_code == 200


def test_the_ui_spread_wants_a_write_session_its_origin_and_a_confirmation(secured):
    secured.put(
        "/jobs/a/1?interval=400&immediate=true", headers={"Authorization": "Bearer writer-token"}
    )
    before = secured.store.get("a", "1").next_run
    form = {"path-prefix": "a", "confirm": "spread"}
    assert secured.post("/ui/spread", data=form).status_code == 302  # to the sign-in
    secured.post("/ui/sign-in", data={"token": "reader-token"})
    assert secured.get("/ui/load").status_code == 200
    assert secured.post("/ui/spread", data=form).status_code == 403
    secured.post("/ui/sign-in", data={"token": "writer-token"})
    evil = secured.post("/ui/spread", data=form, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403
    for bad in (
        {"path-prefix": "a"},
        {"path-prefix": "a", "confirm": "yes"},
        {"confirm": "spread"},
    ):
        answer = secured.post("/ui/spread", data=bad)
        assert answer.status_code == 400 and 'class="error"' in answer.get_data(as_text=True)
    assert secured.store.get("a", "1").next_run == before
    done = secured.post("/ui/spread", data=form, headers={"Origin": "http://localhost"})
    assert done.status_code == 200 and "1 moved, 0 skipped" in done.get_data(as_text=True)


def test_the_load_view_draws_accessible_charts_with_the_peak_labelled(api):
    for i in range(7):
        api.put(f"/jobs/feeds/{i}?interval=60&first-run=2026-06-01T12:03:10Z")
    api.put("/jobs/feeds/x?interval=60&first-run=2026-06-01T12:05:00Z")
    page = api.get("/ui/load").get_data(as_text=True)
    charts = re.findall(r'<svg class="chart"[^>]*role="img" aria-label="([^"]*)"', page)
    assert len(charts) == 4
    assert "runs due per second over the next 10 minutes; peak 7 due at 12:03:10" in charts
    assert "runs due per minute over the next 6 hours; peak 7 due at 12:03" in charts
    assert "<title>12:05: 1 due</title>" in page  # a bar's hover title
    assert "peak 7 due at 12:03:10</text>" in page
    assert 'name="confirm"' in page and "data-confirm" in page
    assert 'class="on">Load</a>' in page


def test_a_real_worker_s_deliveries_show_by_outcome_with_their_lateness(make_stack):
    stack = make_stack()
    stack.endpoint.script["fail"] = [500]
    for i in range(20):
        assert stack.api.put(f"/jobs/once/{i}?one-off=true&immediate=true").status_code == 201
    assert stack.api.put("/jobs/fail/1?interval=60&immediate=true&retries=0").status_code == 201
    stack.endpoint.wait_for("once", 20, timeout=30)

    def outcomes():
        return stack.api.get("/load").get_json()["callbacks_by_outcome"]

    wait_until(
        lambda: outcomes().get("deleted") == 20 and outcomes().get("abandoned"), 90, outcomes
    )
    minutes = [m for m in stack.api.get("/load").get_json()["callbacks_per_minute"] if m["total"]]
    assert sum(m["outcomes"].get("deleted", 0) for m in minutes) == 20
    assert all(0 < m["lateness_p50"] <= m["lateness_p99"] < 60 for m in minutes)


def test_openapi_describes_load_and_spread(api):
    paths = api.get("/openapi.json").get_json()["paths"]
    schema = paths["/load"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    answer = api.get("/load").get_json()
    assert set(schema["required"]) <= set(answer) and set(answer) <= set(schema["properties"])
    (prefix,) = paths["/spread"]["post"]["parameters"]
    assert prefix["name"] == "path-prefix" and prefix["required"]


def test_a_stopping_process_writes_its_tally(api):
    from celery_dalga import process
    from celery_dalga.runs import Attempt

    api.put("/jobs/feeds/1?interval=60&immediate=true")
    (run,) = api.store.claim(1)
    api.store.settle([Attempt(run, 200, "HTTP 200", 0.0)])
    assert api.store.load()["callbacks_by_outcome"] == {}
    process.stop()
    assert api.store.load()["callbacks_by_outcome"] == {"done": 1}
