"""create_app: the Flask app wired from the settings (the Client, this process's instance,
the Guard, the table's gauges and its cached status in app.extensions["dalga"]), the API,
Kala's API and UI blueprints, and the error answers."""

from __future__ import annotations

import logging

from flask import Flask, Response, request
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from werkzeug.exceptions import HTTPException

from celery_dalga import metrics
from celery_dalga.client import Client, JobNotFound
from celery_dalga.config import Settings
from celery_dalga.instances import Instance
from celery_dalga.process import instance_for
from celery_dalga.spec import InvalidParameter
from celery_dalga.store import Store
from celery_dalga.store.status import CachedStatus
from webapi.api import AnyPath, api
from webapi.auth import Guard
from webapi.context import Dalga
from webapi.errors import json_error, short
from webapi.kala import kala
from webapi.load import loads
from webapi.ui import ASSET_MAX_AGE, ui

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, store: Store | None = None, instance: Instance | None = None
) -> Flask:
    """The Flask app serving settings' jobs table, as the given Dalga instance (by default
    this process's, registered now)."""
    app = Flask(__name__)
    app.config["SEND_FILE_MAX_AGE_DEFAULT"] = ASSET_MAX_AGE  # the UI's static files
    app.json.sort_keys = False  # type: ignore[attr-defined]  # Dalga's fields first, in Dalga's order
    app.url_map.merge_slashes = False
    app.url_map.converters["anypath"] = AnyPath
    client = Client(settings, store=store)
    instance = instance or instance_for(settings, "web")
    guard = Guard(settings)
    guard.install(app)
    status = CachedStatus(client.store, instance.id)
    gauges = CollectorRegistry(auto_describe=False)
    gauges.register(metrics.TableCollector(status))
    app.extensions["dalga"] = Dalga(client, instance, guard, gauges, status)
    app.before_request(one_value_each)
    app.register_blueprint(api)
    app.register_blueprint(kala, url_prefix="/api/v1")
    app.register_blueprint(loads)
    app.register_blueprint(ui)
    app.register_error_handler(InvalidParameter, invalid)
    app.register_error_handler(JobNotFound, not_found)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(SQLAlchemyError, database_error)
    return app


def one_value_each() -> None:
    """A 400 naming a parameter given more than once (query string, form or both)."""
    for name in sorted(set(request.args) | set(request.form)):
        if len(request.args.getlist(name)) + len(request.form.getlist(name)) > 1:
            raise InvalidParameter(short(name), "given more than once")


def invalid(exc: InvalidParameter) -> Response:
    return json_error(400, str(exc), parameter=short(exc.parameter))


def not_found(exc: JobNotFound) -> Response:
    return json_error(404, str(exc))


def http_error(exc: HTTPException) -> Response:
    return json_error(exc.code or 500, exc.description or exc.name)


def database_error(exc: SQLAlchemyError) -> Response:
    """One log line, without the statement's parameters or the job's body (the route, not
    the path that holds it). A value the database refused is the request's fault (400),
    anything else the database's (503)."""
    cause = getattr(exc, "orig", None) or exc
    log.error(
        "database error on %s %s: %s: %s",
        request.method,
        request.url_rule.rule if request.url_rule else short(request.path, 60),
        type(cause).__name__,
        short(str(cause).splitlines()[0] if str(cause) else "", 80),
    )
    if isinstance(exc, DataError | IntegrityError):
        return json_error(400, "a value the database cannot store (too long or out of range)")
    return json_error(503, "database unavailable, try again")
