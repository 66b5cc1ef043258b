"""Where beat's and the bulk path's time goes (the figures in bench/README.md, "Where the time
goes"). Not a benchmark: it prints, it does not record.

    python bench/breakdown.py tick --jobs 50000        # beat: claim vs publish vs the Redis LPUSH
    python bench/breakdown.py put-many --jobs 200000   # bulk: cProfile of Store.put_many
    python bench/breakdown.py samples w.raw            # worker: summary of a py-spy recording

`tick` loads N one-off jobs due now and runs Scheduler.tick in a loop until they are all
published to Redis, timing Store.claim, the publishing and its Redis LPUSH.
`put-many` loads N jobs in 5,000-job batches under cProfile and prints the top functions.
`samples` reads `py-spy record -f raw` output and prints, for the most frequent functions, the
share of samples with that function on the stack (bench/README.md, "Workers").
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REDIS, bench_store  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["tick", "put-many", "samples"])
    parser.add_argument("raw", nargs="?", help="py-spy `record -f raw` output (samples)")
    parser.add_argument("--jobs", type=int, default=50_000)
    args = parser.parse_args()
    if args.what == "samples":
        if not args.raw:
            parser.error("samples needs the py-spy raw file")
        samples(args.raw)
    else:
        (tick if args.what == "tick" else put_many)(args.jobs)


if __name__ == "__main__":
    main()
