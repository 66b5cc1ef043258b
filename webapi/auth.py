"""Optional API tokens: `Authorization: Bearer <token>` with a read or a write scope
(DALGA_API_TOKENS="token:read,other:write"). Reading (GET, HEAD) needs a read or write token,
anything else a write token; the routes named in DALGA_API_OPEN answer without one. The UI
takes the same tokens through a sign-in form that keeps the token in a SameSite=Strict,
HttpOnly cookie, and refuses a form posted from another origin."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from flask import Flask, redirect, render_template, request, url_for

from celery_dalga.config import ConfigError

SCOPES = ("read", "write")
READING = ("GET", "HEAD", "OPTIONS")
COOKIE = "dalga_token"
SIGNING = ("/ui/sign-in", "/ui/sign-out")


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


def install(app: Flask, tokens: dict[str, str], open_routes: list[str], error: Callable) -> None:
    """Check every request of app against the tokens (nothing to check when there are none).
    `error(status, message)` makes the API's JSON errors."""
    if not tokens:
        return

    @app.before_request
    def check() -> Any:
        path = request.path
        if path in open_routes or path.startswith("/static/") or path in SIGNING:
            return None
        in_ui = path == "/ui" or path.startswith("/ui/")
        header = request.headers.get("Authorization", "")
        presented = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if in_ui and not presented:
            presented = request.cookies.get(COOKIE, "")
        scope = scope_of(tokens, presented) if presented else None
        if scope is None:
            if in_ui:
                return redirect(url_for("sign_in", next=request.full_path.rstrip("?")))
            response = error(401, "a valid API token is needed: Authorization: Bearer <token>")
            response[0].headers["WWW-Authenticate"] = 'Bearer realm="dalga"'
            return response
        if in_ui and request.method not in READING and not _same_origin():
            return error(403, "a form posted from another origin")
        if request.method not in READING and scope != "write":
            return error(403, "this token may only read")
        return None

    @app.route("/ui/sign-in", methods=["GET", "POST"], endpoint="sign_in")
    def sign_in() -> Any:
        """The UI's sign-in: a token from the form becomes an HttpOnly SameSite cookie."""
        target = request.values.get("next", "")
        if not target.startswith("/ui"):
            target = "/ui/"
        if request.method == "GET":
            return render_template("ui/sign_in.html", next=target, error=None)
        presented = request.form.get("token", "")
        if not _same_origin() or scope_of(tokens, presented) is None:
            return render_template("ui/sign_in.html", next=target, error="not a valid token"), 401
        response = redirect(target)
        response.set_cookie(
            COOKIE, presented, httponly=True, samesite="Strict", secure=request.is_secure
        )
        return response

    @app.post("/ui/sign-out")
    def sign_out() -> Any:
        response = redirect(url_for("sign_in"))
        response.delete_cookie(COOKIE)
        return response


def _same_origin() -> bool:
    """No Origin header (not a browser's cross-site form) or this server's own origin."""
    origin = request.headers.get("Origin")
    return origin is None or origin.rstrip("/") == request.host_url.rstrip("/")
