"""celery_dalga.http against real servers on 127.0.0.1: concurrency, keep-alive, limits,
timeouts, refused connections, proxies from the environment, bodies byte for byte, https."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from processes import free_port

from celery_dalga import http, process


@dataclass
class Server:
    """An HTTP/1.1 server that records requests, connections and how many were in flight."""

    url: str = ""
    delay: float = 0.0
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, bytes, dict]] = field(default_factory=list)
    peers: set = field(default_factory=set)
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def serve(server: Server, wrap_socket=None) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with server.lock:
                server.requests.append((self.path, body, dict(self.headers)))
                server.peers.add(self.client_address)
                server.in_flight += 1
                server.most_in_flight = max(server.most_in_flight, server.in_flight)
            time.sleep(server.delay)
            with server.lock:
                server.in_flight -= 1
            try:
                self.send_response(server.status)
                for name, value in server.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass

        def log_message(self, *args) -> None:
            pass

    class Threading(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128

    httpd = Threading(("127.0.0.1", 0), Handler)
    if wrap_socket:
        httpd.socket = wrap_socket(httpd.socket)
    scheme = "https" if wrap_socket else "http"
    server.url = f"{scheme}://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture
def server() -> Iterator[Server]:
    recorder = Server()
    httpd = serve(recorder)
    yield recorder
    httpd.shutdown()
    httpd.server_close()


def posts(url: str, count: int, body: bytes = b"x") -> list[http.Post]:
    where = http.destination(url)
    return [
        http.Post(f"{url}/cb/{i}", where, body, ("Content-Type: text/plain",)) for i in range(count)
    ]


def test_a_batch_is_posted_concurrently_and_answered_in_order(server):
    server.delay = 0.3
    answers = http.Client(100, initial=100).post_all(posts(server.url, 40), timeout=10)
    assert [a.status for a in answers] == [200] * 40
    assert server.most_in_flight == 40
    assert sorted(p for p, _, _ in server.requests) == sorted(f"/cb/{i}" for i in range(40))
    assert all(a.seconds >= 0.3 for a in answers)


def test_at_most_the_cap_at_a_time(server):
    server.delay = 0.05
    answers = http.Client(5, initial=5).post_all(posts(server.url, 30), timeout=10)
    assert [a.status for a in answers] == [200] * 30
    assert server.most_in_flight == 5


def test_the_limit_starts_low_and_grows_while_answers_stay_fast(server):
    server.delay = 0.05
    client = http.Client(100, initial=2)
    answers = client.post_all(posts(server.url, 60), timeout=10)
    assert [a.status for a in answers] == [200] * 60
    limit = client.limit(http.destination(server.url))
    assert 2 < server.most_in_flight <= 60 and limit.limit > 8
    assert limit.in_flight == 0


def test_each_destination_has_its_own_limit(server):
    other = Server()
    httpd = serve(other)
    try:
        server.status = 503
        client = http.Client(100, initial=8)
        client.post_all([*posts(server.url, 8), *posts(other.url, 8)], timeout=10)
        assert client.limit(http.destination(server.url)).limit == 4
        assert client.limit(http.destination(other.url)).limit > 8
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_retry_after_holds_back_the_rest_of_the_batch(server):
    server.status, server.headers = 429, {"Retry-After": "30"}
    answers = http.Client(100, initial=1).post_all(posts(server.url, 5), timeout=10)
    first, *rest = answers
    assert (first.status, first.sent, first.wait) == (429, True, 30.0)
    assert len(server.requests) == 1
    assert all(a.status is None and not a.sent and 29 < a.wait <= 30 for a in rest)
    assert all("Retry-After" in a.error for a in rest)


def test_posts_without_room_by_the_deadline_are_not_sent(server):
    server.delay = 0.5
    start_by = time.monotonic() + 0.2
    answers = http.Client(1, initial=1).post_all(posts(server.url, 4), 10, start_by)
    assert [a.status for a in answers] == [200, None, None, None]
    assert len(server.requests) == 1
    assert not any(a.sent for a in answers[1:]) and "no room" in answers[1].error


def test_a_refused_connection_was_not_sent_a_timeout_was(server):
    server.delay = 2.0
    closed = f"http://127.0.0.1:{free_port()}"
    slow, refused = http.Client().post_all([*posts(server.url, 1), *posts(closed, 1)], timeout=0.5)
    assert slow.sent and not refused.sent


def test_connections_are_kept_alive_from_batch_to_batch(server):
    client = http.Client(10, initial=10)
    for _ in range(5):
        assert {a.status for a in client.post_all(posts(server.url, 10), timeout=10)} == {200}
    assert len(server.requests) == 50
    assert len(server.peers) <= 10


def test_any_status_is_an_answer_and_redirects_are_not_followed(server):
    for status in (204, 301, 404, 500):
        server.status = status
        (answer,) = http.Client().post_all(posts(server.url, 1), timeout=10)
        assert (answer.status, answer.error) == (status, f"HTTP {status}")
    assert len(server.requests) == 4


def test_a_slow_answer_times_out_and_a_closed_port_is_refused(server):
    server.delay = 2.0
    closed = f"http://127.0.0.1:{free_port()}"
    slow, refused = http.Client().post_all([*posts(server.url, 1), *posts(closed, 1)], timeout=0.5)
    assert slow.status is None and slow.error.startswith("curl error 28:")
    assert 0.5 <= slow.seconds < 1.5
    assert refused.status is None and refused.error.startswith("curl error 7:")


def test_bodies_and_headers_arrive_byte_for_byte(server):
    body = 'é "\\\n😀 \x00 end'.encode() + bytes(range(256))
    (answer,) = http.Client().post_all(
        [
            http.Post(
                f"{server.url}/a/b%2Fc?x=1",
                http.destination(server.url),
                body,
                ("Dalga-Sched: 2026-01-01T00:00:00Z",),
            )
        ],
        timeout=10,
    )
    assert answer.status == 200
    path, received, headers = server.requests[0]
    assert (path, received) == ("/a/b%2Fc?x=1", body)
    assert headers["Dalga-Sched"] == "2026-01-01T00:00:00Z" and "Expect" not in headers


def test_proxies_come_from_the_environment(server, monkeypatch):
    proxy = Server()
    httpd = serve(proxy)
    try:
        target = f"http://127.0.0.2:{free_port()}"  # nothing listens there: only the proxy answers
        monkeypatch.setenv("http_proxy", proxy.url)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        (answer,) = http.Client().post_all(posts(target, 1), timeout=10)
        assert answer.status == 200
        assert proxy.requests[0][0] == f"{target}/cb/0"  # the absolute form a proxy gets
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        (answer,) = http.Client().post_all(posts(server.url, 1), timeout=10)
        assert answer.status == 200 and len(server.requests) == 1 and len(proxy.requests) == 1
    finally:
        httpd.shutdown()
        httpd.server_close()


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
    recorder = Server()
    httpd = serve(recorder, lambda sock: context.wrap_socket(sock, server_side=True))
    try:
        (untrusted,) = http.Client().post_all(posts(recorder.url, 1), timeout=10)
        assert untrusted.status is None and untrusted.error.startswith("curl error 60:")
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        (trusted,) = http.Client().post_all(posts(recorder.url, 1), timeout=10)
        assert trusted.status == 200 and recorder.requests[0][1] == b"x"
    finally:
        httpd.shutdown()
        httpd.server_close()


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


def test_the_threads_of_a_process_share_each_destinations_limit(server, monkeypatch):
    server.delay = 0.05
    monkeypatch.setattr(process, "_shared", process.Shared())
    answers: list[list[http.Answer]] = []

    def deliver() -> None:
        answers.append(http.client(4, 4).post_all(posts(server.url, 12), timeout=10))

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status for batch in answers for a in batch] == [200] * 36
    assert server.most_in_flight == 4
