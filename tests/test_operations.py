"""Operations: Prometheus metrics scraped from real beat, worker and `dalga run` processes, the
hot-loop guard, and settings read once."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests
from helpers import settings_on, unique_table
from processes import dalga_env, free_port, start, stop, wait_http, wait_port
from prometheus_client.parser import text_string_to_metric_families
from waiting import wait_until

from celery_dalga import Client
from celery_dalga.celery import make_app
from celery_dalga.config import settings_for
from celery_dalga.process import store_for
from celery_dalga.spec import InvalidParameter

DALGA = [sys.executable, "-m", "celery_dalga.cli"]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """The samples of 127.0.0.1:port/metrics, by name and sorted labels."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_value(port: int, name: str, at_least: float, timeout: float = 30, **labels: str) -> dict:
    """The samples once `name` with these labels is at least `at_least`."""

    def reached() -> dict | None:
        samples = scrape(port)
        return samples if value(samples, name, **labels) >= at_least else None

    return wait_until(
        reached, timeout, lambda: f"{name}{labels} stayed under {at_least}: {scrape(port)}", 0.3
    )


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_beat_and_worker_export_metrics(pool, mariadb_url, redis_url, endpoint, tmp_path):
    beat_port, worker_port = free_port(), free_port()
    settings = settings_on(
        mariadb_url, unique_table(), endpoint.base_url, queue=f"metrics-{beat_port}"
    )
    store = store_for(settings)
    store.create_table()
    env = dalga_env(settings, broker_url=redis_url)
    worker_env = {**env, "DALGA_METRICS_PORT": str(worker_port)}
    if pool == "prefork":
        (tmp_path / "prom").mkdir()
        worker_env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prom")
    procs = [
        start(
            [sys.executable, "-m", "celery", "-A", "celery_dalga", "beat"],
            {**env, "DALGA_METRICS_PORT": str(beat_port)},
            tmp_path,
            "beat.log",
        ),
        start(
            [sys.executable, "-m", "celery", "-A", "celery_dalga", "worker", "--pool", pool]
            + ["-c", "2"],
            worker_env,
            tmp_path,
            "worker.log",
        ),
    ]
    try:
        client = Client(settings)
        endpoint.script["flaky"] = [500, 200]
        client.schedule("ok", "1", interval=60, immediate=True)
        client.schedule("flaky", "1", interval=60, immediate=True)
        wait_port(beat_port)
        wait_port(worker_port)
        beat = wait_value(beat_port, "dalga_runs_dispatched_total", 3)
        assert value(beat, "dalga_dispatch_lateness_seconds_count") >= 3
        assert value(beat, "dalga_claim_batch_size_count") >= 1
        assert value(beat, "dalga_claim_seconds_count") >= 1
        worker = wait_value(worker_port, "dalga_callbacks_total", 2, outcome="done", status="200")
        assert value(worker, "dalga_callbacks_total", outcome="retry", status="500") == 1
        assert value(worker, "dalga_retries_total") == 1
        assert value(worker, "dalga_delivery_lateness_seconds_count") == 3
        assert value(worker, "dalga_callback_seconds_count") == 3
        assert value(worker, "dalga_stale_drops_total") == 0
        where = endpoint.base_url.rstrip("/")
        assert value(worker, "dalga_destination_limit", destination=where) >= 1
        assert value(worker, "dalga_destination_in_flight", destination=where) == 0
    finally:
        for proc in procs:
            stop(proc)
        store.drop_table()


def test_a_prefork_worker_without_a_multiprocess_dir_refuses_to_export(
    mariadb_url, redis_url, tmp_path
):
    settings = settings_on(mariadb_url, unique_table(), metrics_port=free_port())
    env = dalga_env(settings, broker_url=redis_url)
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "celery_dalga", "worker", "--pool", "prefork"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "PROMETHEUS_MULTIPROC_DIR" in done.stdout + done.stderr


def test_dalga_run_serves_metrics_with_the_table_gauges(tmp_path, endpoint):
    port = free_port()
    env = dalga_env(
        settings_on(f"sqlite:///{tmp_path}/dalga.sqlite3", "dalga", endpoint.base_url, port=port),
        broker_url=f"sqla+sqlite:///{tmp_path}/broker.sqlite3",
    )
    proc = start(DALGA + ["run"], env, tmp_path, "run.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/status", proc, timeout=60)
        requests.put(f"http://127.0.0.1:{port}/jobs/hook/1?interval=60&immediate=1", timeout=5)
        requests.put(f"http://127.0.0.1:{port}/jobs/later/1?interval=3600", timeout=5)
        endpoint.wait_for("hook", 1, timeout=30)
        samples = wait_value(port, "dalga_callbacks_total", 1, outcome="done", status="200")
        assert value(samples, "dalga_runs_dispatched_total") >= 1
        samples = wait_value(port, "dalga_jobs", 2)  # the counts may be a read behind
        assert value(samples, "dalga_jobs") == 2 and value(samples, "dalga_counts_age_seconds") < 30
        assert value(samples, "dalga_instances") == 1
        assert value(samples, "dalga_lag_seconds") == 0
    finally:
        assert stop(proc) == 0


@pytest.fixture
def guarded(tmp_path):
    def make(**extra) -> Client:
        settings = settings_on(f"sqlite:///{tmp_path}/g.sqlite3", unique_table(), **extra)
        client = Client(settings)
        client.store.create_table()
        return client

    return make


@pytest.mark.parametrize(
    "params, parameter",
    [
        ({"interval": "PT0.5S"}, "interval"),
        ({"cron": "*/1 * * * * *"}, "cron"),  # every second, under a 2 s minimum
        ({"schedule": "R5/2030-01-01T00:00:00Z/PT0.2S"}, "schedule"),
        ({"interval": "60", "retry_interval": "PT0.5S"}, "retry-interval"),
    ],
)
def test_the_hot_loop_guard_refuses_schedules_under_min_interval(guarded, params, parameter):
    client = guarded(min_interval=2.0)
    with pytest.raises(InvalidParameter) as refused:
        client.schedule("hot", "1", **params)
    assert refused.value.parameter == parameter and "min_interval" in str(refused.value)
    assert client.get("hot", "1") is None


def test_the_hot_loop_guard_lets_slower_schedules_through_and_can_be_lowered(guarded):
    client = guarded()  # the default minimum: 1 s
    client.schedule("cron", "1", cron="*/1 * * * * *")
    client.schedule("every", "2", interval=2)
    with pytest.raises(InvalidParameter):
        client.schedule("fast", "1", interval="PT0.5S")
    lowered = guarded(min_interval=0.1)
    lowered.schedule("fast", "1", interval="PT0.5S")
    assert lowered.get("fast", "1") and client.get("cron", "1") and client.get("every", "2")


def test_the_hot_loop_guard_over_http(tmp_path):
    from webapi import create_app

    settings = settings_on(f"sqlite:///{tmp_path}/h.sqlite3", unique_table())
    store_for(settings).create_table()
    api = create_app(settings).test_client()
    answer = api.put("/jobs/hot/1?interval=PT0.1S")
    assert answer.status_code == 400 and answer.get_json()["parameter"] == "interval"
    assert api.get("/jobs/hot/1").status_code == 404


def test_settings_for_an_app_made_from_settings_does_not_read_the_environment_again(
    monkeypatch,
):
    settings = settings_on("sqlite:///x.sqlite3", "made")
    app = make_app(settings)
    monkeypatch.setenv("DALGA_TABLE", "from_env")
    monkeypatch.setenv("DALGA_PORT", "not-a-port")
    assert settings_for(app) is settings


def test_importing_the_celery_module_builds_no_app_until_asked(tmp_path):
    code = (
        "import celery_dalga.celery as m\n"
        "print('imported')\n"
        "try:\n"
        "    m.app\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": "/usr/bin:/bin", "DALGA_PORT": "not-a-port"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.startswith("imported\nConfigError"), done.stdout + done.stderr


def test_the_grafana_dashboard_plots_only_metrics_that_exist(tmp_path):
    import json
    import re
    from pathlib import Path

    from prometheus_client import REGISTRY

    from celery_dalga import metrics  # noqa: F401 (registers the metrics)
    from webapi import create_app

    settings = settings_on(f"sqlite:///{tmp_path}/d.sqlite3", unique_table())
    store_for(settings).create_table()
    served = create_app(settings).test_client().get("/metrics").get_data(as_text=True)
    names = {f.name for f in REGISTRY.collect()} | {
        f.name for f in text_string_to_metric_families(served)
    }
    path = Path(__file__).parents[1] / "docker/grafana-dashboard.json"
    dashboard = json.loads(path.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {
        re.sub(r"_(bucket|sum|count|total)$", "", m)
        for e in exprs
        for m in re.findall(r"dalga_[a-z_]+", e)
    }
    assert len(dashboard["panels"]) >= 8 and used
    assert used <= names, used - names
