"""This process's shared things (celery_dalga.process): made once, forgotten after a fork,
stopped once; and nothing loaded or registered by a mere import."""

import json
import os
import subprocess
import sys

import pytest
from helpers import settings_on, unique_table

from celery_dalga import process

HEAVY = ("sqlalchemy", "celery", "prometheus_client")


def fresh_python(code: str) -> str:
    """The output of `code` run by a new interpreter on this source tree."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def loaded_by(module: str) -> list[str]:
    """Which of the heavy modules and the settings importing `module` loads."""
    watched = (*HEAVY, "celery_dalga.config")
    found = f"[m for m in {watched!r} if m in sys.modules]"
    return json.loads(fresh_python(f"import sys, json, {module}\nprint(json.dumps({found}))"))


@pytest.mark.parametrize(
    "module",
    [
        "celery_dalga",
        "celery_dalga.values",
        "celery_dalga.schedules",
        "celery_dalga.retry",
        "celery_dalga.runs",
        "celery_dalga.load",
    ],
)
def test_a_light_module_loads_no_database_celery_metrics_or_settings(module):
    assert loaded_by(module) == []


def test_the_store_loads_its_database_library_alone():
    assert loaded_by("celery_dalga.store") == ["sqlalchemy"]


def test_importing_registers_nothing_to_run_at_exit():
    registered = fresh_python(
        "import atexit, json\n"
        "hooks = []\n"
        "atexit.register = lambda hook, *a, **k: hooks.append(hook) or hook\n"
        "import celery_dalga, celery_dalga.tasks, celery_dalga.scheduler, celery_dalga.cli\n"
        "import webapi\n"
        "print(json.dumps([h.__module__ for h in hooks if h.__module__.startswith('celery')]))"
    )
    assert [m for m in json.loads(registered) if m.startswith("celery_dalga")] == []


@pytest.fixture
def own_process(monkeypatch, tmp_path):
    """A fresh process state for the test, and settings on a SQLite table of its own."""
    monkeypatch.setattr(process, "_shared", process.Shared())
    settings = settings_on(f"sqlite:///{tmp_path}/jobs.sqlite3", unique_table())
    process.store_for(settings).create_table()
    yield settings
    process.stop()


def test_one_store_and_one_instance_per_settings(own_process):
    store = process.store_for(own_process)
    assert process.store_for(own_process) is store
    instance = process.instance_for(own_process, "beat")
    assert process.instance_for(own_process, "worker") is instance
    assert instance.kind == "beat" and [i["id"] for i in store.live_instances()] == [instance.id]


def test_the_stores_kept_are_the_most_recently_used(own_process, tmp_path):
    first = process.store_for(own_process)
    for n in range(process.STORES_KEPT):
        process.store_for(settings_on(f"sqlite:///{tmp_path}/{n}.sqlite3", "t"))
        process.store_for(own_process)  # used again: kept
    assert process.store_for(own_process) is first
    assert len(process._shared.stores) == process.STORES_KEPT


def test_after_a_fork_everything_is_made_afresh(own_process):
    store = process.store_for(own_process)
    instance = process.instance_for(own_process)
    mine = process.per_thread("thing", object)
    shared = process.per_process("thing", object)
    served = []
    process.serve_metrics_once(lambda: served.append(1))
    process.reset_after_fork()
    assert process.store_for(own_process) is not store
    assert process.instance_for(own_process).id != instance.id
    assert process.per_thread("thing", object) is not mine
    assert process.per_process("thing", object) is not shared
    process.serve_metrics_once(lambda: served.append(2))  # the parent's port stays taken
    assert served == [1]
    instance.stop()


def test_stop_deregisters_once_and_a_later_use_registers_again(own_process):
    instance = process.instance_for(own_process)
    store = process.store_for(own_process)
    process.stop()
    assert instance.stopped and store.live_instances() == []
    instance.stop()  # again: nothing more to do
    again = process.instance_for(own_process)
    assert again is not instance and [i["id"] for i in store.live_instances()] == [again.id]
    again.stop()  # stopped directly (as beat's close does): the next use starts a new one
    assert process.instance_for(own_process) is not again


def test_a_thread_has_its_own_things_and_shares_the_process_ones(own_process):
    import threading

    mine, shared = process.per_thread("thing", object), process.per_process("thing", object)
    theirs = []
    thread = threading.Thread(
        target=lambda: theirs.append(
            (process.per_thread("thing", object), process.per_process("thing", object))
        )
    )
    thread.start()
    thread.join()
    assert theirs[0][0] is not mine and theirs[0][1] is shared
    assert process.per_thread("thing", object) is mine
