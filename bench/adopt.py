"""Benchmark: adopting Dalga's own table in place at a million rows.

    python bench/adopt.py --rows 1000000

Makes Dalga v4's tables in a bench database, fills them with INSERT ... SELECT from MariaDB's
sequence engine (one-off, periodic, paused, UTC and Europe/Istanbul rows), then runs
`dalga create-table`'s upgrade (Store.create_table) while another connection updates and
reads one random row at a time. The longest of those waits is how long the table was locked.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from dalga_source import dalga_ddl  # noqa: E402

from bench.common import database, record  # noqa: E402
from celery_dalga import adopt  # noqa: E402
from celery_dalga.jobs import job_key  # noqa: E402
from celery_dalga.store import Store, make_engine  # noqa: E402

TABLE = "dalga"
FILL_STEP = 100_000


def fill(url: str, rows: int) -> float:
    """Dalga's tables with `rows` jobs as Dalga writes them; returns the seconds it took."""
    engine = create_engine(url)
    started = time.monotonic()
    with engine.begin() as conn:
        for name in (TABLE, f"{TABLE}_runs", f"{TABLE}_instances"):
            conn.execute(text(f"DROP TABLE IF EXISTS `{name}`"))
        for ddl in dalga_ddl(TABLE):
            conn.execute(text(ddl))
    for low in range(1, rows + 1, FILL_STEP):
        high = min(low + FILL_STEP - 1, rows)
        with engine.begin() as conn:
            conn.execute(
                text(
                    f"INSERT INTO `{TABLE}` (path, body, `interval`, location, next_run,"
                    " next_sched) SELECT CONCAT('feed/', seq % 1000), CONCAT('body ', seq),"
                    " IF(seq % 10 = 0, '', 'PT5M'), IF(seq % 3 = 0, 'Europe/Istanbul', ''),"
                    " IF(seq % 7 = 0, NULL, UTC_TIMESTAMP() + INTERVAL seq SECOND),"
                    f" UTC_TIMESTAMP() + INTERVAL seq SECOND FROM seq_{low}_to_{high}"
                )
            )
        print(f"filled {high} of {rows} rows", flush=True)
    engine.dispose()
    return time.monotonic() - started


def probe(url: str, rows: int, done: threading.Event) -> dict[str, float]:
    """Update and read one random row at a time, each its own transaction, until `done`;
    the longest and the 99th percentile wait of each, in milliseconds."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    waits: dict[str, list[float]] = {"update": [], "select": []}
    statements = {
        "update": text(f"UPDATE `{TABLE}` SET instance_id = NULL WHERE id = :id"),
        "select": text(f"SELECT path, body FROM `{TABLE}` WHERE id = :id"),
    }
    with engine.connect() as conn:
        while not done.is_set():
            for kind, statement in statements.items():
                started = time.monotonic()
                conn.execute(statement, {"id": random.randint(1, rows)})
                waits[kind].append(time.monotonic() - started)
            time.sleep(0.005)
    engine.dispose()
    figures = {"probes": float(len(waits["update"]))}
    for kind, values in waits.items():
        values.sort()
        figures[f"longest_{kind}_ms"] = round(values[-1] * 1000, 1)
        figures[f"p99_{kind}_ms"] = round(values[int(len(values) * 0.99)] * 1000, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 rows")
    args = parser.parse_args()
    if args.quick:
        args.rows = 100_000
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    url = database("dalga_bench_adopt")
    filled = fill(url, args.rows)
    store = Store(make_engine(url), TABLE)
    done = threading.Event()
    probed: dict[str, float] = {}
    prober = threading.Thread(target=lambda: probed.update(probe(url, args.rows, done)))
    prober.start()
    time.sleep(1)
    started = time.monotonic()
    try:
        store.create_table()
    finally:
        upgraded = time.monotonic() - started
        done.set()
        prober.join()
    with store.engine.connect() as conn:
        count = conn.execute(text(f"SELECT COUNT(*) FROM `{TABLE}`")).scalar_one()
        path, body, key = conn.execute(
            text(f"SELECT path, body, job_key FROM `{TABLE}` ORDER BY RAND() LIMIT 1")
        ).one()
        version = conn.execute(text("SELECT VERSION()")).scalar_one()
    assert count == args.rows and key == job_key(path, body), (count, path, body, key)
    record(
        "adopt",
        {
            "rows": args.rows,
            "chunk": adopt.CHUNK,
            "database": version,
            "fill_seconds": round(filled, 1),
            "upgrade_seconds": round(upgraded, 1),
            **probed,
        },
    )


if __name__ == "__main__":
    main()
