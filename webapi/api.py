"""Dalga's HTTP interface as a Flask Blueprint: PUT, GET, DELETE, POST (trigger) and PATCH
(pause, resume) on /jobs/{path}/{body}, the listing, Kala's runs and stats, the 2013 Dalga's
/schedule and /cancel, /status, /metrics and /openapi.json. The views call the app's Client
(webapi.context)."""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote_plus

from flask import Blueprint, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.routing import PathConverter

from celery_dalga import metrics
from celery_dalga.bulk import BadRecord, TooManyRecords, put_lines
from celery_dalga.client import Client, JobExists
from celery_dalga.kala import kala_stats
from celery_dalga.spec import InvalidParameter, check_key, reject_unknown
from celery_dalga.values import parse_bool, shown
from celery_dalga.wire import SORTS, Cursor, attempt_json, instant, job_json
from webapi.context import dalga
from webapi.errors import json_error, short
from webapi.openapi import openapi_spec

log = logging.getLogger(__name__)
MAX_PAGE = 1000
JSON_LINES = ("application/x-ndjson", "application/jsonl")  # what PUT /jobs takes
BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")

api = Blueprint("api", __name__)


class AnyPath(PathConverter):
    """{path}/{body} after /jobs/, empty segments included: an empty path or body deserves
    a 400 naming it rather than a 404."""

    regex = r"[\s\S]*"  # CR and LF too: a path holding them gets its 400
    part_isolating = False


def _unescape(name: str, segment: str) -> str:
    """A path segment decoded a second time, as Dalga does (Go's url.QueryUnescape: `+` is a
    space, `%xx` a byte; a `%` that starts no escape is an error)."""
    if BAD_ESCAPE.search(segment):
        raise InvalidParameter(name, f"{shown(segment)} has a % that starts no %XX escape")
    return unquote_plus(segment, errors="strict")


def _split(rest: str, max_body: int) -> tuple[str, str]:
    """{path}/{body} from what follows /jobs/: the body is the last segment, the path the rest
    (so a path may hold slashes); each is URL-decoded once more, as Dalga does."""
    raw_path, _, raw_body = rest.rpartition("/")
    try:
        path, body = _unescape("path", raw_path), _unescape("body", raw_body)
    except UnicodeDecodeError:
        raise InvalidParameter("body", "escapes that are not UTF-8") from None
    check_key(path, body, max_body)
    return path, body


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParameter(name, f"{shown(raw)} is not an integer") from None
    if not low <= value <= high:
        raise InvalidParameter(name, f"must be between {low} and {high}")
    return value


def _bool_arg(name: str) -> bool:
    raw = request.args.get(name)
    if raw is None:
        return False
    try:
        return parse_bool(raw)
    except ValueError as exc:
        raise InvalidParameter(name, str(exc)) from None


def _reject_unknown(known: list[str]) -> None:
    """A 400 naming the first query or form parameter that is not one of `known`."""
    reject_unknown(set(request.args) | set(request.form), known)


@api.route("/jobs/<anypath:rest>", methods=["GET", "PUT", "DELETE", "POST", "PATCH"])
def job_route(rest: str) -> Any:
    client = dalga().client
    path, body = _split(rest, client.settings.max_body)
    if request.method == "PUT":
        params = {**request.args.to_dict(), **request.form.to_dict()}
        try:
            job = client.put(path, body, params)
        except JobExists as exists:
            return json_error(409, str(exists), job=job_json(exists.job))
        log.info("scheduled path=%s next_run=%s", path, instant(job.next_run))
        return jsonify(job_json(job)), 201
    if request.method in ("GET", "HEAD"):  # HEAD reads, whatever its query says
        found = client.get(path, body)
        return (jsonify(job_json(found)), 200) if found else json_error(404, "job not found")
    if request.method == "DELETE":  # 204 for a job that was not there too, as in Dalga
        if client.cancel(path, body):
            log.info("cancelled path=%s", path)
        return "", 204
    if request.method == "POST":
        given = sorted(set(request.args) | set(request.form))
        if given:
            raise InvalidParameter(
                given[0],
                "POST runs the job once, now, and takes no parameters; PUT schedules "
                "(the RabbitMQ-era Dalga's POST ?interval= changed the interval)",
            )
        job = client.trigger(path, body)
        log.info("triggered path=%s", path)
        return jsonify(job_json(job)), 200
    return _pause_or_resume(client, path, body)  # PATCH, the one method left


def _pause_or_resume(client: Client, path: str, body: str) -> Any:
    _reject_unknown(["disable", "enable"])
    wants = [name for name in ("disable", "enable") if _bool_arg(name)]
    if len(wants) != 1:
        raise InvalidParameter("disable", "give exactly one of disable=true or enable=true")
    job = client.resume(path, body) if wants == ["enable"] else client.pause(path, body)
    log.info("%sd path=%s", wants[0], path)
    return jsonify(job_json(job)), 200


@api.route("/schedule", methods=["GET", "POST", "PUT"])
def legacy_schedule() -> Any:
    """The 2013 Dalga's /schedule?routing_key=&body=&interval= (query or form): PUT
    /jobs/{routing_key}/{body}?interval=; 200 with the job."""
    path, body = _legacy_key(["routing_key", "body", "interval"])
    interval = {k: v for k, v in request.values.items() if k == "interval"}
    job = dalga().client.put(path, body, interval)
    log.info("scheduled path=%s next_run=%s (/schedule)", path, instant(job.next_run))
    return jsonify(job_json(job)), 200


@api.route("/cancel", methods=["GET", "POST", "PUT", "DELETE"])
def legacy_cancel() -> Any:
    """The 2013 Dalga's /cancel?routing_key=&body=: DELETE /jobs/{routing_key}/{body};
    200 with an empty body, also when there was no such job."""
    path, body = _legacy_key(["routing_key", "body"])
    if dalga().client.cancel(path, body):
        log.info("cancelled path=%s (/cancel)", path)
    return "", 200


def _legacy_key(known: list[str]) -> tuple[str, str]:
    """The path (routing_key) and body of a 2013 route; a GET, which that Dalga took too,
    is a 405 here: nothing is written on a GET (a read token or a link could do it)."""
    if request.method in ("GET", "HEAD"):
        raise MethodNotAllowed(
            ["POST", "PUT"], f"{request.path} writes: use POST or PUT (GET never writes here)"
        )
    _reject_unknown(known)
    for name in ("routing_key", "body"):
        if not request.values.get(name):
            raise InvalidParameter(name, "must be given, not empty")
    return request.values["routing_key"], request.values["body"]


@api.get("/jobs/<anypath:rest>/runs")
def history(rest: str) -> Any:
    """The job's last attempts, newest first (Kala's history)."""
    client = dalga().client
    path, body = _split(rest, client.settings.max_body)
    return jsonify(runs=[attempt_json(a) for a in client.history(path, body)])


@api.get("/jobs/<anypath:rest>/stats")
def job_stats(rest: str) -> Any:
    """Kala's per-job stats."""
    client = dalga().client
    return jsonify(job_stats=client.stats(*_split(rest, client.settings.max_body)))


@api.delete("/jobs")
def delete_all() -> Any:
    """Every job, with ?confirm=all (Kala's DELETE /api/v1/job/all/)."""
    _reject_unknown(["confirm"])
    if request.args.get("confirm") != "all":
        raise InvalidParameter("confirm", "say confirm=all to delete every job")
    deleted = dalga().client.cancel_all()
    log.warning("deleted all %d jobs", deleted)
    return jsonify(deleted=deleted), 200


@api.put("/jobs")
def bulk_put() -> Any:
    """Many jobs in one request: a JSON-lines body of `dalga import`'s records, each checked
    as PUT checks it, written in one transaction (all or nothing); 200 {"jobs": N}."""
    if request.mimetype not in JSON_LINES:
        return json_error(415, f"PUT /jobs takes JSON lines: Content-Type {JSON_LINES[0]}")
    if request.mimetype_params.get("charset", "utf-8").lower() not in ("utf-8", "utf8"):
        return json_error(415, "PUT /jobs takes JSON lines in UTF-8 only")
    if request.args:
        name = sorted(request.args)[0]
        raise InvalidParameter(name, "PUT /jobs takes parameters in its records, not the query")
    client = dalga().client
    try:
        count = put_lines(client, request.get_data(cache=False), client.settings.bulk_max_jobs)
    except TooManyRecords as exc:
        return json_error(413, str(exc))
    except BadRecord as exc:
        named = {"parameter": short(exc.parameter)} if exc.parameter else {}
        return json_error(400, str(exc), line=exc.line, **named)
    log.info("scheduled %d jobs (bulk)", count)
    return jsonify(jobs=count), 200


@api.get("/stats")
def app_stats() -> Any:
    """Kala's app-wide stats (/api/v1/stats)."""
    return jsonify(kala_stats(_status()))


def _listing(
    path: str | None, sort_by: str, reverse: bool, after: tuple | None, limit: int
) -> Response:
    """A page and the cursor of the page after it (empty when this page is empty, as in
    Dalga), and `next_after` for the plain id cursor of celery-dalga's listing."""
    limit = min(max(limit, 1), MAX_PAGE)
    page = dalga().client.list(path, sort_by, reverse, limit, after=after)
    jobs = page.jobs
    full = len(jobs) == limit and sort_by == "insert-order" and not reverse
    return jsonify(
        cursor=page.cursor,
        jobs=[job_json(j) for j in jobs],
        next_after=jobs[-1].id if full else None,
    )


@api.get("/jobs")
def list_jobs() -> Any:
    """Dalga's listing (path, empty for every path; sort-by, reverse, limit: 0 is the
    largest page) and celery-dalga's keyset (after: the id of the last job seen). With a
    cursor, the page after it, as Dalga's client's ListContinue asks for it."""
    if "cursor" in request.args:
        return continue_listing()
    _reject_unknown(["path", "sort-by", "reverse", "limit", "after", "cursor"])
    sort_by = request.args.get("sort-by") or "insert-order"
    if sort_by not in SORTS:
        known = ", ".join(SORTS)
        raise InvalidParameter("sort-by", f"{shown(sort_by)} is not one of {known}")
    after = _int_arg("after", 0, 0, 2**63 - 1)
    if after and sort_by != "insert-order":
        raise InvalidParameter("after", "goes with insert-order; use the cursor")
    limit = _int_arg("limit", 100, 0, 2**31) or MAX_PAGE
    return _listing(
        request.args.get("path") or None,
        sort_by,
        _bool_arg("reverse"),
        (after,) if after else None,
        limit,
    )


@api.get("/jobs/continue")
def continue_listing() -> Any:
    """The page after a cursor, in the cursor's path, order and limit (Dalga's); also
    GET /jobs?cursor=..."""
    _reject_unknown(["cursor"])
    cursor = Cursor.decode(request.args.get("cursor", ""))
    return _listing(cursor.path, cursor.sort_by, cursor.reverse, cursor.last, cursor.limit)


@api.get("/openapi.json")
def openapi() -> Any:
    return jsonify(openapi_spec())


@api.get("/metrics")
def prometheus() -> Response:
    """This process's metrics (all of `dalga run`'s) and the jobs table's gauges."""
    text = generate_latest(metrics.registry()) + generate_latest(dalga().gauges)
    return Response(text, content_type=CONTENT_TYPE_LATEST)


@api.get("/status")
def status() -> Any:
    return jsonify(_status())


def _status() -> dict[str, Any]:
    """The status as this app's instance, its counts cached (store.status.CachedStatus)."""
    return dalga().status()
