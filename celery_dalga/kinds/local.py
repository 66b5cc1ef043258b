"""The local kind, Kala's local job (type 0) and go-quartz's ShellJob: run the job's command
in the worker, as the worker's user. Off unless the local_jobs setting is on (PUT refuses the
job, and a worker with it off fails the run without running it). The command is split as a
shell would split it (shlex.split) but runs without one: no $VAR, backtick or glob expansion,
no pipes. Exit status 0 delivers; the start of its output (stdout and stderr) is the result's
detail. It runs at most callback_timeout seconds, then it and its process group are killed."""

from __future__ import annotations

import math
import os
import selectors
import shlex
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery_dalga import process
from celery_dalga.config import Settings
from celery_dalga.jobs import Run
from celery_dalga.kinds.base import Delivery, Kind, Result, own_options, register
from celery_dalga.spec import InvalidParameter, JobSpec
from celery_dalga.values import shown

MAX_COMMAND = 4096  # characters of a command
SHOWN_OUTPUT = 1000  # bytes of a command's output that its result shows
READ_SIZE = 65536
OFF = "local jobs are off: the local_jobs setting (DALGA_LOCAL_JOBS) turns them on"


def argv(options: dict[str, Any]) -> list[str]:
    """The command's arguments; InvalidParameter("options", why) for a command that cannot
    run."""
    if set(options) != {"command"}:
        raise InvalidParameter("options", 'the local kind takes {"command": <a command line>}')
    command = options["command"]
    if not isinstance(command, str) or not command.strip():
        raise InvalidParameter("options", "command must be a command line")
    if len(command) > MAX_COMMAND or "\x00" in command:
        raise InvalidParameter(
            "options", f"command must be at most {MAX_COMMAND} characters, without NUL"
        )
    try:
        return shlex.split(command)
    except ValueError as exc:  # an unbalanced quote
        raise InvalidParameter("options", f"command {shown(command)}: {exc}") from None


def run_command(args: list[str], timeout: float, start_by: float) -> Result:
    """Run the command without a shell, stdin closed, for at most `timeout` seconds (then it
    and its process group are killed); not started after `start_by` (time.monotonic())."""
    started = time.monotonic()
    if started > start_by:
        return Result(Delivery.NOT_SENT, "not run: no room before the lease's end", 0.0, started)
    try:
        child = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as one
        )
    except OSError as exc:
        return Result.since(started, Delivery.FAILED, f"cannot run {shown(args[0])}: {exc}")
    output, finished = _read(child, started + timeout)
    if finished:
        try:
            child.wait(max(0.0, started + timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            finished = False
    if not finished:
        _kill(child)
    text = output.decode(errors="replace").strip()
    shown_output = f": {text}" if text else ""
    if not finished:
        why = f"killed after {timeout:g} s{shown_output}"
        return Result.since(started, Delivery.FAILED, why)
    code = child.returncode
    delivery = Delivery.DELIVERED if code == 0 else Delivery.FAILED
    return Result.since(started, delivery, f"exit status {code}{shown_output}")


def _read(child: subprocess.Popen[bytes], deadline: float) -> tuple[bytes, bool]:
    """The start of the child's output, read until it closes it or the deadline (then the
    bool is False); the rest is read and dropped, so a chatty command does not block."""
    assert child.stdout is not None
    kept = bytearray()
    with child.stdout as out, selectors.DefaultSelector() as selector:
        selector.register(out, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not selector.select(left):
                continue
            chunk = os.read(out.fileno(), READ_SIZE)
            if not chunk:
                return bytes(kept), True
            kept += chunk[: SHOWN_OUTPUT - len(kept)]
    return bytes(kept), False


def _kill(child: subprocess.Popen[bytes]) -> None:
    """Kill the child's process group (it and whatever it started), and reap it."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()


class Local(Kind):
    """Run the job's command in the worker."""

    name = "local"

    def validate(self, spec: JobSpec, settings: Settings) -> None:
        """Local jobs must be on, and the command a command line (argv)."""
        if not settings.local_jobs:
            raise InvalidParameter("kind", OFF)
        argv(spec.options or {})

    def deliver(
        self,
        settings: Settings,
        runs: list[Run],
        instance_id: int,
        app: Any,
        start_by: float = math.inf,
    ) -> list[Result]:
        """Run the commands at once, at most callback_concurrency at a time; one whose turn
        comes after `start_by` is not run."""
        if not settings.local_jobs:
            return [Result.refused(OFF) for _ in runs]
        pool = _pool(settings.callback_concurrency)
        calls: list[Any] = []
        for run in runs:
            try:
                args = argv(own_options(run.options))
            except InvalidParameter as exc:
                calls.append(Result.refused(str(exc).partition(": ")[2]))
                continue
            calls.append(pool.submit(run_command, args, settings.callback_timeout, start_by))
        return [call if isinstance(call, Result) else call.result() for call in calls]


def _pool(size: int) -> ThreadPoolExecutor:
    """This process's threads for local jobs (celery_dalga.process keeps them)."""
    return process.per_process(
        ("local pool", size), lambda: ThreadPoolExecutor(size, thread_name_prefix="dalga-local")
    )


register(Local())
