"""The web UI at /ui: every page and form through Flask's test client on MariaDB and SQLite,
and in a real browser (Debian's chromium and chromedriver) against `dalga run`: a job created
in the form is called and its history row shows."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from helpers import Clock, api_client
from processes import free_port, start, stop, wait_http
from waiting import wait_until

from celery_dalga.runs import Attempt

DALGA = [sys.executable, "-m", "celery_dalga.cli"]
SHOTS = os.environ.get("DALGA_SCREENSHOTS")  # a folder: the browser test saves its pages there


@pytest.fixture(params=["mariadb", "sqlite"])
def ui(request, tmp_path):
    url = (
        request.getfixturevalue("mariadb_url")
        if request.param == "mariadb"
        else f"sqlite:///{tmp_path}/ui.sqlite3"
    )
    with api_client(url) as client:
        yield client


def text(resp) -> str:
    return resp.get_data(as_text=True)


def test_the_job_list_searches_by_path_prefix_and_pages_by_keyset(ui):
    for i in range(60):
        ui.put(f"/jobs/{'feeds' if i % 2 else 'mail'}/{i}?interval=60")
    first = text(ui.get("/ui/jobs"))
    assert first.count("<tr>") == 51  # the header and 50 jobs
    more = re.search(r'href="(/ui/jobs\?after=\d+)"', first)[1]
    assert text(ui.get(more)).count("<tr>") == 11
    feeds = text(ui.get("/ui/jobs?q=fee"))
    assert feeds.count("<tr>") == 31 and ">mail<" not in feeds
    assert "No jobs" in text(ui.get("/ui/jobs?q=nothing_"))


def test_pages_name_their_static_files_by_content_so_browsers_keep_them(ui):
    """A page does not ask for its stylesheet and script again on every load: their URLs carry
    the files' digest, and the files are served to be kept for a day."""
    static = Path(__file__).parents[1] / "webapi" / "static"
    page = text(ui.get("/ui/jobs"))
    for name in ("ui.css", "ui.js"):
        digest = hashlib.sha256((static / name).read_bytes()).hexdigest()[:12]
        url = f"/static/{name}?v={digest}"
        assert f'"{url}"' in page
        served = ui.get(url)
        assert served.status_code == 200 and served.data == (static / name).read_bytes()
        assert "max-age=86400" in served.headers["Cache-Control"]


def test_the_form_creates_a_job_and_names_a_mistake(ui):
    resp = ui.post("/ui/jobs/new", data={"path": "feeds", "body": "1", "interval": "PT5M"})
    assert resp.status_code == 302 and "/ui/job?path=feeds&body=1" in resp.location
    assert ui.store.get("feeds", "1").interval == "PT5M"
    bad = ui.post("/ui/jobs/new", data={"path": "feeds", "body": "2", "interval": "soon"})
    assert bad.status_code == 400 and "interval: " in text(bad) and 'value="soon"' in text(bad)
    again = ui.post(
        "/ui/jobs/new",
        data={"path": "feeds", "body": "1", "interval": "60", "if-absent": "on"},
    )
    assert again.status_code == 400 and "job already scheduled" in text(again)
    dependent = ui.post("/ui/jobs/new", data={"path": "after", "body": "1", "parent": "feeds/1"})
    assert dependent.status_code == 302 and ui.store.get("after", "1").parent_key


def test_the_job_page_shows_history_sparkline_parent_and_children(ui):
    ui.store.clock = clock = Clock()
    ui.put("/jobs/feeds/1?interval=60&immediate=true")
    ui.put("/jobs/after/1?parent=feeds/1")
    for status in (500, 200):
        (run,) = ui.store.claim(10)
        ui.store.settle([Attempt(run, status, f"HTTP {status}", 0.0)], 9)
        clock.advance(1)
    page = text(ui.get("/ui/job?path=feeds&body=1"))
    assert page.count('<td class="num">') >= 4 and "retry" in page and "done" in page
    assert "<svg" in page and "after/1" in page
    child = text(ui.get("/ui/job?path=after&body=1"))
    assert "feeds/1" in child  # the parent's link
    assert ui.get("/ui/job?path=no&body=job").status_code == 404


def test_the_job_page_buttons(ui):
    ui.put("/jobs/feeds/1?interval=3600")
    for action in ("trigger", "pause", "resume"):
        resp = ui.post("/ui/job", data={"path": "feeds", "body": "1", "action": action})
        assert resp.status_code == 302
    job = ui.store.get("feeds", "1")
    assert job.enabled and job.triggered_at is not None
    resp = ui.post("/ui/job", data={"path": "feeds", "body": "1", "action": "delete"})
    assert resp.status_code == 302 and ui.store.get("feeds", "1") is None
    gone = ui.post("/ui/job", data={"path": "feeds", "body": "1", "action": "pause"})
    assert gone.status_code == 404


def test_the_status_page_and_delete_all(ui):
    ui.put("/jobs/feeds/1?interval=60&immediate=true")
    page = text(ui.get("/ui/status"))
    assert 'class="me"' in page and "lag" in page  # this server's row, marked
    ui.post("/ui/delete-all", data={"confirm": "no"})
    assert ui.store.status()["total_jobs"] == 1
    ui.post("/ui/delete-all", data={"confirm": "all"})
    assert ui.store.status()["total_jobs"] == 0


@pytest.fixture
def browser():
    """Headless Debian chromium through chromedriver (scripts/setup.sh dev installs them)."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        message = "chromium and chromedriver are not installed (scripts/setup.sh dev does it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,860",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def test_in_a_browser_a_job_made_in_the_form_is_called_and_its_history_shows(
    browser, endpoint, tmp_path
):
    from selenium.webdriver.common.by import By

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALGA_")}
    env.update(
        DALGA_PORT=str(port),
        DALGA_BASE_URL=endpoint.base_url,
        DALGA_MAX_INTERVAL="0.2",
        PYTHONUNBUFFERED="1",
    )
    proc = start(DALGA + ["run"], env, tmp_path, "run.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/status", proc)
        browser.get(f"{base}/ui/jobs/new")
        browser.find_element(By.NAME, "path").send_keys("check_feed")
        browser.find_element(By.NAME, "body").send_keys("1234")
        browser.find_element(By.NAME, "interval").send_keys("2")
        browser.find_element(By.NAME, "immediate").click()
        snap(browser, "ui-new-job.png")
        browser.find_element(By.CSS_SELECTOR, "button.primary").click()
        assert "/ui/job?path=check_feed&body=1234" in browser.current_url
        called = len(endpoint.wait_for("check_feed", 2, timeout=30))
        wait_until(lambda: "done" in refreshed(browser), 30, lambda: rows(browser), every=0.5)
        assert "200" in rows(browser)
        endpoint.wait_for("check_feed", called + 2, timeout=30)  # more runs, for the sparkline
        browser.refresh()
        snap(browser, "ui-job.png")
        browser.get(f"{base}/ui/jobs")
        assert "check_feed" in browser.page_source
        snap(browser, "ui-jobs.png")
        browser.get(f"{base}/ui/status")
        assert 'class="me"' in browser.page_source
        snap(browser, "ui-status.png")
        at = peak_at(60)
        for i in range(40):  # a peak: 40 jobs due in one second, in a minute's time
            url = f"{base}/jobs/feeds/{i}?interval=300&first-run={at}"
            assert requests.put(url, timeout=10).status_code == 201
        browser.get(f"{base}/ui/load")
        charts = browser.find_elements(By.CSS_SELECTOR, 'svg.chart[role="img"]')
        label = charts[0].get_attribute("aria-label")
        assert len(charts) == 4 and re.search(r"peak 4[01] due", label), label
        wait_until(lambda: "done" in loaded(browser), 30, "no callbacks in the load view")
        browser.set_window_size(1280, 1720)  # the whole page
        snap(browser, "ui-load.png")
    finally:
        assert stop(proc) == 0, proc.log_path.read_text()


def peak_at(seconds: int) -> str:
    """An instant `seconds` from now, RFC 3339, whole seconds."""
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seconds)
    return at.isoformat().replace("+00:00", "Z")


def loaded(browser) -> str:
    """The load view's tiles after reloading it."""
    from selenium.webdriver.common.by import By

    browser.refresh()
    return " ".join(t.text for t in browser.find_elements(By.CSS_SELECTOR, ".tile"))


def refreshed(browser) -> str:
    """The history rows after reloading the page."""
    browser.refresh()
    return rows(browser)


def rows(browser) -> str:
    from selenium.webdriver.common.by import By

    return " ".join(r.text for r in browser.find_elements(By.CSS_SELECTOR, "table.history tr"))


def snap(browser, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(SHOTS) / name))
