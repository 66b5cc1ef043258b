"""The listings' new inputs over HTTP: the UI's search pages (after_path), a next-sched cursor
after a dependent job (no next_sched), and hostile ones: a 400, never a 500."""

from __future__ import annotations

import base64
import json
import re
from html import unescape
from urllib.parse import quote

import pytest
from helpers import api_client


@pytest.fixture(params=["mariadb", "sqlite"])
def api(request, tmp_path):
    url = (
        request.getfixturevalue("mariadb_url")
        if request.param == "mariadb"
        else f"sqlite:///{tmp_path}/list.sqlite3"
    )
    with api_client(url) as client:
        yield client


def test_the_search_pages_on_by_path_and_id_listing_each_job_once(api):
    for i in range(120):
        api.put(f"/jobs/{['feed/b', 'feed/a', 'mail'][i % 3]}/{i}?interval=60")
    seen, url = [], "/ui/jobs?q=feed/"
    while url:
        page = api.get(url).get_data(as_text=True)
        seen += re.findall(r"body=(\d+)", page)
        more = re.search(r'href="(/ui/jobs\?[^"]*after=\d+[^"]*)"', page)
        url = unescape(more[1]) if more else None
    want = [str(i) for i in range(120) if i % 3 == 1] + [str(i) for i in range(120) if i % 3 == 0]
    assert seen == want


@pytest.mark.parametrize(
    "query, status",
    [
        ("q=feed&after=3&after_path=" + "x" * 256, 400),
        ("q=feed&after=3&after_path=" + "x" * 100_000, 400),
        ("q=feed&after=3&after_path=%00%ff'%22;--", 200),
        ("q=feed&after=3", 200),  # no after_path: from the prefix's first path
        ("after=3&after_path=zzz", 200),  # no search: after_path means nothing
        ("q=%25&after=9223372036854775807&after_path=%25", 200),
    ],
)
def test_hostile_search_pages_are_answered_without_a_500(api, query, status):
    api.put("/jobs/feed/1?interval=60")
    assert api.get("/ui/jobs?" + query).status_code == status


def test_a_next_sched_cursor_goes_on_after_a_dependent_job(api):
    api.put("/jobs/p/1?interval=60")
    for body in range(3):
        api.put(f"/jobs/c/{body}?parent=p/1")
    bodies, url = [], "/jobs?sort-by=next-sched&limit=2"
    while True:
        page = api.get(url).get_json()
        if not page["jobs"]:
            break
        bodies += [j["body"] for j in page["jobs"]]
        url = "/jobs?cursor=" + quote(page["cursor"])
    assert bodies == ["0", "1", "2", "1"]  # the dependent jobs (no next_sched) first


def cursor(last: str) -> str:
    document = {"Path": "", "SortBy": "next-sched", "Reverse": False, "LastValue": last, "Limit": 5}
    return quote(base64.b64encode(json.dumps(document).encode()).decode())


@pytest.mark.parametrize(
    "last", ["5", "|", "|-1", "0001-01-01T00:00:00+01:00|5", "9999-12-31T23:59:59-01:00|5"]
)
def test_a_forged_next_sched_cursor_is_a_400(api, last):
    resp = api.get("/jobs?cursor=" + cursor(last))
    assert resp.status_code == 400 and "cursor" in resp.get_json()["error"]


def test_a_cursor_after_an_untimed_job_by_id_is_taken(api):
    assert api.get("/jobs?cursor=" + cursor("|5")).status_code == 200
