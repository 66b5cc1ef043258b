"""The remote kind, Kala's remote job (type 1) and go-quartz's CurlJob: each job's own request
(method, URL, body, headers, timeout) and the statuses that deliver it. Its URL may leave
base_url, so its host must be in allowed_remote_hosts (empty: base_url's host and port),
checked at PUT and again before each call. The calls go out concurrently over the process's
HTTP client (celery_dalga.http), within each destination's adaptive limit, as the http
kind's do; redirects are not followed."""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from celery_dalga import http
from celery_dalga.config import Settings
from celery_dalga.jobs import Run
from celery_dalga.kinds.base import Delivery, Kind, Result, own_options, register
from celery_dalga.spec import InvalidParameter, JobSpec
from celery_dalga.values import shown

OPTIONS = ("url", "method", "body", "headers", "timeout", "expected_response_codes")
METHOD = re.compile(r"[A-Za-z]{1,16}")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")  # RFC 9110's token
HEADER_VALUE = re.compile(r"[\t\x20-\x7e]{0,2048}")  # printable ASCII: no CR, LF, NUL...
URL = re.compile(r"[!-~]{1,2048}")  # printable ASCII: no spaces, no control characters
FRAMING = {"host", "content-length", "transfer-encoding", "connection", "expect", "te"}
MAX_HEADERS = 64  # header lines a job may add
MAX_CODES = 64
SHOWN_ANSWER = 200  # bytes of a failed answer's body that its error shows


def request_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options with Kala's defaults where one is absent, null or empty (Kala's client
    sends every field): method GET, body "", no headers, timeout 0 (callback_timeout),
    expected_response_codes [200]."""
    given = {name: value for name, value in options.items() if value is not None}
    return {
        "url": given.get("url"),
        "method": given.get("method") or "GET",
        "body": given.get("body", ""),
        "headers": given.get("headers", {}),
        "timeout": given.get("timeout", 0),
        "expected_response_codes": given.get("expected_response_codes") or [200],
    }


def validate_options(options: dict[str, Any], settings: Settings) -> None:
    """InvalidParameter("options", why) unless the options describe a request a remote job
    may make (see OPTIONS), to an allowed host, within callback_timeout."""
    unknown = sorted(map(str, set(options) - set(OPTIONS)))
    if unknown:
        raise _bad(f"unknown option {_quoted(unknown[0])} (known: {', '.join(OPTIONS)})")
    options = request_options(options)
    url = options["url"]
    if not isinstance(url, str) or not url:
        raise _bad("the remote kind needs a url")
    why = refusal(url, settings)
    if why:
        raise _bad(why)
    method = options["method"]
    if not isinstance(method, str) or not METHOD.fullmatch(method):
        raise _bad(f"method {_quoted(method)} is not an HTTP method")
    body = options["body"]
    if not isinstance(body, str) or "\x00" in body:
        raise _bad("body must be text without NUL characters")
    if len(body.encode()) > settings.max_body:
        raise _bad(f"body is longer than {settings.max_body} bytes (max_body)")
    _check_headers(options["headers"])
    timeout = options["timeout"]
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 <= timeout <= settings.callback_timeout
    ):
        raise _bad(
            f"timeout {_quoted(timeout)} is not seconds between 0 (the callback_timeout) and "
            f"callback_timeout ({settings.callback_timeout:g})"
        )
    codes = options["expected_response_codes"]
    if (
        not isinstance(codes, list)
        or len(codes) > MAX_CODES
        or not all(type(code) is int and 100 <= code <= 599 for code in codes)
    ):
        raise _bad(
            f"expected_response_codes must be a list of at most {MAX_CODES} HTTP statuses "
            "(whole numbers from 100 to 599)"
        )


def _check_headers(headers: Any) -> None:
    """Kala's headers: {name: [values]}, each value sent as a line of its own."""
    if not isinstance(headers, dict):
        raise _bad('headers must be an object of string lists: {"Name": ["value"]}')
    lines = 0
    for name, values in headers.items():
        if not isinstance(name, str) or not HEADER_NAME.fullmatch(name):
            raise _bad(f"header name {_quoted(name)} is not a token (RFC 9110)")
        if name.lower() in FRAMING:
            raise _bad(f"header {shown(name)} is the HTTP client's to set")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise _bad(f"header {shown(name)} must have a list of strings")
        for value in values:
            if not HEADER_VALUE.fullmatch(value):
                raise _bad(
                    f"a value of header {shown(name)} is not printable ASCII (no CR, LF...) of "
                    "at most 2048 characters"
                )
        lines += len(values)
    if lines > MAX_HEADERS:
        raise _bad(f"more than {MAX_HEADERS} header values")


def _quoted(value: Any) -> str:
    """A bad value as an error quotes it: a text cut short, a number, or its type."""
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, float) or (isinstance(value, int) and abs(value) < 10**20):
        return repr(value)
    return f"(a {type(value).__name__})"


def _bad(why: str) -> InvalidParameter:
    return InvalidParameter("options", why)


def refusal(url: str, settings: Settings) -> str:
    """Why a remote job may not call `url` ("" when it may): it must be an absolute http or
    https URL of printable ASCII, to a host in allowed_remote_hosts."""
    if not URL.fullmatch(url):
        return f"url {shown(url)} is not an absolute http(s) URL of at most 2048 printable ASCII"
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        return f"url {shown(url)} is not an absolute http(s) URL"
    if not host_allowed(settings.allowed_remote_hosts, settings.base_url, parts.hostname, port):
        return (
            f"the host {shown(f'{parts.hostname}:{port}')} is not in the allowed_remote_hosts "
            "setting (DALGA_ALLOWED_REMOTE_HOSTS; empty: base_url's host and port only)"
        )
    return ""


def host_allowed(listing: str, base_url: str, host: str, port: int) -> bool:
    """Whether allowed_remote_hosts (`listing`) lets a remote job call host:port: an entry
    "host" allows any port of it, "host:port" that port, "*" any host; an empty listing
    allows base_url's host and port."""
    entries = _entries(listing or _base_entry(base_url))
    host = host.lower()
    return bool({(host, port), (host, None), ("*", None)} & entries)


@lru_cache(maxsize=16)
def _entries(listing: str) -> frozenset[tuple[str, int | None]]:
    """allowed_remote_hosts' entries as (host, port), port None for any."""
    entries: set[tuple[str, int | None]] = set()
    for part in filter(None, (p.strip() for p in listing.split(","))):
        if part == "*":
            entries.add(("*", None))
            continue
        parts = urlsplit("//" + part)
        try:
            entries.add(((parts.hostname or "").lower(), parts.port))
        except ValueError:  # not a port: an entry that allows nothing
            continue
    return frozenset(entries)


def _base_entry(base_url: str) -> str:
    """base_url's host:port as an allowed_remote_hosts entry."""
    return http.destination(base_url).partition("://")[2]


def request(settings: Settings, run: Run, options: dict[str, Any], instance_id: int) -> http.Post:
    """A run's request, as its checked options (request_options) describe it, with Kala's
    Content-Type when the job sets none (application/json), and Dalga's Dalga-Sched,
    Dalga-Instance and Idempotency-Key unless it sets them."""
    url = options["url"]
    headers = options["headers"]
    lines = [
        f"{name}: {value}" if value else f"{name};"  # libcurl's way to send an empty value
        for name, values in headers.items()
        for value in values
    ]
    own = {name.lower() for name in headers}
    if "content-type" not in own:
        lines.append("Content-Type: application/json")
    for name, value in (
        ("Dalga-Sched", run.dalga_sched),
        ("Dalga-Instance", str(instance_id)),
        ("Idempotency-Key", run.idempotency_key),
    ):
        if name.lower() not in own:
            lines.append(f"{name}: {value}")
    return http.Post(
        url,
        http.destination(url),
        options["body"].encode(),
        tuple(lines),
        method=options["method"].upper(),
        timeout=options["timeout"] or settings.callback_timeout,
        keep=SHOWN_ANSWER,
    )


def result(answer: http.Answer, expected: list[int]) -> Result:
    """What an answer says of the run: delivered when its status is expected; failed with the
    status and the start of the answer's body when not; not sent when it never went out."""
    if answer.status is not None and answer.status in expected:
        delivery, detail = Delivery.DELIVERED, answer.error
    elif answer.status is not None:
        delivery = Delivery.FAILED
        detail = f"{answer.status} {answer.body.decode(errors='replace')}".rstrip()
    else:
        delivery = Delivery.FAILED if answer.sent else Delivery.NOT_SENT
        detail = answer.error
    return Result(delivery, detail, answer.seconds, answer.ended, answer.wait, answer.status)


class Remote(Kind):
    """A request of the job's own: method, URL, body, headers, timeout, expected statuses."""

    name = "remote"

    def validate(self, spec: JobSpec, settings: Settings) -> None:
        """The options must describe a request to an allowed host (validate_options)."""
        validate_options(spec.options or {}, settings)

    def deliver(
        self,
        settings: Settings,
        runs: list[Run],
        instance_id: int,
        app: Any,
        start_by: float = math.inf,
    ) -> list[Result]:
        """Make the runs' requests concurrently; one not started by `start_by` is not sent. A
        run whose options no longer pass (a setting changed since its PUT) is not called."""
        client = http.client(settings.callback_concurrency, settings.callback_initial_limit)
        posts, refused, expected = [], {}, {}
        for i, run in enumerate(runs):
            try:
                validate_options(own_options(run.options), settings)
            except InvalidParameter as exc:
                refused[i] = Result.refused(str(exc).partition(": ")[2])
                continue
            options = request_options(own_options(run.options))
            expected[i] = options["expected_response_codes"]
            posts.append(request(settings, run, options, instance_id))
        answers = iter(client.post_all(posts, settings.callback_timeout, start_by))
        return [
            refused[i] if i in refused else result(next(answers), expected[i])
            for i in range(len(runs))
        ]


register(Remote())
