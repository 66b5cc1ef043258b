"""Dalga v4.0.1's own server, the side-by-side peer of `dalga web` in bench/api.py, and
bench/apiload, the load client that drives both: built offline from source at bench time
(tests/go_build.py), Dalga from the shared folder (tests/dalga_source.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

TESTS = str(Path(__file__).resolve().parent.parent / "tests")
if TESTS not in sys.path:
    sys.path.append(TESTS)  # the test kit: dalga_source.py, go_build.py, processes.py

from dalga_source import SERVER_GO_MOD, SOURCE  # noqa: E402
from go_build import go, go_build, scratch_go_mod  # noqa: E402
from processes import Process, free_port, start, stop, wait_http  # noqa: E402

from bench.common import MARIADB, database  # noqa: E402

APILOAD = Path(__file__).with_name("apiload") / "main.go"
GO_CACHE = Path(tempfile.gettempdir()) / "cdalga-bench-go"  # Go's build cache, kept between runs
DATABASE = "cdalga_bench"


def missing() -> str | None:
    """Why Dalga cannot be built here, or None when it can."""
    if go() is None:
        return "go is not installed (scripts/setup.sh dev installs golang-go)"
    if not SERVER_GO_MOD.is_file():
        return f"Dalga's source is not at {SOURCE}"
    return None


def build_apiload(scratch: Path) -> Path:
    """bench/apiload/main.go built (standard library only) in `scratch`."""
    return go_build(scratch / "apiload", "module apiload\n\ngo 1.19\n", ".", GO_CACHE, APILOAD)


def build_dalga(scratch: Path) -> Path:
    """Dalga's server (its cmd/dalga) built in `scratch`."""
    go_mod = scratch_go_mod(SERVER_GO_MOD, "dalgabench")
    return go_build(scratch / "dalga", go_mod, "github.com/cenkalti/dalga/v4/cmd/dalga", GO_CACHE)


class Endpoint:
    """A callback endpoint on 127.0.0.1 that answers 200 and counts what it is sent (nothing
    should be: the benched jobs are due 300 s after they are scheduled)."""

    def __init__(self) -> None:
        self.calls = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                endpoint.calls += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def config(table: str, port: int, endpoint: str) -> str:
    """Dalga's config.toml (keys of deps/dalga/config.go) for `table` in the benchmarks'
    database. MariaDB has no `transaction_isolation` variable, hence tx_isolation."""
    url = make_url(MARIADB)
    return f"""[mysql]
host = "{url.host or "127.0.0.1"}"
port = {url.port or 3306}
db = "{DATABASE}"
table = "{table}"
user = "{url.username or "root"}"
password = "{url.password or ""}"
transactionIsolationParamName = "tx_isolation"

[listen]
host = "127.0.0.1"
port = {port}

[endpoint]
baseurl = "{endpoint}"
"""


@contextmanager
def serving(binary: Path) -> Iterator[tuple[str, Process, Endpoint]]:
    """Dalga serving a fresh table of its own (made by its `-create-tables`, dropped after)
    with its callbacks going to an Endpoint; yields its base URL, process and endpoint."""
    work = Path(tempfile.mkdtemp(prefix="dalga-peer-"))
    table = f"bench_dalga_{uuid.uuid4().hex[:8]}"
    port = free_port()
    endpoint = Endpoint()
    (work / "config.toml").write_text(config(table, port, endpoint.url))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALGA_")}  # its env config
    database(DATABASE)
    args = [str(binary), "-config", str(work / "config.toml")]
    subprocess.run([*args, "-create-tables"], env=env, check=True, capture_output=True)
    proc = start(args, env, work, "dalga.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/status", proc)
        yield base, proc, endpoint
    finally:
        stop(proc)
        endpoint.close()
        engine = create_engine(f"{MARIADB}/{DATABASE}")
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS `{table}`, `{table}_instances`"))
        engine.dispose()
