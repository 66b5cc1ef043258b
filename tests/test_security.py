"""Security: API tokens with read and write scopes (HTTP and the UI), callbacks that cannot
leave the base URL whatever a job path holds, and logs without bodies or passwords."""

from __future__ import annotations

import base64
import json
import logging
import socket
import socketserver
import subprocess
import sys
import threading
from datetime import UTC, datetime

import pytest
import requests
from helpers import settings_on, unique_table
from processes import dalga_env, free_port, start, stop, wait_http
from sqlalchemy.exc import DataError, OperationalError

from celery_dalga.config import ConfigError, Settings, redacted
from celery_dalga.jobs import Run, job_key
from celery_dalga.process import store_for
from celery_dalga.spec import parse_spec
from celery_dalga.tasks import callback_url, deliver, post
from webapi import create_app
from webapi.auth import Throttle, parse_tokens, scope_of

TOKENS = "reader-token:read,writer-token:write"


@pytest.fixture
def secured(tmp_path):
    """make(**settings) -> a test client of an app whose API needs tokens, on SQLite."""

    def make(**extra):
        extra = {"api_tokens": TOKENS, **extra}
        settings = settings_on(f"sqlite:///{tmp_path}/jobs.sqlite3", unique_table(), **extra)
        store_for(settings).create_table()
        return create_app(settings).test_client()

    return make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_token_is_a_401_json_error_and_changes_nothing(secured):
    api = secured()
    for method, url in (("put", "/jobs/a/1?interval=60"), ("get", "/jobs"), ("get", "/jobs/a/1")):
        answer = getattr(api, method)(url)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert "token" in answer.get_json()["error"]
    wrong = api.put("/jobs/a/1?interval=60", headers=bearer("writer-token-but-longer"))
    assert wrong.status_code == 401
    assert api.get("/jobs", headers=bearer("reader-token")).get_json()["jobs"] == []


def test_a_read_token_reads_and_a_write_token_writes(secured):
    api = secured()
    put = api.put("/jobs/a/1?interval=60", headers=bearer("reader-token"))
    assert put.status_code == 403 and "only read" in put.get_json()["error"]
    assert api.put("/jobs/a/1?interval=60", headers=bearer("writer-token")).status_code == 201
    assert api.get("/jobs/a/1", headers=bearer("reader-token")).status_code == 200
    assert api.get("/jobs/a/1", headers={"Authorization": "bearer writer-token"}).status_code == 200
    assert api.delete("/jobs/a/1", headers=bearer("reader-token")).status_code == 403
    assert api.post("/jobs/a/1", headers=bearer("reader-token")).status_code == 403
    assert api.get("/jobs/a/1", headers=bearer("writer-token")).status_code == 200


def test_status_and_metrics_are_open_unless_configured_closed(secured):
    api = secured()
    assert api.get("/status").status_code == 200
    assert api.get("/metrics").status_code == 200
    closed = secured(api_open="")
    assert closed.get("/status").status_code == 401
    assert closed.get("/metrics").status_code == 401
    assert closed.get("/metrics", headers=bearer("reader-token")).status_code == 200


def test_without_tokens_the_api_is_open(tmp_path):
    settings = settings_on(f"sqlite:///{tmp_path}/j.sqlite3", unique_table())
    store_for(settings).create_table()
    assert create_app(settings).test_client().get("/jobs").status_code == 200


@pytest.mark.parametrize("text", ["justatoken", "t:admin", ":read", "a:read,b:"])
def test_a_token_list_without_scopes_is_a_config_error(text):
    with pytest.raises(ConfigError, match="api_tokens"):
        parse_tokens(text)


def test_scope_of_matches_whole_tokens_only():
    tokens = parse_tokens("abc:read,abd:write,with:colon:write")
    assert scope_of(tokens, "abc") == "read" and scope_of(tokens, "abd") == "write"
    assert scope_of(tokens, "with:colon") == "write"
    assert scope_of(tokens, "ab") is None and scope_of(tokens, "abcd") is None


def test_the_ui_signs_in_with_a_token_in_a_strict_cookie(secured):
    ui = secured()
    first = ui.get("/ui/jobs")
    assert first.status_code == 302 and "/ui/sign-in" in first.headers["Location"]
    refused = ui.post("/ui/sign-in", data={"token": "nope", "next": "/ui/jobs"})
    assert refused.status_code == 401
    signed = ui.post("/ui/sign-in", data={"token": "reader-token", "next": "/ui/jobs"})
    assert signed.status_code == 302 and signed.headers["Location"].endswith("/ui/jobs")
    cookie = signed.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert ui.get("/ui/jobs").status_code == 200
    form = {"path": "p", "body": "1", "interval": "60"}
    assert ui.post("/ui/jobs/new", data=form).status_code == 403  # a read token
    assert ui.get("/jobs").status_code == 401  # the cookie is for the UI, not the API


def test_the_ui_refuses_a_form_posted_from_another_origin(secured):
    ui = secured()
    ui.post("/ui/sign-in", data={"token": "writer-token"})
    form = {"path": "p", "body": "1", "interval": "60"}
    evil = ui.post("/ui/jobs/new", data=form, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403
    same = ui.post("/ui/jobs/new", data=form, headers={"Origin": "http://localhost"})
    assert same.status_code == 302
    assert ui.post("/ui/sign-out").status_code == 302
    assert ui.get("/ui/jobs").status_code == 302


class RequestRecorder(socketserver.ThreadingTCPServer):
    """An HTTP server on 127.0.0.1 that keeps each request's first line and Host header as
    the bytes came, and answers 200."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        self.heads: list[tuple[str, str]] = []
        super().__init__(("127.0.0.1", 0), self.Handler)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while True:
                line = self.rfile.readline()
                if not line:
                    return
                headers = {}
                while (header := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                self.rfile.read(int(headers.get("content-length", 0)))
                self.server.heads.append((line.decode("latin-1").rstrip(), headers["host"]))
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


@pytest.fixture
def recorder():
    server = RequestRecorder()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


HOSTILE = {
    "x?admin=1": "/base/x%3Fadmin=1",
    "x#fragment": "/base/x%23fragment",
    "@evil.example:81/x": "/base/@evil.example:81/x",
    "//evil.example/x": "/base/evil.example/x",
    "http://evil.example/x": "/base/http://evil.example/x",
    "a b/c%2Fd": "/base/a%20b/c%252Fd",
    "x\r\nHost: evil.example": "/base/x%0D%0AHost:%20evil.example",
}
CLIMBING = ["../../admin", "a/./b", "..\\admin", "x/..\\..\\admin"]


def test_hostile_paths_stay_under_the_base_url_in_the_request_sent(recorder):
    port = recorder.server_address[1]
    settings = Settings(base_url=f"http://127.0.0.1:{port}/base/", callback_timeout=5.0)
    now = datetime.now(UTC)
    paths = [*HOSTILE, *CLIMBING]
    runs = [Run(i, job_key(p, "1"), p, "1", now, "t", True) for i, p in enumerate(paths)]
    answers = post(settings, runs, 1, None)
    assert [a.status for a in answers] == [200] * len(HOSTILE) + [None] * len(CLIMBING)
    assert all("would leave base_url" in a.error for a in answers[len(HOSTILE) :])
    sent = sorted(recorder.heads)
    assert sent == sorted(
        (f"POST {target} HTTP/1.1", f"127.0.0.1:{port}") for target in HOSTILE.values()
    )


def test_callback_url_keeps_base_path_and_ordinary_paths_readable():
    assert callback_url("http://h:1/api", "feeds/check") == "http://h:1/api/feeds/check"
    assert callback_url("http://h:1/api/", "/a,b;c=d:e@f") == "http://h:1/api/a,b;c=d:e@f"
    assert callback_url("http://h:1/", "ünï") == "http://h:1/%C3%BCn%C3%AF"


@pytest.mark.parametrize(
    "raw",
    [
        "..%2Fadmin",  # decodes to ../admin
        "a%2F..%2F..%2Fadmin",
        "%252e%252e%252Fadmin",  # Dalga's second decoding makes it ../admin
        "a%2F.%2Fb",
        "x%0D%0AHost:%20evil",
        "x%09y",
        "..%5Cadmin",
    ],
)
def test_put_refuses_paths_that_would_leave_the_base_url(secured, raw):
    api = secured()
    answer = api.put(f"/jobs/{raw}/1?interval=60", headers=bearer("writer-token"))
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json()["parameter"] == "path"
    assert api.get("/jobs", headers=bearer("writer-token")).get_json()["jobs"] == []


def test_bodies_are_logged_only_at_debug_and_cut(mariadb_url, endpoint, caplog, make_store):
    secret = "password=hunter2-" + "x" * 500
    store = make_store(mariadb_url)
    settings = settings_on(mariadb_url, store.table.name, endpoint.base_url)
    endpoint.script["hook"] = [200, 500]
    store.put(parse_spec("hook", secret, {"interval": "60", "immediate": "true"}))
    with caplog.at_level(logging.INFO):
        deliver(settings, store.claim(10))
        store.trigger("hook", secret)
        deliver(settings, store.claim(10))
    assert caplog.records and all("hunter2" not in r.getMessage() for r in caplog.records)
    caplog.clear()
    store.put(parse_spec("other", secret, {"interval": "60", "immediate": "true"}))
    with caplog.at_level(logging.DEBUG, logger="celery_dalga"):
        deliver(settings, store.claim(10))
    bodies = [r.getMessage() for r in caplog.records if "hunter2" in r.getMessage()]
    assert bodies and all(len(m) < 400 for m in bodies)


def test_database_passwords_never_reach_the_log(tmp_path):
    url = "mysql+mysqldb://root:S3cretPw@127.0.0.1:1/nothing"
    done = subprocess.run(
        [sys.executable, "-m", "celery_dalga.cli", "--debug", "create-table"],
        env={"PATH": "/usr/bin:/bin", "DALGA_DATABASE_URL": url, "DALGA_BROKER_URL": url},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "cannot use the database" in done.stderr
    assert "S3cretPw" not in done.stderr + done.stdout


@pytest.fixture
def served(tmp_path):
    """make(**settings) -> a test client of an app without tokens (the open mode), on SQLite;
    its Store as .store."""

    def make(**extra):
        settings = settings_on(f"sqlite:///{tmp_path}/open.sqlite3", unique_table(), **extra)
        store = store_for(settings)
        store.create_table()
        client = create_app(settings, store).test_client()
        client.store = store
        return client

    return make


def test_head_is_a_pure_read_that_never_pauses_or_resumes(secured, served):
    api = secured()
    assert api.put("/jobs/a/1?interval=60", headers=bearer("writer-token")).status_code == 201
    head = api.head("/jobs/a/1?disable=true", headers=bearer("reader-token"))
    assert head.status_code == 200 and head.data == b""
    assert api.get("/jobs/a/1", headers=bearer("reader-token")).get_json()["enabled"] is True
    api.patch("/jobs/a/1?disable=true", headers=bearer("writer-token"))
    assert api.head("/jobs/a/1?enable=true", headers=bearer("reader-token")).status_code == 200
    assert api.get("/jobs/a/1", headers=bearer("reader-token")).get_json()["enabled"] is False
    assert api.head("/jobs/gone/1?enable=true", headers=bearer("reader-token")).status_code == 404
    opened = served()
    opened.put("/jobs/b/1?interval=60")
    assert opened.head("/jobs/b/1?disable=true").status_code == 200
    assert opened.store.get("b", "1").enabled


EVIL = "http://evil.example"


def test_without_tokens_a_request_from_another_origin_changes_nothing(served):
    api = served()
    api.put("/jobs/a/1?interval=60")
    for headers in ({"Origin": EVIL}, {"Referer": EVIL + "/page"}, {"Origin": "null"}):
        ui = api.post("/ui/delete-all", data={"confirm": "all"}, headers=headers)
        assert ui.status_code == 403 and ui.mimetype == "text/plain"
        put = api.put("/jobs/b/1?interval=60", headers=headers)
        assert put.status_code == 403 and "origin" in put.get_json()["error"]
        assert api.delete("/jobs/a/1", headers=headers).status_code == 403
        assert api.get("/jobs/a/1", headers=headers).status_code == 200  # reading is no harm
    assert [j.path for j in api.store.page()] == ["a"]
    own = {"Origin": "http://localhost"}
    assert api.put("/jobs/b/1?interval=60", headers=own).status_code == 201
    assert api.put("/jobs/c/1?interval=60").status_code == 201  # no browser: curl, Go clients
    referer = {"Referer": "http://localhost/ui/status"}
    assert api.post("/ui/delete-all", data={"confirm": "all"}, headers=referer).status_code == 302
    assert api.store.page() == []


@pytest.mark.parametrize("mode", ["open", "tokens"])
def test_a_foreign_host_name_is_refused(served, secured, mode):
    api = served() if mode == "open" else secured()
    auth = {} if mode == "open" else bearer("reader-token")
    for host in ("evil.example", "evil.example:34006", "0.0.0.0:34006", "10.0.0.1"):
        answer = api.get("/jobs", headers=auth, base_url=f"http://{host}")
        assert answer.status_code == 403 and "Host" in answer.get_json()["error"], host
        assert api.get("/ui/jobs", base_url=f"http://{host}").status_code == 403
    for host in ("localhost", "localhost:34006", "127.0.0.1:34006", "[::1]:34006", "LOCALHOST"):
        assert api.get("/jobs", headers=auth, base_url=f"http://{host}").status_code == 200, host


def test_the_bind_address_and_allowed_hosts_are_answered(served):
    api = served(host="10.1.2.3", allowed_hosts="dalga.example.com, Other.Example")
    for host in ("10.1.2.3:34006", "dalga.example.com", "other.example:80", "localhost"):
        assert api.get("/jobs", base_url=f"http://{host}").status_code == 200, host
    assert api.get("/jobs", base_url="http://evil.example").status_code == 403
    anywhere = served(host="0.0.0.0")
    assert anywhere.get("/jobs", base_url="http://0.0.0.0:34006").status_code == 403
    assert anywhere.get("/jobs", base_url="http://127.0.0.1:34006").status_code == 200


def test_a_body_over_the_size_limit_is_a_413_json_error(served):
    api = served(max_body=1000)
    huge = {"interval": "60", "x": "y" * 200_000}
    answer = api.put("/jobs/a/1", data=huge)
    assert answer.status_code == 413 and "larger than" in answer.get_json()["error"]
    assert len(answer.data) < 500
    ui = api.post("/ui/jobs/new", data={"path": "a", "body": "1", **huge})
    assert ui.status_code == 413
    assert api.store.page() == []


def test_a_body_of_max_body_bytes_goes_through_the_ui_form(served):
    api = served()
    body = "é&" * (65535 // 3)  # every byte needs a %XX in the form: the worst case
    assert len(body.encode()) == 65535
    form = {"path": "a", "body": body, "interval": "60", "location": "Europe/Istanbul"}
    assert api.post("/ui/jobs/new", data=form).status_code == 302
    assert api.store.get("a", body) is not None


@pytest.mark.parametrize(
    "method, url, data",
    [
        ("put", "/jobs/a/1?interval=60&" + "n" * 100_000 + "=1", None),
        ("put", "/jobs/a/1?interval=" + "9" * 100_000, None),
        ("put", "/jobs/a/1", {"interval": "60", "n" * 100_000: "1"}),
        ("put", "/jobs/" + "p%zz" * 50_000 + "/1?interval=60", None),
        ("put", "/jobs/a/" + "b%zz" * 50_000 + "?interval=60", None),
        ("put", "/jobs/a/" + "b" * 300_000 + "?interval=60", None),
        ("put", "/jobs/" + "p" * 300_000 + "/1?interval=60", None),
        ("get", "/jobs?sort-by=" + "s" * 100_000, None),
        ("get", "/jobs?limit=" + "9" * 100_000, None),
        ("get", "/jobs/continue?cursor=" + "c" * 100_000, None),
    ],
)
def test_errors_repeat_only_a_short_prefix_of_what_was_sent(served, method, url, data):
    api = served()
    answer = getattr(api, method)(url, data=data)
    assert answer.status_code == 400, answer.data[:300]
    assert len(answer.data) < 700 and len(answer.get_json()["parameter"]) <= 100
    assert api.store.page() == []


@pytest.mark.parametrize(
    "url, data, parameter",
    [
        ("/jobs/a/1?interval=60&interval=abc", None, "interval"),
        ("/jobs/a/1?interval=60", {"interval": "abc"}, "interval"),
        ("/jobs/a/1", {"interval": "60", "location": ["UTC", "Europe/Istanbul"]}, "location"),
        ("/jobs/a/1?interval=60&one-off=true&one-off=false", None, "one-off"),
    ],
)
def test_a_parameter_given_twice_is_a_400_naming_it(served, url, data, parameter):
    api = served()
    answer = api.put(url, data=data)
    assert answer.status_code == 400 and answer.get_json()["parameter"] == parameter
    assert "more than once" in answer.get_json()["error"]
    assert api.store.page() == []


def cursor_of(**fields) -> str:
    document = {"Path": "", "SortBy": "insert-order", "Reverse": False, "LastValue": "1"}
    document.update({"Limit": 10, **fields})
    return base64.b64encode(json.dumps(document).encode()).decode()


@pytest.mark.parametrize(
    "fields",
    [
        {"LastValue": str(10**30)},
        {"LastValue": "-1"},
        {"SortBy": "next-sched", "LastValue": f"2030-01-01T00:00:00+00:00|{10**30}"},
        {"Limit": 10**30},
        {"Limit": 1e300},
        {"Path": 5},
    ],
)
def test_cursors_with_huge_numbers_are_a_400(served, fields):
    api = served()
    api.put("/jobs/a/1?interval=60")
    answer = api.get("/jobs/continue", query_string={"cursor": cursor_of(**fields)})
    assert answer.status_code == 400 and answer.get_json()["parameter"] == "cursor"


def test_huge_listing_numbers_are_a_400_in_the_api_and_the_ui(served):
    api = served()
    for query in (f"limit={10**30}", f"after={10**30}", "after=-1"):
        answer = api.get(f"/jobs?{query}")
        assert answer.status_code == 400 and answer.get_json()["error"], query
    for after in (str(10**30), "-1", "x" * 10_000, str(2**63)):
        page = api.get(f"/ui/jobs?after={after}")
        assert page.status_code == 400 and "not a job id" in page.get_data(as_text=True)
        assert len(page.data) < 3000
    assert api.get(f"/ui/jobs?after={2**63 - 1}").status_code == 200


def test_redacted_settings_hide_tokens_and_the_session_secret():
    settings = Settings(api_tokens="tok-one:read, tok-two:write", session_secret="sekrit")
    shown = str(redacted(settings))
    assert "tok-one" not in shown and "tok-two" not in shown and "sekrit" not in shown
    assert redacted(settings)["api_tokens"] == "***:read,***:write"
    assert redacted(Settings())["session_secret"] == ""


def test_the_database_errors_log_one_line_without_parameters_or_bodies(served, caplog):
    api = served()
    body = "hunter2-" + "b" * 40
    statement = "INSERT INTO t (path, body, interval) VALUES (%s, %s, %s)"

    def refuses(*args):
        too_long = Exception("(1406, \"Data too long for column 'interval' at row 1\")")
        raise DataError(statement, ("hook", body, "P" * 300), too_long)

    def down(*args):
        raise OperationalError(statement, ("hook", body), Exception("(2006, 'gone away')"))

    api.store.put, api.store.get = refuses, down
    with caplog.at_level(logging.INFO):
        bad = api.put(f"/jobs/hook/{body}?interval=60")
        gone = api.get(f"/jobs/hook/{body}")
    assert bad.status_code == 400 and "cannot store" in bad.get_json()["error"]
    assert gone.status_code == 503 and "unavailable" in gone.get_json()["error"]
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 2 and "Data too long" in lines[0] and "gone away" in lines[1]
    assert all("hunter2" not in line and "PPPP" not in line and "\n" not in line for line in lines)


DALGA = [sys.executable, "-m", "celery_dalga.cli"]


def test_a_real_dalga_web_guards_hosts_origins_sizes_and_logs_no_tokens(tmp_path):
    port = free_port()
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/web.sqlite3",
        port=port,
        api_tokens=TOKENS,
        session_secret="the-session-secret",
    )
    env = dalga_env(settings)
    subprocess.run(DALGA + ["create-table"], env=env, cwd=tmp_path, check=True, timeout=60)
    proc = start(DALGA + ["--debug", "web"], env, tmp_path, "web.log")
    base = f"http://127.0.0.1:{port}"
    write = bearer("writer-token")
    try:
        wait_http(f"{base}/status", proc)
        assert requests.put(f"{base}/jobs/a/1?interval=60", headers=write).status_code == 201
        foreign = requests.get(f"{base}/jobs", headers={**write, "Host": "evil.example"})
        assert foreign.status_code == 403 and foreign.json()["error"]
        evil = requests.delete(f"{base}/jobs/a/1", headers={**write, "Origin": EVIL})
        assert evil.status_code == 403
        head = requests.head(f"{base}/jobs/a/1?disable=true", headers=bearer("reader-token"))
        assert head.status_code == 200
        assert requests.get(f"{base}/jobs/a/1", headers=write).json()["enabled"] is True
        big = requests.put(f"{base}/jobs/a/2", data={"interval": "60", "x": "y" * 300_000})
        assert big.status_code == 413 and big.json()["error"] and len(big.content) < 500
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(
                f"PUT /jobs/a/3 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                "Content-Length: 100000000\r\n\r\n".encode()
            )
            assert conn.recv(100).startswith(b"HTTP/1.1 413")
        answer = requests.get(f"{base}/status")
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    finally:
        assert stop(proc) == 0, proc.log_path.read_text()
    log = proc.log_path.read_text()
    assert "***:write" in log  # --debug logs the settings ...
    for secret in ("writer-token", "reader-token", "the-session-secret"):
        assert secret not in log  # ... without the tokens and the secret


def session_cookie(answer) -> tuple[str, str]:
    """The value and the attributes of the session cookie an answer sets."""
    (header,) = [h for h in answer.headers.getlist("Set-Cookie") if h.startswith("dalga_session=")]
    value, _, attributes = header.partition(";")
    return value.partition("=")[2], attributes


def test_the_ui_session_records_the_scope_never_the_token(secured):
    ui = secured()
    signed = ui.post("/ui/sign-in", data={"token": "writer-token", "next": "/ui/status"})
    assert signed.status_code == 302 and signed.headers["Location"].endswith("/ui/status")
    value, attributes = session_cookie(signed)
    assert "writer-token" not in value and "HttpOnly" in attributes
    assert "SameSite=Strict" in attributes and "Secure" not in attributes
    app = ui.application
    content = app.session_interface.get_signing_serializer(app).loads(value)
    assert content["scope"] == "write" and "writer-token" not in json.dumps(content)
    assert ui.get("/ui/jobs").status_code == 200
    over_tls = secured().post(
        "/ui/sign-in", data={"token": "reader-token"}, base_url="https://localhost"
    )
    assert "Secure" in session_cookie(over_tls)[1]


def test_behind_a_trusted_tls_proxy_the_cookie_is_secure(secured):
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "dalga.example.com"}
    behind = secured(trusted_proxies=1, allowed_hosts="dalga.example.com")
    signed = behind.post("/ui/sign-in", data={"token": "reader-token"}, headers=forwarded)
    assert signed.status_code == 302 and "Secure" in session_cookie(signed)[1]
    own = {**forwarded, "Origin": "https://dalga.example.com"}
    assert behind.post("/ui/sign-out", headers=own).status_code == 302
    untrusted = secured(allowed_hosts="dalga.example.com")  # X-Forwarded-* ignored
    signed = untrusted.post("/ui/sign-in", data={"token": "reader-token"}, headers=forwarded)
    assert signed.status_code == 302 and "Secure" not in session_cookie(signed)[1]


def test_sign_out_revokes_the_session_and_its_copies(secured):
    ui = secured()
    value, _ = session_cookie(ui.post("/ui/sign-in", data={"token": "writer-token"}))
    assert ui.post("/ui/sign-out").status_code == 302
    assert ui.get("/ui/jobs").status_code == 302
    copy = ui.application.test_client()
    copy.set_cookie("dalga_session", value)
    refused = copy.get("/ui/jobs")
    assert refused.status_code == 302 and "/ui/sign-in" in refused.headers["Location"]
    form = {"path": "p", "body": "1", "interval": "60"}
    assert copy.post("/ui/jobs/new", data=form).status_code == 302
    assert "/ui/sign-in" in copy.post("/ui/jobs/new", data=form).headers["Location"]


def test_a_session_holds_across_processes_with_one_secret_and_ends_with_its_token(secured):
    first = secured(session_secret="shared")
    value, _ = session_cookie(first.post("/ui/sign-in", data={"token": "writer-token"}))
    for settings, status in (
        ({"session_secret": "shared"}, 200),
        ({}, 302),  # a random secret of its own
        ({"session_secret": "other"}, 302),
        ({"session_secret": "shared", "api_tokens": "reader-token:read"}, 302),  # token gone
    ):
        other = secured(**settings)
        other.set_cookie("dalga_session", value)
        assert other.get("/ui/jobs").status_code == status, settings


def test_every_answer_forbids_framing_and_sniffing(secured, served):
    api, ui = served(), secured()
    answers = [
        api.get("/jobs"),
        api.get("/nothing"),
        api.put("/jobs/a/1?interval=soon"),
        api.get("/ui/jobs"),
        api.get("/static/ui.css"),
        api.put("/jobs/a/1", headers={"Origin": EVIL}),
        api.get("/jobs", base_url="http://evil.example"),
        ui.get("/jobs"),
        ui.get("/ui/jobs"),
        ui.get("/ui/sign-in"),
    ]
    for answer in answers:
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    assert "default-src 'self'" in answers[3].headers["Content-Security-Policy"]
    assert "default-src 'none'" in answers[0].headers["Content-Security-Policy"]


def test_repeated_wrong_tokens_are_slowed_down_per_address(secured):
    api = secured()
    for _ in range(6):
        assert api.get("/jobs", headers=bearer("guess")).status_code == 401
    slowed = api.get("/jobs", headers=bearer("reader-token"))
    assert slowed.status_code == 429 and int(slowed.headers["Retry-After"]) >= 1
    assert "try again" in slowed.get_json()["error"]
    sign_in = api.post("/ui/sign-in", data={"token": "reader-token"})
    assert sign_in.status_code == 429 and sign_in.headers["Retry-After"]
    assert api.get("/status").status_code == 200  # an open route
    elsewhere = {"REMOTE_ADDR": "10.0.0.9"}
    assert (
        api.get("/jobs", headers=bearer("reader-token"), environ_base=elsewhere).status_code == 200
    )


def test_the_throttle_delay_grows_to_a_cap_and_its_memory_is_bounded():
    now = [1000.0]
    throttle = Throttle(free=2, cap=60.0, size=3, clock=lambda: now[0])
    waits = []
    for _ in range(10):
        throttle.fail("a")
        waits.append(throttle.wait("a"))
    assert waits == [0, 0, 2, 4, 8, 16, 32, 60, 60, 60]
    for _ in range(2000):  # an address that keeps at it for days: still the cap
        now[0] += 60
        throttle.fail("a")
    assert throttle.wait("a") == 60
    now[0] += 61
    assert throttle.wait("a") == 0
    now[0] += 60
    throttle.fail("a")
    assert throttle.wait("a") == 0  # a quiet spell forgets the count
    for address in ("b", "c", "d", "e"):
        throttle.fail(address)
    assert len(throttle.failures) == 3 and "a" not in throttle.failures
