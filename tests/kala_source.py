"""Kala's source (master 4eb4f7a) in the shared folder next to the project
(../shared/kala-4eb4f7a, or DALGA_TEST_SHARED/kala-4eb4f7a), with the modules it needs: tests
build from there, offline, with Debian's golang-go, in scratch modules of their own (the shared
folder stays untouched), Kala's own client package into tests/kala_real/main.go and Kala's
server as a peer. Missing go or the source skips a test, and under CI=true fails it."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from dalga_source import SHARED, missing
from processes import Process, free_port, start, wait_http

SOURCE = SHARED / "kala-4eb4f7a"
KALA = SOURCE / "kala"
PROGRAM = Path(__file__).with_name("kala_real") / "main.go"


def scratch_go_mod() -> str:
    """The go.mod of a scratch module: kala/go.mod's require and replace lines
    with the replace paths made absolute, Kala itself required from the shared folder, and a
    Go version that has generics."""
    text = (KALA / "go.mod").read_text()
    text = text.replace("=> ../deps/", f"=> {SOURCE}/deps/")
    text = re.sub(r"^module .*$", "module kalascratch", text, count=1, flags=re.M)
    text = re.sub(r"^go 1\.\d+$", "go 1.19", text, count=1, flags=re.M)
    return text + (
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
    go = shutil.which("go")
    if go is None:
        missing("go is not installed (scripts/setup.sh dev installs golang-go)")
    if not (KALA / "go.mod").is_file():
        missing(f"Kala's source is not at {SOURCE}")
    work = basetemp / ("kala-program" if target == "." else "kala-server")
    work.mkdir()
    (work / "go.mod").write_text(scratch_go_mod())
    if target == ".":
        (work / "main.go").write_text(PROGRAM.read_text())
    env = {
        **os.environ,
        "GOCACHE": str(basetemp / "kala-gocache"),
        "GOPATH": str(basetemp / "kala-gopath"),
        "GOFLAGS": "-mod=mod",
        "GOPROXY": "off",
        "GOSUMDB": "off",
        "GOTOOLCHAIN": "local",
        "GOWORK": "off",
    }
    built = work / "bin"
    done = subprocess.run(
        [go, "build", "-o", str(built), target], cwd=work, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, f"go build {target} failed:\n{done.stdout}{done.stderr}"
    return built


def start_kala(binary: Path, work: Path) -> tuple[Process, str]:
    """Kala's server on a free port of 127.0.0.1 with its BoltDB in `work`; the process (stop it
    with processes.stop) and its base URL."""
    port = free_port()
    args = ["serve", "--interface=127.0.0.1", f"--port={port}", "--jobdb=boltdb"]
    proc = start([str(binary), *args, f"--bolt-path={work}"], dict(os.environ), work, "kala.log")
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/api/v1/stats/", proc)
    return proc, url
