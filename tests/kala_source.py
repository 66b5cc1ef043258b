"""Kala's source (master 4eb4f7a) in the shared folder next to the project
(../shared/kala-4eb4f7a, or DALGA_TEST_SHARED/kala-4eb4f7a), with the modules it needs: tests
build from there, offline, with Debian's golang-go, in scratch modules of their own (the shared
folder stays untouched), Kala's own client package into tests/kala_real/main.go and Kala's
server as a peer. Missing go or the source skips a test, and under CI=true fails it."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from dalga_source import SHARED, missing
from go_build import go, go_build, scratch_go_mod
from processes import Process, free_port, start, wait_http

SOURCE = SHARED / "kala-4eb4f7a"
KALA = SOURCE / "kala"
PROGRAM = Path(__file__).with_name("kala_real") / "main.go"


def kala_go_mod() -> str:
    """The go.mod of a scratch module: kala/go.mod's, with Kala itself required from the
    shared folder."""
    return scratch_go_mod(KALA / "go.mod", "kalascratch") + (
        "\nrequire github.com/ajvb/kala v0.0.0\n\nreplace github.com/ajvb/kala => " + f"{KALA}\n"
    )


def kala_program(basetemp: Path) -> Path:
    """tests/kala_real/main.go built with Kala's client package, once per session."""
    return _build(".", basetemp)


def kala_server(basetemp: Path) -> Path:
    """Kala's server, the peer, built once per session."""
    return _build("github.com/ajvb/kala", basetemp)


@functools.cache
def _build(target: str, basetemp: Path) -> Path:
    """Build `target` (".": the program; else a main package of Kala) offline in a scratch
    module under the session's `basetemp`, with one Go build cache there; returns the binary."""
    if go() is None:
        missing("go is not installed (scripts/setup.sh dev installs golang-go)")
    if not (KALA / "go.mod").is_file():
        missing(f"Kala's source is not at {SOURCE}")
    work = basetemp / ("kala-program" if target == "." else "kala-server")
    program = PROGRAM if target == "." else None
    return go_build(work, kala_go_mod(), target, basetemp / "kala-go", program)


def start_kala(binary: Path, work: Path) -> tuple[Process, str]:
    """Kala's server on a free port of 127.0.0.1 with its BoltDB in `work`; the process (stop it
    with processes.stop) and its base URL."""
    port = free_port()
    args = ["serve", "--interface=127.0.0.1", f"--port={port}", "--jobdb=boltdb"]
    proc = start([str(binary), *args, f"--bolt-path={work}"], dict(os.environ), work, "kala.log")
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/api/v1/stats/", proc)
    return proc, url
