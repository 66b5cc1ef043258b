"""A callback endpoint on 127.0.0.1 that records every POST, for tests, faults and benchmarks.

It answers `status` after `delay` seconds, unless `script` (statuses) or `delays` hold a
queue for the call's path or its (path, body); `headers` adds answer headers per path,
`replies` an answer body. Any method is recorded (Call.method) and answered alike. Kinds:
by default HTTP/1.1 with keep-alive and a listen backlog of 128; `small`: Python's
ThreadingHTTPServer as it comes (backlog 5, HTTP/1.0, a connection per request), as many
small apps are; `slots`: at most that many requests answered at a time (the rest wait);
`tls`: https with that SSL context. down() refuses connections until up() (same port).
"""

from __future__ import annotations

import math
import ssl
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

from waiting import wait_until

T = TypeVar("T")


@dataclass
class Call:
    """One POST the endpoint got, and how it answered."""

    target: str  # as sent: "/path?query", or the absolute URL a proxy gets
    data: bytes
    headers: Message
    peer: tuple[str, int]
    status: int
    at: float  # time.monotonic() on arrival
    received: datetime  # the wall clock (UTC) on arrival
    done: float = math.inf  # time.monotonic() once its delay was over
    method: str = "POST"

    @property
    def path(self) -> str:
        return self.target.lstrip("/")

    @property
    def body(self) -> str:
        return self.data.decode(errors="replace")

    @property
    def job(self) -> tuple[str, str]:
        return self.path, self.body

    @property
    def sched(self) -> str:
        return self.headers.get("Dalga-Sched", "")

    @property
    def idempotency_key(self) -> str:
        return self.headers.get("Idempotency-Key", "")

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


class Endpoint:
    """A recording HTTP endpoint; see the module's docstring."""

    def __init__(
        self, small: bool = False, slots: int = 0, tls: ssl.SSLContext | None = None
    ) -> None:
        self.status = 200
        self.delay = 0.0
        self.script: dict[str | tuple[str, str], list[int]] = {}
        self.delays: dict[str | tuple[str, str], list[float]] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.replies: dict[str, bytes] = {}
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.small = small
        self.slots = threading.BoundedSemaphore(slots) if slots else None
        self.tls = tls
        self.port = 0
        self.server: ThreadingHTTPServer | None = None
        self.up()

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/"

    def up(self) -> None:
        """Listen (on the port it had, if it was up before)."""

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 5 if self.small else 128

        self.server = Server(("127.0.0.1", self.port), self._handler())
        if self.tls:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        """Stop listening: connections are refused until up()."""
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def calls_to(self, path: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 20.0) -> list[Call]:
        """The calls to `path` once there are at least `count`."""
        wait_until(
            lambda: len(self.calls_to(path)) >= count,
            timeout,
            lambda: f"{path}: {len(self.calls_to(path))} calls, wanted {count}",
        )
        return self.calls_to(path)

    def delivered(self) -> list[Call]:
        """The calls answered 200 or 204."""
        with self.lock:
            return [c for c in self.calls if c.status in (200, 204)]

    def most_at_once(self, per: str | None = None) -> int:
        """The most calls being answered at one time: of any calls, or of calls with one value
        of `per` (a Call attribute: "path", "job")."""
        groups: dict[object, list[Call]] = defaultdict(list)
        with self.lock:
            for call in self.calls:
                groups[getattr(call, per) if per else None].append(call)
        return max((_most_overlapping(calls) for calls in groups.values()), default=0)

    def _answer(self, path: str, body: str) -> tuple[int, float]:
        """The status and delay for a call (the lock held)."""
        return (
            _next(self.script, (path, body), path, self.status),
            _next(self.delays, (path, body), path, self.delay),
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0" if endpoint.small else "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                if endpoint.slots:
                    with endpoint.slots:
                        self.answer()
                else:
                    self.answer()

            do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_POST  # noqa: N815

            def answer(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with endpoint.lock:
                    call = Call(
                        self.path,
                        data,
                        self.headers,
                        self.client_address,
                        0,
                        time.monotonic(),
                        datetime.now(UTC),
                        method=self.command,
                    )
                    call.status, delay = endpoint._answer(call.path, call.body)
                    endpoint.calls.append(call)
                time.sleep(delay)  # a slow endpoint
                with endpoint.lock:
                    call.done = time.monotonic()
                try:
                    self.send_response(call.status)
                    for name, value in endpoint.headers.get(call.path, {}).items():
                        self.send_header(name, value)
                    reply = endpoint.replies.get(call.path, b"")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(reply)
                except OSError:
                    pass  # the client gave up (a timeout)

            def log_message(self, *args) -> None:
                pass

        return Handler


def _next(queues: dict, key: tuple[str, str], path: str, default: T) -> T:
    """The next value queued for the call's (path, body), else for its path, else default."""
    for queue in (queues.get(key), queues.get(path)):
        if queue:
            return queue.pop(0)
    return default


def _most_overlapping(calls: list[Call]) -> int:
    edges = sorted([(c.at, 1) for c in calls] + [(c.done, -1) for c in calls])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most
