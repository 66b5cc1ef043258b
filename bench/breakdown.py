"""Where beat's and the bulk path's time goes (the figures in bench/README.md, "Where the time
goes"). Not a benchmark: it prints, it does not record.

    python bench/breakdown.py tick --jobs 50000        # beat: claim vs publish vs the Redis LPUSH
    python bench/breakdown.py put-many --jobs 200000   # bulk: cProfile of Store.put_many
    python bench/breakdown.py samples w.raw            # worker: summary of a py-spy recording
    python bench/breakdown.py claim --jobs 50000       # the claim's statements, three lockings
    python bench/breakdown.py post                     # CPU of a callback POST, five clients

`tick` loads N one-off jobs due now and runs Scheduler.tick in a loop until they are all
published to Redis, timing Store.claim, the publishing and its Redis LPUSH.
`put-many` loads N jobs in 5,000-job batches under cProfile and prints the top functions.
`samples` reads `py-spy record -f raw` output and prints, for the most frequent functions, the
share of samples with that function on the stack (bench/README.md, "Workers").
`claim` times the claim's SELECT and its UPDATE + commit per row, in batches of 500, locking
the batch as the store does (SKIP LOCKED on the next_run index), not at all, or by primary key
after an unlocked index read. `post` times 5,000 POSTs to the bench endpoint from one process,
in batches of 100 at once, with libcurl's multi interface (what workers use), aiohttp,
httpx, urllib3 and requests.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import sys
import time
import uuid
from collections import Counter, defaultdict
from functools import partial
from pathlib import Path

import redis
import requests
import urllib3
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from processes import free_port, stop, wait_http  # noqa: E402

from bench.common import REDIS, bench_store, start_endpoint  # noqa: E402
from celery_dalga import messages  # noqa: E402
from celery_dalga.celery import make_app  # noqa: E402
from celery_dalga.scheduler import Scheduler  # noqa: E402
from celery_dalga.spec import parse_spec  # noqa: E402

spent: dict[str, float] = defaultdict(float)


def timed(name: str, function):
    """`function`, adding its wall time to spent[name]."""

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - started

    return wrapper


def load(store, jobs: int) -> None:
    """`jobs` one-off jobs due now, in 5,000-job put_many batches."""
    due_now = {"one-off": "true", "immediate": "true"}
    specs = [parse_spec("bench", str(i), due_now) for i in range(jobs)]
    for at in range(0, jobs, 5000):
        store.put_many(specs[at : at + 5000])


def tick(jobs: int) -> None:
    settings, store = bench_store(f"profile-{uuid.uuid4().hex[:8]}", lease=3600, broker_url=REDIS)
    client = redis.Redis.from_url(REDIS)
    try:
        load(store, jobs)
        scheduler = Scheduler(make_app(settings), lazy=True)
        scheduler.store = store
        store.claim = timed("claim", store.claim)
        messages.publish = timed("publish", messages.publish)
        redis.client.Pipeline.execute = timed("redis LPUSH", redis.client.Pipeline.execute)
        started = time.perf_counter()
        while scheduler.tick() == 0.0:
            pass
        elapsed = time.perf_counter() - started
        published = client.llen(settings.queue)
    finally:
        client.delete(settings.queue)
        store.drop_table()
    print(f"{jobs} jobs, {published} published in {elapsed:.2f} s ({jobs / elapsed:.0f} jobs/s)")
    for name, seconds in spent.items():
        print(f"  {name}: {seconds:.2f} s ({seconds / jobs * 1000:.3f} ms a job)")


def put_many(jobs: int) -> None:
    _, store = bench_store(f"profile-{uuid.uuid4().hex[:8]}")
    profile = cProfile.Profile()
    try:
        started = time.perf_counter()
        profile.runcall(load, store, jobs)
        elapsed = time.perf_counter() - started
    finally:
        store.drop_table()
    print(f"{jobs} jobs in {elapsed:.1f} s under cProfile")
    pstats.Stats(profile).sort_stats("tottime").print_stats(10)


def samples(raw: str, top: int = 100) -> None:
    """For the `top` most frequent functions in a py-spy raw recording, the share of samples
    with that function anywhere on the stack."""
    on_stack: Counter[str] = Counter()
    total = 0
    for line in Path(raw).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        for frame in {re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")}:
            on_stack[frame] += int(count)
    print(f"{total} samples")
    for frame, count in on_stack.most_common(top):
        print(f"{count / total:6.1%}  {frame}")


def claim(jobs: int) -> None:
    """Per-row time of the claim's SELECT and of its UPDATE + commit, for three lockings."""
    due = "SELECT id FROM {t} WHERE next_run <= UTC_TIMESTAMP(6) ORDER BY next_run LIMIT 500"
    by_key = (
        "SELECT id FROM {t} WHERE id IN ({ids}) AND next_run <= UTC_TIMESTAMP(6)"
        " FOR UPDATE SKIP LOCKED"
    )
    lease = (
        "UPDATE {t} SET token = 'bench', next_run = UTC_TIMESTAMP(6) + INTERVAL 1 HOUR"
        " WHERE id IN ({ids})"
    )
    for locking in ("SKIP LOCKED on the index", "no lock", "by primary key"):
        _, store = bench_store(f"claim-{uuid.uuid4().hex[:8]}")
        t, selecting, leasing, claimed = store.table.name, 0.0, 0.0, 0
        try:
            load(store, jobs)
            with store.engine.connect() as conn:
                while True:
                    started = time.perf_counter()
                    with conn.begin():
                        lock = " FOR UPDATE SKIP LOCKED" if locking.startswith("SKIP") else ""
                        ids = conn.execute(text(due.format(t=t) + lock)).scalars().all()
                        if ids and locking == "by primary key":
                            listed = ",".join(map(str, ids))
                            ids = conn.execute(text(by_key.format(t=t, ids=listed))).scalars().all()
                        selected = time.perf_counter()
                        if ids:
                            conn.execute(text(lease.format(t=t, ids=",".join(map(str, ids)))))
                    selecting += selected - started
                    leasing += time.perf_counter() - selected
                    claimed += len(ids)
                    if len(ids) < 500:
                        break
        finally:
            store.drop_table()
        print(
            f"{locking}: SELECT {selecting / claimed * 1e6:.1f} µs a row, "
            f"UPDATE + commit {leasing / claimed * 1e6:.1f} µs a row ({claimed} rows)"
        )


def post(calls: int = 5000, batch: int = 100) -> None:
    """CPU per POST to the bench endpoint, in batches of `batch` concurrent POSTs (a task's
    runs), for the clients considered for delivery: celery_dalga.http (libcurl multi),
    aiohttp and httpx on asyncio, and urllib3 and requests on a thread per POST in flight."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import aiohttp
    import httpx

    from celery_dalga import http

    port = free_port()
    endpoint = start_endpoint(port, {**os.environ, "BENCH_STATS": os.devnull}, Path(os.devnull))
    url = f"http://127.0.0.1:{port}/cb/1"
    headers = {"Content-Type": "text/plain; charset=utf-8", "Dalga-Sched": "2026-11-23T12:00:00Z"}

    def curl(count: int) -> None:
        lines = tuple(f"{k}: {v}" for k, v in headers.items())
        client = http.Client(batch, initial=batch)
        post = http.Post(url, http.destination(url), b"1", lines)
        for _ in range(count // batch):
            client.post_all([post] * batch, timeout=10)

    def on_asyncio(session_factory, send):
        async def run(count: int) -> None:
            async with session_factory() as session:
                for _ in range(count // batch):
                    await asyncio.gather(*(send(session) for _ in range(batch)))

        return lambda count: asyncio.run(run(count))

    async def aiohttp_post(session) -> None:
        async with session.post(url, data=b"1", headers=headers) as response:
            await response.read()

    async def httpx_post(session) -> None:
        await session.post(url, content=b"1", headers=headers)

    def threaded(send):
        def run(count: int) -> None:
            with ThreadPoolExecutor(batch) as pool:
                for _ in range(count // batch):
                    list(pool.map(lambda _: send(), range(batch)))

        return run

    pool = urllib3.PoolManager(maxsize=batch)
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=batch))
    clients = {
        "celery_dalga.http (libcurl multi)": curl,
        "aiohttp (asyncio)": on_asyncio(
            lambda: aiohttp.ClientSession(trust_env=True), aiohttp_post
        ),
        "httpx.AsyncClient (asyncio)": on_asyncio(
            lambda: httpx.AsyncClient(limits=httpx.Limits(max_connections=batch)), httpx_post
        ),
        "urllib3.PoolManager (threads)": threaded(
            partial(pool.request, "POST", url, body=b"1", headers=headers, retries=False)
        ),
        "requests.Session (threads)": threaded(
            partial(session.post, url, data=b"1", headers=headers, timeout=10)
        ),
    }
    try:
        wait_http(url, endpoint)
        for name, send in clients.items():
            send(batch)  # connections up
            cpu, wall = time.process_time(), time.perf_counter()
            send(calls)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(f"{name}: {cpu / calls * 1e6:.0f} µs CPU a POST, {calls / wall:.0f} POSTs/s")
    finally:
        stop(endpoint)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["tick", "put-many", "samples", "claim", "post"])
    parser.add_argument("raw", nargs="?", help="py-spy `record -f raw` output (samples)")
    parser.add_argument("--jobs", type=int, default=50_000)
    args = parser.parse_args()
    if args.what == "samples":
        if not args.raw:
            parser.error("samples needs the py-spy raw file")
        samples(args.raw)
    elif args.what == "post":
        post()
    else:
        {"tick": tick, "put-many": put_many, "claim": claim}[args.what](args.jobs)


if __name__ == "__main__":
    main()
