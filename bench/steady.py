"""Benchmark 2, steady state: 1M interval jobs every 300 s, next runs spread evenly (3,333 due
a second), delivered by beats and workers to a local endpoint for a whole period.

    python bench/steady.py --jobs 1000000 --beats 1 2 --seconds 300
    python bench/steady.py --quick          # 100k jobs every 30 s (also 3,333 a second), 60 s

Beats (one or two), workers (two, `--pool POOL:C`) and the uvicorn endpoint run for the
window. Lateness is the endpoint's receipt minus the run's Dalga-Sched. Lost is a job whose
first run fell in the window (but for its last 10 s, which may still be in flight when the
window closes) and never reached the endpoint. CPU per callback is read from /proc over the
window for the beats, the workers (with their pool children), Redis and MariaDB, and apart
from them the endpoint; peak RSS is per beat and per worker (with its pool children).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from processes import dalga_env, free_port, start, stop, wait_http  # noqa: E402

from bench.common import (  # noqa: E402
    DALGA_BEAT,
    REDIS,
    CpuMeter,
    bench_store,
    record,
    start_endpoint,
    tree_rss_mb,
)
from bench.e2e import worker_args  # noqa: E402
from celery_dalga.spec import parse_spec  # noqa: E402

TAIL = 10  # seconds at the window's end whose runs may still be in flight when it closes


def load(store, jobs: int, period: int, first_at: datetime) -> None:
    batch = []
    with tqdm(total=jobs, unit=" jobs", desc="loading", mininterval=1) as bar:
        for i in range(jobs):
            first = first_at + timedelta(seconds=period * i / jobs)
            batch.append(
                parse_spec(
                    "feed", str(i), {"interval": str(period), "first-run": first.isoformat()}
                )
            )
            if len(batch) == 5000:
                bar.update(store.put_many(batch))
                batch = []
        bar.update(store.put_many(batch))


def run(
    jobs: int,
    period: int,
    beats: int,
    workers: int,
    pool: str,
    seconds: float,
    history_runs: int = 10,
) -> dict:
    queue, port = f"steady-{uuid.uuid4().hex[:8]}", free_port()
    settings, store = bench_store(
        queue, base_url=f"http://127.0.0.1:{port}/", history_runs=history_runs
    )
    logs = Path(tempfile.mkdtemp(prefix="dalga-steady-"))
    env = dalga_env(settings, REDIS, BENCH_STATS=str(logs / "stats.json"), BENCH_RUNS="1")
    procs = [start_endpoint(port, env, logs / "endpoint.log")]
    try:
        procs += [
            start(worker_args(pool, i, "celery_dalga"), env, ROOT, logs / f"worker{i}.log")
            for i in range(workers)
        ]
        lead = 10 + jobs / 15000  # loading runs at 20-30k jobs/s
        first_at = store.now() + timedelta(seconds=lead)
        load(store, jobs, period, first_at)
        wait_http(settings.base_url, procs[0])
        procs += [start(DALGA_BEAT, env, ROOT, logs / f"beat{i}.log") for i in range(beats)]
        time.sleep(max(0.0, (first_at - store.now()).total_seconds()))
        names = ["endpoint"] + [f"worker{i}" for i in range(workers)]
        names += [f"beat{i}" for i in range(beats)]
        meter = CpuMeter(
            {
                "endpoint": [procs[0].pid],
                "workers": [p.pid for p in procs[1 : 1 + workers]],
                "beats": [p.pid for p in procs[1 + workers :]],
            }
        )
        peak = dict.fromkeys(names[1:], 0.0)
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            time.sleep(1)
            for name, proc in zip(names[1:], procs[1:], strict=True):
                peak[name] = max(peak[name], tree_rss_mb(proc.pid))
            if int(time.monotonic() - started) % 30 == 0:  # status() scans the table: rarely
                print(f"  {time.monotonic() - started:.0f} s: {store.status()}", file=sys.stderr)
        window = time.monotonic() - started
        meter.sample()
        cpu = meter.seconds()
    finally:
        for proc in reversed(procs):
            stop(proc)
        store.drop_table()
    stats = json.loads((logs / "stats.json").read_text())
    lateness = stats["lateness"]
    called = {int(run.split("|")[1]) for run in stats["run_keys"]}
    due = [i for i in range(jobs) if period * i / jobs < window - TAIL]
    lost = sum(1 for i in due if i not in called)
    pick = lambda q: round(lateness[min(len(lateness) - 1, int(len(lateness) * q))], 3)  # noqa: E731
    per = {k: round(v * 1000 / max(stats["calls"], 1), 3) for k, v in cpu.items()}
    return {
        "jobs": jobs,
        "period_s": period,
        "beats": beats,
        "history_runs": history_runs,
        "workers": workers,
        "pool": pool,
        "seconds": round(window, 1),
        "calls": stats["calls"],
        "distinct_runs": stats["runs"],
        "due_in_window": len(due),
        "lost": lost,
        "sustained_per_s": round(stats["calls"] / window),
        "lateness_p50_s": pick(0.5),
        "lateness_p99_s": pick(0.99),
        "lateness_max_s": round(lateness[-1], 3),
        "peak_rss_mb": {k: round(v, 1) for k, v in peak.items()},
        "cpu_ms_per_callback": round(sum(v for k, v in per.items() if k != "endpoint"), 3),
        "cpu_ms_by_part": per,
        "logs": str(logs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--beats", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool", default="threads:4", help="POOL:CONCURRENCY")
    parser.add_argument("--period", type=int, default=300, help="the jobs' interval, seconds")
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument(
        "--history-runs", type=int, nargs="+", default=[10], help="attempts kept per job (0: off)"
    )
    parser.add_argument("--quick", action="store_true", help="100k jobs every 30 s, one beat, 60 s")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.period, args.beats, args.seconds = 100_000, 30, [1], 60
    for beats in args.beats:
        for history_runs in args.history_runs:
            figures = run(
                args.jobs, args.period, beats, args.workers, args.pool, args.seconds, history_runs
            )
            record("steady", figures)


if __name__ == "__main__":
    main()
