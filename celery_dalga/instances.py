"""This process as a Dalga instance: a random 32-bit id, registered in <table>_instances with a
heartbeat every second (Dalga's instance.go); an instance not heard of for a minute is gone.
Callbacks carry the id in `Dalga-Instance`, /status counts the live instances. Each process's
instances are kept in celery_dalga.process."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading

from sqlalchemy.exc import SQLAlchemyError

from celery_dalga.store import Store

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 1.0


class Instance:
    """A registered process; start() begins the heartbeat, stop() deregisters."""

    def __init__(self, store: Store, kind: str):
        self.id = secrets.randbits(32)
        self.kind = kind
        self.store = store
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Instance:
        """Register now, then keep the registration fresh from a daemon thread."""
        self._beat(quiet=False)
        self._thread = threading.Thread(target=self._run, name="dalga-heartbeat", daemon=True)
        self._thread.start()
        log.info("instance %d (%s) registered", self.id, self.kind)
        return self

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def stop(self) -> None:
        """Stop the heartbeat and remove the registration (once)."""
        if self.stopped:
            return
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            self.store.forget_instance(self.id)
        except SQLAlchemyError as exc:
            log.warning("instance %d could not deregister: %s", self.id, exc)

    def _run(self) -> None:
        failing = False
        while not self._stopped.wait(HEARTBEAT_SECONDS):
            failing = not self._beat(quiet=failing)

    def _beat(self, quiet: bool) -> bool:
        """One heartbeat; logs the first failure of a streak, and the recovery."""
        try:
            self.store.heartbeat(self.id, self.kind, socket.gethostname(), os.getpid())
        except SQLAlchemyError as exc:
            if not quiet:
                log.warning("instance %d heartbeat failed: %s", self.id, exc)
            return False
        if quiet:
            log.info("instance %d heartbeat back", self.id)
        return True
