"""The `dalga` command: create-table, web, run (web + beat + worker in one process)."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from celery_dalga import __version__
from celery_dalga.config import ConfigError, Settings, load_settings, redacted
from celery_dalga.process import store_for
from celery_dalga.store import TableError
from celery_dalga.webprocs import MAX_PROCESSES

log = logging.getLogger("celery_dalga.cli")
# The RabbitMQ-era Dalga's flags (Nov 2014): -mysql-host and so on, read as the sections of
# its config file would be.
LEGACY_FLAGS = {
    "mysql": ("host", "port", "db", "table", "user", "password"),
    "rabbitmq": ("host", "port", "vhost", "exchange", "user", "password"),
    "http": ("host", "port"),
}


def _common(defaults: bool) -> argparse.ArgumentParser:
    """The options every form of the command takes, before or after the subcommand (the
    subcommand's copy leaves a value given before it alone)."""
    keep: dict[str, Any] = {} if defaults else {"default": argparse.SUPPRESS}
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--config",
        "-config",
        "-c",
        metavar="FILE",
        help="celery-dalga's INI ([dalga]) or Dalga's dalga.ini / dalga.toml / dalga.yaml "
        "(default: ./dalga.toml if there is one)",
        **keep,
    )
    p.add_argument(
        "--create-table",
        "-create-table",
        "--create-tables",
        "-create-tables",
        "-t",
        action="store_true",
        help="create the tables and exit (Dalga's spellings)",
        **keep,
    )
    p.add_argument("--host", "-host", help="API listen address (default 127.0.0.1)", **keep)
    p.add_argument("--port", "-port", type=int, help="API port (default 34006)", **keep)
    p.add_argument("--debug", "-debug", "-d", action="store_true", help="log at DEBUG", **keep)
    p.add_argument(
        "--version", "-version", action="version", version=f"dalga (celery-dalga) {__version__}"
    )
    legacy = p.add_argument_group(
        "the RabbitMQ-era Dalga's flags",
        "as its config file's sections; a -rabbitmq-* flag turns on the exchange mode",
    )
    for section, keys in LEGACY_FLAGS.items():
        for key in keys:
            legacy.add_argument(f"-{section}-{key}", dest=f"{section}_{key}", metavar="V", **keep)
    return p


def legacy_flags(args: argparse.Namespace) -> dict[str, dict[str, str]]:
    """The RabbitMQ-era flags given, as config sections: {"mysql": {"host": ...}}."""
    sections: dict[str, dict[str, str]] = {}
    for section, keys in LEGACY_FLAGS.items():
        for key in keys:
            value = getattr(args, f"{section}_{key}", None)
            if value is not None:
                sections.setdefault(section, {})[key] = value
    return sections


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dalga", description=__doc__, parents=[_common(True)])
    options = [_common(False)]
    sub = p.add_subparsers(dest="command")
    sub.add_parser("create-table", parents=options, help="create the tables if they are missing")
    web = sub.add_parser("web", parents=options, help="serve the HTTP API only")
    web.add_argument(
        "--processes",
        type=_process_count,
        default=1,
        help="web processes accepting on one socket, each with its own database connections "
        f"(1 to {MAX_PROCESSES}; default 1)",
    )
    load = sub.add_parser("import", parents=options, help="schedule the jobs of a file")
    load.add_argument("file", help="JSON lines or CSV; - for standard input")
    load.add_argument("--format", choices=["jsonl", "csv"], help="default: from the file name")
    load.add_argument("--batch", type=int, default=5000, help="jobs per transaction")
    call = sub.add_parser(
        "call", parents=options, help="make a job's callback once, now, and print the outcome"
    )
    call.add_argument("path")
    call.add_argument("body")
    call.add_argument("--app", help="the Celery app (module:attribute) whose task a job calls")
    run = sub.add_parser(
        "run", parents=options, help="HTTP API + beat + worker in one process (the default)"
    )
    run.add_argument("--concurrency", type=int, default=8, help="worker threads (default 8)")
    return p


def _process_count(text: str) -> int:
    """--processes: a whole number from 1 to MAX_PROCESSES."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
    if not 1 <= count <= MAX_PROCESSES:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_PROCESSES}")
    return count


def serve_web(settings: Settings, sockets: list[socket.socket] | None = None):
    """A waitress server for the API, created but not yet running, listening on the settings'
    host and port or accepting on `sockets`. The app answers a body over its limit with a 413;
    waitress refuses one far over it before reading it."""
    from waitress import create_server  # type: ignore[attr-defined]

    from webapi import create_app
    from webapi.auth import body_limit

    where: dict[str, Any] = (
        {"sockets": sockets} if sockets else {"host": settings.host, "port": settings.port}
    )
    return create_server(
        create_app(settings),
        **where,
        threads=8,
        ident="dalga",
        max_request_body_size=4 * max(body_limit(settings.max_body), settings.bulk_max_bytes),
    )


def serve_processes(settings: Settings, count: int) -> int:
    """`dalga web --processes N`: bind the socket, then serve from N processes (webprocs)."""
    from celery_dalga.webprocs import listen, serve

    try:
        sock = listen(settings.host, settings.port)
    except OSError as exc:
        where = f"{settings.host}:{settings.port}"
        print(f"dalga: cannot listen on {where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    serve(settings, count, sock)
    return 0


def run_server(server: Any) -> None:
    """Serve until SIGTERM (as KeyboardInterrupt) or Ctrl-C, then close the server."""
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def run_all(settings: Settings, concurrency: int) -> None:
    """Web API and beat in threads, the Celery worker (threads pool) in the main thread."""
    from celery import beat

    from celery_dalga.celery import make_app
    from celery_dalga.process import instance_for
    from celery_dalga.scheduler import Scheduler

    instance_for(settings, "run")  # one instance: the API, beat and worker in one process
    app = make_app(settings)
    server = serve_web(settings)
    service = beat.Service(app, scheduler_cls=Scheduler, max_interval=settings.max_interval)
    threads = [
        threading.Thread(target=server.run, name="dalga-web", daemon=True),
        threading.Thread(target=service.start, name="dalga-beat", daemon=True),
    ]
    for thread in threads:
        thread.start()
    log.info("API listening on http://%s:%s/", settings.host, settings.port)
    try:
        app.Worker(
            pool="threads",
            concurrency=concurrency,
            loglevel="INFO",
            hostname=f"dalga@{settings.host}-{settings.port}",
        ).start()
    finally:
        service.stop()
        server.close()
        threads[1].join(timeout=5)
        log.info("stopped")


def import_file(settings: Settings, name: str, fmt: str | None, batch: int) -> int:
    """`dalga import`: schedule every job of the file, with a progress bar on stderr."""
    from celery_dalga.bulk import BadRecord, import_jobs
    from celery_dalga.client import Client

    fmt = fmt or ("csv" if name.endswith(".csv") else "jsonl")
    stream = sys.stdin if name == "-" else open(name, encoding="utf-8", newline="")  # noqa: SIM115
    try:
        written = import_jobs(Client(settings), stream, fmt, batch)
    except BadRecord as exc:
        print(f"dalga import: {exc}; the batches before it were written", file=sys.stderr)
        return 2
    finally:
        stream.close()
    print(f"imported {written} jobs into table {settings.table!r}")
    return 0


def call_once(settings: Settings, path: str, body: str, app_name: str | None) -> int:
    """`dalga call`, as `kala run`: the job's callback (by its kind: POST, publish, task...;
    POST when there is no such job) made once, now, outside the schedule; prints the outcome
    and exits 0 when it was delivered. The job itself is not changed."""
    from datetime import UTC, datetime

    from celery.utils.imports import symbol_by_name

    from celery_dalga import kinds
    from celery_dalga.jobs import Run, job_key

    job = store_for(settings).get(path, body)
    now = datetime.now(UTC)
    if job is None:
        run = Run(0, job_key(path, body), path, body, now, "call", True)
    else:
        run = job.run(now, "call", manual=True)
    app = symbol_by_name(app_name) if app_name else None
    try:
        kind = kinds.kind_of(run, settings)
    except kinds.UnknownKind as exc:
        print(f"failed: {exc}")
        return 1
    (result,) = kind.deliver(settings, [run], 0, app)
    delivered = result.delivery is kinds.Delivery.DELIVERED
    print(f"{'delivered' if delivered else 'failed'}: {result.detail} in {result.seconds:.3f} s")
    return 0 if delivered else 1


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        settings = load_settings(args.config, overrides=overrides, flags=legacy_flags(args))
        log.debug("settings %s", redacted(settings))
        log.info(
            "jobs in %s, table %r",
            redacted(settings)["database_url"],
            settings.table,
        )
        store = store_for(settings)
        if args.create_table or args.command in ("create-table", "run", None):
            store.create_table()
        else:  # web, import and call use the tables `dalga create-table` made
            store.check_table()
    except (ConfigError, TableError) as exc:
        print(f"dalga: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        url = redacted(settings)["database_url"]
        print(
            f"dalga: cannot use the database {url}: {getattr(exc, 'orig', None) or exc}",
            file=sys.stderr,
        )
        return 2
    if args.create_table or args.command == "create-table":
        print(f"table {settings.table!r} is ready")
        return 0
    if args.command == "import":
        return import_file(settings, args.file, args.format, args.batch)
    if args.command == "call":
        return call_once(settings, args.path, args.body, args.app)
    if args.command == "web":
        signal.signal(signal.SIGTERM, _interrupt)
        if args.processes > 1:
            return serve_processes(settings, args.processes)
        server = serve_web(settings)
        log.info("API listening on http://%s:%s/", settings.host, settings.port)
        run_server(server)
        return 0
    run_all(settings, getattr(args, "concurrency", 8))
    return 0


if __name__ == "__main__":
    sys.exit(main())
