"""What every request passes before a route sees it, with or without API tokens: its Host
must name this server (no DNS rebinding), a request that changes something must come from
this server's own origin or from no browser at all, and the body must fit the size limit.

With API tokens (DALGA_API_TOKENS="token:read,other:write") the API wants
`Authorization: Bearer <token>`: reading (GET, HEAD, OPTIONS) needs a read or write token,
anything else a write token; the routes named in DALGA_API_OPEN answer without one. The UI
signs in with the same tokens into a signed session that records the scope, never the
token. Wrong tokens from one address are slowed down: after a few, a 429 for a growing delay.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Flask, Response, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response as BaseResponse

from celery_dalga.config import ConfigError, Settings
from webapi.errors import json_error

SCOPES = ("read", "write")
READING = ("GET", "HEAD", "OPTIONS")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
ANY_ADDRESS = ("", "0.0.0.0", "::")
SESSION_LIFETIME = 12 * 3600.0
FORM_ROOM = 65536  # room in a form for the path and the other parameters besides the body


def parse_tokens(text: str) -> dict[str, str]:
    """DALGA_API_TOKENS as {token: scope}; ConfigError for an entry without a known scope."""
    tokens = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        token, _, scope = entry.rpartition(":")
        if not token or scope not in SCOPES:
            raise ConfigError("api_tokens: write each entry as <token>:read or <token>:write")
        tokens[token] = scope
    return tokens


def scope_of(tokens: dict[str, str], presented: str) -> str | None:
    """The scope of the presented token, None if it is none of them; every token is compared,
    each in constant time, so the answer's timing tells nothing of how much matched."""
    found = None
    for token, scope in tokens.items():
        if hmac.compare_digest(token.encode(), presented.encode()):
            found = scope
    return found


def body_limit(max_body: int) -> int:
    """The largest request body taken: a job body of max_body bytes percent-encoded in a form
    (three characters a byte at worst), and room for the rest of the form."""
    return 3 * max_body + FORM_ROOM


def host_name(host: str) -> str:
    """The name of a Host header, without its port or an IPv6 literal's brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def allowed_hosts(settings: Settings) -> set[str]:
    """The Host names this server answers: localhost's, the bind address when it is one
    address (not 0.0.0.0 or ::), and the allowed_hosts setting."""
    names = {*LOCAL_HOSTS, *(host_name(h) for h in settings.allowed_hosts.split(",") if h.strip())}
    if settings.host.strip() not in ANY_ADDRESS:
        names.add(host_name(settings.host))
    return names


class Throttle:
    """Wrong tokens per client address: after `free` of them, each further one blocks the
    address for a delay that doubles up to `cap` seconds; a quiet `cap` forgets the count.
    At most `size` addresses are remembered (the least recently failed are forgotten)."""

    def __init__(
        self,
        free: int = 5,
        cap: float = 300.0,
        size: int = 10000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.free, self.cap, self.size, self.clock = free, cap, size, clock
        self.failures: OrderedDict[str, tuple[int, float]] = OrderedDict()  # count, until
        self.lock = threading.Lock()

    def wait(self, address: str) -> float:
        """Seconds before the address may present a token again (0: now)."""
        with self.lock:
            _, until = self.failures.get(address, (0, 0.0))
        return max(0.0, until - self.clock())

    def fail(self, address: str) -> None:
        """Count a wrong token from the address."""
        now = self.clock()
        with self.lock:
            count, until = self.failures.pop(address, (0, now))
            count = 1 if now - until > self.cap else count + 1
            delay = min(self.cap, 2.0 ** min(count - self.free, 32)) if count > self.free else 0.0
            self.failures[address] = (count, now + delay)
            while len(self.failures) > self.size:
                self.failures.popitem(last=False)


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, `Secure` when the request came over TLS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure


class Guard:
    """The checks of every request, and the UI's sign-in and sign-out."""

    def __init__(self, settings: Settings):
        self.tokens = parse_tokens(settings.api_tokens)
        self.open = [route.strip() for route in settings.api_open.split(",") if route.strip()]
        self.hosts = allowed_hosts(settings)
        self.proxies = settings.trusted_proxies
        self.limit = body_limit(settings.max_body)
        self.bulk_limit = settings.bulk_max_bytes
        self.secret = settings.session_secret or secrets.token_hex(32)
        self.throttle = Throttle()
        self.revoked: dict[str, float] = {}  # nonce of a signed-out session: when it was issued
        self.lock = threading.Lock()

    def install(self, app: Flask) -> None:
        """Check app's every request, and add the security headers to its every answer."""
        if self.proxies > 0:
            n = self.proxies
            fixed = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)
            app.wsgi_app = fixed  # type: ignore[method-assign]
        app.secret_key = self.secret
        app.session_interface = SessionInterface()
        app.config.update(
            MAX_CONTENT_LENGTH=self.limit,
            MAX_FORM_MEMORY_SIZE=self.limit,
            SESSION_COOKIE_NAME="dalga_session",
            SESSION_COOKIE_HTTPONLY=True,
            SESSION_COOKIE_SAMESITE="Strict",
        )
        app.before_request(self.check)
        app.after_request(headers)

    def check(self) -> BaseResponse | None:
        """None to go on, or the answer that refuses the request."""
        if host_name(request.host) not in self.hosts:
            return refuse(403, "this server does not answer to that Host name")
        limit = self.bulk_limit if is_bulk() else self.limit
        request.max_content_length = limit  # a body sent without a length stops there too
        if (request.content_length or 0) > limit:
            return refuse(413, f"the request body is larger than {limit} bytes")
        if request.method not in READING and not same_origin():
            return refuse(403, "a request from another origin")
        path = request.path
        if not self.tokens or path in self.open or path.startswith("/static/"):
            return None
        wait = self.throttle.wait(request.remote_addr or "")
        if wait:
            answer = refuse(429, "too many wrong tokens; try again later")
            answer.headers["Retry-After"] = str(int(wait) + 1)
            return answer
        if path in ("/ui/sign-in", "/ui/sign-out"):
            return None
        scope = self.session_scope() if in_ui() else self.bearer_scope()
        if scope is None:
            if in_ui():
                return redirect(url_for("ui.sign_in", next=request.full_path.rstrip("?")))
            answer = refuse(401, "a valid API token is needed: Authorization: Bearer <token>")
            answer.headers["WWW-Authenticate"] = 'Bearer realm="dalga"'
            return answer
        if request.method not in READING and scope != "write":
            return refuse(403, "this token may only read")
        return None

    def bearer_scope(self) -> str | None:
        """The scope of the request's bearer token, None without a valid one."""
        header = request.headers.get("Authorization", "")
        presented = header[7:].strip() if header[:7].lower() == "bearer " else ""
        return self.scope(presented) if presented else None

    def scope(self, presented: str) -> str | None:
        """The token's scope; a wrong token counts against the client's address."""
        scope = scope_of(self.tokens, presented)
        if scope is None:
            self.throttle.fail(request.remote_addr or "")
        return scope

    def fingerprint(self, token: str) -> str:
        """A keyed hash naming the token in a session, so a token taken out of the settings
        ends the sessions signed in with it."""
        return hmac.new(self.secret.encode(), token.encode(), hashlib.sha256).hexdigest()[:32]

    def session_scope(self) -> str | None:
        """The scope the signed session records, None when it is missing, old or revoked."""
        nonce, at, scope = session.get("nonce"), session.get("at", 0.0), session.get("scope")
        with self.lock:
            if not nonce or nonce in self.revoked or time.time() - at > SESSION_LIFETIME:
                return None
        token = next((t for t in self.tokens if self.fingerprint(t) == session.get("token")), "")
        return scope if token and self.tokens[token] == scope else None

    def sign_in(self, presented: str) -> bool:
        """Start a session for a valid token: it records the scope, not the token."""
        scope = self.scope(presented)
        if scope is None:
            return False
        session.clear()
        session.update(
            scope=scope,
            token=self.fingerprint(presented),
            nonce=secrets.token_hex(16),
            at=time.time(),
        )
        return True

    def sign_out(self) -> None:
        """End the session; its cookie no longer works, even a copy kept from before."""
        now = time.time()
        with self.lock:
            if session.get("nonce"):
                self.revoked[session["nonce"]] = session.get("at", now)
            for nonce, at in list(self.revoked.items()):
                if now - at > SESSION_LIFETIME:
                    del self.revoked[nonce]
        session.clear()


def refuse(status: int, message: str) -> Response:
    """A JSON error for the API, plain text for the UI."""
    if in_ui():
        return Response(message, status, content_type="text/plain; charset=utf-8")
    return json_error(status, message)


def is_bulk() -> bool:
    """PUT /jobs, whose body of many jobs has a limit of its own (bulk_max_bytes)."""
    return request.method == "PUT" and request.path == "/jobs"


def in_ui() -> bool:
    return request.path == "/ui" or request.path.startswith("/ui/")


def same_origin() -> bool:
    """The request's Origin (or, lacking one, its Referer's origin) is this server's own;
    a request with neither (curl, Dalga's client) is no browser's and passes."""
    origin = request.headers.get("Origin")
    if origin is None:
        referer = request.headers.get("Referer")
        if referer is None:
            return True
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    return origin.rstrip("/").lower() == request.host_url.rstrip("/").lower()


def headers(response: Response) -> Response:
    """Answers are never framed nor sniffed; UI pages load only this server's files."""
    sources = "'self'" if in_ui() or request.path.startswith("/static/") else "'none'"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = (
        f"default-src {sources}; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    )
    return response
