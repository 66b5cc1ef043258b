"""The web UI at /ui as a Flask Blueprint: server-rendered pages (Jinja templates, one
stylesheet, no build step) over the same Client as the HTTP interface (webapi.context): jobs
with search and keyset pages, a job with its history and a lateness sparkline, forms to
create, trigger, pause, resume and delete, a status page with the lag and the instances, a
load view (runs due ahead and callbacks per minute, drawn; a form that spreads a peak), and
sign-in and sign-out (the Guard keeps the session)."""

from __future__ import annotations

import hashlib
from datetime import UTC, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, redirect, render_template, request, url_for
from markupsafe import Markup

from celery_dalga.client import JobExists, JobNotFound
from celery_dalga.spec import MAX_PATH, PARAMETERS, InvalidParameter
from celery_dalga.values import shown
from celery_dalga.wire import attempt_json, instant
from webapi import charts
from webapi.context import dalga
from webapi.errors import short
from webapi.load import LATENESS, PREFIX, cached_load, path_prefix, spread

PAGE = 50
LARGEST_ID = 2**63 - 1

ui = Blueprint("ui", __name__, url_prefix="/ui", template_folder="templates")
ui.add_app_template_global(urlencode, "urlencode")
STATIC = Path(__file__).with_name("static")
ASSET_MAX_AGE = 86400  # a day: an asset's URL names its content, so a new one is a new URL


@lru_cache(maxsize=8)
def _digest(filename: str) -> str:
    return hashlib.sha256((STATIC / filename).read_bytes()).hexdigest()[:12]


@ui.app_template_global()
def asset(filename: str) -> str:
    """The URL of a static file with its content's digest in the query, so that browsers may
    keep it (ASSET_MAX_AGE) without asking again on every page, and fetch a changed one."""
    return url_for("static", filename=filename, v=_digest(filename))


def sparkline(values: list[float], width: int = 240, height: int = 40) -> Markup:
    """An inline SVG line of the values (oldest first), scaled to the box."""
    if len(values) < 2:
        return Markup("")
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = width / (len(values) - 1)
    points = " ".join(
        f"{i * step:.1f},{height - 2 - (v - low) / span * (height - 4):.1f}"
        for i, v in enumerate(values)
    )
    return Markup(
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="lateness of the last runs"><polyline points="{points}"/></svg>'
    )


def job_link(path: str, body: str) -> str:
    return url_for("ui.job", path=path, body=body)


@ui.app_template_filter("when")
def when(value: Any) -> Markup:
    """An instant as 2026-11-25 09:00:00 UTC, the full RFC 3339 text on hover."""
    if value is None:
        return Markup("—")
    shown = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{0}" title="{0}">{1}</time>').format(instant(value), shown)


@ui.get("/")
def home():
    return redirect(url_for("ui.jobs"))


@ui.get("/jobs")
def jobs():
    """Jobs in insert order, or those whose path starts with `q` by path; a page goes on
    after the last job's id (`after`) and, in a search, its path (`after_path`)."""
    prefix = request.args.get("q", "").strip() or None
    raw = request.args.get("after", "")
    after = int(raw) if raw.isdigit() and len(raw) < 20 else None
    if raw and (after is None or after > LARGEST_ID):
        message = f"after: {shown(raw)} is not a job id"
        return render_template("ui/error.html", message=message), 400
    after_path = request.args.get("after_path", "")
    if len(after_path) > MAX_PATH:
        message = f"after_path: {shown(after_path)} is longer than a path"
        return render_template("ui/error.html", message=message), 400
    keyset = None if after is None else (after_path, after) if prefix else (after,)
    page = dalga().client.search(prefix, keyset, PAGE)
    more = None
    if len(page) == PAGE:
        last = page[-1]
        query: dict[str, Any] = {"q": prefix, "after_path": last.path} if prefix else {}
        more = url_for("ui.jobs", **query, after=last.id)
    return render_template("ui/jobs.html", jobs=page, q=prefix or "", more=more, link=job_link)


@ui.route("/jobs/new", methods=["GET", "POST"])
def new_job():
    form = request.form.to_dict() if request.method == "POST" else {}
    if request.method == "GET":
        return render_template("ui/new.html", form=form, error=None)
    path, body = form.pop("path", ""), form.pop("body", "")
    params = {k: v for k, v in form.items() if k in PARAMETERS and v.strip()}
    for flag in ("one-off", "immediate", "if-absent"):
        if flag in params:
            params[flag] = "true"
    try:
        dalga().client.put(path, body, params)
    except (InvalidParameter, JobExists) as exc:
        form.update(path=path, body=body)
        return render_template("ui/new.html", form=form, error=short(str(exc), 400)), 400
    return redirect(job_link(path, body))


@ui.get("/job")
def job():
    path, body = request.args.get("path", ""), request.args.get("body", "")
    client = dalga().client
    found = client.get(path, body)
    history = client.history(path, body)
    if found is None and not history:
        return render_template("ui/missing.html", path=short(path), body=short(body)), 404
    attempts = [attempt_json(a) for a in history]
    lateness = [a["lateness"] for a in reversed(attempts)]
    for attempt, raw in zip(attempts, history, strict=True):
        attempt.update(sched=raw["sched"], started=raw["started"])
    return render_template(
        "ui/job.html",
        job=found,
        path=path,
        body=body,
        attempts=attempts,
        spark=sparkline(lateness),
        late=(min(lateness), max(lateness)) if lateness else None,
        parent=client.parent(found) if found else None,
        children=client.children(found, PAGE) if found else [],
        link=job_link,
    )


@ui.post("/job")
def act():
    path, body, action = (request.form.get(k, "") for k in ("path", "body", "action"))
    client = dalga().client
    try:
        {
            "trigger": client.trigger,
            "pause": client.pause,
            "resume": client.resume,
            "delete": client.cancel,
        }[action](path, body)
    except (KeyError, JobNotFound, InvalidParameter):
        return render_template("ui/missing.html", path=short(path), body=short(body)), 404
    if action == "delete":
        return redirect(url_for("ui.jobs"))
    return redirect(job_link(path, body))


@ui.get("/status")
def status():
    return render_template(
        "ui/status.html",
        status=dalga().status(),
        instances=dalga().client.instances(),
    )


@ui.get("/load")
def load():
    return render_template("ui/load.html", **_load_view())


@ui.post("/spread")
def spread_jobs():
    """Spread the jobs under the form's prefix once its confirmation is typed."""
    try:
        prefix = path_prefix(request.form)
    except InvalidParameter as exc:
        return render_template("ui/load.html", **_load_view(error=str(exc))), 400
    if request.form.get("confirm") != "spread":
        error = "type spread to confirm: nothing was moved"
        return render_template("ui/load.html", **_load_view(prefix, error=error)), 400
    return render_template("ui/load.html", **_load_view(prefix, spread=spread(prefix)))


def _load_view(prefix: str = "", **shown: Any) -> dict[str, Any]:
    """The load view's charts and figures (the load cached per app)."""
    found = cached_load()()
    start, since = found["start"], found["callbacks_per_minute"][0]["minute"]
    minute, second = timedelta(minutes=1), timedelta(seconds=1)
    calls = found["callbacks_per_minute"]
    return {
        "load": found,
        "prefix": prefix,
        "prefix_name": PREFIX,
        "lateness_note": LATENESS,
        "due_minutes": charts.bars(
            [{"due": n} for n in found["due_per_minute"]],
            start,
            minute,
            "runs due per minute over the next 6 hours",
            "due",
            every=60,
        ),
        "due_seconds": charts.bars(
            [{"due": n} for n in found["due_per_second"]],
            start,
            second,
            "runs due per second over the next 10 minutes",
            "due",
            every=60,
            fmt="%H:%M:%S",
        ),
        "callbacks": charts.bars(
            [c["outcomes"] for c in calls],
            since,
            minute,
            "callbacks per minute by outcome over the last 6 hours",
            "callbacks",
            every=60,
        ),
        "lateness": charts.lines(
            {
                "p50": [c["lateness_p50"] for c in calls],
                "p99": [c["lateness_p99"] for c in calls],
            },
            since,
            minute,
            "lateness p50 and p99 per minute over the last 6 hours, log scale",
            every=60,
        ),
        **shown,
    }


@ui.post("/delete-all")
def delete_all():
    if request.form.get("confirm") != "all":
        return redirect(url_for("ui.status"))
    dalga().client.cancel_all()
    return redirect(url_for("ui.jobs"))


@ui.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    """The sign-in form: a valid token starts a session recording its scope."""
    guard = dalga().guard
    if not guard.tokens:
        return redirect(url_for("ui.jobs"))  # nothing to sign in to
    target = request.values.get("next", "")
    if not target.startswith("/ui") or target.startswith("/ui//"):
        target = url_for("ui.jobs")
    if request.method == "GET":
        return render_template("ui/sign_in.html", next=target, error=None)
    if not guard.sign_in(request.form.get("token", "")):
        return render_template("ui/sign_in.html", next=target, error="not a valid token"), 401
    return redirect(target)


@ui.post("/sign-out")
def sign_out():
    """End the session (the Guard revokes it) and go back to the sign-in form."""
    dalga().guard.sign_out()
    return redirect(url_for("ui.sign_in"))
