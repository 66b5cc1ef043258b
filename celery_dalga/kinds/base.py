"""What a callback kind is (a way to deliver a job's runs: POST, publish, call a task...),
what it reports for each run, and the registry that finds a job's kind."""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol

from celery_dalga.config import Settings
from celery_dalga.jobs import Run
from celery_dalga.quartz import Remove, Reschedule
from celery_dalga.spec import KIND, InvalidParameter, JobSpec
from celery_dalga.values import shown


class Delivery(StrEnum):
    """What one call of a run came to."""

    DELIVERED = "delivered"  # the run reached its destination, which took it
    FAILED = "failed"  # it did not; retried with the usual backoff
    NOT_SENT = "not_sent"  # it cannot have reached the destination: uses no retry


@dataclass(frozen=True)
class Result:
    """A kind's report of one run: how it went; `detail` is what to show when delivered
    (HTTP 200, confirmed, the task's return) and why not otherwise; the seconds it took and
    when it ended (time.monotonic()); `wait`, the seconds the destination asked to be left
    alone (Retry-After) or has been unreachable; `status`, the HTTP status of kinds that have
    one (None: no answer, or no HTTP); `asks`, what a delivered run asks of its job (Remove it,
    Reschedule it: celery_dalga.quartz), None for its next slot."""

    delivery: Delivery
    detail: str
    seconds: float
    ended: float
    wait: float = 0.0
    status: int | None = None
    asks: Reschedule | Remove | None = None

    @classmethod
    def since(cls, started: float, delivery: Delivery, detail: str) -> Result:
        """The result of a call that started at `started` (time.monotonic()) and ends now."""
        ended = time.monotonic()
        return cls(delivery, detail, ended - started, ended)

    @classmethod
    def refused(cls, why: str) -> Result:
        """A run that is not called at all (its job asks for what the settings forbid): a
        failure, so it is retried and the job shows why."""
        return cls(Delivery.FAILED, why, 0.0, time.monotonic())


class Kind(ABC):
    """A way to deliver runs. A kind has a `name` (what a job's `kind` says), checks at PUT
    what a job of its kind asks for (`validate`) and delivers a task's runs of its kind
    (`deliver`), one Result per run, in order."""

    name: str

    def validate(self, spec: JobSpec, settings: Settings) -> None:
        """Raise InvalidParameter for a job this kind cannot deliver; by default it takes no
        options."""
        if spec.options:
            raise InvalidParameter("options", f"the {self.name} kind takes no options")

    @abstractmethod
    def deliver(
        self,
        settings: Settings,
        runs: list[Run],
        instance_id: int,
        app: Any,
        start_by: float = math.inf,
    ) -> list[Result]:
        """Deliver the runs (of this kind, from one task; `app` is the worker's Celery app,
        `instance_id` this process's), starting no call after `start_by` (time.monotonic():
        later, its lease could run out during the call); a Result per run, in order."""


class Target(Protocol):
    """What chooses a kind: a JobSpec, a Job or a Run."""

    @property
    def kind(self) -> str | None: ...
    @property
    def task(self) -> str | None: ...
    @property
    def exchange(self) -> str | None: ...


class UnknownKind(LookupError):
    """No kind of that name is registered in this process."""


registry: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Make a kind known by its name (a second kind of the same name is refused)."""
    if not KIND.match(kind.name):
        raise ValueError(f"a callback kind's name must match {KIND.pattern}: {kind.name!r}")
    if registry.get(kind.name, kind) is not kind:
        raise ValueError(f"a callback kind named {kind.name!r} is registered already")
    registry[kind.name] = kind
    return kind


def name_of(target: Target, settings: Settings) -> str:
    """The name of a job's kind: its own `kind` when it names one; else a task job's is
    "task", an exchange job's (or every job's, with publish_exchange) "amqp", any other's
    "http"."""
    if target.kind:
        return target.kind
    if target.task:
        return "task"
    return "amqp" if target.exchange or settings.publish_exchange else "http"


def kind_of(target: Target, settings: Settings) -> Kind:
    """The kind that delivers a job's runs; UnknownKind when none of its name is registered."""
    name = name_of(target, settings)
    if name not in registry:
        raise UnknownKind(f"no callback kind {shown(name)} (known: {', '.join(sorted(registry))})")
    return registry[name]


RESERVED = "kala"  # the options key that Kala's API keeps its own fields under: no kind's


def validate(spec: JobSpec, settings: Settings) -> None:
    """PUT's checks of what a job asks its kind for: the kind exists, its name agrees with
    task or exchange, and the kind takes the job (allowed_tasks, allowed_exchanges,
    options...), its options seen without the reserved key "kala" (Kala's fields, which
    webapi.kala keeps there). Raises InvalidParameter."""
    try:
        kind = kind_of(spec, settings)
    except UnknownKind as exc:
        raise InvalidParameter("kind", str(exc)) from None
    implied = "task" if spec.task else "amqp" if spec.exchange else None
    if spec.kind and implied and spec.kind != implied:
        field = "task" if spec.task else "exchange"
        raise InvalidParameter("kind", f"{shown(spec.kind)} cannot be combined with {field}")
    if spec.options and RESERVED in spec.options:
        spec = replace(spec, options=own_options(spec.options) or None)
    kind.validate(spec, settings)


def own_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """A job's options for its kind: without the reserved key "kala"."""
    return {k: v for k, v in (options or {}).items() if k != RESERVED}
