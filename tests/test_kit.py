"""The test kit itself: the recording endpoint and the waiting helpers."""

from __future__ import annotations

import http.client
import time

import pytest
import requests
from endpoint_server import Endpoint
from waiting import poll, stays, wait_until


def test_the_endpoint_answers_by_path_and_body_then_path_then_default(endpoint):
    endpoint.status = 202
    endpoint.script["hook"] = [500]
    endpoint.script["hook", "b"] = [503, 504]
    endpoint.headers["hook"] = {"Retry-After": "7"}
    url = endpoint.base_url + "hook"
    answers = [requests.post(url, data=body, timeout=5) for body in ("b", "a", "b", "b", "a")]
    assert [a.status_code for a in answers] == [503, 500, 504, 202, 202]
    assert answers[0].headers["Retry-After"] == "7"
    assert [c.job for c in endpoint.calls] == [("hook", b) for b in "babba"]
    assert [c.status for c in endpoint.delivered()] == []


def test_most_at_once_counts_overlapping_calls_per_group(endpoint):
    endpoint.delays["slow", "1"] = [0.5]
    endpoint.delays["slow", "2"] = [0.5]
    connections = [http.client.HTTPConnection("127.0.0.1", endpoint.port) for _ in range(3)]
    for conn, (path, body) in zip(
        connections, [("slow", "1"), ("slow", "2"), ("fast", "1")], strict=True
    ):
        conn.request("POST", f"/{path}", body=body)
    for conn in connections:
        assert conn.getresponse().status == 200
        conn.close()
    assert endpoint.most_at_once() >= 2
    assert endpoint.most_at_once("path") == 2
    assert endpoint.most_at_once("job") == 1


def test_down_refuses_connections_and_up_listens_on_the_same_port():
    endpoint = Endpoint(small=True)
    try:
        url = endpoint.base_url
        endpoint.down()
        with pytest.raises(requests.ConnectionError):
            requests.post(url, timeout=5)
        endpoint.up()
        answer = requests.post(url, timeout=5)
        assert endpoint.base_url == url and answer.status_code == 200
        assert answer.raw.version == 10  # small: HTTP/1.0, a connection per request
    finally:
        endpoint.down()


def test_wait_until_returns_the_value_or_fails_saying_what_did_not_happen():
    started = time.monotonic()
    assert wait_until(lambda: time.monotonic() - started > 0.1 and "yes", 5) == "yes"
    with pytest.raises(AssertionError, match=r"not within 0.2 s: the port to open"):
        wait_until(lambda: False, 0.2, "the port to open")
    assert poll(lambda: 0, 0.1) == 0


def test_stays_watches_the_whole_window_and_fails_as_soon_as_the_condition_breaks():
    started = time.monotonic()
    stays(lambda: True, 0.3)
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    with pytest.raises(AssertionError, match="no second call"):
        stays(lambda: time.monotonic() - started < 0.2, 5, "no second call")
    assert time.monotonic() - started < 1
