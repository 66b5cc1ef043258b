"""Start and stop real celery-dalga processes for tests; every one is stopped by its PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from celery_dalga.config import Settings


def dalga_env(settings: Settings, broker_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALGA_")}
    env.update({f"DALGA_{k.upper()}": str(v) for k, v in settings.__dict__.items()})
    if broker_url:
        env["DALGA_BROKER_URL"] = broker_url
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start(args: list[str], env: dict[str, str], cwd: Path, log_name: str) -> subprocess.Popen:
    log = open(cwd / log_name, "wb")  # noqa: SIM115 (closed with the process in stop())
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    proc.log_file = log
    proc.log_path = cwd / log_name
    return proc


def celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "celery_dalga", *args]


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
    """Signal the process and wait; kill it if it does not go."""
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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    """Wait until url answers; fail at once, with its log, if proc has died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.log_path.read_text()
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not come up")
