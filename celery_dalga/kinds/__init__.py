"""Callback kinds: the ways a job's runs are delivered, one module each (http: POST to
base_url; amqp: publish to an exchange; task: call a Celery task). A kind validates at PUT
what a job asks of it and delivers a task's runs, reporting per run delivered, failed or
not sent (kinds.base). Every module of this package is imported here, and registers its
kind: a new kind is one new file. A kind defined elsewhere registers itself with `register`
in a module the worker imports.
"""

from __future__ import annotations

import importlib
import pkgutil

from celery_dalga.kinds.base import (
    Delivery,
    Kind,
    Result,
    UnknownKind,
    kind_of,
    name_of,
    register,
    registry,
    validate,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "Delivery",
    "Kind",
    "Result",
    "UnknownKind",
    "kind_of",
    "name_of",
    "register",
    "registry",
    "validate",
]
