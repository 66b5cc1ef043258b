"""Benchmark 4, the API side by side with Dalga v4.0.1, and the bulk path.

    python bench/api.py --requests 10000 --clients 16 64 --import-jobs 1000000
    python bench/api.py --quick
    python bench/api.py --sources /tmp/before .   # before/after in one run
    python bench/api.py --web-processes 1 2       # dalga web with one, then two processes
    python bench/api.py --requests 0 --import-jobs 0 --bulk-jobs 200000 --bulk-batch 5000

For each client count, starts `dalga web` (waitress, 8 threads) on a fresh MariaDB table, then
Dalga v4.0.1's own server (`--peers dalga`, the default when go and its source are there; built
offline by bench/dalga_peer.py) on a fresh table of its own, and drives each with the same load
client (bench/apiload, Go) from concurrent connections on 127.0.0.1: PUT x requests (create),
PUT again (reschedule), GET, PATCH ?disable=true, DELETE. The clients share the 2 cores with the
server and MariaDB. Prints the figures side by side. Then bulk PUT /jobs (JSON lines,
`--bulk-batch` jobs a request from `--bulk-clients` threads), and times `dalga import` of a
JSON-lines file. A figure of 0 jobs or requests skips its part.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from sqlalchemy import func, select
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from processes import Process, dalga_env, free_port, start, stop, wait_http  # noqa: E402

from bench import dalga_peer  # noqa: E402
from bench.common import REDIS, CpuMeter, code_of, database, record, source_env  # noqa: E402
from celery_dalga.config import Settings  # noqa: E402
from celery_dalga.process import store_for  # noqa: E402
from celery_dalga.store import Store  # noqa: E402


def in_threads(client, clients: int) -> float:
    """Run client(0) ... client(clients - 1) in threads at once; the seconds they took."""
    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(w,)) for w in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


STEPS = (  # name, method, query: the order each server is driven in, on the same keys
    ("PUT", "PUT", "interval=300"),
    ("PUT_again", "PUT", "interval=300"),
    ("GET", "GET", ""),
    ("PATCH", "PATCH", "disable=true"),
    ("DELETE", "DELETE", ""),
)


def load(apiload: Path, base: str, server: int, count: int, clients: int) -> dict:
    """Every step of STEPS, `count` requests from `clients` connections: the load client's
    figures (per_s, p50_ms, p99_ms, errors, its own cpu_s) and the CPU seconds the `server`
    process and MariaDB spent meanwhile."""
    figures: dict = {}
    for name, method, query in tqdm(STEPS, desc=f"  {clients} clients", leave=False):
        meter = CpuMeter({"server": [server]})
        args = ["-base", base, "-method", method, "-query", query]
        done = subprocess.run(
            [str(apiload), *args, "-count", str(count), "-clients", str(clients)],
            capture_output=True,
            text=True,
            check=True,
        )
        meter.sample()
        spent = meter.seconds()
        measured = {**json.loads(done.stdout), "server_cpu_s": spent["server"]}
        measured["mariadb_cpu_s"] = spent["mariadbd"]
        figures.update({f"{name}_{key}": value for key, value in measured.items()})
    return figures


def bulk_put(base: str, jobs: int, batch: int, clients: int) -> dict:
    """PUT /jobs of `jobs` new jobs in requests of `batch` JSON lines from `clients` threads;
    jobs/s and the latency of a request. The bodies are built before the clock starts."""
    bodies = [
        "".join(
            json.dumps({"path": "bulk", "body": str(i), "interval": 300}) + "\n"
            for i in range(start, min(start + batch, jobs))
        ).encode()
        for start in range(0, jobs, batch)
    ]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    headers = {"Content-Type": "application/x-ndjson"}

    def client(worker: int) -> None:
        session = requests.Session()
        mine = []
        for body in bodies[worker::clients]:
            started = time.perf_counter()
            resp = session.put(f"{base}/jobs", data=body, headers=headers, timeout=120)
            mine.append(time.perf_counter() - started)
            if resp.status_code != 200:
                errors.append(f"{resp.status_code} {resp.text[:200]}")
        with lock:
            latencies.extend(mine)

    elapsed = in_threads(client, clients)
    latencies.sort()
    if errors:
        print(f"  bulk errors: {errors[:3]}", file=sys.stderr)
    return {
        "bulk_jobs": jobs,
        "bulk_batch": batch,
        "bulk_clients": clients,
        "bulk_jobs_per_s": round(jobs / elapsed),
        "bulk_request_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "bulk_request_max_ms": round(latencies[-1] * 1000, 1),
        "bulk_errors": len(errors),
    }


def rows_in(store: Store) -> int:
    """The rows of the store's jobs table, counted."""
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(store.table)).scalar_one()


def bulk_import(settings: Settings, jobs: int, source: str | None = None) -> dict:
    """Write `jobs` JSON lines, then time `dalga import` loading them into an empty table."""
    lines = Path(tempfile.mkdtemp(prefix="dalga-import-")) / "jobs.jsonl"
    with lines.open("w") as out:
        for i in range(jobs):
            out.write(json.dumps({"path": "feeds", "body": str(i), "interval": 300}) + "\n")
    env = {**dalga_env(settings, REDIS), **source_env(source)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "celery_dalga.cli", "import", str(lines)],
        env=env,
        cwd=Path(source).resolve() if source else ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    elapsed = time.perf_counter() - started
    lines.unlink()
    return {
        "import_jobs": jobs,
        "import_seconds": round(elapsed, 1),
        "import_jobs_per_s": round(jobs / elapsed),
        "import_ok": done.returncode == 0,
    }


def fresh_settings() -> Settings:
    """Settings of a `dalga web` on a free port and a new table of the benchmarks' database."""
    return Settings(
        database_url=database("cdalga_bench"),
        port=free_port(),
        table=f"bench_api_{uuid.uuid4().hex[:8]}",
    )


@contextmanager
def our_web(source: str | None, processes: int = 1) -> Iterator[tuple[str, Process, Store]]:
    """`dalga web` of a checkout (None: this one) with `processes` web processes on a fresh
    table, dropped after; yields its base URL, process and store."""
    settings = fresh_settings()
    store = store_for(settings)
    store.create_table()
    env = {**dalga_env(settings, REDIS), **source_env(source)}
    log = Path(tempfile.mkdtemp(prefix="dalga-web-")) / "web.log"
    home = Path(source).resolve() if source else ROOT  # `-m` puts the cwd first on sys.path
    command = [sys.executable, "-m", "celery_dalga.cli", "web"]
    if processes > 1:
        command += ["--processes", str(processes)]
    web = start(command, env, home, log)
    base = f"http://127.0.0.1:{settings.port}"
    try:
        wait_http(base + "/status", web)
        yield base, web, store
    finally:
        stop(web)
        store.drop_table()


def api_side_by_side(args: argparse.Namespace, apiload: Path, dalga: Path | None) -> list[dict]:
    """For each client count: each checkout's `dalga web`, then Dalga; their recorded lines."""
    lines = []
    for clients in args.clients:
        common = {"requests": args.requests, "clients": clients}
        for source, processes in itertools.product(args.sources, args.web_processes):
            checkout = None if source == "." else source
            if processes > 1 and not (Path(source) / "celery_dalga/webprocs.py").exists():
                continue  # a checkout from before `dalga web --processes`
            with our_web(checkout, processes) as (base, web, _):
                figures = load(apiload, base, web.pid, args.requests, clients)
            code = code_of(checkout) + (f" ×{processes}" if processes > 1 else "")
            line = {"server": "celery-dalga", "code": code, "web_processes": processes}
            lines.append({**line, **common, **figures})
            record("api", lines[-1])
        if dalga is not None:
            with dalga_peer.serving(dalga) as (base, proc, endpoint):
                figures = load(apiload, base, proc.pid, args.requests, clients)
                figures["callbacks"] = endpoint.calls
            lines.append({"server": "dalga-4.0.1", **common, **figures})
            record("api", lines[-1])
    return lines


def pair(both: list[dict], key: str, scale: float = 1) -> str:
    """`key`'s figure (times `scale`, 3 digits) of ours, then of Dalga when there is one."""
    return " / ".join(
        f"{o[key] * scale:.0f}" if o[key] * scale >= 100 else f"{o[key] * scale:.3g}" for o in both
    )


def table(lines: list[dict]) -> str:
    """The recorded lines as a Markdown table, a row a step and checkout at a client count:
    rates of ours and Dalga and their ratio, then each figure as "ours / Dalga": p50 and p99,
    errors, and the CPU a request cost the server and the load client."""
    out = [
        "| clients | request | code | ours /s | Dalga /s | ours / Dalga | p50 ms | p99 ms "
        "| errors | server CPU ms/req | client CPU µs/req |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ours = [line for line in lines if line["server"] == "celery-dalga"]
    for clients in dict.fromkeys(line["clients"] for line in lines):
        dalga = [o for o in lines if o not in ours and o["clients"] == clients]
        for step, _, _ in STEPS:
            for line in (o for o in ours if o["clients"] == clients):
                both, count = [line, *dalga], line["requests"]
                rates = [o[f"{step}_per_s"] for o in both] + [""]
                ratio = f"{rates[0] / rates[1]:.2f}" if dalga else ""
                out.append(
                    f"| {clients} | {step} | {line['code']} | {rates[0]} | {rates[1]} | {ratio} "
                    f"| {pair(both, f'{step}_p50_ms')} | {pair(both, f'{step}_p99_ms')} "
                    f"| {pair(both, f'{step}_errors')} "
                    f"| {pair(both, f'{step}_server_cpu_s', 1000 / count)} "
                    f"| {pair(both, f'{step}_cpu_s', 1e6 / count)} |"
                )
    return "\n".join(out)


def bulk(args: argparse.Namespace, source: str | None) -> dict:
    """Bulk PUT /jobs and `dalga import` for one checkout (None: this one)."""
    figures = {"server": "celery-dalga", "code": code_of(source)}
    if args.bulk_jobs:
        with our_web(source) as (base, _, store):
            print(f"  PUT /jobs of {args.bulk_jobs} jobs", file=sys.stderr)
            figures.update(bulk_put(base, args.bulk_jobs, args.bulk_batch, args.bulk_clients))
            figures["bulk_rows_in_table"] = rows_in(store)
    if args.import_jobs:
        settings = fresh_settings()
        store = store_for(settings)
        store.create_table()
        try:
            print(f"  dalga import of {args.import_jobs} jobs", file=sys.stderr)
            figures.update(bulk_import(settings, args.import_jobs, source))
            figures["import_rows_in_table"] = store.status()["total_jobs"]
        finally:
            store.drop_table()
    return figures


def peers(wanted: list[str] | None) -> bool:
    """Whether to run Dalga: when asked (and fail if it cannot be built), or by default when
    go and its source are there."""
    why = dalga_peer.missing()
    if wanted is None and why:
        print(f"Dalga not run: {why}", file=sys.stderr)
    elif wanted and why:
        sys.exit(f"--peers dalga: {why}")
    return not why if wanted is None else bool(wanted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10000, help="requests of each kind")
    parser.add_argument("--clients", type=int, nargs="+", default=[16, 64], help="in turn")
    parser.add_argument(
        "--peers", nargs="*", choices=["dalga"], help="default: dalga when go and its source are"
    )
    parser.add_argument(
        "--web-processes", type=int, nargs="+", default=[1], help="dalga web --processes, in turn"
    )
    parser.add_argument("--import-jobs", type=int, default=1_000_000)
    parser.add_argument("--bulk-jobs", type=int, default=200_000, help="jobs sent to PUT /jobs")
    parser.add_argument("--bulk-batch", type=int, default=5000, help="jobs a PUT /jobs request")
    parser.add_argument("--bulk-clients", type=int, default=4, help="threads sending PUT /jobs")
    parser.add_argument("--sources", nargs="+", default=["."], help="checkouts to run, in turn")
    parser.add_argument(
        "--quick", action="store_true", help="2,000 requests, 50k bulk, 100k import"
    )
    args = parser.parse_args()
    if args.quick:
        args.requests, args.import_jobs, args.bulk_jobs = 2000, 100_000, 50_000
    if args.requests:
        scratch = Path(tempfile.mkdtemp(prefix="dalga-bench-go-"))
        print("building bench/apiload and Dalga", file=sys.stderr)
        dalga = dalga_peer.build_dalga(scratch) if peers(args.peers) else None
        lines = api_side_by_side(args, dalga_peer.build_apiload(scratch), dalga)
        print(table(lines))
    if args.bulk_jobs or args.import_jobs:
        for source in args.sources:
            print(f"code {source}", file=sys.stderr)
            record("api", bulk(args, None if source == "." else source))


if __name__ == "__main__":
    main()
