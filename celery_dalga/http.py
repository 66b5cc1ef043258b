"""Many HTTP POSTs at once over kept-alive connections, with libcurl (pycurl).

One libcurl multi handle per thread (so per worker process under prefork) drives all of a
batch's POSTs concurrently from one thread, through libcurl's socket interface and an epoll
selector; its connection cache keeps connections alive from batch to batch. The POSTs in
flight to each destination (scheme, host, port) follow that destination's adaptive limit
(celery_dalga.limit), so a small endpoint is not flooded into timeouts; POSTs that find no
room before the caller's deadline, or whose destination asked for a pause (Retry-After), are
not sent, and say so. A POST costs
about 15 µs of CPU here, against 350 µs with aiohttp or urllib3 and 530 µs with requests
(bench/README.md). libcurl reads proxies from the environment itself (`http_proxy`,
`https_proxy`, `all_proxy`, `no_proxy`; for http, only the lower-case `http_proxy`), and
redirects are not followed: a 3xx answer is an answer like any other.
"""

from __future__ import annotations

import os
import selectors
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

import certifi
import pycurl

from celery_dalga import metrics, process
from celery_dalga.limit import Limit, Limits

USER_AGENT = "celery-dalga"

_EVENTS = {
    pycurl.POLL_IN: selectors.EVENT_READ,
    pycurl.POLL_OUT: selectors.EVENT_WRITE,
    pycurl.POLL_INOUT: selectors.EVENT_READ | selectors.EVENT_WRITE,
}


CONGESTED = (429, 503)  # answers that say "too many calls": they cut the limit
CONNECT_SHARE = 0.5  # of the timeout, the most a connection may take to be made
REPORT_EVERY = 1.0  # seconds between updates of the limit and in-flight gauges in a batch
ROOM_POLL = 0.01  # seconds between looks for room that another thread may have freed


@dataclass(frozen=True)
class Post:
    """One request: the URL, its destination (scheme://host:port, whose limit it counts
    in), the body and the header lines ("Name: value"); a POST unless `method` says
    otherwise, within the batch's timeout unless `timeout` (seconds) is set, and keeping up
    to `keep` bytes of the answer's body (Answer.body)."""

    url: str
    destination: str
    body: bytes
    headers: tuple[str, ...]
    method: str = "POST"
    timeout: float = 0.0
    keep: int = 0

    @property
    def plain(self) -> bool:
        """A POST that keeps no answer: the callback's request, set up with the fewest
        options."""
        return self.method == "POST" and not self.keep


@dataclass(frozen=True)
class Answer:
    """The outcome of a Post: the status (None when no answer came), an error text, the seconds
    it took and when it ended (time.monotonic()). `sent` is False when the request never
    went out (no connection, or held back), so it cannot have reached the endpoint; `wait` is
    how long the destination asked for (Retry-After) or has been unreachable, in seconds;
    `body`, the start of the answer's body that the Post asked to keep."""

    status: int | None
    error: str
    seconds: float
    ended: float
    sent: bool = True
    wait: float = 0.0
    body: bytes = b""


@lru_cache(maxsize=1024)
def destination(url: str) -> str:
    """scheme://host:port of a URL (the port made explicit)."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    return f"{parts.scheme}://{parts.hostname}:{port}"


def ca_bundle() -> str:
    """The CA certificates for https: SSL_CERT_FILE, REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE
    when set, else certifi's (the wheel's libcurl does not know where Debian keeps them)."""
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        if os.environ.get(name):
            return os.environ[name]
    return certifi.where()


class Client:
    """Sends lists of Posts over one multi handle, each destination's at most as many at a
    time as its adaptive limit allows (between 1 and `cap`, starting at `initial`). The
    limits are the process's (`limits`, shared by its threads' Clients) or the Client's own."""

    def __init__(self, cap: int = 100, initial: int = 4, limits: Limits | None = None):
        self.limits = limits or Limits(initial, cap)
        self.selector = selectors.DefaultSelector()
        self.deadline: float | None = None
        self.idle: list[pycurl.Curl] = []
        self.multi = pycurl.CurlMulti()
        self.multi.setopt(pycurl.M_SOCKETFUNCTION, self._watch)
        self.multi.setopt(pycurl.M_TIMERFUNCTION, self._set_timer)
        self.multi.setopt(pycurl.M_MAXCONNECTS, cap)

    def limit(self, destination: str) -> Limit:
        """The limit of a destination."""
        return self.limits(destination)

    def post_all(
        self, posts: list[Post], timeout: float, start_by: float = float("inf")
    ) -> list[Answer]:
        """POST them all, concurrently within each destination's limit; the answers in the
        order of `posts`. A POST not started by `start_by` (time.monotonic()) is not sent."""
        answers: list[Answer | None] = [None] * len(posts)
        waiting: dict[str, deque[tuple[int, Post]]] = {}
        for index, post in enumerate(posts):
            waiting.setdefault(post.destination, deque()).append((index, post))
        in_flight, report = 0, 0.0
        while waiting or in_flight:
            if time.monotonic() >= report:
                metrics.destinations(self.limits.items())
                report = time.monotonic() + REPORT_EVERY
            late = time.monotonic() >= start_by
            for name, queue in list(waiting.items()):
                limit = self.limit(name)
                if late:
                    self._hold(queue, answers, limit, "had no room before the lease's end")
                elif limit.closed_for():
                    self._hold(queue, answers, limit, "asked for a pause (Retry-After)")
                for _ in range(limit.take(len(queue))):
                    self._start(*queue.popleft(), timeout, limit)
                    in_flight += 1
                if not queue:
                    del waiting[name]
            if in_flight:
                self._wait(ROOM_POLL if waiting else 1.0)
                in_flight -= self._collect(answers)
            elif waiting:  # the process's other threads hold the room: wait for them
                time.sleep(ROOM_POLL)
        metrics.destinations(self.limits.items())
        return answers  # type: ignore[return-value]

    @staticmethod
    def _hold(
        queue: deque[tuple[int, Post]], answers: list[Answer | None], limit: Limit, why: str
    ) -> None:
        """Answer the queue's Posts as not sent."""
        error = f"not sent: the destination {why}; limit {int(limit.limit)}"
        now = time.monotonic()
        while queue:
            answers[queue.popleft()[0]] = Answer(None, error, 0.0, now, False, limit.closed_for())

    def _start(self, index: int, post: Post, timeout: float, limit: Limit) -> None:
        handle = self.idle.pop() if self.idle else self._new_handle()
        handle.index, handle.limit, handle.started = index, limit, time.monotonic()
        handle.setopt(pycurl.URL, post.url)
        if post.plain and not handle.custom:
            handle.setopt(pycurl.POSTFIELDS, post.body)
        else:
            _set_method(handle, post)
        handle.setopt(pycurl.HTTPHEADER, [*post.headers, "Expect:"])
        timeout = post.timeout or timeout
        handle.setopt(pycurl.TIMEOUT_MS, int(timeout * 1000))
        handle.setopt(pycurl.CONNECTTIMEOUT_MS, int(timeout * CONNECT_SHARE * 1000))
        self.multi.add_handle(handle)
        self.multi.socket_action(pycurl.SOCKET_TIMEOUT, 0)

    def _new_handle(self) -> pycurl.Curl:
        handle = pycurl.Curl()
        handle.custom, handle.kept = False, None  # set up for a plain POST; no answer kept
        handle.setopt(pycurl.NOSIGNAL, 1)
        handle.setopt(pycurl.USERAGENT, USER_AGENT)
        handle.setopt(pycurl.CAINFO, ca_bundle())
        handle.setopt(pycurl.WRITEFUNCTION, _discard)
        handle.setopt(pycurl.PATH_AS_IS, 1)  # send the path as built: curl would resolve %2E%2E
        return handle

    def _wait(self, longest: float) -> None:
        """Wait for socket events or libcurl's timer (`longest` seconds at most), and let
        libcurl act on them."""
        timeout = longest
        if self.deadline is not None:
            timeout = max(0.0, min(timeout, self.deadline - time.monotonic()))
        for key, mask in self.selector.select(timeout):
            action = (pycurl.CSELECT_IN if mask & selectors.EVENT_READ else 0) | (
                pycurl.CSELECT_OUT if mask & selectors.EVENT_WRITE else 0
            )
            self.multi.socket_action(key.fd, action)
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.multi.socket_action(pycurl.SOCKET_TIMEOUT, 0)

    def _collect(self, answers: list[Answer | None]) -> int:
        """Record the finished transfers; returns how many finished."""
        finished = 0
        while True:
            queued, ok, failed = self.multi.info_read()
            ended = time.monotonic()
            for handle in ok:
                status = handle.getinfo(pycurl.RESPONSE_CODE)
                seconds = handle.getinfo(pycurl.TOTAL_TIME)
                congested = status in CONGESTED
                handle.limit.answered(handle.started, seconds, congested)
                wait = float(max(0, handle.getinfo(pycurl.RETRY_AFTER))) if congested else 0.0
                if wait:
                    handle.limit.close(wait)
                kept = bytes(handle.kept) if handle.kept else b""
                answers[handle.index] = Answer(
                    status, f"HTTP {status}", seconds, ended, True, wait, kept
                )
                self._release(handle)
            for handle, code, message in failed:
                sent = handle.getinfo(pycurl.REQUEST_SIZE) > 0
                handle.limit.failed(handle.started, sent)
                error = f"curl error {code}: {message}" + ("" if sent else " (not sent)")
                seconds = handle.getinfo(pycurl.TOTAL_TIME)
                wait = handle.limit.unreachable_for()
                answers[handle.index] = Answer(None, error, seconds, ended, sent, wait)
                self._release(handle)
            finished += len(ok) + len(failed)
            if not queued:
                return finished

    def _release(self, handle: pycurl.Curl) -> None:
        self.multi.remove_handle(handle)
        self.idle.append(handle)

    def _watch(self, what: int, fd: int, multi: object, data: object) -> None:
        """libcurl's socket callback: which sockets to wait on, for what."""
        registered = fd in self.selector.get_map()
        if what == pycurl.POLL_REMOVE:
            if registered:
                self.selector.unregister(fd)
        elif registered:
            try:
                self.selector.modify(fd, _EVENTS[what])
            except OSError:  # closed and reused before libcurl said so: watch it afresh
                self.selector.unregister(fd)
                self.selector.register(fd, _EVENTS[what])
        else:
            self.selector.register(fd, _EVENTS[what])

    def _set_timer(self, milliseconds: int) -> None:
        """libcurl's timer callback: act on timeouts at this deadline (-1: none)."""
        self.deadline = None if milliseconds < 0 else time.monotonic() + milliseconds / 1000


def _discard(data: bytes) -> None:
    """Response bodies are not read."""


def _set_method(handle: pycurl.Curl, post: Post) -> None:
    """Set a handle up for a Post's method, body and kept answer (or back for a plain POST).
    The body goes with every method but HEAD, as Go's http.Client sends it; GET, DELETE...
    without one send none."""
    handle.custom = not post.plain
    handle.setopt(pycurl.HTTPGET, 1)  # a clean start: GET, no body, not HEAD
    sends_body = post.method != "HEAD" and (post.body or post.method in ("POST", "PUT", "PATCH"))
    if post.method == "HEAD":
        handle.setopt(pycurl.NOBODY, 1)
    elif sends_body:
        handle.setopt(pycurl.POSTFIELDS, post.body)  # makes it a POST
    if post.method in ("POST", "HEAD") or (post.method == "GET" and not sends_body):
        handle.unsetopt(pycurl.CUSTOMREQUEST)
    else:
        handle.setopt(pycurl.CUSTOMREQUEST, post.method)
    handle.kept = bytearray() if post.keep else None
    handle.setopt(pycurl.WRITEFUNCTION, _keeper(handle.kept, post.keep) if post.keep else _discard)


def _keeper(kept: bytearray, room: int) -> Callable[[bytes], None]:
    """A write callback that keeps the first `room` bytes of an answer's body in `kept`."""

    def keep(data: bytes) -> None:
        if len(kept) < room:
            kept.extend(data[: room - len(kept)])

    return keep


def client(cap: int, initial: int) -> Client:
    """This thread's Client, on the process's limits (celery_dalga.process keeps both)."""
    limits = process.per_process("http limits", lambda: Limits(initial, cap))
    return process.per_thread("http client", lambda: Client(cap, initial, limits))
