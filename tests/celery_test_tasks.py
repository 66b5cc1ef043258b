"""Celery tasks that jobs of the task kind call in the tests."""

import threading

from celery import Celery, shared_task

app = Celery("dalga-test-tasks", set_as_current=False)  # for `dalga call --app`

received: list[str] = []
lock = threading.Lock()


@shared_task(name="dalga_test.record")
def record(body: str) -> None:
    """Remember the body; a body starting with 'fail' raises."""
    with lock:
        received.append(body)
    if body.startswith("fail"):
        raise RuntimeError(f"asked to fail: {body}")
