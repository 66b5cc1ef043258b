"""The remote kind (Kala's remote job, go-quartz's CurlJob): its options are checked at PUT,
its host against allowed_remote_hosts at PUT and again before each call; its requests reach a
real endpoint as the job describes them, through fence, deliver and settle."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import pytest
from endpoint_server import Endpoint
from helpers import api_client, settings_on
from waiting import wait_until

from celery_dalga import kinds
from celery_dalga.client import Client
from celery_dalga.config import Settings
from celery_dalga.kinds.remote import host_allowed
from celery_dalga.runs import Outcome
from celery_dalga.spec import InvalidParameter, JobSpec, parse_spec
from celery_dalga.tasks import deliver

BASE = "http://127.0.0.1:5000/"
SETTINGS = Settings(base_url=BASE)


def spec(options: dict[str, Any] | None, body: str = "1", **params: str) -> JobSpec:
    params = params or {"interval": "60", "immediate": "true"}
    return replace(parse_spec("remote", body, params), kind="remote", options=options)


def refusal(options: Any, settings: Settings = SETTINGS) -> str:
    with pytest.raises(InvalidParameter) as refused:
        kinds.validate(spec(options), settings)
    assert refused.value.parameter == "options"
    return str(refused.value)


# -- options at PUT --------------------------------------------------------------------------


def test_a_remote_job_takes_kalas_remote_properties():
    kinds.validate(spec({"url": BASE + "x"}), SETTINGS)
    kinds.validate(
        spec(
            {
                "url": "http://127.0.0.1:5000/hook?a=1&b=%20",
                "method": "put",
                "body": '{"x": 1}',
                "headers": {"X-Token": ["a", "b"], "Accept": [""]},
                "timeout": 10,
                "expected_response_codes": [200, 201, 204],
            }
        ),
        SETTINGS,
    )


def test_null_or_empty_options_take_kalas_defaults():
    """Kala's client sends every field: "", null, 0 and [] mean the defaults."""
    kinds.validate(
        spec(
            {
                "url": BASE,
                "method": "",
                "body": None,
                "headers": None,
                "timeout": 0,
                "expected_response_codes": [],
            }
        ),
        SETTINGS,
    )


def test_the_reserved_kala_key_is_no_kinds_option():
    kinds.validate(spec({"url": BASE, "kala": {"name": "n", "owner": "o"}}), SETTINGS)
    assert "unknown option 'kalax'" in refusal({"url": BASE, "kalax": 1})


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (None, "needs a url"),
        ({}, "needs a url"),
        ({"url": ""}, "needs a url"),
        ({"url": 7}, "needs a url"),
        ({"url": ["http://127.0.0.1:5000/"]}, "needs a url"),
        ({"url": "/relative"}, "is not an absolute http(s) URL"),
        ({"url": "127.0.0.1:5000/x"}, "is not an absolute http(s) URL"),
        ({"url": "http://"}, "is not an absolute http(s) URL"),
        ({"url": "file:///etc/passwd"}, "is not an absolute http(s) URL"),
        ({"url": "gopher://127.0.0.1:5000/_x"}, "is not an absolute http(s) URL"),
        ({"url": "ftp://127.0.0.1:5000/"}, "is not an absolute http(s) URL"),
        ({"url": "http://127.0.0.1:99999/"}, "is not an absolute http(s) URL"),
        ({"url": "http://127.0.0.1:5000/a b"}, "printable ASCII"),
        ({"url": "http://127.0.0.1:5000/\r\nX: 1"}, "printable ASCII"),
        ({"url": "http://127.0.0.1:5000/\n"}, "printable ASCII"),
        ({"url": "http://127.0.0.1:5000/é"}, "printable ASCII"),
        ({"url": BASE + "x" * 2048}, "printable ASCII"),
        ({"url": "http://127.0.0.1:5001/"}, "not in the allowed_remote_hosts setting"),
        ({"url": "http://10.0.0.1:5000/"}, "not in the allowed_remote_hosts setting"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "not in the allowed_remote_hosts"),
        ({"url": "http://localhost:5000/"}, "not in the allowed_remote_hosts"),  # a name
        ({"url": BASE, "method": "GE T"}, "is not an HTTP method"),
        ({"url": BASE, "method": "GET\r\nX: 1"}, "is not an HTTP method"),
        ({"url": BASE, "method": "GET\n"}, "is not an HTTP method"),
        ({"url": BASE, "method": "A" * 17}, "is not an HTTP method"),
        ({"url": BASE, "method": 1}, "is not an HTTP method"),
        ({"url": BASE, "method": "ı"}, "is not an HTTP method"),  # "I" once upper-cased
        ({"url": BASE, "body": 1}, "body must be text"),
        ({"url": BASE, "body": {"a": 1}}, "body must be text"),
        ({"url": BASE, "body": "a\x00b"}, "body must be text"),
        ({"url": BASE, "body": "x" * 65536}, "longer than 65535 bytes"),
        ({"url": BASE, "headers": []}, "headers must be an object"),
        ({"url": BASE, "headers": "X: 1"}, "headers must be an object"),
        ({"url": BASE, "headers": {"X": "1"}}, "must have a list of strings"),
        ({"url": BASE, "headers": {"X": [1]}}, "must have a list of strings"),
        ({"url": BASE, "headers": {"X": [["a"]]}}, "must have a list of strings"),
        ({"url": BASE, "headers": {"X": [{"a": []}]}}, "must have a list of strings"),
        ({"url": BASE, "headers": {"X\r\nY": ["1"]}}, "is not a token"),
        ({"url": BASE, "headers": {"X\n": ["1"]}}, "is not a token"),
        ({"url": BASE, "headers": {"X Y": ["1"]}}, "is not a token"),
        ({"url": BASE, "headers": {"": ["1"]}}, "is not a token"),
        ({"url": BASE, "headers": {"X:": ["1"]}}, "is not a token"),
        ({"url": BASE, "headers": {"H" * 129: ["1"]}}, "is not a token"),
        ({"url": BASE, "headers": {"X": ["1\r\nSet-Cookie: a=b"]}}, "not printable ASCII"),
        ({"url": BASE, "headers": {"X": ["1\n"]}}, "not printable ASCII"),
        ({"url": BASE, "headers": {"X": ["a\x00"]}}, "not printable ASCII"),
        ({"url": BASE, "headers": {"X": ["é"]}}, "not printable ASCII"),
        ({"url": BASE, "headers": {"X": ["v" * 2049]}}, "at most 2048"),
        ({"url": BASE, "headers": {"Host": ["evil"]}}, "is the HTTP client's to set"),
        ({"url": BASE, "headers": {"content-length": ["0"]}}, "is the HTTP client's"),
        ({"url": BASE, "headers": {"Transfer-Encoding": ["x"]}}, "is the HTTP client's"),
        ({"url": BASE, "headers": {f"X{i}": ["v"] for i in range(65)}}, "more than 64"),
        ({"url": BASE, "headers": {"X": ["v"] * 65}}, "more than 64"),
        ({"url": BASE, "timeout": -1}, "timeout -1 is not seconds"),
        ({"url": BASE, "timeout": 11}, "and callback_timeout (10)"),
        ({"url": BASE, "timeout": float("nan")}, "timeout nan is not seconds"),
        ({"url": BASE, "timeout": float("inf")}, "is not seconds"),
        ({"url": BASE, "timeout": "5"}, "is not seconds"),
        ({"url": BASE, "timeout": True}, "is not seconds"),
        ({"url": BASE, "timeout": 10**400}, "is not seconds"),
        ({"url": BASE, "expected_response_codes": 200}, "expected_response_codes must be"),
        ({"url": BASE, "expected_response_codes": [99]}, "expected_response_codes must be"),
        ({"url": BASE, "expected_response_codes": [600]}, "expected_response_codes must be"),
        ({"url": BASE, "expected_response_codes": [200.0]}, "expected_response_codes must"),
        ({"url": BASE, "expected_response_codes": ["200"]}, "expected_response_codes must"),
        ({"url": BASE, "expected_response_codes": [True]}, "expected_response_codes must"),
        ({"url": BASE, "expected_response_codes": [[200]]}, "expected_response_codes must"),
        ({"url": BASE, "expected_response_codes": [200] * 65}, "expected_response_codes must"),
        ({"url": BASE, "retries": 3}, "unknown option 'retries'"),
        ({"url": BASE, "a" * 300: 1}, "unknown option"),
    ],
)
def test_a_bad_option_is_refused_saying_what_is_wrong(options, says):
    assert says in refusal(options)


def test_the_allow_list_names_hosts_or_host_and_port():
    assert host_allowed("", BASE, "127.0.0.1", 5000)  # empty: base_url's host and port
    assert not host_allowed("", BASE, "127.0.0.1", 6379)
    assert host_allowed("", "https://api.example.com/", "API.example.com", 443)
    listing = "api.example.com, hooks.example.com:8443,[::1]:8080"
    assert host_allowed(listing, BASE, "api.example.com", 80)
    assert host_allowed(listing, BASE, "api.example.com", 9999)  # a host: any port
    assert host_allowed(listing, BASE, "hooks.example.com", 8443)
    assert not host_allowed(listing, BASE, "hooks.example.com", 443)
    assert host_allowed(listing, BASE, "::1", 8080)
    assert not host_allowed(listing, BASE, "127.0.0.1", 5000)  # base_url is not implied
    assert not host_allowed(listing, BASE, "example.com", 80)
    assert not host_allowed(listing, BASE, "evil.api.example.com", 80)
    assert not host_allowed("api.example.com:x, ,", BASE, "api.example.com", 80)
    assert host_allowed("*", BASE, "anything.example", 1)


def test_the_allowed_remote_hosts_setting_opens_a_host():
    settings = Settings(base_url=BASE, allowed_remote_hosts="hooks.example.com")
    kinds.validate(spec({"url": "https://hooks.example.com/a"}), settings)
    assert "not in the allowed_remote_hosts" in refusal({"url": BASE}, settings)


def test_timeout_may_not_pass_callback_timeout():
    kinds.validate(spec({"url": BASE, "timeout": 2.5}), Settings(base_url=BASE))
    refusal({"url": BASE, "timeout": 3}, Settings(base_url=BASE, callback_timeout=2))


def test_a_put_names_the_remote_kind_and_a_refused_host_is_a_400(mariadb_url):
    with api_client(mariadb_url) as api:
        options = quote(json.dumps({"url": "http://127.0.0.1:1/hook", "method": "POST"}))
        answer = api.put(f"/jobs/r/1?interval=60&kind=remote&options={options}")
        assert answer.status_code == 201, answer.get_json()
        assert api.get("/jobs/r/1").get_json()["options"]["url"] == "http://127.0.0.1:1/hook"
        options = quote(json.dumps({"url": "http://169.254.169.254/"}))
        answer = api.put(f"/jobs/r/2?interval=60&kind=remote&options={options}")
        assert answer.status_code == 400
        assert answer.get_json()["parameter"] == "options"
        assert "allowed_remote_hosts" in answer.get_json()["error"]
        assert api.get("/jobs/r/2").status_code == 404


# -- calls to a real endpoint ----------------------------------------------------------------


@pytest.fixture
def remote(mariadb_url, make_store, endpoint):
    """(store, settings) on MariaDB, base_url the test endpoint (so remote jobs may call it)."""
    store = make_store(mariadb_url)
    return store, settings_on(mariadb_url, store.table.name, base_url=endpoint.base_url)


def run_once(store, settings, *bodies: str, settings_then: Settings | None = None):
    """Claim the jobs of `bodies` and deliver them (with `settings_then`, if the settings
    changed since the PUT); their outcomes, in order."""
    claimed = {run.body: run for run in store.claim(100)}
    return deliver(settings_then or settings, [claimed[b] for b in bodies])


def test_method_headers_body_and_expected_codes_arrive_as_set(remote, endpoint):
    store, settings = remote
    url = endpoint.base_url
    store.put(
        spec(
            {
                "url": url + "hooks/put?x=1",
                "method": "put",
                "body": "hello\r\nworld",
                "headers": {"X-Token": ["a", "b"], "Content-Type": ["text/plain"], "Empty": [""]},
                "expected_response_codes": [201],
            },
            "put",
        )
    )
    store.put(spec({"url": url + "hooks/get"}, "get"))  # Kala's defaults
    store.put(spec({"url": url + "hooks/delete", "method": "DELETE"}, "delete"))
    store.put(spec({"url": url + "hooks/head", "method": "HEAD", "body": "x"}, "head"))
    store.put(spec({"url": url + "hooks/gone", "expected_response_codes": [204]}, "gone"))
    endpoint.script["hooks/put?x=1"] = [201]
    endpoint.script["hooks/gone"] = [204]
    outcomes = run_once(store, settings, "put", "get", "delete", "head", "gone")
    assert outcomes == [Outcome.DONE] * 5
    (put,) = endpoint.calls_to("hooks/put?x=1")
    assert (put.method, put.data) == ("PUT", b"hello\r\nworld")
    assert put.headers.get_all("X-Token") == ["a", "b"]
    assert put.content_type == "text/plain" and put.headers["Empty"] == ""
    assert put.idempotency_key and put.sched  # Dalga's headers, as the http kind's
    (get,) = endpoint.calls_to("hooks/get")
    assert (get.method, get.data, get.content_type) == ("GET", b"", "application/json")
    assert "Content-Length" not in get.headers
    assert endpoint.calls_to("hooks/delete")[0].method == "DELETE"
    assert endpoint.calls_to("hooks/head")[0].method == "HEAD"
    gone = store.get("remote", "gone")  # an expected 204 delivers; it deletes only http jobs
    assert gone is not None and gone.success_count == 1
    client = Client(settings, store=store)
    (done,) = client.history("remote", "put")
    assert (done["status"], done["error"], done["outcome"]) == (201, None, "done")


def test_an_unexpected_status_fails_with_the_start_of_the_answer(remote, endpoint):
    store, settings = remote
    store.put(spec({"url": endpoint.base_url + "hooks/fail"}, "fail"))
    store.put(spec({"url": endpoint.base_url + "hooks/ok", "method": "POST"}, "ok"))
    endpoint.script["hooks/fail"] = [500]
    endpoint.replies["hooks/fail"] = b"database down " + b"x" * 5000
    endpoint.replies["hooks/ok"] = b"fine"
    assert run_once(store, settings, "fail", "ok") == [Outcome.RETRY, Outcome.DONE]
    failed = store.get("remote", "fail")
    assert failed.last_error.startswith("500 database down xxx")
    assert len(failed.last_error) < 300
    (retry,) = Client(settings, store=store).history("remote", "fail")
    assert retry["status"] == 500 and retry["error"].startswith("500 database down")


def test_a_post_on_the_same_client_afterwards_is_a_plain_post_again(remote, endpoint):
    """The http kind's POSTs share the thread's handles with remote requests."""
    store, settings = remote
    store.put(spec({"url": endpoint.base_url + "hooks/head", "method": "HEAD"}, "head"))
    assert run_once(store, settings, "head") == [Outcome.DONE]
    store.put(replace(spec(None, "plain"), kind=None, options=None))
    assert run_once(store, settings, "plain") == [Outcome.DONE]
    (plain,) = endpoint.calls_to("remote")
    assert (plain.method, plain.body, plain.content_type) == ("POST", "plain", "text/plain")


def test_an_allowed_host_and_a_refused_one_also_at_call_time(remote, endpoint):
    store, settings = remote
    other = Endpoint()
    try:
        opened = replace(settings, allowed_remote_hosts=f"127.0.0.1:{other.port}")
        with pytest.raises(InvalidParameter, match="allowed_remote_hosts"):
            kinds.validate(spec({"url": other.base_url + "x"}), settings)
        kinds.validate(spec({"url": other.base_url + "x"}), opened)
        store.put(spec({"url": other.base_url + "x"}, "other"))
        assert run_once(store, settings, "other", settings_then=opened) == [Outcome.DONE]
        assert len(other.calls_to("x")) == 1
        # the setting changed since the PUT: the job's host is refused before the call
        store.trigger("remote", "other")
        assert run_once(store, settings, "other") == [Outcome.RETRY]
        assert len(other.calls_to("x")) == 1
        assert "not in the allowed_remote_hosts" in store.get("remote", "other").last_error
    finally:
        other.down()


def test_a_slow_answer_times_out_after_the_jobs_timeout(remote, endpoint):
    store, settings = remote  # callback_timeout 2
    store.put(spec({"url": endpoint.base_url + "slow", "timeout": 0.5}, "slow"))
    endpoint.delay = 1.5
    started = time.monotonic()
    assert run_once(store, settings, "slow") == [Outcome.RETRY]
    assert time.monotonic() - started < 1.4
    assert "timed out" in store.get("remote", "slow").last_error.lower()


def test_a_refused_connection_is_not_sent(remote, endpoint):
    store, settings = remote
    url = endpoint.base_url + "down"
    store.put(spec({"url": url}, "down"))
    endpoint.down()
    assert run_once(store, settings, "down") == [Outcome.NOT_SENT]
    assert store.get("remote", "down").attempts == 0


def test_a_burst_of_remote_jobs_at_a_small_endpoint_makes_no_duplicates(make_stack):
    small = Endpoint(small=True)
    try:
        stack = make_stack(allowed_remote_hosts=f"127.0.0.1:{small.port}")
        count = 300
        stack.store.put_many(
            [
                spec({"url": f"{small.base_url}burst/{i}", "method": "POST"}, str(i))
                for i in range(count)
            ]
        )
        calls = lambda: {c.path for c in small.delivered()}  # noqa: E731
        wait_until(lambda: len(calls()) == count, 60, lambda: f"{len(calls())} of {count}")
        wait_until(lambda: all(j.success_count for j in stack.store.page(limit=count)), 30)
        paths = [c.path for c in small.calls]
        assert len(paths) == len(set(paths)) == count
    finally:
        small.down()
