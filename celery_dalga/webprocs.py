"""`dalga web --processes N`: N waitress servers in forked processes, all accepting on the one
socket the parent bound, each with its own engine, pool and instance (celery_dalga.process).
The parent serves nothing: it starts another process when one dies, and stops them all on
SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

from celery_dalga import process
from celery_dalga.config import Settings

log = logging.getLogger(__name__)

MAX_PROCESSES = 64
BACKLOG = 1024  # waitress's own
QUICK_DEATH = 2.0  # seconds: a process that died this young is started again after a pause


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port and listening, as waitress would bind it."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def serve(settings: Settings, count: int, sock: socket.socket) -> None:
    """Serve the API from `count` processes accepting on `sock` (listen()'s) until SIGTERM or
    Ctrl-C (KeyboardInterrupt)."""
    process.store_for(settings).engine.dispose()  # no connection of the parent's is forked
    context = multiprocessing.get_context("fork")
    children = [_start(context, settings, sock) for _ in range(count)]
    started = {child.pid: time.monotonic() for child in children}
    log.info("API listening on http://%s:%s/ (%d processes)", settings.host, settings.port, count)
    try:
        while True:
            wait([child.sentinel for child in children])
            for i, child in enumerate(children):
                if child.is_alive():
                    continue
                log.warning(
                    "web process %s exited (%s), starting another", child.pid, child.exitcode
                )
                if time.monotonic() - started.pop(child.pid, 0.0) < QUICK_DEATH:
                    time.sleep(QUICK_DEATH)
                children[i] = _start(context, settings, sock)
                started[children[i].pid] = time.monotonic()
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.join(10)
            if child.is_alive():
                child.kill()
        sock.close()


def _start(context: Any, settings: Settings, sock: socket.socket) -> BaseProcess:
    child = context.Process(target=_child, args=(settings, sock), name="dalga-web", daemon=True)
    child.start()
    return child


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _child(settings: Settings, sock: socket.socket) -> None:
    """One web process: its own connections and instance, a waitress server on `sock`."""
    from celery_dalga.cli import run_server, serve_web

    process.reset_after_fork()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        run_server(serve_web(settings, sockets=[sock]))
    finally:
        process.stop()  # a multiprocessing child runs no atexit hooks
