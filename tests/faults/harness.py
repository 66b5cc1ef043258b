"""Fault-suite harness: a cluster of real processes, a workload, figures (the recording
endpoint is tests/endpoint_server.py).

Every process is started here and stopped by its PID; every scenario is bounded in time.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from endpoint_server import Call, Endpoint
from processes import Process, celery, dalga_env, start, stop
from waiting import poll, watch

from celery_dalga.config import Settings
from celery_dalga.process import store_for
from celery_dalga.spec import parse_spec
from celery_dalga.store import Store

RESULTS = Path(__file__).with_name("results.jsonl")
DISPATCHED = re.compile(r"dispatched (\d+) runs")
BATCHED = re.compile(r"dispatched (\d+) runs in (\d+) tasks")


@dataclass
class Cluster:
    """Real beats, workers and `dalga web` on one table, one broker, one endpoint."""

    tmp: Path
    settings: Settings
    broker_url: str
    pool: tuple[str, str] = ("threads", "16")  # the workers' --pool and --concurrency
    procs: dict[str, Process] = field(default_factory=dict)
    history: list[tuple[float, str]] = field(default_factory=list)

    @property
    def store(self) -> Store:
        return store_for(self.settings)

    @property
    def env(self) -> dict[str, str]:
        return dalga_env(self.settings, broker_url=self.broker_url)

    def start(self, name: str) -> None:
        if name.startswith("beat"):
            args = celery("beat", "-S", "celery_dalga.Scheduler", "--loglevel", "INFO")
        elif name.startswith("worker"):
            args = celery(
                "worker",
                "--pool",
                self.pool[0],
                "--concurrency",
                self.pool[1],
                "-n",
                f"{name}-{uuid.uuid4().hex[:6]}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            )
        else:
            args = [sys.executable, "-m", "celery_dalga.cli", "web"]
        runs = sum(1 for _, n in self.history if n.startswith(f"start {name}"))
        self.procs[name] = start(args, self.env, self.tmp, f"{name}.{runs}.log")
        self.history.append((time.monotonic(), f"start {name}"))

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        stop(self.procs.pop(name), sig, timeout=20)
        self.history.append((time.monotonic(), f"kill {name}"))

    def stop_all(self) -> None:
        for name in list(self.procs):
            stop(self.procs.pop(name), signal.SIGTERM, timeout=20)

    def dispatches_per_beat(self) -> dict[str, int]:
        counts: Counter = Counter()
        for log in self.tmp.glob("beat*.log"):
            text = log.read_text(errors="replace")
            counts[log.name.split(".")[0]] += sum(int(n) for n in DISPATCHED.findall(text))
        return dict(sorted(counts.items()))

    def most_runs_per_task(self) -> float:
        """The largest average of runs per task in one of the beats' claims."""
        ratios = [
            int(runs) / int(tasks)
            for log in self.tmp.glob("beat*.log")
            for runs, tasks in BATCHED.findall(log.read_text(errors="replace"))
        ]
        return max(ratios, default=0.0)

    def log_count(self, prefix: str, text: str) -> int:
        """How many times `text` stands in the logs of the processes named prefix*."""
        return sum(
            log.read_text(errors="replace").count(text) for log in self.tmp.glob(prefix + "*.log")
        )

    def tracebacks(self) -> list[str]:
        """Tracebacks in any process log (a fault handled by design leaves none)."""
        found = []
        for log in self.tmp.glob("*.log"):
            text = log.read_text(errors="replace")
            if "Traceback" in text:
                found.append(f"{log.name}: {text[text.index('Traceback') :][:1500]}")
        return found


@dataclass
class Workload:
    """One-off jobs spread over the window and interval jobs running through it."""

    one_offs: set[str]
    intervals: set[str]
    start: datetime
    end: datetime


def load_workload(
    store: Store,
    one_offs: int,
    intervals: int,
    every: int,
    seconds: float,
    lead: float = 12.0,
    clump: int = 1,
) -> Workload:
    """Jobs whose first runs start `lead` seconds from now, so the processes are up by then;
    the one-offs fall due `clump` at a time (so that beat sends them as tasks of many runs)."""
    now = store.now()
    start = now + timedelta(seconds=lead)
    end = start + timedelta(seconds=seconds)
    span = (end - start).total_seconds() - 5
    for i in range(one_offs):
        first = start + timedelta(seconds=span * (i - i % clump) / max(one_offs, 1))
        store.put(parse_spec("once", str(i), {"one-off": "true", "first-run": first.isoformat()}))
    for i in range(intervals):
        first = start + timedelta(seconds=every * i / max(intervals, 1))
        store.put(
            parse_spec("every", str(i), {"interval": str(every), "first-run": first.isoformat()})
        )
    return Workload(
        {str(i) for i in range(one_offs)}, {str(i) for i in range(intervals)}, start, end
    )


def load_burst(store: Store, count: int, lead: float) -> Workload:
    """`count` one-off jobs all due at one instant, `lead` seconds from now."""
    at = store.now() + timedelta(seconds=lead)
    first = {"one-off": "true", "first-run": at.isoformat()}
    store.put_many([parse_spec("once", str(i), first) for i in range(count)])
    return Workload({str(i) for i in range(count)}, set(), at, at)


def sleep_until(when: datetime, store: Store) -> None:
    """Let the scenario run until `when` on the database's clock."""
    time.sleep(max(0.0, (when - store.now()).total_seconds()))


def settle(cluster: Cluster, endpoint: Endpoint, work: Workload, timeout: float) -> None:
    """Stop the interval jobs at the window's end and wait for the one-offs to be delivered."""
    store = cluster.store
    sleep_until(work.end, store)
    for body in work.intervals:
        store.set_enabled("every", body, enabled=False)
    # not asserted: what never came is counted as lost by figures()
    poll(lambda: work.one_offs <= delivered_bodies(endpoint, "once"), timeout, every=0.5)
    watch(2)  # a duplicate in flight arrives within this


def delivered_bodies(endpoint: Endpoint, path: str) -> set[str]:
    return {c.body for c in endpoint.delivered() if c.path == path}


@dataclass
class Figures:
    scenario: str
    delivered: int
    lost: int
    duplicated: int
    max_lateness: float
    p99_lateness: float
    per_beat: dict[str, int]
    duplicate_keys_consistent: bool
    extra: dict = field(default_factory=dict)

    def line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.extra.items())
        return (
            f"[{self.scenario}] delivered={self.delivered} lost={self.lost} "
            f"duplicated={self.duplicated} max_lateness={self.max_lateness:.2f}s "
            f"p99_lateness={self.p99_lateness:.2f}s per_beat={self.per_beat} {extra}"
        ).strip()


def figures(
    scenario: str, cluster: Cluster, endpoint: Endpoint, work: Workload, lease: float, **extra
) -> Figures:
    """Lost: a one-off never delivered, or an interval job whose chain stalled (no delivery
    scheduled in the last lease + 10 s of the window). Duplicated: deliveries
    beyond one per (job, Dalga-Sched). Lateness: first delivery minus Dalga-Sched."""
    delivered = endpoint.delivered()
    by_run: dict[tuple, list[Call]] = defaultdict(list)
    for a in delivered:
        by_run[(a.path, a.body, a.sched)].append(a)
    lost = len(work.one_offs - delivered_bodies(endpoint, "once"))
    last_sched = {}
    for path, body, sched in by_run:
        if path == "every":
            last_sched[body] = max(last_sched.get(body, ""), sched)
    stall = work.end - timedelta(seconds=lease + 10)
    for body in work.intervals:
        last = last_sched.get(body)
        if last is None or datetime.fromisoformat(last) < stall:
            lost += 1
    lateness = sorted(
        (runs[0].received - datetime.fromisoformat(sched)).total_seconds()
        for (_, _, sched), runs in by_run.items()
    )
    result = Figures(
        scenario=scenario,
        delivered=len(delivered),
        lost=lost,
        duplicated=sum(len(runs) - 1 for runs in by_run.values()),
        max_lateness=lateness[-1] if lateness else 0.0,
        p99_lateness=lateness[int(len(lateness) * 0.99) - 1] if lateness else 0.0,
        per_beat=cluster.dispatches_per_beat(),
        duplicate_keys_consistent=all(
            len({a.idempotency_key for a in runs}) == 1 for runs in by_run.values()
        ),
        extra=extra,
    )
    print(result.line(), flush=True)
    if os.environ.get("DALGA_FAULTS_RECORD") == "1":  # `make faults`; `make test` leaves no trace
        with RESULTS.open("a") as out:
            line = {"date": datetime.now(UTC).isoformat(timespec="seconds"), **result.__dict__}
            out.write(json.dumps(line) + "\n")
    return result


def random_kills(
    cluster: Cluster,
    prefix: str,
    names: list[str],
    until: float,
    every: tuple[float, float],
    down_for: float = 1.0,
) -> int:
    """kill -9 a random process of `names` every few seconds and restart it; returns kills."""
    kills = 0
    while time.monotonic() < until:
        time.sleep(random.uniform(*every))
        if time.monotonic() >= until:
            break
        name = random.choice(names)
        cluster.kill(name)
        kills += 1
        time.sleep(down_for)
        cluster.start(name)
    return kills
