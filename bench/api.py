"""Benchmark 4, the API and the bulk path.

    python bench/api.py --requests 20000 --clients 16 --import-jobs 1000000
    python bench/api.py --quick
    python bench/api.py --sources /tmp/before .   # before/after in one run
    python bench/api.py --requests 0 --import-jobs 0 --bulk-jobs 200000 --bulk-batch 5000

Starts `dalga web` (waitress, 8 threads) on a fresh MariaDB table and drives PUT, GET and
DELETE from concurrent client threads on 127.0.0.1 (the clients share the 2 cores with the
server and MariaDB), then bulk PUT /jobs (JSON lines, `--bulk-batch` jobs a request from
`--bulk-clients` threads). Then writes a JSON-lines file of jobs and times `dalga import` on it.
A figure of 0 jobs or requests skips its part.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from processes import dalga_env, free_port, start, stop, wait_http  # noqa: E402

from bench.common import REDIS, code_of, database, record, source_env  # noqa: E402
from celery_dalga.config import Settings  # noqa: E402
from celery_dalga.process import store_for  # noqa: E402
from celery_dalga.store import Store  # noqa: E402


def in_threads(client, clients: int) -> float:
    """Run client(0) ... client(clients - 1) in threads at once; the seconds they took."""
    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(w,)) for w in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def drive(base: str, method: str, count: int, clients: int) -> dict:
    """`count` requests of one kind, split over `clients` threads; throughput and latency."""
    latencies: list[float] = []
    errors = []
    lock = threading.Lock()

    def client(worker: int) -> None:
        session = requests.Session()
        mine = []
        for i in range(worker, count, clients):
            url = f"{base}/jobs/bench/{i}"
            started = time.perf_counter()
            if method == "PUT":
                resp = session.put(url + "?interval=300", timeout=30)
            else:
                resp = session.request(method, url, timeout=30)
            mine.append(time.perf_counter() - started)
            if resp.status_code >= 300:
                errors.append(resp.status_code)
        with lock:
            latencies.extend(mine)

    elapsed = in_threads(client, clients)
    latencies.sort()
    return {
        f"{method}_per_s": round(count / elapsed),
        f"{method}_p50_ms": round(statistics.median(latencies) * 1000, 1),
        f"{method}_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        f"{method}_errors": len(errors),
    }


def bulk_put(base: str, jobs: int, batch: int, clients: int) -> dict:
    """PUT /jobs of `jobs` new jobs in requests of `batch` JSON lines from `clients` threads;
    jobs/s and the latency of a request. The bodies are built before the clock starts."""
    bodies = [
        "".join(
            json.dumps({"path": "bulk", "body": str(i), "interval": 300}) + "\n"
            for i in range(start, min(start + batch, jobs))
        ).encode()
        for start in range(0, jobs, batch)
    ]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    headers = {"Content-Type": "application/x-ndjson"}

    def client(worker: int) -> None:
        session = requests.Session()
        mine = []
        for body in bodies[worker::clients]:
            started = time.perf_counter()
            resp = session.put(f"{base}/jobs", data=body, headers=headers, timeout=120)
            mine.append(time.perf_counter() - started)
            if resp.status_code != 200:
                errors.append(f"{resp.status_code} {resp.text[:200]}")
        with lock:
            latencies.extend(mine)

    elapsed = in_threads(client, clients)
    latencies.sort()
    if errors:
        print(f"  bulk errors: {errors[:3]}", file=sys.stderr)
    return {
        "bulk_jobs": jobs,
        "bulk_batch": batch,
        "bulk_clients": clients,
        "bulk_jobs_per_s": round(jobs / elapsed),
        "bulk_request_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "bulk_request_max_ms": round(latencies[-1] * 1000, 1),
        "bulk_errors": len(errors),
    }


def rows_in(store: Store) -> int:
    """The rows of the store's jobs table, counted."""
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(store.table)).scalar_one()


def bulk_import(settings: Settings, jobs: int, source: str | None = None) -> dict:
    """Write `jobs` JSON lines, then time `dalga import` loading them into an empty table."""
    lines = Path(tempfile.mkdtemp(prefix="dalga-import-")) / "jobs.jsonl"
    with lines.open("w") as out:
        for i in range(jobs):
            out.write(json.dumps({"path": "feeds", "body": str(i), "interval": 300}) + "\n")
    env = {**dalga_env(settings, REDIS), **source_env(source)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "celery_dalga.cli", "import", str(lines)],
        env=env,
        cwd=Path(source).resolve() if source else ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    elapsed = time.perf_counter() - started
    lines.unlink()
    return {
        "import_jobs": jobs,
        "import_seconds": round(elapsed, 1),
        "import_jobs_per_s": round(jobs / elapsed),
        "import_ok": done.returncode == 0,
    }


def run(args: argparse.Namespace, source: str | None) -> dict:
    """The API's figures and the import's for one checkout (None: this one)."""
    settings = Settings(
        database_url=database("cdalga_bench"),
        port=free_port(),
        table=f"bench_api_{uuid.uuid4().hex[:8]}",
    )
    store = store_for(settings)
    store.create_table()
    env = {**dalga_env(settings, REDIS), **source_env(source)}
    log = Path(tempfile.mkdtemp(prefix="dalga-web-")) / "web.log"
    home = Path(source).resolve() if source else ROOT  # `-m` puts the cwd first on sys.path
    web = start([sys.executable, "-m", "celery_dalga.cli", "web"], env, home, log)
    base = f"http://127.0.0.1:{settings.port}"
    figures = {"code": code_of(source), "requests": args.requests, "clients": args.clients}
    try:
        wait_http(base + "/status", web)
        for method in ("PUT", "GET", "DELETE") if args.requests else ():
            print(f"  {method} x {args.requests}", file=sys.stderr)
            figures.update(drive(base, method, args.requests, args.clients))
        if args.bulk_jobs:
            print(f"  PUT /jobs of {args.bulk_jobs} jobs", file=sys.stderr)
            figures.update(bulk_put(base, args.bulk_jobs, args.bulk_batch, args.bulk_clients))
            figures["bulk_rows_in_table"] = rows_in(store)
    finally:
        stop(web)
        store.drop_table()
    if not args.import_jobs:
        return figures
    store.create_table()
    try:
        print(f"  dalga import of {args.import_jobs} jobs", file=sys.stderr)
        figures.update(bulk_import(settings, args.import_jobs, source))
        figures["import_rows_in_table"] = store.status()["total_jobs"]
    finally:
        store.drop_table()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--import-jobs", type=int, default=1_000_000)
    parser.add_argument("--bulk-jobs", type=int, default=200_000, help="jobs sent to PUT /jobs")
    parser.add_argument("--bulk-batch", type=int, default=5000, help="jobs a PUT /jobs request")
    parser.add_argument("--bulk-clients", type=int, default=4, help="threads sending PUT /jobs")
    parser.add_argument("--sources", nargs="+", default=["."], help="checkouts to run, in turn")
    parser.add_argument(
        "--quick", action="store_true", help="2,000 requests, 50k bulk, 100k import"
    )
    args = parser.parse_args()
    if args.quick:
        args.requests, args.import_jobs, args.bulk_jobs = 2000, 100_000, 50_000
    for source in args.sources:
        print(f"code {source}", file=sys.stderr)
        record("api", run(args, None if source == "." else source))


if __name__ == "__main__":
    main()
