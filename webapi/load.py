"""The load as JSON (GET /load: runs due ahead per second and per minute, callbacks per minute
by outcome with their lateness, computed at most once a period) and POST /spread, which
spreads the next runs of the interval jobs under a path prefix over their interval. The UI's
load view (webapi.ui) reads and spreads through the same functions."""

from __future__ import annotations

import logging
import threading
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from celery_dalga.load import BUCKETS, FIRST_EDGE
from celery_dalga.spec import MAX_PATH, InvalidParameter, reject_unknown
from celery_dalga.store.load import CachedLoad
from celery_dalga.values import shown
from celery_dalga.wire import instant
from webapi.context import dalga

log = logging.getLogger(__name__)
PREFIX = "path-prefix"
LATENESS = (
    f"lateness p50 and p99 quoted as the upper edge of their bucket: {BUCKETS} buckets of a "
    f"factor √2 from {FIRST_EDGE * 1000:g} ms (at most 41 % above the true value)"
)

loads = Blueprint("load", __name__)
_making = threading.Lock()


def cached_load() -> CachedLoad:
    """This app's CachedLoad, made on first use."""
    extensions = current_app.extensions
    with _making:
        if "dalga-load" not in extensions:
            extensions["dalga-load"] = CachedLoad(dalga().client.store)
    return extensions["dalga-load"]


def load_json(found: dict[str, Any]) -> dict[str, Any]:
    """The cached load as JSON: instants in RFC 3339."""
    return {
        "now": instant(found["now"]),
        "computed_at": instant(found["computed_at"]),
        "age_seconds": found["age_seconds"],
        "overdue": found["overdue"],
        "due_per_second": {"start": instant(found["start"]), "counts": found["due_per_second"]},
        "due_per_minute": {"start": instant(found["start"]), "counts": found["due_per_minute"]},
        "peak_second": found["peak_second"],
        "peak_minute": found["peak_minute"],
        "callbacks_per_minute": [
            {**entry, "minute": instant(entry["minute"])} for entry in found["callbacks_per_minute"]
        ],
        "callbacks_by_outcome": found["callbacks_by_outcome"],
        "lateness": LATENESS,
    }


def path_prefix(values: Any) -> str:
    """The spread's path-prefix: given (empty means every job), at most MAX_PATH characters,
    without control characters."""
    prefix = values.get(PREFIX)
    if prefix is None:
        raise InvalidParameter(PREFIX, "missing (an empty one spreads every job)")
    if len(prefix) > MAX_PATH:
        raise InvalidParameter(PREFIX, f"longer than {MAX_PATH} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in prefix):
        raise InvalidParameter(PREFIX, f"{shown(prefix)} holds control characters")
    return prefix


def spread(prefix: str) -> dict[str, int]:
    """Spread the jobs under prefix (store.spread), logged."""
    counts = dalga().client.store.spread(prefix)
    log.info(
        "spread path-prefix=%r moved=%d skipped=%d", prefix, counts["moved"], counts["skipped"]
    )
    return counts


@loads.get("/load")
def load() -> Any:
    reject_unknown(set(request.args), [])
    return jsonify(load_json(cached_load()()))


@loads.post("/spread")
def spread_route() -> Any:
    reject_unknown(set(request.args) | set(request.form), [PREFIX])
    prefix = path_prefix({**request.form.to_dict(), **request.args.to_dict()})
    return jsonify({PREFIX: prefix, **spread(prefix)})
