"""Screenshots of the UI's pages served off a million-job table, with each page's load time
as the browser measured it (Navigation Timing: responseEnd - requestStart, the server and the
network; domComplete, the whole page).

    .venv/bin/python bench/screenshots.py --jobs 1000000 --out docs/screenshots
    .venv/bin/python bench/screenshots.py --pages /ui/jobs /ui/status /ui/load

Runs on the dev venv (selenium) with Debian's chromium and chromedriver (scripts/setup.sh
dev), on the table bench/list.py fills; each page is loaded `--loads` times and the median
kept; a page's picture is ui-<name>-1m.png (name: its route after /ui/, then q-<prefix> for a
search and deep for a page after a job half way in). The figures go to
bench/results/screenshots.jsonl.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench.common import code_of, record, served_jobs  # noqa: E402
from bench.list import PAGES, add_rare, path_of, ui_urls  # noqa: E402

TIMING = """const n = performance.getEntriesByType('navigation')[0];
return [n.responseEnd - n.requestStart, n.domComplete];"""


def browser():
    """Headless Debian chromium through chromedriver, as tests/test_ui.py drives it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,860")
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def picture_name(page: str) -> str:
    route, _, query = page.partition("?")
    name = route.removeprefix("/ui/").replace("/", "-") or "home"
    found = re.search(r"(?:^|&)q=([^&]*)", query)
    if found:
        name += "-q-" + re.sub(r"\W+", "", found[1])
    if "after=" in query:
        name += "-deep"
    return f"ui-{name}-1m.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--pages", nargs="+", default=PAGES, help="the UI's pages")
    parser.add_argument("--loads", type=int, default=5, help="loads of each page")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    out: dict = {"code": code_of(None), "jobs": args.jobs, "loads": args.loads}
    driver = browser()
    try:
        with served_jobs("bench_screenshots", args.jobs, path_of) as (base, store, _):
            add_rare(store)
            for page, url in ui_urls(store, args.pages).items():
                server, whole = [], []
                for _ in range(args.loads):
                    driver.get(base + url)
                    response, complete = driver.execute_script(TIMING)
                    server.append(response)
                    whole.append(complete)
                name = picture_name(page)
                driver.save_screenshot(str(args.out / name))
                key = re.sub(r"\W+", "_", name.removesuffix("-1m.png"))
                out[f"{key}_response_ms"] = round(statistics.median(server), 1)
                out[f"{key}_dom_complete_ms"] = round(statistics.median(whole), 1)
                print(f"  {name}: {out[f'{key}_response_ms']} ms", file=sys.stderr)
    finally:
        driver.quit()
    record("screenshots", out)


if __name__ == "__main__":
    main()
