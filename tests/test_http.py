"""celery_dalga.http against real servers on 127.0.0.1: concurrency, keep-alive, limits,
timeouts, refused connections, proxies from the environment, bodies byte for byte, https."""

from __future__ import annotations

import subprocess
import threading
import time

from endpoint_server import Endpoint
from processes import free_port

from celery_dalga import http, process


def posts(base_url: str, count: int, body: bytes = b"x") -> list[http.Post]:
    where = http.destination(base_url)
    return [
        http.Post(f"{base_url}cb/{i}", where, body, ("Content-Type: text/plain",))
        for i in range(count)
    ]


def test_a_batch_is_posted_concurrently_and_answered_in_order(endpoint):
    endpoint.delay = 0.3
    answers = http.Client(100, initial=100).post_all(posts(endpoint.base_url, 40), timeout=10)
    assert [a.status for a in answers] == [200] * 40
    assert endpoint.most_at_once() == 40
    assert sorted(c.target for c in endpoint.calls) == sorted(f"/cb/{i}" for i in range(40))
    assert all(a.seconds >= 0.3 for a in answers)


def test_at_most_the_cap_at_a_time(endpoint):
    endpoint.delay = 0.05
    answers = http.Client(5, initial=5).post_all(posts(endpoint.base_url, 30), timeout=10)
    assert [a.status for a in answers] == [200] * 30
    assert endpoint.most_at_once() == 5


def test_the_limit_starts_low_and_grows_while_answers_stay_fast(endpoint):
    endpoint.delay = 0.05
    client = http.Client(100, initial=2)
    answers = client.post_all(posts(endpoint.base_url, 60), timeout=10)
    assert [a.status for a in answers] == [200] * 60
    limit = client.limit(http.destination(endpoint.base_url))
    assert 2 < endpoint.most_at_once() <= 60 and limit.limit > 8
    assert limit.in_flight == 0


def test_each_destination_has_its_own_limit(endpoint):
    other = Endpoint()
    try:
        endpoint.status = 503
        client = http.Client(100, initial=8)
        client.post_all([*posts(endpoint.base_url, 8), *posts(other.base_url, 8)], timeout=10)
        assert client.limit(http.destination(endpoint.base_url)).limit == 4
        assert client.limit(http.destination(other.base_url)).limit > 8
    finally:
        other.down()


def test_retry_after_holds_back_the_rest_of_the_batch(endpoint):
    endpoint.script["cb/0"], endpoint.headers["cb/0"] = [429], {"Retry-After": "30"}
    answers = http.Client(100, initial=1).post_all(posts(endpoint.base_url, 5), timeout=10)
    first, *rest = answers
    assert (first.status, first.sent, first.wait) == (429, True, 30.0)
    assert len(endpoint.calls) == 1
    assert all(a.status is None and not a.sent and 29 < a.wait <= 30 for a in rest)
    assert all("Retry-After" in a.error for a in rest)


def test_posts_without_room_by_the_deadline_are_not_sent(endpoint):
    endpoint.delay = 0.5
    start_by = time.monotonic() + 0.2
    answers = http.Client(1, initial=1).post_all(posts(endpoint.base_url, 4), 10, start_by)
    assert [a.status for a in answers] == [200, None, None, None]
    assert len(endpoint.calls) == 1
    assert not any(a.sent for a in answers[1:]) and "no room" in answers[1].error


def test_a_refused_connection_was_not_sent_a_timeout_was(endpoint):
    endpoint.delay = 2.0
    closed = f"http://127.0.0.1:{free_port()}/"
    slow, refused = http.Client().post_all(
        [*posts(endpoint.base_url, 1), *posts(closed, 1)], timeout=0.5
    )
    assert slow.sent and not refused.sent


def test_connections_are_kept_alive_from_batch_to_batch(endpoint):
    client = http.Client(10, initial=10)
    for _ in range(5):
        assert {a.status for a in client.post_all(posts(endpoint.base_url, 10), timeout=10)} == {
            200
        }
    assert len(endpoint.calls) == 50
    assert len({c.peer for c in endpoint.calls}) <= 10


def test_any_status_is_an_answer_and_redirects_are_not_followed(endpoint):
    for status in (204, 301, 404, 500):
        endpoint.status = status
        (answer,) = http.Client().post_all(posts(endpoint.base_url, 1), timeout=10)
        assert (answer.status, answer.error) == (status, f"HTTP {status}")
    assert len(endpoint.calls) == 4


def test_a_slow_answer_times_out_and_a_closed_port_is_refused(endpoint):
    endpoint.delay = 2.0
    closed = f"http://127.0.0.1:{free_port()}/"
    slow, refused = http.Client().post_all(
        [*posts(endpoint.base_url, 1), *posts(closed, 1)], timeout=0.5
    )
    assert slow.status is None and slow.error.startswith("curl error 28:")
    assert 0.5 <= slow.seconds < 1.5
    assert refused.status is None and refused.error.startswith("curl error 7:")


def test_bodies_and_headers_arrive_byte_for_byte(endpoint):
    body = 'é "\\\n😀 \x00 end'.encode() + bytes(range(256))
    (answer,) = http.Client().post_all(
        [
            http.Post(
                f"{endpoint.base_url}a/b%2Fc?x=1",
                http.destination(endpoint.base_url),
                body,
                ("Dalga-Sched: 2026-01-01T00:00:00Z",),
            )
        ],
        timeout=10,
    )
    assert answer.status == 200
    call = endpoint.calls[0]
    assert (call.target, call.data) == ("/a/b%2Fc?x=1", body)
    headers = call.headers
    assert headers["Dalga-Sched"] == "2026-01-01T00:00:00Z" and "Expect" not in headers


def test_proxies_come_from_the_environment(endpoint, monkeypatch):
    proxy = Endpoint()
    try:
        target = f"http://127.0.0.2:{free_port()}/"  # nothing listens there: only the proxy answers
        monkeypatch.setenv("http_proxy", proxy.base_url.rstrip("/"))
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        (answer,) = http.Client().post_all(posts(target, 1), timeout=10)
        assert answer.status == 200
        assert proxy.calls[0].target == f"{target}cb/0"  # the absolute form a proxy gets
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        (answer,) = http.Client().post_all(posts(endpoint.base_url, 1), timeout=10)
        assert answer.status == 200 and len(endpoint.calls) == 1 and len(proxy.calls) == 1
    finally:
        proxy.down()


def test_https_with_the_ca_named_in_the_environment(tmp_path, monkeypatch):
    import ssl

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    recorder = Endpoint(tls=context)
    try:
        (untrusted,) = http.Client().post_all(posts(recorder.base_url, 1), timeout=10)
        assert untrusted.status is None and untrusted.error.startswith("curl error 60:")
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        (trusted,) = http.Client().post_all(posts(recorder.base_url, 1), timeout=10)
        assert trusted.status == 200 and recorder.calls[0].data == b"x"
    finally:
        recorder.down()


def test_each_thread_has_its_own_client(monkeypatch):
    monkeypatch.setattr(process, "_shared", process.Shared())
    mine = http.client(10, 4)
    assert http.client(10, 4) is mine
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(http.client(10, 4)))
    thread.start()
    thread.join()
    assert theirs[0] is not mine
    process.reset_after_fork()
    assert http.client(10, 4) is not mine


def test_the_threads_of_a_process_share_each_destinations_limit(endpoint, monkeypatch):
    endpoint.delay = 0.05
    monkeypatch.setattr(process, "_shared", process.Shared())
    answers: list[list[http.Answer]] = []

    def deliver() -> None:
        answers.append(http.client(4, 4).post_all(posts(endpoint.base_url, 12), timeout=10))

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status for batch in answers for a in batch] == [200] * 36
    assert endpoint.most_at_once() == 4
