"""Benchmark 2, steady state: 1M interval jobs (every 300 s) with next runs spread evenly,
one or two beats for 120 s; dispatch lateness (arrival in Redis minus scheduled time).

    python bench/steady.py --jobs 1000000 --beats 1 2 --seconds 120
    python bench/steady.py --quick

No worker runs: a drain thread pops the messages from the Redis queue as they arrive and
reads each one's scheduled time. The lease is set above the window so that no run is
dispatched twice for want of a worker.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402,E501
    DALGA_BEAT,
    REDIS,
    bench_store,
    dalga_env,
    record,
    rss_mb,
    start,
    stop,
)
from celery_dalga.spec import parse_spec  # noqa: E402

PERIOD = 300


def load(store, jobs: int, first_at: datetime) -> None:
    batch = []
    with tqdm(total=jobs, unit=" jobs", desc="loading", mininterval=1) as bar:
        for i in range(jobs):
            first = first_at + timedelta(seconds=PERIOD * i / jobs)
            batch.append(
                parse_spec(
                    "feed", str(i), {"interval": str(PERIOD), "first-run": first.isoformat()}
                )
            )
            if len(batch) == 5000:
                bar.update(store.put_many(batch))
                batch = []
        bar.update(store.put_many(batch))


def drain(client: redis.Redis, queue: str, lateness: list, stop_event: threading.Event) -> None:
    """Pop messages as they arrive; lateness = arrival - the message's scheduled time."""
    while not stop_event.is_set():
        raw = client.rpop(queue, 1000)
        if not raw:
            time.sleep(0.005)
            continue
        now = datetime.now(UTC)
        for message in raw:
            kwargs = json.loads(base64.b64decode(json.loads(message)["body"]))[1]
            lateness.append((now - datetime.fromisoformat(kwargs["sched"])).total_seconds())


def run(jobs: int, beats: int, seconds: float) -> dict:
    queue = f"steady-{uuid.uuid4().hex[:8]}"
    settings, store = bench_store(queue, lease=3600)
    client = redis.Redis.from_url(REDIS)
    procs, lateness, done = [], [], threading.Event()
    try:
        lead = 5 + jobs / 12000  # loading runs at 15-20k jobs/s
        first_at = store.now() + timedelta(seconds=lead)
        load(store, jobs, first_at)
        env = dalga_env(settings)
        logs = Path(tempfile.mkdtemp(prefix="dalga-steady-"))
        procs = [start(DALGA_BEAT, env, logs / f"beat{i}.log") for i in range(beats)]
        drainer = threading.Thread(target=drain, args=(client, queue, lateness, done))
        drainer.start()
        time.sleep(max(0.0, (first_at - store.now()).total_seconds()))
        started, peak = time.monotonic(), [0.0] * beats
        while time.monotonic() - started < seconds:
            time.sleep(1)
            peak = [max(p, rss_mb(proc.pid)) for p, proc in zip(peak, procs, strict=True)]
            print(
                f"  {len(lateness)} dispatched after {time.monotonic() - started:.0f} s",
                file=sys.stderr,
            )
        window = time.monotonic() - started
        done.set()
        drainer.join()
    finally:
        for proc in procs:
            stop(proc)
        client.delete(queue)
        store.drop_table()
    due = jobs * window / PERIOD
    lateness.sort()
    pick = lambda q: round(lateness[min(len(lateness) - 1, int(len(lateness) * q))], 3)  # noqa: E731
    return {
        "jobs": jobs,
        "beats": beats,
        "seconds": round(window, 1),
        "dispatched": len(lateness),
        "due_in_window": round(due),
        "sustained_per_s": round(len(lateness) / window),
        "lateness_p50_s": pick(0.5),
        "lateness_p99_s": pick(0.99),
        "lateness_max_s": round(lateness[-1], 3),
        "peak_rss_mb": [round(p, 1) for p in peak],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--beats", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--quick", action="store_true", help="100k jobs, one beat, 20 s")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.beats, args.seconds = 100_000, [1], 20
    for beats in args.beats:
        record("steady", run(args.jobs, beats, args.seconds))


if __name__ == "__main__":
    main()
