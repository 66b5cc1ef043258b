"""Bulk import: jobs from JSON lines or CSV, checked like PUT and written in batches."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import IO

from tqdm import tqdm

from celery_dalga.spec import InvalidParameter, JobSpec, parse_spec
from celery_dalga.store import Store


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


def specs(rows: Iterable[tuple[int, dict[str, str]]], max_body: int) -> Iterator[JobSpec]:
    """Check every record as PUT would; a bad one stops the import, naming its line."""
    for number, row in rows:
        params = dict(row)
        path, body = params.pop("path", ""), params.pop("body", "")
        try:
            yield parse_spec(path, body, params, max_body)
        except InvalidParameter as exc:
            raise BadRecord(f"line {number}: {exc}") from None


def chunks(items: Iterable[JobSpec], size: int) -> Iterator[list[JobSpec]]:
    """Consecutive lists of `size` items (the last may be shorter)."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def import_jobs(
    store: Store, stream: IO[str], fmt: str, max_body: int, batch: int = 5000, progress: bool = True
) -> int:
    """Write the stream's jobs in transactions of `batch`; returns how many were written.

    While the database writes one batch (in a writer thread), the next is read and checked.
    Batches before a bad line stay written; every job is whole (never half-written), and
    importing the same file again reschedules the same jobs rather than adding new ones.
    """
    written = 0
    with (
        tqdm(unit=" jobs", disable=not progress, mininterval=0.5) as bar,
        ThreadPoolExecutor(1, thread_name_prefix="dalga-import") as writer,
    ):
        in_flight: Future[int] | None = None
        try:
            for chunk in chunks(specs(records(stream, fmt), max_body), batch):
                if in_flight is not None:
                    written += _settled(in_flight, bar)
                in_flight = writer.submit(store.put_many, chunk)
        finally:
            if in_flight is not None:
                written += _settled(in_flight, bar)
    return written


def _settled(batch: Future[int], bar: tqdm) -> int:
    """Wait for a batch's write and count it on the progress bar."""
    count = batch.result()
    bar.update(count)
    return count
