"""Flask app factory and routes: schedule, get, cancel, trigger, pause, list, status."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flask import Flask, jsonify, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from celery_dalga.config import Settings
from celery_dalga.jobs import Job
from celery_dalga.spec import InvalidParameter, check_key, parse_spec
from celery_dalga.store import Store, store_for
from celery_dalga.values import parse_bool
from webapi.openapi import openapi_spec

log = logging.getLogger(__name__)
MAX_PAGE = 1000
JOB_METHODS = {"GET", "PUT", "DELETE", "POST", "PATCH"}


def _iso(instant: datetime | None) -> str | None:
    return instant.isoformat().replace("+00:00", "Z") if instant else None


def job_json(job: Job) -> dict[str, Any]:
    """A job as JSON; interval is whole seconds when it is whole seconds, as in Dalga."""
    interval: int | str | None = job.interval
    if job.interval:
        seconds = job.schedule.interval.whole_seconds()
        interval = seconds if seconds is not None else job.interval
    return {
        "id": job.id,
        "path": job.path,
        "body": job.body,
        "interval": interval,
        "cron": job.cron,
        "schedule": job.repeat,
        "location": job.location,
        "one_off": job.one_off,
        "enabled": job.enabled,
        "running": job.running,
        "next_run": _iso(job.next_run),
        "next_sched": _iso(job.next_sched),
        "triggered_at": _iso(job.triggered_at),
        "success_count": job.success_count,
        "error_count": job.error_count,
        "last_success": _iso(job.last_success),
        "last_attempt": _iso(job.last_attempt),
        "last_error": job.last_error,
        "last_duration": job.last_duration,
    }


def _split(rest: str, max_body: int) -> tuple[str, str]:
    path, _, body = rest.rpartition("/")
    check_key(path, body, max_body)
    return path, body


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParameter(name, f"{raw!r} is not an integer") from None
    if not low <= value <= high:
        raise InvalidParameter(name, f"must be between {low} and {high}")
    return value


def _error(status: int, message: str, **extra: Any):
    return jsonify(error=message, **extra), status


def create_app(settings: Settings, store: Store | None = None) -> Flask:
    """The Flask app serving settings' jobs table."""
    app = Flask(__name__)
    app.url_map.merge_slashes = False
    store = store or store_for(settings)
    not_found = (404, "job not found")

    def job_route(rest: str):
        path, body = _split(rest, settings.max_body)
        if request.method == "PUT":
            params = {**request.args.to_dict(), **request.form.to_dict()}
            job = store.put(parse_spec(path, body, params, settings.max_body))
            log.info("scheduled path=%s body=%s next_run=%s", path, body, _iso(job.next_run))
            return jsonify(job_json(job)), 201
        if request.method == "GET":
            job = store.get(path, body)
            return (jsonify(job_json(job)), 200) if job else _error(*not_found)
        if request.method == "DELETE":
            if not store.delete(path, body):
                return _error(*not_found)
            log.info("cancelled path=%s body=%s", path, body)
            return "", 204
        if request.method == "POST":
            job = store.trigger(path, body)
            if job is None:
                return _error(*not_found)
            log.info("triggered path=%s body=%s", path, body)
            return jsonify(job_json(job)), 200
        return pause_or_resume(path, body)

    def pause_or_resume(path: str, body: str):
        unknown = set(request.args) - {"disable", "enable"}
        if unknown:
            raise InvalidParameter(sorted(unknown)[0], "unknown parameter (use disable or enable)")
        wants = []
        for name in ("disable", "enable"):
            if name in request.args:
                try:
                    if parse_bool(request.args[name]):
                        wants.append(name)
                except ValueError as exc:
                    raise InvalidParameter(name, str(exc)) from None
        if len(wants) != 1:
            raise InvalidParameter("disable", "give exactly one of disable=true or enable=true")
        job = store.set_enabled(path, body, enabled=wants[0] == "enable")
        if job is None:
            return _error(*not_found)
        log.info("%sd path=%s body=%s", wants[0], path, body)
        return jsonify(job_json(job)), 200

    @app.before_request
    def jobs_route():
        """/jobs/{path}/{body}, split by hand: Werkzeug's router cannot match empty segments,
        and an empty path or body deserves a 400 naming it rather than a 404."""
        if request.path.startswith("/jobs/") and request.method in JOB_METHODS:
            return job_route(request.path[len("/jobs/") :])
        return None

    @app.get("/jobs")
    def list_jobs():
        unknown = set(request.args) - {"path", "after", "limit"}
        if unknown:
            raise InvalidParameter(sorted(unknown)[0], "unknown parameter (path, after, limit)")
        limit = _int_arg("limit", 100, 1, MAX_PAGE)
        jobs = store.list(
            path=request.args.get("path"), after=_int_arg("after", 0, 0, 2**63 - 1), limit=limit
        )
        return jsonify(
            jobs=[job_json(j) for j in jobs], next_after=jobs[-1].id if len(jobs) == limit else None
        )

    @app.get("/openapi.json")
    def openapi():
        return jsonify(openapi_spec())

    @app.get("/status")
    def status():
        return jsonify(store.status())

    @app.errorhandler(InvalidParameter)
    def invalid(exc: InvalidParameter):
        return _error(400, str(exc), parameter=exc.parameter)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return _error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(SQLAlchemyError)
    def database_error(exc: SQLAlchemyError):
        log.error("database error on %s %s: %s", request.method, request.path, exc)
        return _error(503, "database unavailable, try again")

    return app
