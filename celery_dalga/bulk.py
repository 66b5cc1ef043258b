"""Bulk import: jobs from JSON lines or CSV, read and checked as PUT reads and checks them
(Client.spec) and written in batches (Client.put_many)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import IO

from tqdm import tqdm

from celery_dalga.client import Client
from celery_dalga.jobs import job_key
from celery_dalga.spec import InvalidParameter, JobSpec
from celery_dalga.store import JobRefused


class BadRecord(ValueError):
    """A line that cannot be imported; names the line."""


def records(stream: IO[str], fmt: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, record) pairs: `path`, `body` and any of PUT's parameters."""
    if fmt == "csv":
        reader = csv.DictReader(stream)
        for record in reader:
            yield reader.line_num, {k: v for k, v in record.items() if v not in (None, "")}
        return
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadRecord(f"line {number}: not JSON ({exc})") from None
        if not isinstance(record, dict):
            raise BadRecord(f"line {number}: each line must be a JSON object")
        yield (
            number,
            {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in record.items()},
        )


def specs(
    rows: Iterable[tuple[int, dict[str, str]]], client: Client
) -> Iterator[tuple[int, JobSpec]]:
    """(line number, spec): every record read and checked as PUT does it; a bad one stops
    the import, naming its line."""
    for number, row in rows:
        params = dict(row)
        path, body = params.pop("path", ""), params.pop("body", "")
        try:
            yield number, client.spec(path, body, params)
        except InvalidParameter as exc:
            raise BadRecord(f"line {number}: {exc}") from None


def chunks(items: Iterable[tuple[int, JobSpec]], size: int) -> Iterator[list[tuple[int, JobSpec]]]:
    """Consecutive lists of `size` items (the last may be shorter)."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def import_jobs(
    client: Client, stream: IO[str], fmt: str, batch: int = 5000, progress: bool = True
) -> int:
    """Write the stream's jobs through Client.put_many in transactions of `batch`; returns
    how many were written.

    Jobs pass PUT's checks, with PUT's messages; a dependent job's parent must come on an
    earlier line (or be in the table), and an if-absent job that exists is left as it is.
    While the database writes one batch (in a writer thread), the next is read and checked.
    Batches before a bad line stay written; every job is whole (never half-written), and
    importing the same file again reschedules the same jobs rather than adding new ones.
    """
    written = 0
    with (
        tqdm(unit=" jobs", disable=not progress, mininterval=0.5) as bar,
        ThreadPoolExecutor(1, thread_name_prefix="dalga-import") as writer,
    ):
        in_flight: tuple[Future[int], list[tuple[int, JobSpec]]] | None = None
        try:
            for chunk in chunks(specs(records(stream, fmt), client), batch):
                if in_flight is not None:
                    written += _settled(*in_flight, bar)
                in_flight = writer.submit(client.put_many, [s for _, s in chunk]), chunk
        finally:
            if in_flight is not None:
                written += _settled(*in_flight, bar)
    return written


def _settled(batch: Future[int], chunk: list[tuple[int, JobSpec]], bar: tqdm) -> int:
    """Wait for a batch's write and count it on the progress bar; a job put_many refused is
    a BadRecord naming its line."""
    try:
        count = batch.result()
    except JobRefused as exc:
        line = next(n for n, s in chunk if job_key(s.path, s.body) == exc.key)
        raise BadRecord(f"line {line}: {exc}") from None
    bar.update(count)
    return count
