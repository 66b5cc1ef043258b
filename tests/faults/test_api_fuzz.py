"""Scenario 8: bad input at scale. Schemathesis drives a real `dalga web` from the OpenAPI
spec it serves; no answer is a 5xx and every 4xx carries a JSON error."""

from __future__ import annotations

import json
import signal
import sys
from collections import Counter

import pytest
import requests
import schemathesis
from helpers import unique_table
from hypothesis import HealthCheck, given, settings
from processes import dalga_env, free_port, start, stop, wait_http


@schemathesis.serializer("application/x-ndjson")
def json_lines(ctx, value) -> bytes:
    """PUT /jobs' body: a generated text as it is (lone surrogates too, as bytes that are no
    UTF-8), anything else as one JSON line."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return json.dumps(value).encode() + b"\n"


@pytest.fixture(scope="module")
def web(mariadb_url, tmp_path_factory):
    from celery_dalga.config import Settings
    from celery_dalga.process import store_for

    config = Settings(database_url=mariadb_url, table=unique_table(), port=free_port())
    tmp = tmp_path_factory.mktemp("fuzz")
    store_for(config).create_table()
    proc = start(
        [sys.executable, "-m", "celery_dalga.cli", "web"], dalga_env(config), tmp, "web.log"
    )
    url = f"http://127.0.0.1:{config.port}"
    wait_http(url + "/status", proc)
    yield url, proc
    stop(proc, signal.SIGTERM)
    store_for(config).drop_table()


def operations(url: str) -> list:
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_8_no_5xx_and_every_4xx_is_json(web):
    url, proc = web
    seen = Counter()
    for operation in operations(url):

        @given(case=operation.as_strategy())
        @settings(
            max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case):
            response = case.call(timeout=30)
            seen[response.status_code // 100 * 100] += 1
            assert response.status_code < 500, (case.method, case.formatted_path, response.text)
            if 400 <= response.status_code < 500:
                assert "error" in response.json(), response.text

        check()
    print(f"[8 api fuzz] answers by class: {dict(sorted(seen.items()))}", flush=True)
    assert seen[400] and seen[200]
    assert "Traceback" not in proc.log_path.read_text(errors="replace")


EDGE_CASES = [
    ("PUT", "/jobs/çağrı/ünïcödé?interval=60", 201),
    ("PUT", "/jobs/a%2Fb%20c/%E2%9C%93?interval=60", 201),
    ("PUT", "/jobs/big/" + "x" * 10240 + "?interval=60", 201),
    ("PUT", "/jobs/huge/" + "y" * 70000 + "?interval=60", 400),
    ("PUT", "/jobs/far/future?interval=60&first-run=8999-12-31T00:00:00Z", 201),
    ("PUT", "/jobs/far/toofuture?interval=60&first-run=9999-12-31T23:59:59Z", 400),
    ("PUT", "/jobs/far/past?interval=60&first-run=1970-01-01T00:00:00Z", 201),
    ("PUT", "/jobs/far/toopast?interval=60&first-run=0001-01-01T00:00:00Z", 400),
    ("PUT", "/jobs/iv/zero?interval=0", 400),
    ("PUT", "/jobs/iv/neg?interval=-60", 400),
    ("PUT", "/jobs/iv/huge?interval=99999999999999999999", 400),
    ("PUT", "/jobs/iv/hugeiso?interval=P99999Y", 400),
    ("PUT", "/jobs/iv/maxiso?interval=P100Y", 201),
    (
        "PUT",
        "/jobs/dst/gap?interval=P1D&first-run=2026-03-08T02:30:00&location=America/Los_Angeles",
        201,
    ),
    ("PUT", "/jobs/dst/cron?cron=30+2+*+*+*&location=America/Los_Angeles", 201),
    ("PUT", "/jobs/dst/repeat?schedule=R3/2030-03-31T02:30:00/PT1H&location=Europe/Berlin", 201),
    ("PUT", "/jobs/repeat/over?schedule=R3/2020-01-01T00:00:00Z/PT1H", 400),
    ("PUT", "/jobs/plus/a+b?interval=60", 201),  # Dalga decodes segments twice: "a b"
    ("PUT", "/jobs/pct/100%25?interval=60", 400),  # "100%" after the first decoding
    ("PUT", "/jobs/bool/empty?interval=60&immediate=", 400),
    ("PUT", "/jobs/x/y?interval=60&exchange=bad%20name", 400),
    ("GET", "/jobs?sort-by=next-sched&reverse=T&limit=0", 200),
    ("GET", "/jobs/continue?cursor=e30%3D", 400),
    ("DELETE", "/jobs/never/there", 204),
]


@pytest.mark.parametrize(("method", "target", "status"), EDGE_CASES)
def test_8_edge_inputs(web, method, target, status):
    response = requests.request(method, web[0] + target, timeout=30)
    assert response.status_code == status, response.text
    if status >= 400:
        assert response.json()["error"]
