"""This process's shared things, in one place: the store and the registered instance for each
Settings, and what other modules keep per process (the HTTP limits, the pools that call task
jobs, whether metrics are served) or per thread (an HTTP client, AMQP publishers).

A forked pool child calls reset_after_fork() before its first delivery: it must not use its
parent's database connections, sockets, threads or instance. stop() deregisters the
instances; it runs at exit once the first instance has started (nothing is registered at
import).
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from celery_dalga.config import Settings
from celery_dalga.instances import Instance
from celery_dalga.store import Store, make_engine

log = logging.getLogger(__name__)
STORES_KEPT = 8  # stores (each an engine and its pool) kept, the most recently used

T = TypeVar("T")


class Shared:
    """What the threads of this process share, each thing made on first use."""

    def __init__(self, metrics_served: bool = False, stops_at_exit: bool = False):
        self.lock = threading.Lock()
        self.registering = threading.Lock()  # held while an instance starts (a database call)
        self.stores: dict[Settings, Store] = {}
        self.instances: dict[Settings, Instance] = {}
        self.things: dict[Hashable, Any] = {}
        self.threads = threading.local()
        self.metrics_served = metrics_served
        self.stops_at_exit = stops_at_exit


_shared = Shared()


def store_for(settings: Settings) -> Store:
    """This process's Store for these settings (one engine and pool per process)."""
    with _shared.lock:
        store = _shared.stores.pop(settings, None)
        if store is None:
            store = Store(make_engine(settings.database_url), settings.table, settings.policy())
        _shared.stores[settings] = store  # the most recently used last
        while len(_shared.stores) > STORES_KEPT:
            del _shared.stores[next(iter(_shared.stores))]
        return store


def instance_for(settings: Settings, kind: str = "worker") -> Instance:
    """This process's instance for these settings, started on first use and again once
    stopped (the first caller's kind names it: `dalga run` registers as one "run" instance)."""
    with _shared.registering:
        instance = _shared.instances.get(settings)
        if instance is None or instance.stopped:
            if not _shared.stops_at_exit:
                atexit.register(stop)
                _shared.stops_at_exit = True
            instance = _shared.instances[settings] = Instance(store_for(settings), kind).start()
        return instance


def per_process(key: Hashable, make: Callable[[], T]) -> T:
    """This process's thing under `key`, made by `make` on first use."""
    with _shared.lock:
        if key not in _shared.things:
            _shared.things[key] = make()
        thing: T = _shared.things[key]
        return thing


def per_thread(key: Hashable, make: Callable[[], T]) -> T:
    """This thread's thing under `key`, made by `make` on first use."""
    things = getattr(_shared.threads, "things", None)
    if things is None:
        things = _shared.threads.things = {}
    if key not in things:
        things[key] = make()
    thing: T = things[key]
    return thing


def serve_metrics_once(serve: Callable[[], None]) -> None:
    """Call `serve` (it starts the metrics server) unless this process, or the parent it was
    forked from, already has."""
    with _shared.lock:
        if not _shared.metrics_served:
            serve()
            _shared.metrics_served = True


def reset_after_fork() -> None:
    """Forget everything the parent shared: this process opens its own connections and
    registers as an instance of its own when it first needs one. The parent's metrics server
    and exit hook are kept (its port stays taken, the hook is inherited)."""
    global _shared
    _shared = Shared(_shared.metrics_served, _shared.stops_at_exit)


def stop() -> None:
    """Write the runs this process settled to the load table, and deregister its instances
    (it is stopping)."""
    with _shared.lock:
        stores = list(_shared.stores.values())
    for store in stores:
        try:
            store.flush_load()
        except Exception as exc:  # stopping goes on; those counts are lost
            log.warning("load tally not written at stop: %s: %s", type(exc).__name__, exc)
    with _shared.registering:
        stopping = list(_shared.instances.values())
        _shared.instances.clear()
    for instance in stopping:
        instance.stop()
