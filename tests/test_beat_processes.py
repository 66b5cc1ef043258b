"""Two real `celery beat` processes on one MariaDB table: every run dispatched exactly once."""

import base64
import json
import uuid
from collections import Counter
from datetime import timedelta

import redis
from helpers import settings_on, unique_table
from processes import celery, dalga_env, start, stop
from waiting import wait_until, watch

from celery_dalga.messages import runs_of
from celery_dalga.process import store_for
from celery_dalga.spec import parse_spec

JOBS = 300


def carried(message: dict) -> list:
    """The runs a callback task's Redis message carries."""
    kwargs = json.loads(base64.b64decode(message["body"]))[1]
    return runs_of(message["headers"]["task"], kwargs)


def test_two_beats_dispatch_each_one_off_job_exactly_once(mariadb_url, redis_url, tmp_path):
    queue = f"dalga-beats-{uuid.uuid4().hex[:8]}"
    settings = settings_on(
        mariadb_url, unique_table(), queue=queue, batch_size=20, max_interval=0.2, lease=60.0
    )
    store = store_for(settings)
    store.create_table()
    env = dalga_env(settings, broker_url=redis_url)
    beats = [
        start(
            celery("beat", "-S", "celery_dalga.Scheduler", "--loglevel", "INFO"),
            env,
            tmp_path,
            f"beat{i}.log",
        )
        for i in range(2)
    ]
    client = redis.Redis.from_url(redis_url)
    try:
        start_at = store.now() + timedelta(seconds=3)
        for i in range(JOBS):
            first = (start_at + timedelta(milliseconds=10 * i)).isoformat()
            store.put(parse_spec("beats", str(i), {"one-off": "true", "first-run": first}))
        wait_until(lambda: store.status()["running_jobs"] >= JOBS, 60, f"{JOBS} runs claimed", 0.2)
        watch(1.5)  # any duplicate dispatch would arrive in this window
        messages = [json.loads(m) for m in client.lrange(queue, 0, -1)]
    finally:
        codes = [stop(b) for b in beats]
        client.delete(queue)
        store.drop_table()
    runs = [run for m in messages for run in carried(m)]
    bodies = Counter(run.body for run in runs)
    assert len(runs) == JOBS, f"{len(runs)} runs for {JOBS} jobs"
    assert set(bodies) == {str(i) for i in range(JOBS)} and max(bodies.values()) == 1
    assert len({m["headers"]["id"] for m in messages}) == len(messages)
    logs = [b.log_path.read_text() for b in beats]
    assert all("Traceback" not in log for log in logs), logs
    assert codes == [0, 0]
