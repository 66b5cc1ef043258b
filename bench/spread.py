"""Benchmark 8, the load view and the spread at a million jobs.

    python bench/spread.py --jobs 1000000
    python bench/spread.py --quick

Fills a MariaDB table with `--jobs` interval jobs (every 300 s) all due in the same second
(bench/status.py's fill: 1,000 through Store.put_many, the rest copied by one INSERT ...
SELECT), as a million jobs created in one second are; times the load's computation
(Store.load: the GROUP BY over the next_run index that GET /load and /ui/load cache), then
the spread of every job over its interval (Store.spread, in batches, with a progress bar),
then the load again: the peak second before and after. The table is dropped afterwards.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench.common import code_of, database, fill, record  # noqa: E402
from celery_dalga.config import Settings  # noqa: E402
from celery_dalga.process import store_for  # noqa: E402


def timed_load(store) -> tuple[float, dict]:
    started = time.perf_counter()
    found = store.load()
    return time.perf_counter() - started, found


def run(args: argparse.Namespace) -> dict:
    settings = Settings(
        database_url=database("cdalga_bench"), table=f"bench_spread_{uuid.uuid4().hex[:8]}"
    )
    store = store_for(settings)
    store.create_table()
    out = {"code": code_of(None), "jobs": args.jobs, "batch": args.batch}
    try:
        print(f"  filling {args.jobs} jobs due in one second", file=sys.stderr)
        out["fill_seconds"] = round(fill(store, args.jobs, over=1), 1)
        took, before = timed_load(store)
        out["load_seconds_before"] = round(took, 3)
        out["peak_second_before"] = before["peak_second"]["count"]
        out["peak_minute_before"] = before["peak_minute"]["count"]
        started = time.perf_counter()
        with tqdm(total=args.jobs, unit=" jobs", desc="spreading", mininterval=1) as bar:
            counts = store.spread("bench", batch=args.batch, progress=bar.update)
        out["spread_seconds"] = round(time.perf_counter() - started, 1)
        out.update(counts)
        out["spread_jobs_per_second"] = round(args.jobs / out["spread_seconds"])
        took, after = timed_load(store)
        out["load_seconds_after"] = round(took, 3)
        out["peak_second_after"] = after["peak_second"]["count"]
        out["peak_minute_after"] = after["peak_minute"]["count"]
    finally:
        store.drop_table()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="100k jobs")
    args = parser.parse_args()
    if args.quick:
        args.jobs = 100_000
    record("spread", run(args))


if __name__ == "__main__":
    main()
