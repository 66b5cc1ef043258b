"""Beat's batched messages are ordinary Celery tasks: a real worker runs them and a real
Flower shows them: a task of many runs with its count and first runs, a task of one run with
its path, body and scheduled time."""

import ast
import uuid

import requests
from helpers import settings_on, unique_table
from processes import celery, dalga_env, free_port, start, stop, wait_http
from waiting import wait_until

from celery_dalga.process import store_for
from celery_dalga.spec import parse_spec


def wait_for_worker(url: str, timeout: float = 60) -> None:
    """Wait until Flower lists a worker: it is connected to the broker and to the worker."""
    wait_until(
        lambda: requests.get(url, timeout=10).json(), timeout, "Flower lists the worker", 0.5
    )


def shown_tasks(port: int) -> tuple[list, list, list, int]:
    """Flower's succeeded tasks: all, the batches, the single runs, and the runs shown (those
    the batches carry and the single runs)."""
    tasks = requests.get(f"http://127.0.0.1:{port}/api/tasks", timeout=10).json()
    done = [t for t in tasks.values() if t.get("state") == "SUCCESS"]
    batches = [t for t in done if t["name"] == "celery_dalga.http_callbacks"]
    singles = [t for t in done if t["name"] == "celery_dalga.http_callback"]
    carried = sum(ast.literal_eval(t["kwargs"])["runs"] for t in batches)
    return done, batches, singles, carried + len(singles)


def test_flower_shows_the_callbacks_beat_published(mariadb_url, redis_url, endpoint, tmp_path):
    settings = settings_on(
        mariadb_url,
        unique_table(),
        endpoint.base_url,
        queue=f"flower-{uuid.uuid4().hex[:8]}",
        batch_size=50,
    )
    store = store_for(settings)
    store.create_table()
    env = dalga_env(settings, broker_url=redis_url)
    env["FLOWER_UNAUTHENTICATED_API"] = "true"
    port = free_port()
    procs = [
        start(
            celery(
                "worker",
                "--pool",
                "threads",
                "-E",
                "-n",
                f"flower-{port}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ),
            env,
            tmp_path,
            "worker.log",
        ),
        start(
            celery("flower", f"--port={port}", "--address=127.0.0.1"), env, tmp_path, "flower.log"
        ),
    ]
    try:
        wait_http(f"http://127.0.0.1:{port}/", procs[1], timeout=60)
        wait_for_worker(f"http://127.0.0.1:{port}/api/workers?refresh=1")
        store.put_many(
            [
                parse_spec("flower/feed", str(i), {"one-off": "1", "immediate": "1"})
                for i in range(120)
            ]
        )
        procs.append(
            start(celery("beat", "-S", "celery_dalga.Scheduler"), env, tmp_path, "beat.log")
        )
        endpoint.wait_for("flower/feed", 120, timeout=60)
        store.put(parse_spec("flower/lone", "1", {"one-off": "1", "immediate": "1"}))
        endpoint.wait_for("flower/lone", 1, timeout=30)
        wait_until(
            lambda: shown_tasks(port)[3] >= 121,
            30,
            lambda: f"{shown_tasks(port)[3]} runs shown in Flower, wanted 121",
            every=1,
        )
        done, batches, singles, runs = shown_tasks(port)
    finally:
        for proc in procs:
            stop(proc)
        store.drop_table()
    carried = runs - len(singles)
    assert runs == 121, f"{carried} + {len(singles)} runs shown in Flower"
    assert 1 < len(batches) < 120
    first = ast.literal_eval(batches[0]["kwargs"])
    assert first["first"][0].startswith("flower/feed ") and "sched" in first
    assert sum(ast.literal_eval(t["result"])["deleted"] for t in batches) == carried
    lone = [t for t in singles if "'path': 'flower/lone'" in t["kwargs"]]
    assert len(lone) == 1 and "'body': '1'" in lone[0]["kwargs"] and "'sched':" in lone[0]["kwargs"]
    assert all(t["uuid"].startswith("dalga-") for t in done)
