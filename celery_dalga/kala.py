"""Kala's JSON (master 4eb4f7a): its job both ways (read into the PUT parameters of a job of
kind remote or local, and written back as Kala's job/job.go writes it) and its job and app
stats, for the /api/v1 routes of webapi.kala.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery_dalga import schedules
from celery_dalga.jobs import Job
from celery_dalga.spec import MAX_OPTIONS, MAX_RETRIES, InvalidParameter
from celery_dalga.values import shown
from celery_dalga.wire import instant

GO_ZERO_TIME = "0001-01-01T00:00:00Z"  # what Go writes for a time.Time never set


def _runs(history: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """A job's attempts grouped by run (its scheduled or manual instant), oldest first."""
    by_run: dict[tuple[Any, bool], list[dict[str, Any]]] = {}
    for attempt in sorted(history, key=lambda a: a["started"]):
        by_run.setdefault((attempt["sched"], attempt["manual"]), []).append(attempt)
    return list(by_run.values())


def _run_stat(attempts: list[dict[str, Any]]) -> tuple[str, int, bool, int]:
    """A run's start, retries, success and duration in nanoseconds (Go's time.Duration), from
    its first attempt's start to its last attempt's end."""
    return (
        _go_instant(attempts[0]["started"]),
        len(attempts) - 1,
        attempts[-1]["outcome"] in ("done", "deleted"),  # delivered, any kind
        int((attempts[-1]["finished"] - attempts[0]["started"]).total_seconds() * 1e9),
    )


def kala_job_stats(job_id: int, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Kala's JobStat list from a job's history as /jobs/{path}/{body}/stats writes it (Go's
    field names): one per run (its retries folded in), oldest first."""
    keys = ("RanAt", "NumberOfRetries", "Success", "ExecutionDuration")
    return [
        {"JobId": str(job_id), **dict(zip(keys, _run_stat(run), strict=True))}
        for run in _runs(history)
    ]


def kala_stats(status: dict[str, Any]) -> dict[str, Any]:
    """Kala's app-wide stats as its older /stats wrote them: kala_app_stats in Go's field
    names."""
    return {"Stats": {GO_NAMES[k]: v for k, v in kala_app_stats(status)["Stats"].items()}}


GO_NAMES = {
    "active_jobs": "ActiveJobs",
    "disabled_jobs": "DisabledJobs",
    "jobs": "Jobs",
    "error_count": "ErrorCount",
    "success_count": "SuccessCount",
    "next_run_at": "NextRunAt",
    "last_attempted_run": "LastAttemptedRun",
    "created": "CreatedAt",
}


def _go_time(text: str | None) -> str:
    return _go_instant(datetime.fromisoformat(text) if text else None)


def _go_instant(value: datetime | None) -> str:
    """An instant as Go's time.Time reads it; Go's zero time for none."""
    return instant(value) or GO_ZERO_TIME


# -- Kala's API (/api/v1) ------------------------------------------------------------------

KALA_PATH = "kala"  # the path of every job made through Kala's API; its body is the job's id
KALA_KEY = "kala"  # the options key that keeps Kala's own fields
KALA_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
LOCAL, REMOTE = 0, 1  # Kala's job types
KIND_OF_TYPE = {LOCAL: "local", REMOTE: "remote"}
MAX_TEXT = 255  # characters of a name, owner, schedule or epsilon
MAX_URL = 2048
MAX_PARENTS = 100
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")  # an HTTP method or header name
JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "null",
}
# what a Kala client sends: Go's Job struct, every field (the read-only ones are ignored)
KALA_FIELDS = (
    *("name", "id", "command", "owner", "disabled", "dependent_jobs", "parent_jobs"),
    *("on_failure_job", "schedule", "retries", "epsilon", "next_run_at", "TemplateDelimiters"),
    *("resume_at_next_scheduled_time", "metadata", "type", "remote_properties", "stats"),
    "is_done",
)
REMOTE_FIELDS = ("url", "method", "body", "headers", "timeout", "expected_response_codes")
# PUT's parameters, as the Kala field that gave them (for errors)
KALA_FIELD_OF = {
    **dict.fromkeys(("interval", "cron", "first-run", "one-off", "immediate"), "schedule"),
    **dict.fromkeys(("location", "schedule"), "schedule"),
    "retry-interval": "retries",
    "parent": "parent_jobs",
    "kind": "type",
    **dict.fromkeys(("path", "body"), "id"),
}


def kala_id() -> str:
    """A new job's id: a UUID4, as Kala makes them."""
    return str(uuid.uuid4())


def kala_field(parameter: str, kind: str | None) -> str:
    """The Kala field that a PUT parameter came from (options: the kind's fields)."""
    if parameter == "options":
        return "command" if kind == "local" else "remote_properties"
    return KALA_FIELD_OF.get(parameter, parameter)


@dataclass(frozen=True)
class KalaJob:
    """A job as Kala's create asks for it: PUT's parameters, its parents and on-failure job
    (Kala ids, checked by the caller), and whether it starts disabled."""

    params: dict[str, str]
    parents: list[str]
    on_failure: str | None
    disabled: bool


def read_kala_job(document: Any, now: datetime) -> KalaJob:
    """Kala's job JSON (a decoded document) as PUT's parameters; InvalidParameter naming the
    Kala field for anything Kala refuses or this server does not do."""
    if not isinstance(document, dict):
        raise InvalidParameter("job", f"must be a JSON object, not {_json_type(document)}")
    for name in document:
        if name not in KALA_FIELDS:
            raise InvalidParameter(
                _shown_name(name), f"not a field of Kala's job (known: {', '.join(KALA_FIELDS)})"
            )
    job_type = _whole(document, "type", 0, 1)
    name = _text(document, "name")
    if not name:
        raise InvalidParameter("name", "must be given, not empty")
    if _text(document, "TemplateDelimiters"):
        raise InvalidParameter("TemplateDelimiters", "templates are not supported here")
    if _list(document, "dependent_jobs"):
        raise InvalidParameter(
            "dependent_jobs", "is set by the server: give the child job parent_jobs instead"
        )
    parents = [_id(f"parent_jobs[{i}]", p) for i, p in enumerate(_list(document, "parent_jobs"))]
    if len(parents) > MAX_PARENTS:
        raise InvalidParameter("parent_jobs", f"more than {MAX_PARENTS} parents")
    for i, parent in enumerate(parents):
        if parent in parents[:i]:
            raise InvalidParameter("parent_jobs", f"names {parent} twice")
    failure = _text(document, "on_failure_job")
    schedule, epsilon = _text(document, "schedule"), _text(document, "epsilon", 64)
    kala = {
        "name": name,
        "owner": _text(document, "owner"),
        "schedule": schedule,
        "epsilon": epsilon,
        "resume_at_next_scheduled_time": _flag(document, "resume_at_next_scheduled_time"),
    }
    if parents and schedule:
        raise InvalidParameter(
            "schedule", "a job with parent_jobs runs after its parents, not on a schedule"
        )
    params = {"parent": f"{KALA_PATH}/{parents[0]}"} if parents else _schedule(schedule, now)
    disabled = _flag(document, "disabled")
    if disabled and "immediate" in params:
        raise InvalidParameter(
            "disabled",
            "a job without a schedule runs at once: give it a schedule to create it disabled",
        )
    options: dict[str, Any] = (
        _remote(document) if job_type == REMOTE else {"command": _command(document)}
    )
    options[KALA_KEY] = kala
    text = json.dumps(options)
    if len(text) > MAX_OPTIONS:
        field = "remote_properties" if job_type == REMOTE else "command"
        raise InvalidParameter(
            field, f"the job's fields take {len(text)} characters, more than {MAX_OPTIONS}"
        )
    params.update(kind=KIND_OF_TYPE[job_type], options=text)
    params["retries"] = str(_whole(document, "retries", 0, MAX_RETRIES))
    if epsilon:
        params["epsilon"] = epsilon
    return KalaJob(params, parents, _id("on_failure_job", failure) if failure else None, disabled)


def _schedule(text: str, now: datetime) -> dict[str, str]:
    """PUT's parameters for Kala's schedule R[n]/<start>/<period>: Rn is n runs after the
    first (n+1 in all; celery-dalga's Rn is n in all), R forever; none: once, now."""
    if not text:
        return {"one-off": "true", "immediate": "true"}
    parts = text.split("/")
    if len(parts) != 3:
        raise InvalidParameter(
            "schedule",
            f"{shown(text)} is not R[n]/<start>/<period>, e.g. R/2014-03-08T20:00:00Z/PT2H",
        )
    repeat, start, period = parts
    if not re.fullmatch(r"R\d{0,9}", repeat):
        raise InvalidParameter("schedule", f"{shown(repeat)} is not R or R<n> (n repeats)")
    try:
        first = schedules.parse_instant(start, schedules.UTC_ZONE)
    except schedules.ScheduleError as exc:
        raise InvalidParameter("schedule", f"its start: {exc}") from None
    if first < now:
        raise InvalidParameter(
            "schedule", f"starts at {instant(first)}, in the past (it is {instant(now)})"
        )
    if repeat == "R0":  # one run, at start; Kala reads no period then
        return {"one-off": "true", "first-run": start}
    count = "" if repeat == "R" else str(int(repeat[1:]) + 1)
    return {"schedule": f"R{count}/{start}/{period}"}


def _remote(document: dict[str, Any]) -> dict[str, Any]:
    """A remote job's options (the remote kind's) from remote_properties, with Kala's
    defaults written in: GET, Content-Type: application/json, [200]."""
    props = document.get("remote_properties")
    if props is None:
        props = {}
    if not isinstance(props, dict):
        raise InvalidParameter("remote_properties", f"must be an object, not {_json_type(props)}")
    for name in props:
        if name not in REMOTE_FIELDS:
            raise InvalidParameter(
                f"remote_properties.{_shown_name(name)}",
                f"not a field of remote_properties (known: {', '.join(REMOTE_FIELDS)})",
            )
    url = _text(props, "url", MAX_URL, "remote_properties.url")
    if not url:
        raise InvalidParameter("remote_properties.url", "a remote job (type 1) needs a url")
    method = _text(props, "method", 64, "remote_properties.method").upper() or "GET"
    if not TOKEN.match(method):
        raise InvalidParameter("remote_properties.method", f"{shown(method)} is not an HTTP method")
    headers = _headers(props.get("headers"))
    if not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = ["application/json"]
    codes = _list(props, "expected_response_codes", "remote_properties.expected_response_codes")
    for i, code in enumerate(codes):
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise InvalidParameter(
                f"remote_properties.expected_response_codes[{i}]",
                f"{json.dumps(code)[:20]} is not an HTTP status (100 to 599)",
            )
    body = props.get("body")
    if body is None:
        body = ""
    if not isinstance(body, str):
        raise InvalidParameter(
            "remote_properties.body", f"must be a string, not {_json_type(body)}"
        )
    return {
        "url": url,
        "method": method,
        "body": body,
        "headers": headers,
        "timeout": _whole(props, "timeout", 0, 86400, "remote_properties.timeout"),
        "expected_response_codes": codes or [200],
    }


def _headers(value: Any) -> dict[str, list[str]]:
    """Go's http.Header: an object of string arrays, {"Name": ["value", ...]}."""
    field = "remote_properties.headers"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidParameter(
            field,
            f'must be an object of string arrays ({{"Name": ["value"]}}), not {_json_type(value)}',
        )
    for name, values in value.items():
        if not TOKEN.match(name):
            raise InvalidParameter(field, f"{shown(name)} is not a header name")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise InvalidParameter(f"{field}.{name}", "must be an array of strings")
        if any(CONTROL.search(v.replace("\t", " ")) for v in values):
            raise InvalidParameter(f"{field}.{name}", "must not contain CR, LF or NUL")
    return dict(value)


def _command(document: dict[str, Any]) -> str:
    command = _text(document, "command", MAX_OPTIONS)
    if not command:
        raise InvalidParameter("command", "a local job (type 0) needs a command")
    return command


def _text(doc: dict[str, Any], name: str, limit: int = MAX_TEXT, field: str = "") -> str:
    """A string field ("" when absent or null): one line, at most `limit` characters."""
    field = field or name
    value = doc.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidParameter(field, f"must be a string, not {_json_type(value)}")
    if CONTROL.search(value):
        raise InvalidParameter(field, "must not contain control characters (CR, LF, NUL...)")
    if len(value) > limit:
        raise InvalidParameter(field, f"longer than {limit} characters")
    return value


def _whole(doc: dict[str, Any], name: str, low: int, high: int, field: str = "") -> int:
    """A whole-number field (0 when absent or null), from low to high."""
    field = field or name
    value = doc.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(field, f"must be a whole number, not {_json_type(value)}")
    if not low <= value <= high:
        if name == "type":
            raise InvalidParameter("type", f"{value} is not 0 (local) or 1 (remote)")
        raise InvalidParameter(field, f"must be between {low} and {high}")
    return value


def _flag(doc: dict[str, Any], name: str) -> bool:
    value = doc.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidParameter(name, f"must be true or false, not {_json_type(value)}")
    return value


def _list(doc: dict[str, Any], name: str, field: str = "") -> list[Any]:
    value = doc.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidParameter(field or name, f"must be an array, not {_json_type(value)}")
    return value


def _id(field: str, value: Any) -> str:
    """A Kala job id (a UUID) named in a field."""
    if not isinstance(value, str) or not KALA_ID.match(value.lower()):
        text = value if isinstance(value, str) else json.dumps(value)
        raise InvalidParameter(field, f"{shown(text)} is not a Kala job id (a UUID)")
    return value.lower()


def _json_type(value: Any) -> str:
    return JSON_TYPES.get(type(value), type(value).__name__)


def _shown_name(name: str) -> str:
    return shown(name).strip("'")


def kala_job_json(
    job: Job, parents: list[str], children: list[str], on_failure: str | None, now: datetime
) -> dict[str, Any]:
    """A job as Kala's JSON (Go's Job struct, in its order): Kala's own fields from the
    options, the rest from the row (metadata from the job's counters; next_run_at its next
    instant); parents, children and the on-failure job as Kala ids."""
    options = job.options or {}
    kala = options.get(KALA_KEY) or {}
    remote = job.kind == KIND_OF_TYPE[REMOTE]
    pending = [at for at in (job.next_sched, job.triggered_at) if at is not None]
    last_failed = job.last_error and job.last_attempt != job.last_success
    return {
        "name": kala.get("name", ""),
        "id": job.body,
        "command": "" if remote else options.get("command", ""),
        "owner": kala.get("owner", ""),
        "disabled": not job.enabled,
        "dependent_jobs": children,
        "parent_jobs": parents,
        "on_failure_job": on_failure or "",
        "schedule": kala.get("schedule", ""),
        "retries": job.retries or 0,
        "epsilon": kala.get("epsilon", ""),
        "next_run_at": _go_instant(min(pending) if pending else None),
        "TemplateDelimiters": "",
        "resume_at_next_scheduled_time": bool(kala.get("resume_at_next_scheduled_time")),
        "metadata": {
            "success_count": job.success_count,
            "last_success": _go_instant(job.last_success),
            "error_count": job.error_count,
            "last_error": _go_instant(job.last_attempt if last_failed else None),
            "last_attempted_run": _go_instant(job.last_attempt),
            "number_of_finished_runs": job.success_count + job.error_count,
        },
        "type": REMOTE if remote else LOCAL,
        "remote_properties": {
            "url": options.get("url", "") if remote else "",
            "method": options.get("method", "") if remote else "",
            "body": options.get("body", "") if remote else "",
            "headers": options.get("headers") if remote else None,
            "timeout": options.get("timeout", 0) if remote else 0,
            "expected_response_codes": options.get("expected_response_codes") if remote else None,
        },
        "is_done": _is_done(job, now),
    }


def _is_done(job: Job, now: datetime) -> bool:
    """Whether the job will not run again by its schedule: a job that ran out of runs and
    was kept (disabled after its last run failed for good). A finished job that succeeded
    is deleted."""
    sched = job.next_sched
    if job.enabled or job.parent_key or sched is None or job.triggered_at or sched > now:
        return False
    return job.schedule.next(sched, now) is None


def kala_run_stats(kala_id: str, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Kala's job_stats (/api/v1/job/stats/{id}/): a JobStat per run of the job's history,
    oldest first."""
    keys = ("ran_at", "number_of_retries", "success", "execution_duration")
    return [
        {"job_id": kala_id, **dict(zip(keys, _run_stat(run), strict=True))}
        for run in _runs(history)
    ]


def kala_app_stats(status: dict[str, Any]) -> dict[str, Any]:
    """Kala's app stats (/api/v1/stats/) from the status, in the keys Kala's current code
    writes; created is the time of the report, next_run_at the soonest next run."""
    return {
        "Stats": {
            "active_jobs": status["total_jobs"] - status["disabled_jobs"],
            "disabled_jobs": status["disabled_jobs"],
            "jobs": status["total_jobs"],
            "error_count": status["error_count"],
            "success_count": status["success_count"],
            "next_run_at": _go_time(status["next_run"]),
            "last_attempted_run": _go_time(status["last_attempt"]),
            "created": _go_time(status["now"]),
        }
    }
