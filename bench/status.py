"""Benchmark 7, GET /status and GET /metrics at a million jobs.

    python bench/status.py --jobs 1000000 --requests 200
    python bench/status.py --sources /tmp/before . --requests 200   # before/after in one run
    python bench/status.py --quick

Fills a MariaDB table with `--jobs` periodic jobs (1,000 through Store.put_many, the rest
copied from them by one INSERT ... SELECT over MariaDB's sequence engine, their next runs
spread over the 5-minute interval), starts `dalga web` (waitress) on it, and times
`--requests` GET /status, then as many GET /metrics, from one client, `--pause` seconds
apart (as a poller; 200 requests 0.1 s apart span a period of the cached counts at a million
jobs, so a recount runs during them); then as many GET /openapi.json, a route that reads no
database: the floor of the server, the client and HTTP. Then the same in this process with
Flask's test client (the server's own time, no HTTP). The table is dropped afterwards.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from processes import dalga_env, free_port, start, stop, wait_http  # noqa: E402

from bench.common import (  # noqa: E402
    REDIS,
    code_of,
    database,
    figures,
    fill,
    record,
    source_env,
    timed,
)
from celery_dalga import process  # noqa: E402
from celery_dalga.config import Settings  # noqa: E402
from celery_dalga.process import store_for  # noqa: E402
from webapi import create_app  # noqa: E402

ROUTES = ("status", "metrics", "openapi.json")


def run(args: argparse.Namespace, source: str | None) -> dict:
    """The figures of one checkout (None: this one) on a fresh table of args.jobs jobs."""
    settings = Settings(
        database_url=database("cdalga_bench"),
        port=free_port(),
        table=f"bench_status_{uuid.uuid4().hex[:8]}",
    )
    store = store_for(settings)
    store.create_table()
    env = {**dalga_env(settings, REDIS), **source_env(source)}
    log = Path(tempfile.mkdtemp(prefix="dalga-web-")) / "web.log"
    home = Path(source).resolve() if source else ROOT  # `-m` puts the cwd first on sys.path
    out = {"code": code_of(source), "source": source or ".", "jobs": args.jobs}
    out.update(requests=args.requests, pause=args.pause)
    try:
        print(f"  filling {args.jobs} jobs", file=sys.stderr)
        out["fill_seconds"] = round(fill(store, args.jobs), 1)
        web = start([sys.executable, "-m", "celery_dalga.cli", "web"], env, home, log)
        base = f"http://127.0.0.1:{settings.port}"
        try:
            wait_http(base + "/openapi.json", web, timeout=120)
            session = requests.Session()
            status = session.get(base + "/status", timeout=120).json()
            out["total_jobs"] = status["total_jobs"]
            for name in ROUTES:
                print(f"  GET /{name} x {args.requests}", file=sys.stderr)
                took = timed(session.get, f"{base}/{name}", args.requests, args.pause)
                out.update(figures(name, took))
            last = session.get(base + "/status", timeout=120).json()
            out["last_counts_age_seconds"] = last.get("counts_age_seconds")
        finally:
            stop(web)
        if not source:  # the server's own time: this checkout only, in this process
            client = create_app(settings, store).test_client()
            client.get("/status")
            for name in ROUTES:
                took = timed(client.get, f"/{name}", args.requests, args.pause)
                out.update(figures(f"in_process_{name}", took))
    finally:
        process.stop()  # the in-process app's instance, before its table goes
        store.drop_table()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--pause", type=float, default=0.1, help="seconds between requests")
    parser.add_argument("--sources", nargs="+", default=["."], help="checkouts to run, in turn")
    parser.add_argument("--quick", action="store_true", help="100k jobs, 50 requests")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.requests = 100_000, 50
    for source in args.sources:
        print(f"code {source}", file=sys.stderr)
        record("status", run(args, None if source == "." else source))


if __name__ == "__main__":
    main()
