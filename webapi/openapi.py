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
    _query("one-off", "boolean", ["true", "no", "maybe"]),
    _query("immediate", "boolean", ["1", "off", "2"]),
    _query(
        "location",
        "IANA time zone",
        ["America/Los_Angeles", "Europe/Istanbul", "Mars/Base", "../../etc/passwd"],
    ),
]

JOB_SCHEMA = {
    "type": "object",
    "required": ["path", "body", "interval", "location", "next_run", "next_sched"],
    "properties": {
        "id": {"type": "integer"},
        "path": {"type": "string"},
        "body": {"type": "string"},
        "interval": {"oneOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]},
        "cron": {"type": ["string", "null"]},
        "schedule": {"type": ["string", "null"]},
        "location": {"type": "string"},
        "one_off": {"type": "boolean"},
        "enabled": {"type": "boolean"},
        "running": {"type": "boolean"},
        "next_run": {"type": ["string", "null"]},
        "next_sched": {"type": ["string", "null"]},
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
                    "responses": {"201": _response("the committed job", JOB), "400": bad},
                },
                "get": {
                    "summary": "the job",
                    "responses": {"200": _response("the job", JOB), "400": bad, "404": not_found},
                },
                "delete": {
                    "summary": "cancel",
                    "responses": {"204": _response("cancelled"), "400": bad, "404": not_found},
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
                "get": {
                    "summary": "list, keyset-paginated",
                    "parameters": [
                        _query("path", "only this path", ["check_feed"]),
                        _query("after", "cursor: the last id seen", ["0", "-1", "x"]),
                        _query("limit", "page size, 1-1000", ["10", "0", "100000"]),
                    ],
                    "responses": {
                        "200": _response(
                            "a page of jobs",
                            {
                                "type": "object",
                                "required": ["jobs", "next_after"],
                                "properties": {
                                    "jobs": {"type": "array", "items": JOB},
                                    "next_after": {"type": ["integer", "null"]},
                                },
                            },
                        ),
                        "400": bad,
                    },
                }
            },
            "/status": {
                "get": {
                    "summary": "totals, running, pending and lag",
                    "responses": {
                        "200": _response(
                            "status",
                            {
                                "type": "object",
                                "required": ["total", "running", "pending", "lag"],
                                "properties": {
                                    k: {"type": "number"}
                                    for k in ("total", "disabled", "running", "pending", "lag")
                                },
                            },
                        )
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}, "parameter": {"type": "string"}},
                },
                "Job": JOB_SCHEMA,
            }
        },
    }
