"""The http kind, Dalga's callback: POST the run's body to base_url + its path, with Dalga's
headers, over the process's HTTP client (celery_dalga.http) within each destination's
adaptive limit. 200 and 204 deliver (204 also deletes the job), anything else fails; a POST
that got no connection or no room in time is not sent."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import quote

from celery_dalga import http
from celery_dalga.config import Settings
from celery_dalga.jobs import Run
from celery_dalga.kinds.base import Delivery, Kind, Result, register
from celery_dalga.quartz import Remove


def callback_url(base_url: str, path: str) -> str:
    """<base_url><path>, with exactly one slash between them, each of the path's segments
    percent-encoded: whatever a path holds (?, #, %2F, @, :, CR/LF, . or ..), the request goes
    to base_url's scheme, host and port, under its path."""
    segments = path.lstrip("/").split("/")
    return base_url.rstrip("/") + "/" + "/".join(_segment(s) for s in segments)


def _segment(segment: str) -> str:
    """A path segment percent-encoded but for RFC 3986's sub-delims, ":" and "@", which a
    segment may hold as they are. A dot segment is refused (PUT refuses it too): encoded or
    not, the endpoint's server may resolve it and climb out of base_url's path."""
    if any(piece in (".", "..") for piece in segment.split("\\")):
        raise ValueError(f"the path segment {segment!r} would leave base_url")
    return quote(segment, safe="!$&'()*+,;=:@")


def callback_post(settings: Settings, run: Run, instance_id: int) -> http.Post:
    """The POST of a run, with Dalga's headers as Dalga writes them (Content-Type, Dalga-Sched:
    the instant it serves, on the job's wall clock; Dalga-Instance: this process) and an
    Idempotency-Key."""
    return http.Post(
        callback_url(settings.base_url, run.path),
        http.destination(settings.base_url),
        run.body.encode(),
        (
            "Content-Type: text/plain",
            "Dalga-Sched: " + run.dalga_sched,
            f"Dalga-Instance: {instance_id}",
            "Idempotency-Key: " + run.idempotency_key,
        ),
    )


def result(answer: http.Answer) -> Result:
    """What an HTTP answer says of the run: 204 asks for the job to be removed."""
    if answer.status in (200, 204):
        delivery = Delivery.DELIVERED
    else:
        delivery = Delivery.FAILED if answer.sent else Delivery.NOT_SENT
    asks = Remove() if answer.status == 204 else None
    return Result(
        delivery, answer.error, answer.seconds, answer.ended, answer.wait, answer.status, asks
    )


class Http(Kind):
    """POST to base_url."""

    name = "http"

    def deliver(
        self,
        settings: Settings,
        runs: list[Run],
        instance_id: int,
        app: Any,
        start_by: float = math.inf,
    ) -> list[Result]:
        """POST the runs concurrently; a POST not started by `start_by` is not sent."""
        client = http.client(settings.callback_concurrency, settings.callback_initial_limit)
        posts, refused = [], {}
        for i, run in enumerate(runs):
            try:
                posts.append(callback_post(settings, run, instance_id))
            except ValueError as exc:  # a row older than PUT's checks
                refused[i] = Result.refused(str(exc))
        answers = iter(client.post_all(posts, settings.callback_timeout, start_by))
        return [refused[i] if i in refused else result(next(answers)) for i in range(len(runs))]


register(Http())
