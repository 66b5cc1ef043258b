"""The OpenAPI 3 description of the HTTP interface, served at /openapi.json."""

from __future__ import annotations

from typing import Any

ERROR = {"$ref": "#/components/schemas/Error"}
JOB = {"$ref": "#/components/schemas/Job"}


def _response(description: str, schema: dict | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = {"application/json": {"schema": schema}}
    return response


def _query(name: str, description: str, examples: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string"},
        "examples": {f"e{i}": {"value": v} for i, v in enumerate(examples)},
    }


KEY_PARAMETERS = [
    {
        "name": "path",
        "in": "path",
        "required": True,
        "description": "callback path",
        "schema": {"type": "string"},
        "examples": {
            "plain": {"value": "check_feed"},
            "unicode": {"value": "çağrı/ünïcödé"},
            "encoded": {"value": "a%2Fb c"},
        },
    },
    {
        "name": "body",
        "in": "path",
        "required": True,
        "description": "callback body",
        "schema": {"type": "string"},
        "examples": {
            "plain": {"value": "1234"},
            "unicode": {"value": "日本語 ✓"},
            "ten_kb": {"value": "x" * 10240},
            "too_big": {"value": "y" * 70000},
        },
    },
]

SCHEDULE_PARAMETERS = [
    _query(
        "interval",
        "seconds or an ISO 8601 duration",
        ["60", "PT5M", "P1M", "0", "-5", "99999999999999999999", "P100000Y", "PT0.5S"],
    ),
    _query("cron", "cron expression", ["*/5 * * * *", "30 2 * * *", "61 * * * *"]),
    _query(
        "schedule",
        "ISO 8601 repeating interval",
        ["R3/2030-01-01T00:00:00Z/PT10S", "R/1900-01-01T00:00:00Z/P1D", "R0/x/y"],
    ),
    _query(
        "first-run",
        "ISO 8601 date-time",
        [
            "2030-01-01T09:00:00Z",
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "2026-03-08T02:30:00",
            "1969-12-31T23:59:59Z",
            "not a time",
        ],
    ),
    _query("one-off", "boolean", ["true", "no", "maybe", "T", ""]),
    _query("immediate", "boolean", ["1", "off", "2", "FALSE"]),
    _query("exchange", "AMQP exchange to publish to", ["jobs", "amq.default", "bad name!"]),
    _query("task", "Celery task to call", ["myapp.tasks.refresh", "not a task"]),
    _query("parent", "<path>/<body> of the parent job", ["feeds/1", "nobody/here", "x"]),
    _query("retries", "retries of a run", ["3", "-1", "5000", "x"]),
    _query("retry-interval", "first retry delay", ["5", "PT1M", "P1D", "x"]),
    _query("epsilon", "skip runs later than this", ["30", "PT10S", "x"]),
    _query("kind", "the callback kind's name (default: http, amqp or task)", ["http", "X"]),
    _query("options", "the kind's own settings: a JSON object", ['{"a": 1}', "[1]"]),
    _query("if-absent", "boolean: only if there is no such job", ["true", "maybe"]),
    _query(
        "location",
        "IANA time zone",
        ["America/Los_Angeles", "Europe/Istanbul", "Mars/Base", "../../etc/passwd"],
    ),
]

JOB_SCHEMA = {
    "type": "object",
    "required": [
        "path",
        "body",
        "interval",
        "location",
        "next_run",
        "next_sched",
        "instance_id",
    ],
    "properties": {
        "path": {"type": "string"},
        "body": {"type": "string"},
        "interval": {"type": "string"},
        "location": {"type": "string"},
        "next_run": {"type": ["string", "null"]},
        "next_sched": {"type": ["string", "null"]},
        "instance_id": {"type": ["integer", "null"]},
        "id": {"type": "integer"},
        "cron": {"type": ["string", "null"]},
        "schedule": {"type": ["string", "null"]},
        "one_off": {"type": "boolean"},
        "exchange": {"type": ["string", "null"]},
        "enabled": {"type": "boolean"},
        "running": {"type": "boolean"},
    },
}

PAGE = {
    "type": "object",
    "required": ["cursor", "jobs"],
    "properties": {
        "cursor": {"type": "string"},
        "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
        "next_after": {"type": ["integer", "null"]},
    },
}

JSON_LINES_SCHEMA = {
    "type": "string",
    "description": 'one job a line: {"path": ..., "body": ..., "interval": 300, ...}',
    "examples": [
        '{"path": "feeds", "body": "1", "interval": 300}\n'
        '{"path": "feeds", "body": "2", "cron": "*/5 * * * *", "if-absent": true}\n',
        '{"path": "feeds", "body": "3", "interval": "soon"}\n',
        '{"path": "feeds", "body": "4", "parent": "no/such"}\n',
        '{"path": "a", "body": "1", "parent": "a/1"}\n',
        "not json\n",
        "",
    ],
}

BULK_ANSWER = {
    "type": "object",
    "required": ["jobs"],
    "properties": {"jobs": {"type": "integer"}},
}

STATUS_FIELDS = (
    "instance_id",
    "instance_running_jobs",
    "running_jobs",
    "total_jobs",
    "pending_jobs",
    "total_instances",
    "lag",
)


_COUNTS = {"type": "array", "items": {"type": "integer"}}
_SERIES = {
    "type": "object",
    "required": ["start", "counts"],
    "properties": {"start": {"type": "string"}, "counts": _COUNTS},
}
_PEAK = {
    "type": "object",
    "properties": {"index": {"type": "integer"}, "count": {"type": "integer"}},
}
_LATENESS = {"type": ["number", "null"]}
LOAD = {
    "type": "object",
    "required": ["now", "computed_at", "age_seconds", "due_per_second", "due_per_minute"],
    "properties": {
        "now": {"type": "string"},
        "computed_at": {"type": "string"},
        "age_seconds": {"type": "number"},
        "overdue": {"type": "integer"},
        "due_per_second": _SERIES,
        "due_per_minute": _SERIES,
        "peak_second": _PEAK,
        "peak_minute": _PEAK,
        "callbacks_per_minute": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "minute": {"type": "string"},
                    "outcomes": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "total": {"type": "integer"},
                    "lateness_p50": _LATENESS,
                    "lateness_p99": _LATENESS,
                },
            },
        },
        "callbacks_by_outcome": {"type": "object", "additionalProperties": {"type": "integer"}},
        "lateness": {"type": "string"},
    },
}


def openapi_spec() -> dict[str, Any]:
    """The OpenAPI document (3.1) of every route."""
    not_found = _response("no such job", ERROR)
    bad = _response("bad input; nothing was written", ERROR)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "celery-dalga",
            "version": "0.1.0",
            "description": "Dalga's HTTP interface on Celery beat",
        },
        "paths": {
            "/jobs/{path}/{body}": {
                "parameters": KEY_PARAMETERS,
                "put": {
                    "summary": "schedule or reschedule",
                    "parameters": SCHEDULE_PARAMETERS,
                    "responses": {
                        "201": _response("the committed job", JOB),
                        "400": bad,
                        "409": _response("if-absent, and the job exists", ERROR),
                    },
                },
                "get": {
                    "summary": "the job",
                    "responses": {"200": _response("the job", JOB), "400": bad, "404": not_found},
                },
                "delete": {
                    "summary": "cancel (204 also when there was no such job, as in Dalga)",
                    "responses": {"204": _response("cancelled"), "400": bad},
                },
                "post": {
                    "summary": "run now, once",
                    "responses": {"200": _response("the job", JOB), "400": bad, "404": not_found},
                },
                "patch": {
                    "summary": "pause or resume",
                    "parameters": [
                        _query("disable", "boolean", ["true", "x"]),
                        _query("enable", "boolean", ["yes", ""]),
                    ],
                    "responses": {"200": _response("the job", JOB), "400": bad, "404": not_found},
                },
            },
            "/jobs": {
                "put": {
                    "summary": "schedule or reschedule many jobs: JSON lines of PUT's parameters "
                    "with path and body, one transaction (all or nothing)",
                    "requestBody": {
                        "required": True,
                        "content": {"application/x-ndjson": {"schema": JSON_LINES_SCHEMA}},
                    },
                    "responses": {
                        "200": _response("how many jobs were written", BULK_ANSWER),
                        "400": _response("a bad record, by line; nothing was written", ERROR),
                        "413": _response("too many jobs or bytes; nothing was written", ERROR),
                        "415": _response("not JSON lines", ERROR),
                    },
                },
                "delete": {
                    "summary": "delete every job, with confirm=all",
                    "parameters": [_query("confirm", "must be all", ["all", "yes"])],
                    "responses": {"200": _response("how many"), "400": bad},
                },
                "get": {
                    "summary": "list, keyset-paginated (Dalga's parameters, and after)",
                    "parameters": [
                        _query("path", "only this path; empty: every path", ["check_feed", ""]),
                        _query("sort-by", "insert-order or next-sched", ["next-sched", "name"]),
                        _query("reverse", "boolean", ["true", "sideways"]),
                        _query("after", "the last id seen (insert order)", ["0", "-1", "x"]),
                        _query("limit", "page size; 0: the largest, 1000", ["10", "0", "-5"]),
                        _query("cursor", "a page's cursor: the page after it", ["e30=", "%"]),
                    ],
                    "responses": {"200": _response("a page of jobs", PAGE), "400": bad},
                },
            },
            "/jobs/{path}/{body}/runs": {
                "parameters": KEY_PARAMETERS,
                "get": {
                    "summary": "the job's last attempts, newest first",
                    "responses": {"200": _response("the attempts"), "400": bad},
                },
            },
            "/jobs/{path}/{body}/stats": {
                "parameters": KEY_PARAMETERS,
                "get": {
                    "summary": "Kala's per-job stats",
                    "responses": {"200": _response("job_stats"), "400": bad, "404": not_found},
                },
            },
            "/schedule": {
                "post": {
                    "summary": "the 2013 Dalga's form of PUT /jobs/{routing_key}/{body}",
                    "parameters": [
                        _query("routing_key", "the job's path", ["check_feed", ""]),
                        _query("body", "the job's body", ["1234", ""]),
                        _query("interval", "seconds or an ISO 8601 duration", ["60", "0"]),
                    ],
                    "responses": {"200": _response("the job", JOB), "400": bad},
                }
            },
            "/cancel": {
                "post": {
                    "summary": "the 2013 Dalga's form of DELETE (200 also without such a job)",
                    "parameters": [
                        _query("routing_key", "the job's path", ["check_feed", ""]),
                        _query("body", "the job's body", ["1234", ""]),
                    ],
                    "responses": {"200": _response("cancelled"), "400": bad},
                }
            },
            "/stats": {
                "get": {
                    "summary": "Kala's app-wide stats",
                    "responses": {"200": _response("Stats")},
                }
            },
            "/jobs/continue": {
                "get": {
                    "summary": "the page after a cursor",
                    "parameters": [_query("cursor", "a page's cursor", ["", "e30=", "%%%"])],
                    "responses": {"200": _response("a page of jobs", PAGE), "400": bad},
                }
            },
            "/status": {
                "get": {
                    "summary": "Dalga's status: totals, running, pending, instances, lag",
                    "responses": {
                        "200": _response(
                            "status",
                            {
                                "type": "object",
                                "required": list(STATUS_FIELDS),
                                "properties": {
                                    **{k: {"type": "integer"} for k in STATUS_FIELDS},
                                    "disabled_jobs": {"type": "integer"},
                                    "lag_seconds": {"type": "number"},
                                    "counted_at": {"type": ["string", "null"]},
                                    "counts_age_seconds": {"type": ["number", "null"]},
                                },
                            },
                        )
                    },
                }
            },
            "/load": {
                "get": {
                    "summary": "runs due per second (10 min) and per minute (6 h) ahead, and "
                    "callbacks per minute by outcome with lateness p50/p99 (6 h back); computed "
                    "at most once a period, its age in age_seconds",
                    "responses": {"200": _response("the load", LOAD), "400": bad},
                }
            },
            "/spread": {
                "post": {
                    "summary": "once, spread the next runs of the enabled interval jobs under "
                    "a path prefix evenly over their interval from now (cron, one-off, paused, "
                    "running and triggered jobs are skipped)",
                    "parameters": [
                        {
                            **_query(
                                "path-prefix",
                                "the jobs' path prefix (empty: every job)",
                                ["feeds/", ""],
                            ),
                            "required": True,
                            "schema": {"type": "string", "maxLength": 255},
                        }
                    ],
                    "responses": {
                        "200": _response(
                            "how many jobs moved and were skipped",
                            {
                                "type": "object",
                                "required": ["path-prefix", "moved", "skipped"],
                                "properties": {
                                    "path-prefix": {"type": "string"},
                                    "moved": {"type": "integer"},
                                    "skipped": {"type": "integer"},
                                },
                            },
                        ),
                        "400": bad,
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics: this process's and the jobs table's",
                    "responses": {"200": {"description": "Prometheus text format"}},
                }
            },
        },
        "security": [{}, {"bearer": []}],
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "DALGA_API_TOKENS, when set: a read token for GET, a write "
                    "token for the rest (401 without one, 403 for a read token that writes)",
                }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}, "parameter": {"type": "string"}},
                },
                "Job": JOB_SCHEMA,
            },
        },
    }
