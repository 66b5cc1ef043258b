"""A Celery app for RedBeat (`celery-redbeat`), configured from BENCH_* variables."""

import os

import redis
from celery import Celery

app = Celery("redbeat_bench", broker=os.environ["BENCH_BROKER"])
app.conf.update(
    redbeat_redis_url=os.environ["BENCH_BROKER"],
    redbeat_key_prefix=os.environ["BENCH_PREFIX"],
    beat_max_loop_interval=1,
    task_default_queue=os.environ["BENCH_QUEUE"],
)


def load(jobs: int, progress) -> None:
    """`jobs` RedBeat entries, each an hourly task last run two hours ago: all due now."""
    from datetime import UTC, datetime, timedelta

    from celery.schedules import schedule
    from redbeat import RedBeatSchedulerEntry

    client = redis.Redis.from_url(os.environ["BENCH_BROKER"])
    for key in client.scan_iter(f"{os.environ['BENCH_PREFIX']}*", count=10000):
        client.delete(key)
    last = datetime.now(UTC) - timedelta(hours=2)
    for i in range(jobs):
        RedBeatSchedulerEntry(
            f"job{i}",
            "bench.noop",
            schedule(timedelta(hours=1)),
            args=[i],
            app=app,
            last_run_at=last,
        ).save()
        progress(1)
