"""Waiting in tests: until something happens, or through a window in which something must not."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(condition: Callable[[], T], timeout: float, every: float = 0.05) -> T:
    """Call `condition` every `every` seconds until it returns something truthy or `timeout`
    seconds have passed; return its last value (falsy when it never came)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(every)


def wait_until(
    condition: Callable[[], T],
    timeout: float = 20.0,
    what: str | Callable[[], str] = "",
    every: float = 0.05,
) -> T:
    """Poll `condition` until it returns something truthy and return that; fail after
    `timeout` seconds, saying `what` (a text, or a function giving one then) did not happen."""
    value = poll(condition, timeout, every)
    if not value:
        raise AssertionError(f"not within {timeout:g} s: {_describe(what, condition)}")
    return value


def stays(
    condition: Callable[[], object],
    seconds: float,
    what: str | Callable[[], str] = "",
    every: float = 0.1,
) -> None:
    """Assert that `condition` holds throughout the next `seconds`: checked every `every`
    seconds and once more at the end, failing at the first check where it does not.

    This is how a test shows that something does NOT happen (a second call, a call while a
    job is paused): nothing signals that it did not, so the only way is to watch for a fixed
    window as long as the unwanted thing would take to show. The window is the claim the test
    makes: do not shorten it."""
    deadline = time.monotonic() + seconds
    while True:
        assert condition(), f"within {seconds:g} s: {_describe(what, condition)}"
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(every, left))


def watch(seconds: float) -> None:
    """Let `seconds` pass so that whatever would still arrive late (a duplicate in flight, a
    second dispatch of a run) has arrived before the test counts what it got.

    For counts taken afterwards rather than a condition to hold throughout (then use stays()):
    nothing signals that no more will come, so a fixed window, as long as the slowest such
    arrival, is the only way. Do not shorten it."""
    time.sleep(seconds)


def _describe(what: str | Callable[[], str], condition: Callable) -> str:
    """`what`, else the source line of the condition."""
    if callable(what):
        return what()
    if what:
        return what
    try:
        return inspect.getsource(condition).strip()
    except (OSError, TypeError):
        return repr(condition)
