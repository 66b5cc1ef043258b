"""Benchmark 1, dispatch rate: N jobs all due now, no worker; how fast do beats publish them?

    python bench/dispatch.py --jobs 10000 100000 1000000 --beats 1 2
    python bench/dispatch.py --quick

Loads N one-off jobs due now into a fresh MariaDB table (the bulk path, Store.put_many),
starts real `celery -A celery_dalga beat -S celery_dalga.Scheduler` processes publishing to
Redis, and measures the time until the queued messages carry all N runs, the rate, each
beat's peak RSS, and duplicates (runs beyond one per job).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from processes import dalga_env, start, stop  # noqa: E402

from bench.common import (  # noqa: E402
    REDIS,
    bench_store,
    database,
    record,
    scan_jobs,
    wait_for_messages,
)
from celery_dalga.spec import parse_spec  # noqa: E402


def load_dalga(store, jobs: int, progress) -> None:
    """`jobs` one-off jobs due now, through the bulk path (Store.put_many)."""
    batch = []
    for i in range(jobs):
        batch.append(parse_spec("bench", str(i), {"one-off": "true", "immediate": "true"}))
        if len(batch) == 5000:
            progress(store.put_many(batch))
            batch = []
    progress(store.put_many(batch))


def prepare(scheduler: str, jobs: int, queue: str, batch_size: int):
    """Load the jobs; return (beat command, environment, cleanup) for this scheduler."""
    env = {
        **os.environ,
        "BENCH_BROKER": REDIS,
        "BENCH_QUEUE": queue,
        "BENCH_PREFIX": "redbeat-bench:",
        "BENCH_DJANGO_DB": "cdalga_bench_django",
    }
    celery = [sys.executable, "-m", "celery", "-A"]
    with tqdm(total=jobs, unit=" jobs", desc=f"loading {scheduler}", mininterval=1) as bar:
        if scheduler == "celery-dalga":
            # No worker runs here: the lease must outlast the backlog, or runs not started
            # within it are (rightly) dispatched again as lost.
            settings, store = bench_store(queue, lease=3600, batch_size=batch_size)
            load_dalga(store, jobs, bar.update)
            env.update(dalga_env(settings, REDIS))
            return (
                celery + ["celery_dalga", "beat", "-S", "celery_dalga.Scheduler"],
                env,
                store.drop_table,
            )
        if scheduler == "redbeat":
            os.environ.update(env)
            from bench.peers import redbeat_app

            redbeat_app.load(jobs, bar.update)

            def cleanup() -> None:
                client = redis.Redis.from_url(REDIS)
                for key in client.scan_iter(f"{env['BENCH_PREFIX']}*", count=10000):
                    client.delete(key)

            return (
                celery + ["bench.peers.redbeat_app", "beat", "-S", "redbeat.RedBeatScheduler"],
                env,
                cleanup,
            )
        database(env["BENCH_DJANGO_DB"])
        os.environ.update(env)
        from bench.peers import django_app

        django_app.load(jobs, bar.update)
        return (
            celery
            + [
                "bench.peers.django_app",
                "beat",
                "-S",
                "django_celery_beat.schedulers:DatabaseScheduler",
            ],
            env,
            lambda: None,
        )


def run(scheduler: str, jobs: int, beats: int, timeout: float, batch_size: int) -> dict:
    # The peers' apps read their queue and key prefix once, at import: give them fixed ones.
    queue = f"bench-{uuid.uuid4().hex[:8]}" if scheduler == "celery-dalga" else f"bench-{scheduler}"
    client = redis.Redis.from_url(REDIS)
    client.delete(queue)
    procs = []
    loaded = time.monotonic()
    command, env, cleanup = prepare(scheduler, jobs, queue, batch_size)
    load_rate = jobs / (time.monotonic() - loaded)
    try:
        logs = Path(tempfile.mkdtemp(prefix="dalga-bench-"))
        for i in range(beats):
            procs.append(
                start(command + ["--loglevel", "WARNING"], env, ROOT, logs / f"beat{i}.log")
            )
        figures = wait_for_messages(client, queue, jobs, procs, timeout)
        for proc in procs:
            stop(proc)
        total, distinct = scan_jobs(client, queue)
    finally:
        for proc in procs:
            stop(proc)
        client.delete(queue)
        cleanup()
    rate = jobs / figures["seconds_publishing"] if figures["finished"] else None
    return {
        "scheduler": scheduler,
        "jobs": jobs,
        "beats": beats,
        "batch_size": batch_size,
        "jobs_per_s": round(rate) if rate else None,
        "jobs_per_s_incl_startup": round(figures["runs"] / figures["seconds_total"]),
        "duplicates": total - distinct,
        "load_jobs_per_s": round(load_rate),
        "logs": str(logs),
        **figures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--schedulers",
        nargs="+",
        default=["celery-dalga"],
        choices=["celery-dalga", "redbeat", "django-celery-beat"],
    )
    parser.add_argument("--jobs", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--beats", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--quick", action="store_true", help="10k jobs, one beat (< 60 s)")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.beats, args.timeout = [10_000], [1], 50
    for jobs in args.jobs:
        for scheduler in args.schedulers:
            for beats in args.beats if scheduler == "celery-dalga" else [1]:
                record("dispatch", run(scheduler, jobs, beats, args.timeout, args.batch_size))


if __name__ == "__main__":
    main()
