"""A fast callback endpoint for the end-to-end benchmark (ASGI, served by uvicorn).

Answers 200 to every POST (after $BENCH_DELAY seconds, if set: a slow endpoint), answers a
GET with how many calls and distinct runs came so far (so a benchmark can follow the delivery
without counting the table), and, on shutdown, writes to $BENCH_STATS a JSON object with the
number of calls, distinct (path, body, Dalga-Sched) runs (and, if $BENCH_RUNS is set, the runs
themselves), first/last arrival and the lateness (arrival minus Dalga-Sched) of every call.
"""

import asyncio
import json
import os
import time
from datetime import UTC, datetime

calls: list[tuple[float, str, float]] = []
runs: set[str] = set()
DELAY = float(os.environ.get("BENCH_DELAY", "0"))


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                dump()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["method"] != "POST":  # the readiness probe, and how many runs came (a GET)
        count = json.dumps({"calls": len(calls), "runs": len(runs)}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": count})
        return
    headers = dict(scope["headers"])
    sched = headers.get(b"dalga-sched", b"").decode()
    now = time.time()
    lateness = now - datetime.fromisoformat(sched).timestamp() if sched else -1.0
    key = f"{scope['path']}|{body.decode()}|{sched}"
    calls.append((now, key, lateness))
    runs.add(key)
    if DELAY:
        await asyncio.sleep(DELAY)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
    )
    await send({"type": "http.response.body", "body": b""})


def dump() -> None:
    lateness = sorted(c[2] for c in calls)
    stats = {
        "calls": len(calls),
        "runs": len(runs),
        "first": min((c[0] for c in calls), default=None),
        "last": max((c[0] for c in calls), default=None),
        "lateness": lateness,
        "written": datetime.now(UTC).isoformat(),
    }
    if os.environ.get("BENCH_RUNS"):
        stats["run_keys"] = sorted(runs)
    with open(os.environ["BENCH_STATS"], "w") as out:
        json.dump(stats, out)
