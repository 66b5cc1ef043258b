"""Benchmark 8, GET /jobs and the UI's pages at a million jobs.

    python bench/list.py --jobs 1000000 --requests 50
    python bench/list.py --sources /tmp/before . --requests 20   # before/after in one run
    python bench/list.py --quick

Fills a MariaDB table with `--jobs` jobs (bench/common.py's fill: 100 paths, feed/0 to
feed/99 odd and mail/0 to mail/99 even, next runs spread over 5 minutes so thousands share
one second; then 3 jobs under rare/), made by the checkout's own `dalga create-table` and
served by its `dalga web`, and times from one client, `--requests` GETs each (p50, p99, max
in ms): GET /jobs's first page and the pages 10%, 50% and 90% deep (by `after` in insert
order, by Dalga's cursor in next-sched order), each order forward and reverse, with and
without a path; and each of `--pages` of the UI. A route stops after `--budget` seconds (3
requests at least: the slow routes of an earlier checkout). The table is dropped afterwards.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import urlencode

import requests
from sqlalchemy import func, select
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench.common import code_of, figures, record, served_jobs, timed  # noqa: E402
from celery_dalga.jobs import aware  # noqa: E402
from celery_dalga.spec import parse_spec  # noqa: E402
from celery_dalga.wire import Cursor  # noqa: E402

PATH = "feed/7"  # the path of the listings with one: a hundredth of the jobs
SEARCH = "feed/"  # the search that finds many: half the jobs
DEPTHS = (0.1, 0.5, 0.9)
LIMIT = 100
PAGES = [  # the UI's pages; {deep_id}, {deep_path}, {job_path}, {job_body} are filled in
    "/ui/jobs",
    f"/ui/jobs?q={SEARCH}",
    "/ui/jobs?q=rare/",
    "/ui/jobs?after={deep_id}",
    f"/ui/jobs?q={SEARCH}&after={{deep_id}}&after_path={{deep_path}}",
    "/ui/job?path={job_path}&body={job_body}",
    "/ui/status",
    "/ui/jobs/new",
    "/ui/load",
]


def path_of(i: int) -> str:
    return f"{'feed' if i % 2 else 'mail'}/{i % 100}"


def add_rare(store) -> None:
    """The jobs of the search that finds few: 3 under rare/."""
    store.put_many([parse_spec("rare/x", str(i), {"interval": "300"}) for i in range(3)])


def listing_urls(store, jobs: int) -> dict[str, str]:
    """Each GET /jobs to time, by name: first pages and pages deep in each order. A deep
    page's keyset is read here once, by OFFSET (slow, but not what is timed)."""
    t = store.table
    urls = {}
    for sort_by in ("insert-order", "next-sched"):
        for reverse in (False, True):
            for path in (None, PATH):
                name = f"{sort_by}{'-reverse' if reverse else ''}{'-path' if path else ''}"
                query = {"sort-by": sort_by, "reverse": str(reverse).lower(), "limit": LIMIT}
                urls[name] = "/jobs?" + urlencode({**query, **({"path": path} if path else {})})
                keys = (t.c.id,) if sort_by == "insert-order" else (t.c.next_sched, t.c.id)
                rows = jobs if path is None else jobs // 100
                for depth in DEPTHS:
                    q = select(*keys).order_by(*(k.desc() if reverse else k for k in keys))
                    q = q.where(t.c.path == path) if path else q
                    with store.engine.connect() as conn:
                        last = conn.execute(q.offset(int(rows * depth)).limit(1)).first()
                    if sort_by == "insert-order" and not reverse:
                        extra = {"after": last[0], **({"path": path} if path else {})}
                        urls[f"{name}-{depth:.0%}"] = "/jobs?" + urlencode({**query, **extra})
                    else:
                        at = (aware(last[0]), last[1]) if len(last) == 2 else (last[0],)
                        cursor = Cursor(path, sort_by, reverse, at, LIMIT).encode()
                        urls[f"{name}-{depth:.0%}"] = "/jobs?" + urlencode({"cursor": cursor})
    return urls


def ui_urls(store, pages: list[str]) -> dict[str, str]:
    """The UI's pages with a job half way in whose path the many-jobs search finds."""
    t = store.table
    with store.engine.connect() as conn:
        half = conn.execute(select(func.max(t.c.id))).scalar() // 2
        deep = conn.execute(
            select(t).where(t.c.id >= half, t.c.path.like(SEARCH + "%")).limit(1)
        ).first()
    values = {"deep_id": deep.id, "deep_path": deep.path, "job_path": deep.path}
    values["job_body"] = deep.body
    return {page: page.format(**values) for page in pages}


def run(args: argparse.Namespace, source: str | None) -> dict:
    out = {"code": code_of(source), "source": source or ".", "jobs": args.jobs}
    out["requests"] = args.requests
    name = f"bench_list_{code_of(source).replace('+', '_')}"
    with served_jobs(name, args.jobs, path_of, source) as (base, store, took):
        out["fill_seconds"] = round(took, 1)
        add_rare(store)
        urls = {**listing_urls(store, args.jobs), **ui_urls(store, args.pages)}
        session = requests.Session()
        for label, url in tqdm(urls.items(), desc="routes", file=sys.stderr):
            session.get(base + url, timeout=120)  # warm
            took = timed(session.get, base + url, args.requests, 0.0, args.budget)
            out.update(figures(label, took), **{f"{label}_requests": len(took)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--sources", nargs="+", default=["."], help="checkouts to run, in turn")
    parser.add_argument("--budget", type=float, default=10.0, help="seconds a route at most")
    parser.add_argument("--pages", nargs="+", default=PAGES, help="the UI's pages to time")
    parser.add_argument("--quick", action="store_true", help="100k jobs, 10 requests")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.requests = 100_000, 10
    for source in args.sources:
        print(f"code {source}", file=sys.stderr)
        record("list", run(args, None if source == "." else source))


if __name__ == "__main__":
    main()
