"""Benchmark 5, a burst at a small or slow endpoint: does delivery adapt to what it is given?

    python bench/burst.py --endpoint small --jobs 1500 --sources /tmp/before .
    python bench/burst.py --endpoint slots --jobs 10000 --sources /tmp/before .
    python bench/burst.py --runs-per-task 1 --sources /tmp/before   # the one-run-per-task design
    python bench/burst.py --quick

N one-off jobs fall due at one instant; three beats and two prefork workers (-c 8) deliver them
to an endpoint on 127.0.0.1 made with Python's ThreadingHTTPServer: `small` as it comes
(listen backlog 5, HTTP/1.0, a connection per request), or `slots`, one that serves 20
requests at a time in 50 ms each (the rest wait). Reports the runs delivered more than once,
the callbacks that timed out, the runs held back by the adaptive limit, and the lateness of
the last run (the drain time). The processes of the fault suite (tests/faults/harness.py) run
it; `--sources` runs them on the code of other checkouts in turn (a `git worktree` of an
earlier commit gives before/after figures in one run).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "faults")]

from endpoint_server import Endpoint  # noqa: E402
from harness import Cluster, figures, load_burst, settle  # noqa: E402
from processes import free_port  # noqa: E402

from bench.common import REDIS, code_of, database, record, source_env  # noqa: E402
from celery_dalga.config import Settings  # noqa: E402


def run(
    kind: str, jobs: int, beats: int, workers: int, source: str | None, runs_per_task: int
) -> dict:
    endpoint = Endpoint(small=True) if kind == "small" else Endpoint(slots=20)
    endpoint.delay = 0.0 if kind == "small" else 0.05
    settings = Settings(
        database_url=database("dalga_bench"),
        table=f"burst_{uuid.uuid4().hex[:8]}",
        base_url=endpoint.base_url,
        queue=f"burst-{uuid.uuid4().hex[:8]}",
        callback_timeout=10.0,
        lease=60.0,
        runs_per_task=runs_per_task,
        port=free_port(),
    )
    os.environ.pop("PYTHONPATH", None)
    os.environ.update(source_env(source))
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="dalga-burst-")), settings, REDIS)
    cluster.pool = ("prefork", "8")
    cluster.store.create_table()
    try:
        work = load_burst(cluster.store, jobs, lead=20)
        for i in range(workers):
            cluster.start(f"worker{i}")
        for i in range(beats):
            cluster.start(f"beat{i}")
        print(f"  {jobs} runs due at {work.start:%H:%M:%S}; waiting for them", file=sys.stderr)
        settle(cluster, endpoint, work, timeout=180)
        result = figures(
            f"burst {kind}",
            cluster,
            endpoint,
            work,
            settings.lease,
            timeouts=cluster.log_count("worker", "curl error 28"),
            not_sent=cluster.log_count("worker", "outcome=not_sent"),
        )
    finally:
        cluster.stop_all()
        cluster.store.drop_table()
        endpoint.down()
    return {
        "code": code_of(source),
        "endpoint": kind,
        "jobs": jobs,
        "beats": beats,
        "workers": f"{workers} x prefork -c 8",
        "runs_per_task": runs_per_task,
        "delivered": result.delivered,
        "lost": result.lost,
        "duplicated": result.duplicated,
        "timeouts": result.extra["timeouts"],
        "not_sent": result.extra["not_sent"],
        "attempts": len(endpoint.calls),
        "last_run_late_s": round(result.max_lateness, 2),
        "p99_late_s": round(result.p99_lateness, 2),
        "logs": str(cluster.tmp),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", choices=["small", "slots"], nargs="+", default=["small"])
    parser.add_argument("--jobs", type=int, default=1500)
    parser.add_argument("--beats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sources", nargs="+", default=["."], help="checkouts to run, in turn")
    parser.add_argument("--runs-per-task", type=int, nargs="+", default=[100])
    parser.add_argument("--quick", action="store_true", help="500 jobs at the small endpoint")
    args = parser.parse_args()
    if args.quick:
        args.endpoint, args.jobs = ["small"], 500
    for kind in args.endpoint:
        for runs_per_task in args.runs_per_task:
            for source in (None if s == "." else s for s in args.sources):
                print(f"burst: {kind} endpoint, code of {code_of(source)}", file=sys.stderr)
                figures = run(kind, args.jobs, args.beats, args.workers, source, runs_per_task)
                record("burst", figures)


if __name__ == "__main__":
    main()
