"""Benchmark 3, end to end: beat, workers and a local endpoint.

    python bench/e2e.py --jobs 10000 100000 --pools prefork:2 threads:4
    python bench/e2e.py --jobs 10000 --pools prefork:2 --endpoint-delay 0.2
    python bench/e2e.py --quick
    python bench/e2e.py --jobs 100000 --sources /tmp/before .   # before/after in one run

N one-off jobs fall due at once; one beat dispatches them, `celery worker` processes (two by
default, each `--pool POOL --concurrency C` as given by POOL:C) POST them to a uvicorn
endpoint on 127.0.0.1 that records each call (and answers after --endpoint-delay seconds).
Reports callbacks/s (N over the time from the first to the last call), the p50/p99 lateness
of the calls (arrival minus Dalga-Sched: with all N due at once this is the backlog's drain
time), whether every run was delivered exactly once, and the workers' peak RSS.

CPU per callback is read from /proc over the middle of the run (from the poll where 10% of
the runs were delivered to the one where 90% were), for the beat, the workers (with their
pool children), Redis and MariaDB, and apart from them the endpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from processes import dalga_env, free_port, start, stop, wait_http  # noqa: E402

from bench.common import (  # noqa: E402
    DALGA_BEAT,
    REDIS,
    CpuMeter,
    bench_store,
    code_of,
    record,
    source_env,
    start_endpoint,
    tree_rss_mb,
)
from celery_dalga.spec import parse_spec  # noqa: E402


def worker_args(pool: str, index: int, app: str) -> list[str]:
    """`celery worker` for POOL:CONCURRENCY."""
    name, _, concurrency = pool.partition(":")
    return [
        *[sys.executable, "-m", "celery", "-A", app, "worker", "--pool", name],
        *["--concurrency", concurrency or "4", "-n", f"e2e{index}@%h"],
        *["--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
    ]


def run(
    jobs: int,
    pool: str,
    workers: int,
    runs_per_task: int,
    delay: float,
    timeout: float,
    app: str,
    history_runs: int = 10,
    source: str | None = None,
) -> dict:
    queue, port = f"e2e-{uuid.uuid4().hex[:8]}", free_port()
    settings, store = bench_store(
        queue,
        lease=600,
        base_url=f"http://127.0.0.1:{port}/",
        runs_per_task=runs_per_task,
        history_runs=history_runs,
    )
    logs = Path(tempfile.mkdtemp(prefix="dalga-e2e-"))
    env = dalga_env(
        settings,
        REDIS,
        BENCH_STATS=str(logs / "stats.json"),
        BENCH_DELAY=str(delay),
        **source_env(source),
    )
    home = Path(source).resolve() if source else ROOT  # `-m` puts the cwd first on sys.path
    procs = [start_endpoint(port, env, logs / "endpoint.log")]
    peak_rss = [0.0] * workers
    try:
        for i in range(workers):
            procs.append(start(worker_args(pool, i, app), env, home, logs / f"worker{i}.log"))
        specs = [
            parse_spec("cb", str(i), {"one-off": "true", "immediate": "true"}) for i in range(jobs)
        ]
        wait_http(settings.base_url, procs[0])
        time.sleep(3)  # workers connect
        for at in range(0, jobs, 5000):
            store.put_many(specs[at : at + 5000])
        procs.append(start(DALGA_BEAT, env, home, logs / "beat.log"))
        meter = CpuMeter(
            {
                "endpoint": [procs[0].pid],
                "workers": [p.pid for p in procs[1:-1]],
                "beat": [procs[-1].pid],
            }
        )
        started, window = time.monotonic(), {}
        while time.monotonic() - started < timeout:
            delivered = requests.get(settings.base_url, timeout=10).json()["runs"]
            meter.sample()
            peak_rss = [
                max(r, tree_rss_mb(p.pid)) for r, p in zip(peak_rss, procs[1:-1], strict=True)
            ]
            for edge, share in (("from", 0.1), ("to", 0.9)):
                if edge not in window and delivered >= jobs * share:
                    window[edge] = (delivered, meter.seconds())
            print(
                f"  {delivered}/{jobs} delivered after {time.monotonic() - started:.0f} s",
                file=sys.stderr,
            )
            if delivered == jobs:
                break
            time.sleep(1)
    finally:
        for proc in reversed(procs):
            stop(proc)
        store.drop_table()
    stats = json.loads((logs / "stats.json").read_text())
    lateness = stats["lateness"]
    span = (stats["last"] - stats["first"]) if stats["calls"] > 1 else None
    return {
        "code": code_of(source),
        "jobs": jobs,
        "pool": pool,
        "workers": workers,
        "runs_per_task": runs_per_task,
        "history_runs": history_runs,
        "endpoint_delay_s": delay,
        "ack_emulation": app == "celery_dalga",
        "calls": stats["calls"],
        "distinct_runs": stats["runs"],
        "callbacks_per_s": round(stats["calls"] / span) if span else None,
        "lateness_p50_s": round(lateness[len(lateness) // 2], 2) if lateness else None,
        "lateness_p99_s": round(lateness[int(len(lateness) * 0.99) - 1], 2) if lateness else None,
        "finished": stats["runs"] >= jobs,
        "each_once": stats["calls"] == stats["runs"] == jobs,
        "worker_peak_rss_mb": [round(r, 1) for r in peak_rss],
        **cpu_per_callback(window),
        "logs": str(logs),
    }


def cpu_per_callback(window: dict) -> dict:
    """CPU ms per callback between the 10% and 90% polls: each part, and the sum of all but
    the endpoint."""
    if "from" not in window or "to" not in window or window["to"][0] == window["from"][0]:
        return {}
    (first, before), (last, after) = window["from"], window["to"]
    per = {k: round((after[k] - before[k]) * 1000 / (last - first), 3) for k in after}
    total = sum(v for k, v in per.items() if k != "endpoint")
    return {"cpu_ms_per_callback": round(total, 3), "cpu_ms_by_part": per}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--pools", nargs="+", default=["prefork:2", "threads:4"], help="POOL:CONCURRENCY"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs-per-task", type=int, nargs="+", default=[100])
    parser.add_argument("--endpoint-delay", type=float, default=0.0, help="seconds per answer")
    parser.add_argument(
        "--history-runs", type=int, nargs="+", default=[10], help="attempts kept per job (0: off)"
    )
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument(
        "--no-ack-emulation",
        action="store_true",
        help="workers without kombu's Redis ack emulation (bench/noack_app.py)",
    )
    parser.add_argument(
        "--sources",
        nargs="+",
        default=["."],
        help="checkouts whose code the processes run, in turn ('.': this one; a git worktree of "
        "an earlier commit gives before/after figures in one run)",
    )
    parser.add_argument("--quick", action="store_true", help="10,000 jobs, prefork:2")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.pools, args.timeout = [10_000], ["prefork:2"], 50
    app = "bench.noack_app" if args.no_ack_emulation else "celery_dalga"
    for jobs in args.jobs:
        for pool in args.pools:
            for runs_per_task in args.runs_per_task:
                for history_runs in args.history_runs:
                    for source in args.sources:
                        figures = run(
                            jobs,
                            pool,
                            args.workers,
                            runs_per_task,
                            args.endpoint_delay,
                            args.timeout,
                            app,
                            history_runs,
                            None if source == "." else source,
                        )
                        record("e2e", figures)


if __name__ == "__main__":
    main()
