"""Real processes for tests, faults and benchmarks: started with their output in a log file,
awaited until they serve, and every one stopped by its PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import requests
from waiting import wait_until

from celery_dalga.config import Settings


class Process(subprocess.Popen):
    """A child process whose stdout and stderr go to the file `log_path`."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.log_path = log_path
        self.log_file = log_path.open("wb")
        super().__init__(args, env=env, cwd=cwd, stdout=self.log_file, stderr=subprocess.STDOUT)

    def log(self) -> str:
        """What the process has written so far."""
        return self.log_path.read_text(errors="replace")


def dalga_env(settings: Settings, broker_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment that gives a celery-dalga process exactly these settings: this
    process's, without any DALGA_* it inherited (nor so another config file), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALGA_")}
    env.update({f"DALGA_{k.upper()}": str(v) for k, v in vars(settings).items()})
    if broker_url:
        env["DALGA_BROKER_URL"] = broker_url
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def celery(*args: str) -> list[str]:
    """The command line of `celery -A celery_dalga ARGS` on this Python."""
    return [sys.executable, "-m", "celery", "-A", "celery_dalga", *args]


def start(args: list[str], env: dict[str, str], cwd: Path, log: str | Path) -> Process:
    """Start `args` in `cwd`, its output going to `log` (a path relative to cwd, or absolute)."""
    return Process(args, env, cwd, cwd / log)


def stop(proc: Process, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
    """Signal the process and wait; kill it if it does not go. Returns its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    proc.log_file.close()
    return proc.returncode


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    """Wait until something accepts connections on 127.0.0.1:port."""

    def accepts() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_until(accepts, timeout, f"nothing listens on 127.0.0.1:{port}", every=0.2)


def wait_http(url: str, proc: Process | None = None, timeout: float = 30) -> None:
    """Wait until `url` answers (any status); fail at once, with its log, if `proc` dies."""

    def answers() -> bool:
        assert proc is None or proc.poll() is None, proc and proc.log()
        try:
            requests.get(url, timeout=1)
        except requests.ConnectionError:
            return False
        return True

    wait_until(answers, timeout, f"{url} did not come up", every=0.2)
