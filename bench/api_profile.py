"""Where a request's time goes in the API process: PUT (create, reschedule), GET, PATCH
(disable, enable) and DELETE of single jobs, through the Flask app in this process
(app.test_client(), no server), on a fresh MariaDB table.

    python bench/api_profile.py --requests 2000
    python bench/api_profile.py --requests 2000 --top 25   # and the top functions of each
    python bench/api_profile.py --requests 2000 --group 16  # what group commit could save

Each kind runs twice: once timed (wall and CPU of this process per request, SQL round trips
per request), once under cProfile, whose own time per function is summed by where the
function lives (Flask, SQLAlchemy, parsing...). The round trips' time is the wall time spent
in the driver's calls that wait for MariaDB (query, commit, rollback): network and server.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import event

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from bench.common import code_of, database, record  # noqa: E402
from celery_dalga.config import Settings  # noqa: E402
from celery_dalga.process import stop, store_for  # noqa: E402

# (bucket, markers in a function's file or name), the first that matches wins
BUCKETS = [
    ("SQL round trips (driver wait: network + MariaDB)", ("_mysql.connection", "Connection.query")),
    ("mysqlclient (Python side)", ("MySQLdb",)),
    ("SQLAlchemy compile", ("sqlalchemy/sql/",)),
    ("SQLAlchemy result/rows", ("sqlalchemy/engine/result", "sqlalchemy/engine/row")),
    ("SQLAlchemy execute/pool/transaction", ("sqlalchemy/",)),
    ("JSON (jsonify, options)", ("json/",)),
    ("logging", ("logging/",)),
    ("Flask/Werkzeug (routing, request, response)", ("flask/", "werkzeug/", "jinja2/")),
    ("parameter parsing (spec, schedules)", ("celery_dalga/spec", "celery_dalga/schedules")),
    ("validation (kinds, min_interval)", ("celery_dalga/kinds", "celery_dalga/client")),
    ("rows and Job (store/rows, jobs, wire)", ("celery_dalga/store/rows", "celery_dalga/jobs")),
    ("store (scheduling, jobs, database clock)", ("celery_dalga/store/",)),
    ("web handlers and guard (webapi)", ("webapi/",)),
    ("job_json (wire)", ("celery_dalga/wire",)),
    ("retry wrapper (tenacity)", ("tenacity/",)),
]


def bucket_of(filename: str, name: str) -> str:
    where = f"{filename}:{name}"
    for bucket, markers in BUCKETS:
        if any(m in where for m in markers):
            return bucket
    return "other (stdlib, dateutil, ...)"


def kinds() -> list[tuple[str, str, str]]:
    """(label, method, query) in the order they run: each leaves the jobs the next needs."""
    return [
        ("PUT create", "PUT", "interval=300"),
        ("PUT reschedule", "PUT", "interval=600"),
        ("GET", "GET", ""),
        ("PATCH disable", "PATCH", "disable=true"),
        ("PATCH enable", "PATCH", "enable=true"),
        ("DELETE", "DELETE", ""),
    ]


def group_bound(store, n: int, group: int) -> None:
    """Wall and CPU a PUT through the store, one transaction each vs `group` a transaction
    (the same statement per job, one COMMIT a group)."""
    from celery_dalga.spec import parse_spec
    from celery_dalga.store.rows import new_row
    from celery_dalga.store.scheduling import _put_returning

    figures = {}
    for label in ("one transaction a PUT", f"{group} PUTs a transaction"):
        specs = [parse_spec(label[:3], str(i), {"interval": "300"}) for i in range(n)]  # new jobs
        wall, cpu = time.perf_counter(), time.process_time()
        if label.startswith("one"):
            for spec in specs:
                store.put(spec)
        else:
            statement = _put_returning(store.table, store.engine.dialect)
            for start in range(0, n, group):
                with store.engine.begin() as conn:
                    for spec in specs[start : start + group]:
                        now = store.now()
                        conn.execute(statement, new_row(spec, spec.first_sched(now), now)).one()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"  {label:24} wall {wall / n * 1e3:.3f} ms  CPU {cpu / n * 1e3:.3f} ms a PUT")
        figures[label] = {"wall_ms": round(wall / n * 1e3, 3), "cpu_ms": round(cpu / n * 1e3, 3)}
    record("api_profile", {"code": code_of(None), "requests": n, "group": group, **figures})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--top", type=int, default=0, help="also print the top functions")
    parser.add_argument(
        "--group",
        type=int,
        default=0,
        help="only compare PUTs through the store one transaction each with groups of this "
        "many in one transaction (the most group commit could save, before its hand-over)",
    )
    args = parser.parse_args()

    from webapi import create_app

    url = database("dalga_bench_api_profile")
    settings = Settings(database_url=url, table="profile_jobs")
    store = store_for(settings)
    store.drop_table()
    store.create_table()
    if args.group:
        group_bound(store, args.requests, args.group)
        stop()
        store.drop_table()
        return
    app = create_app(settings)
    client = app.test_client()
    trips = Counter()

    @event.listens_for(store.engine, "before_cursor_execute")
    def _count(*_args) -> None:
        trips["statements"] += 1

    @event.listens_for(store.engine, "commit")
    def _commit(*_args) -> None:
        trips["commits"] += 1

    @event.listens_for(store.engine, "rollback")
    def _rollback(*_args) -> None:
        trips["rollbacks"] += 1

    @event.listens_for(store.engine.pool, "reset")
    def _reset(*_args) -> None:
        trips["resets"] += 1

    n = args.requests
    rows = []
    for label, method, query in kinds():
        for phase in ("timed", "profiled"):
            prefix = f"/jobs/{phase}/"
            trips.clear()
            profile = cProfile.Profile() if phase == "profiled" else None
            wall, cpu = time.perf_counter(), time.process_time()
            if profile:
                profile.enable()
            for i in range(n):
                answer = client.open(
                    f"{prefix}{i}?{query}" if query else f"{prefix}{i}", method=method
                )
                if answer.status_code >= 300:
                    raise SystemExit(f"{label}: {answer.status_code} {answer.get_data(True)}")
            if profile:
                profile.disable()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if profile is None:
                rows.append((label, wall / n, cpu / n, dict(trips)))
                continue
            stats = pstats.Stats(profile)
            spent: Counter[str] = Counter()
            others: Counter[str] = Counter()
            for (filename, _line, name), (_cc, _nc, own, _cum, _callers) in stats.stats.items():
                bucket = bucket_of(filename, name)
                spent[bucket] += own
                if bucket.startswith("other"):
                    others[f"{Path(filename).name}:{name}"] += own
            total = sum(spent.values())
            print(f"\n{label}: {wall / n * 1e3:.2f} ms a request under cProfile")
            for bucket, own in spent.most_common():
                print(f"  {own / n * 1e3:6.3f} ms  {own / total:5.1%}  {bucket}")
            named = ", ".join(f"{k} {v / n * 1e3:.3f}" for k, v in others.most_common(6))
            print(f"  other: {named}")
            if args.top:
                stats.sort_stats("tottime").print_stats(args.top)
    print("\nwithout the profiler:")
    print("  kind            wall ms  CPU ms  statements  commits  rollbacks  pool resets")
    for label, wall, cpu, counted in rows:
        print(
            f"  {label:15} {wall * 1e3:7.3f} {cpu * 1e3:7.3f} "
            f"{counted.get('statements', 0) / n:11.2f} {counted.get('commits', 0) / n:8.2f} "
            f"{counted.get('rollbacks', 0) / n:10.2f} {counted.get('resets', 0) / n:12.2f}"
        )
    record(
        "api_profile",
        {
            "code": code_of(None),
            "requests": n,
            **{
                label: {
                    "wall_ms": round(wall * 1e3, 3),
                    "cpu_ms": round(cpu * 1e3, 3),
                    **{k: round(v / n, 2) for k, v in counted.items()},
                }
                for label, wall, cpu, counted in rows
            },
        },
    )
    stop()
    store.drop_table()


if __name__ == "__main__":
    main()
