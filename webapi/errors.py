"""Error answers: JSON `{"error": ...}` that echo at most a short prefix of what was sent."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from celery_dalga.values import SHOWN


def short(text: str, limit: int = SHOWN) -> str:
    """text, cut to `limit` characters and marked as cut."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def json_error(status: int, message: str, **extra: Any) -> Response:
    """A JSON error answer; the message is cut to a few lines' worth."""
    answer = jsonify(error=short(message, 4 * SHOWN), **extra)
    answer.status_code = status
    return answer
