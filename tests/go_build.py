"""Offline Go builds in scratch modules, with Debian's golang-go: the module proxy is not
reachable and the shared source folders stay untouched, so each program gets a module of its own
in a scratch folder whose go.mod copies the require and replace lines of the program's, with the
replace paths made absolute. Used by the tests (Dalga's and Kala's clients and servers) and by
the benchmarks (Dalga's server, bench/apiload)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

OFFLINE = {
    "GOFLAGS": "-mod=mod",
    "GOPROXY": "off",
    "GOSUMDB": "off",
    "GOTOOLCHAIN": "local",
    "GOWORK": "off",
}


def go() -> str | None:
    """The go command, or None when Go is not installed."""
    return shutil.which("go")


def scratch_go_mod(go_mod: Path, module: str) -> str:
    """`go_mod`'s text for a scratch module named `module`: its `=> ../` replace paths made
    absolute (relative to the folder above go_mod's) and a Go version that has generics."""
    text = go_mod.read_text().replace("=> ../", f"=> {go_mod.parent.parent}/")
    text = re.sub(r"^module .*$", f"module {module}", text, count=1, flags=re.M)
    return re.sub(r"^go 1\.\d+$", "go 1.19", text, count=1, flags=re.M)


def go_build(
    work: Path, go_mod: str, target: str, cache: Path, program: Path | None = None
) -> Path:
    """Build `target` ("." or a main package's import path) offline in the scratch module
    `work` (created, with `go_mod` and `program` as its main.go when given), Go's build cache
    and GOPATH under `cache`; returns the binary. Raises RuntimeError with Go's output."""
    command = go()
    if command is None:
        raise RuntimeError("go is not installed (scripts/setup.sh dev installs golang-go)")
    work.mkdir(parents=True)
    (work / "go.mod").write_text(go_mod)
    if program is not None:
        shutil.copy(program, work / "main.go")
    env = {**os.environ, **OFFLINE, "GOCACHE": str(cache / "cache"), "GOPATH": str(cache / "path")}
    built = work / "bin"
    done = subprocess.run(
        [command, "build", "-o", str(built), target],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"go build {target} failed:\n{done.stdout}{done.stderr}")
    return built
