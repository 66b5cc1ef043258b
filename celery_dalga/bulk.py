"""Bulk scheduling: jobs from JSON lines or CSV, read and checked as PUT reads and checks them
(Client.spec) and written in batches (Client.put_many), for `dalga import` (a file, in
transactions of a batch) and PUT /jobs (a request body, in one transaction)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import IO, Any

from tqdm import tqdm

from celery_dalga.client import Client
from celery_dalga.jobs import job_key
from celery_dalga.spec import InvalidParameter, JobSpec
from celery_dalga.store import JobRefused


class BadRecord(ValueError):
    """A line that cannot be scheduled; names the line, and the parameter when one is at
    fault."""

    def __init__(self, line: int, message: str, parameter: str | None = None):
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.parameter = parameter


class TooManyRecords(ValueError):
    """A request body holding more jobs than one request may write."""


def records(stream: IO[str], fmt: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, record) pairs: `path`, `body` and any of PUT's parameters. In JSON lines
    a value may be a string, number, boolean, or an object (`options`); a name given twice
    or a null is a BadRecord, as PUT refuses a parameter given twice."""
    if fmt == "csv":
        reader = csv.DictReader(stream)
        for record in reader:
            yield reader.line_num, {k: v for k, v in record.items() if v not in (None, "")}
        return
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            record = _DECODER.decode(line)
        except InvalidParameter as exc:
            raise BadRecord(number, str(exc), exc.parameter) from None
        except (ValueError, RecursionError) as exc:  # a number of 5,000 digits, [[[[...
            raise BadRecord(number, f"not JSON ({exc})") from None
        if not isinstance(record, dict):
            raise BadRecord(number, "each line must be a JSON object")
        yield number, {name: _text(number, name, value) for name, value in record.items()}


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a name given twice."""
    record = dict(pairs)
    if len(record) != len(pairs):
        twice = next(name for name in record if sum(n == name for n, _ in pairs) > 1)
        raise InvalidParameter(twice, "given more than once")
    return record


_DECODER = json.JSONDecoder(object_pairs_hook=_once_each)


def _text(line: int, name: str, value: Any) -> str:
    """A JSON value as PUT's parameter text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        raise BadRecord(line, f"{name}: null is not a value (leave the name out)", name)
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value)  # an object such as `options`, or a list


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
            raise BadRecord(number, str(exc), exc.parameter) from None


def chunks(items: Iterable[tuple[int, JobSpec]], size: int) -> Iterator[list[tuple[int, JobSpec]]]:
    """Consecutive lists of `size` items (the last may be shorter)."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def put_batch(client: Client, chunk: list[tuple[int, JobSpec]]) -> int:
    """Write a batch of (line number, spec) in one transaction (Client.put_many); a job the
    store refuses (its parent) is a BadRecord naming its line, and none of the batch is
    written."""
    try:
        return client.put_many([spec for _, spec in chunk])
    except JobRefused as exc:
        line = next(n for n, s in chunk if job_key(s.path, s.body) == exc.key)
        raise BadRecord(line, str(exc), exc.parameter) from None


def put_lines(client: Client, data: bytes, most: int) -> int:
    """Schedule the jobs of a JSON-lines request body (PUT /jobs) in one transaction: all of
    them, or (BadRecord for the first bad line, TooManyRecords over `most` jobs) none."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRecord(data.count(b"\n", 0, exc.start) + 1, "not UTF-8") from None
    checked = specs(records(io.StringIO(text, newline=""), "jsonl"), client)
    batch = list(islice(checked, most + 1))
    if len(batch) > most:
        raise TooManyRecords(f"more than {most} jobs in one request (bulk_max_jobs)")
    if not batch:
        raise BadRecord(1, "no jobs: give one JSON object per line")
    return put_batch(client, batch)


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
        in_flight: Future[int] | None = None
        try:
            for chunk in chunks(specs(records(stream, fmt), client), batch):
                if in_flight is not None:
                    written += _settled(in_flight, bar)
                in_flight = writer.submit(put_batch, client, chunk)
        finally:
            if in_flight is not None:
                written += _settled(in_flight, bar)
    return written


def _settled(batch: Future[int], bar: tqdm) -> int:
    """Wait for a batch's write and count it on the progress bar."""
    count = batch.result()
    bar.update(count)
    return count
