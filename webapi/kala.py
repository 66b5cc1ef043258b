"""Kala's HTTP API (its api/api.go) as a Flask Blueprint under /api/v1, on the same jobs as
Dalga's routes: a Kala job is the job (kala, <its id>) of kind remote (type 1) or local
(type 0), with Kala's other fields in its options. Every route answers with and without its
trailing slash; errors are Kala's {"error": ...}, naming the field that is wrong. The views
call the app's Client (webapi.context), so a Kala job passes the checks of every job."""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from celery_dalga.client import JobNotFound
from celery_dalga.jobs import Job, job_key
from celery_dalga.kala import (
    KALA_ID,
    KALA_KEY,
    KALA_PATH,
    kala_app_stats,
    kala_field,
    kala_id,
    kala_job_json,
    kala_run_stats,
    read_kala_job,
)
from celery_dalga.spec import InvalidParameter
from webapi.context import dalga
from webapi.errors import json_error

log = logging.getLogger(__name__)
PAGE = 1000  # jobs read a query when listing them all
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")

kala = Blueprint("kala", __name__)


@kala.errorhandler(InvalidParameter)
def invalid(exc: InvalidParameter) -> Response:
    """Kala's error shape, the message naming the field."""
    return json_error(400, str(exc))


@kala.errorhandler(JobNotFound)
def not_found(exc: JobNotFound) -> Response:
    return json_error(404, str(exc))


@kala.url_value_preprocessor
def keep_the_body(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """Keep the raw body before anything parses it as a form: curl -d (Kala's README)
    sends the JSON as application/x-www-form-urlencoded. Runs before every before_request
    (the Guard's too), so only a body within the size limit is read."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    size = request.content_length
    if request.mimetype in FORMS and size is not None and (limit is None or size <= limit):
        request.get_data(cache=True, parse_form_data=False)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


@kala.post("/job/", strict_slashes=False)
def create() -> Any:
    """Create a job from Kala's job JSON: 201 {"id": ...}. Its parents and on-failure job
    must exist (nothing is stored otherwise); it is written through the one scheduling path."""
    try:
        document = json.loads(request.get_data(), parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidParameter("job", f"the request body is not JSON ({exc})") from None
    client = dalga().client
    wanted = read_kala_job(document, client.store.now())
    named = [("parent_jobs", parent) for parent in wanted.parents]
    if wanted.on_failure:
        named.append(("on_failure_job", wanted.on_failure))
    for field, other in named:
        if client.get(KALA_PATH, other) is None:
            raise InvalidParameter(field, f"no Kala job {other}")
    new, kind = kala_id(), wanted.params["kind"]
    try:
        client.put(KALA_PATH, new, wanted.params)
        several = wanted.parents if len(wanted.parents) > 1 else []
        failure = wanted.on_failure
        client.store.link(
            job_key(KALA_PATH, new),
            [job_key(KALA_PATH, p) for p in several],
            job_key(KALA_PATH, failure) if failure else None,
        )
    except InvalidParameter as exc:
        client.cancel(KALA_PATH, new)  # a link refused: the job goes too
        message = str(exc).partition(": ")[2]
        raise InvalidParameter(kala_field(exc.parameter, kind), message) from None
    if wanted.disabled:
        client.pause(KALA_PATH, new)
    log.info("kala job created id=%s kind=%s", new, kind)
    return jsonify(id=new), 201


@kala.get("/job/", strict_slashes=False)
def list_jobs() -> Any:
    """Every Kala job: {"jobs": {id: job}}."""
    client = dalga().client
    jobs: dict[str, Any] = {}
    after: tuple[Any, ...] | None = None
    while page := client.list(KALA_PATH, limit=PAGE, after=after).jobs:
        jobs.update(_as_kala(page))
        after = (page[-1].id,)
    return jsonify(jobs=jobs)


@kala.route("/job/<job_id>/", methods=["GET", "DELETE"], strict_slashes=False)
def job_route(job_id: str) -> Any:
    """GET: {"job": job}; DELETE: 204 (with the children it leaves without a parent)."""
    job = _found(job_id)
    if request.method == "DELETE":
        if not dalga().client.cancel(KALA_PATH, job.body):
            raise JobNotFound(f"no Kala job {job.body}")
        log.info("kala job deleted id=%s", job.body)
        return "", 204
    return jsonify(job=_as_kala([job])[job.body])


@kala.delete("/job/all/", strict_slashes=False)
def delete_all() -> Any:
    """Every Kala job (path kala), not Dalga's: 204."""
    deleted = dalga().client.store.delete_path(KALA_PATH)
    log.warning("deleted all %d kala jobs", deleted)
    return "", 204


@kala.get("/job/stats/<job_id>/", strict_slashes=False)
def job_stats(job_id: str) -> Any:
    """{"job_stats": [...]}: a JobStat per run of the job's history (kept after a finished
    job is gone)."""
    client = dalga().client
    job_id = job_id.lower()
    history = client.history(KALA_PATH, job_id) if KALA_ID.match(job_id) else []
    if not history:
        _found(job_id)
    return jsonify(job_stats=kala_run_stats(job_id, history))


@kala.post("/job/start/<job_id>/", strict_slashes=False)
def start(job_id: str) -> Any:
    """Run the job once, now: 204 once the run is due (it runs on a worker, one at a time)."""
    dalga().client.trigger(KALA_PATH, _found(job_id).body)
    log.info("kala job started id=%s", job_id)
    return "", 204


@kala.post("/job/disable/<job_id>/", strict_slashes=False)
def disable(job_id: str) -> Any:
    dalga().client.pause(KALA_PATH, _found(job_id).body)
    log.info("kala job disabled id=%s", job_id)
    return "", 204


@kala.post("/job/enable/<job_id>/", strict_slashes=False)
def enable(job_id: str) -> Any:
    """Resume the job: a slot missed meanwhile runs at once, or with
    resume_at_next_scheduled_time the job waits for its next slot."""
    job = _found(job_id)
    wait = bool(((job.options or {}).get(KALA_KEY) or {}).get("resume_at_next_scheduled_time"))
    dalga().client.resume(KALA_PATH, job.body, skip_missed=wait)
    log.info("kala job enabled id=%s", job_id)
    return "", 204


@kala.get("/stats/", strict_slashes=False)
def app_stats() -> Any:
    """{"Stats": {...}} over every job of the table, counted now: Kala's client reads them
    right after its writes (/status and /metrics answer from a count a period old)."""
    return jsonify(kala_app_stats(dalga().client.status(dalga().instance.id)))


def _found(job_id: str) -> Job:
    """The Kala job with this id; JobNotFound (404) for anything else."""
    job_id = job_id.lower()
    job = dalga().client.get(KALA_PATH, job_id) if KALA_ID.match(job_id) else None
    if job is None:
        raise JobNotFound(f"no Kala job {job_id[:40]!r}")
    return job


def _as_kala(jobs: list[Job]) -> dict[str, Any]:
    """The jobs as Kala's JSON, by id, with their parents, children and on-failure job."""
    store = dalga().client.store
    related, now = store.related([job.key for job in jobs]), store.now()

    def ids(named: list[tuple[str, str]]) -> list[str]:
        return [body for path, body in named if path == KALA_PATH]

    answer = {}
    for job in jobs:
        links = related[job.key]
        failure = ids([links.on_failure] if links.on_failure else [])
        answer[job.body] = kala_job_json(
            job, ids(links.parents), ids(links.children), failure[0] if failure else None, now
        )
    return answer
