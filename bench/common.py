"""Shared pieces of the benchmarks: their database and store, the recording endpoint under
uvicorn, RSS and CPU meters, queue scans, result lines. Processes are started, awaited and
stopped with tests/processes.py, as the tests and the fault suite do."""

from __future__ import annotations

import base64
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "tests") not in sys.path:
    sys.path.append(str(ROOT / "tests"))  # the test kit: processes.py, endpoint_server.py

from processes import Process, celery, dalga_env, free_port, start, stop, wait_http  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MARIADB = os.environ.get("DALGA_BENCH_MARIADB", "mysql://root@127.0.0.1:3306")
REDIS = os.environ.get("DALGA_BENCH_REDIS", "redis://127.0.0.1:6379/12")


def database(name: str) -> str:
    """URL of a MariaDB database of the benchmarks' own, created if missing."""
    engine = create_engine(MARIADB)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4"))
    engine.dispose()
    return f"{MARIADB}/{name}"


def machine() -> str:
    return f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"


def record(bench: str, figures: dict) -> None:
    """Print the figures and append them, dated, to bench/results/<bench>.jsonl."""
    line = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": " ".join(["python"] + sys.argv),
        **figures,
    }
    print(json.dumps(line), flush=True)
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / f"{bench}.jsonl").open("a") as out:
        out.write(json.dumps(line) + "\n")


SEED = 1000  # jobs a fill writes through the store, the rest copied from them


def fill(
    store, jobs: int, path: Callable[[int], str] = lambda i: "bench", over: int = 300
) -> float:
    """Write `jobs` jobs (interval 300 s) into the empty MariaDB table, the i-th of the first
    1,000 with path(i) and the rest copied from them by one INSERT ... SELECT over MariaDB's
    sequence engine, their next runs spread over `over` seconds (whole seconds apart, so many
    share one; 1: all due in one second); seconds taken."""
    from celery_dalga.spec import parse_spec

    started = time.perf_counter()
    seed = min(SEED, jobs)
    store.put_many([parse_spec(path(i), str(i), {"interval": "300"}) for i in range(seed)])
    copies = -(-jobs // seed) - 1
    if copies:
        columns = [c.name for c in store.table.c if c.name != "id"]
        made = {
            "job_key": "SHA2(CONCAT(path, CHAR(0), body, '-', seq), 256)",
            "body": "CONCAT(body, '-', seq)",
            "next_run": f"next_run + INTERVAL (seq % {over}) SECOND",
            "next_sched": f"next_sched + INTERVAL (seq % {over}) SECOND",
        }
        names = ", ".join(f"`{c}`" for c in columns)
        values = ", ".join(made.get(c, f"`{c}`") for c in columns)
        table = store.table.name
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    f"INSERT INTO `{table}` ({names}) SELECT {values} FROM `{table}` "
                    f"CROSS JOIN seq_1_to_{copies} LIMIT {jobs - seed}"
                )
            )
    return time.perf_counter() - started


@contextmanager
def served_jobs(name: str, jobs: int, path: Callable[[int], str], source: str | None = None):
    """A context: a fresh MariaDB table `name` made by `dalga create-table` of the checkout
    `source` (None: this one), filled with `jobs` jobs (fill), served by that checkout's
    `dalga web` on a free port; yields (base URL, Store, fill seconds). The server is stopped
    and the table dropped afterwards."""
    from celery_dalga.config import Settings
    from celery_dalga.process import store_for

    settings = Settings(database_url=database("cdalga_bench"), port=free_port(), table=name)
    env = {**dalga_env(settings, REDIS), **source_env(source)}
    home = Path(source).resolve() if source else ROOT  # `-m` puts the cwd first on sys.path
    log = Path(tempfile.mkdtemp(prefix="dalga-web-")) / "web.log"
    dalga = [sys.executable, "-m", "celery_dalga.cli"]
    subprocess.run([*dalga, "create-table"], env=env, cwd=home, check=True)
    store = store_for(settings)
    try:
        print(f"  filling {jobs} jobs", file=sys.stderr)
        took = fill(store, jobs, path)
        web = start([*dalga, "web"], env, home, log)
        try:
            base = f"http://127.0.0.1:{settings.port}"
            wait_http(base + "/openapi.json", web, timeout=120)
            yield base, store, took
        finally:
            stop(web)
    finally:
        store.drop_table()


def timed(
    get: Callable[[str], Any], url: str, count: int, pause: float, budget: float = float("inf")
) -> list[float]:
    """Seconds each of `count` GETs of url, `pause` seconds apart, took, sorted; fewer (3 at
    least) once they have taken `budget` seconds."""
    took: list[float] = []
    for _ in range(count):
        if len(took) >= 3 and sum(took) > budget:
            break
        started = time.perf_counter()
        resp = get(url)
        took.append(time.perf_counter() - started)
        assert resp.status_code == 200, resp.status_code
        time.sleep(pause)
    return sorted(took)


def figures(route: str, took: list[float]) -> dict:
    """p50, p99 and max in ms of sorted timings, named after the route."""
    name = route.replace(".json", "")
    return {
        f"{name}_p50_ms": round(statistics.median(took) * 1000, 2),
        f"{name}_p99_ms": round(took[max(0, int(len(took) * 0.99) - 1)] * 1000, 2),
        f"{name}_max_ms": round(took[-1] * 1000, 2),
    }


DALGA_BEAT = celery("beat", "-S", "celery_dalga.Scheduler", "--loglevel", "WARNING")


def bench_store(queue: str, **options):
    """Settings for a benchmark on its own queue and table (1,000-row batches unless given),
    and the Store with that table created."""
    from celery_dalga.config import Settings
    from celery_dalga.process import store_for

    settings = Settings(
        **{
            "database_url": database("cdalga_bench"),
            "queue": queue,
            "table": f"bench_{queue.replace('-', '_')}",
            "batch_size": 1000,
            **options,
        }
    )
    store = store_for(settings)
    store.create_table()
    return settings, store


def source_env(source: str | None) -> dict[str, str]:
    """Environment that makes child processes run the celery_dalga of another checkout (a
    `git worktree` of an earlier commit: "before" figures in the same run); {} for this one."""
    return {"PYTHONPATH": str(Path(source).resolve())} if source else {}


def code_of(source: str | None) -> str:
    """The commit of a checkout (this one when None), for the record; "+changes" when its
    files differ from it (bench/results/, which runs append to, does not count); a folder
    that is not a git checkout goes by its name."""
    where = source or str(ROOT)
    out = subprocess.run(["git", "-C", where, "rev-parse", "--short", "HEAD"], capture_output=True)
    if out.returncode:  # not a git checkout (a `git archive` of a commit): its folder's name
        return Path(where).resolve().name
    unchanged = ["git", "-C", where, "diff", "--quiet", "HEAD", "--", ".", ":!bench/results"]
    dirty = subprocess.run(unchanged).returncode
    return out.stdout.decode().strip() + ("+changes" if dirty else "")


def start_endpoint(port: int, env: dict[str, str], log: Path) -> Process:
    """The recording callback endpoint (bench/endpoint_app.py) under uvicorn on 127.0.0.1."""
    args = [sys.executable, "-m", "uvicorn", "bench.endpoint_app:app", "--port", str(port)]
    return start([*args, "--log-level", "warning", "--no-access-log"], env, ROOT, log)


def rss_mb(pid: int) -> float:
    """Resident set size now, in MB (0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


RUNS_IN_REPR = re.compile(rb"\"kwargsrepr\": \"\{'runs': (\d+)")


def runs_in(raw: bytes) -> int:
    """How many runs a queued message carries: an http_callbacks task says so in its repr;
    any other task (http_callback, the peers' tasks) is one."""
    found = RUNS_IN_REPR.search(raw)
    return int(found[1]) if found else 1


def wait_for_messages(
    client: redis.Redis, queue: str, want: int, procs: list, timeout: float
) -> dict:
    """Poll the queue until its messages carry `want` runs (reading each new message once:
    they are pushed at the head); track first/last arrival and peak RSS."""
    started = time.monotonic()
    first = None
    peak = {p.pid: 0.0 for p in procs}
    seen = runs = 0
    last_print = started
    while time.monotonic() - started < timeout:
        length = client.llen(queue)
        if length > seen:
            runs += sum(runs_in(raw) for raw in client.lrange(queue, 0, length - seen - 1))
            seen = length
        now = time.monotonic()
        if runs and first is None:
            first = now
        for p in procs:
            peak[p.pid] = max(peak[p.pid], rss_mb(p.pid))
        if now - last_print > 5:
            print(f"  {runs}/{want} runs after {now - started:.0f} s", file=sys.stderr)
            last_print = now
        if runs >= want:
            break
        time.sleep(0.02)
    done = time.monotonic()
    return {
        "messages": seen,
        "runs": runs,
        "seconds_total": round(done - started, 2),
        "first_message_after": round(first - started, 2) if first else None,
        "seconds_publishing": round(done - first, 2) if first else None,
        "peak_rss_mb": [round(v, 1) for v in peak.values()],
        "finished": runs >= want,
    }


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SERVICES = ("redis-server", "mariadbd")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) of a live process, from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_rss_mb(root: int) -> float:
    """Resident set size now of a process and all its descendants, in MB."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            parents[int(entry.name)] = stat[0]
    tree = {root}
    for pid in sorted(parents):
        ancestor = pid
        while ancestor in parents and ancestor not in tree and ancestor > 1:
            ancestor = parents[ancestor]
        if ancestor in tree:
            tree.add(pid)
    return sum(rss_mb(pid) for pid in tree)


def _service_pids() -> dict[str, list[int]]:
    found: dict[str, list[int]] = {name: [] for name in SERVICES}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name = (entry / "comm").read_text().strip()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if name in found:
                found[name].append(int(entry.name))
    return found


class CpuMeter:
    """CPU seconds spent by named process trees (a process and all its descendants) and by the
    Redis and MariaDB servers, read from /proc. sample() remembers each process's latest
    figure, so a child that exits between samples keeps what it had spent by the last one."""

    def __init__(self, roots: dict[str, list[int]]):
        self.roots = {**roots, **_service_pids()}
        self.start: dict[int, float] = {}
        self.latest: dict[int, float] = {}
        self.group: dict[int, str] = {}
        self.sample()
        self.start = dict(self.latest)

    def sample(self) -> None:
        parents: dict[int, int] = {}
        spent: dict[int, float] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and (stat := _stat(int(entry.name))):
                parents[int(entry.name)], spent[int(entry.name)] = stat
        for name, pids in self.roots.items():
            for pid in pids:
                self.group.setdefault(pid, name)
        for pid in spent:
            ancestor = pid
            while ancestor in parents and ancestor not in self.group:
                ancestor = parents[ancestor]
            if ancestor in self.group:
                self.group[pid] = self.group[ancestor]
                self.latest[pid] = spent[pid]

    def seconds(self) -> dict[str, float]:
        """CPU seconds per group since the meter was made (call sample() first)."""
        out = dict.fromkeys(self.roots, 0.0)
        for pid, value in self.latest.items():
            out[self.group[pid]] += value - self.start.get(pid, 0.0)
        return {name: round(value, 2) for name, value in out.items()}


def scan_jobs(client: redis.Redis, queue: str) -> tuple[int, int]:
    """(runs, distinct jobs) in the queue, read in chunks. A job is a run's body
    (celery-dalga) or the task's first argument (the peers' benchmark tasks)."""
    from celery_dalga.messages import runs_of

    total, jobs = 0, set()
    for start_at in range(0, client.llen(queue), 10000):
        for raw in client.lrange(queue, start_at, start_at + 9999):
            message = json.loads(raw)
            args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
            if kwargs:
                bodies = [run.body for run in runs_of(message["headers"]["task"], kwargs)]
            else:
                bodies = [args[0]]
            jobs.update(bodies)
            total += len(bodies)
    return total, len(jobs)
