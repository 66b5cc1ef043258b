"""Links between jobs beyond parent_key (Kala's many parents and on_failure_job), in
<table>_links: written when a job is made, read for its JSON and for the wake after a run,
forgotten with the jobs they name. A job with several parents has them all here (its
parent_key is one of them, so that it stays unscheduled and PUT's parent checks hold); a job
with one parent has none here and is woken by parent_key alone."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import CompoundSelect, Select, delete, func, insert, select
from sqlalchemy.engine import Connection

from celery_dalga.spec import InvalidParameter
from celery_dalga.store.database import Database
from celery_dalga.store.engine import rerun_transient

PARENT = "parent"  # the other job is one of the job's parents
ON_FAILURE = "on_failure"  # the other job runs when a run of the job fails for good


@dataclass
class Related:
    """A job's parents, its children (each as (path, body), in creation order) and the job
    its failures run, if any."""

    parents: list[tuple[str, str]] = field(default_factory=list)
    children: list[tuple[str, str]] = field(default_factory=list)
    on_failure: tuple[str, str] | None = None


@rerun_transient
def link(db: Database, key: str, parents: list[str], on_failure: str | None) -> None:
    """Give the job `key` these parents (all of them, when it has more than one) and its
    on-failure job, in one transaction that locks those jobs: InvalidParameter (nothing
    written) when one of them is gone."""
    t, links = db.table, db.links
    rows = [(PARENT, p) for p in parents] + ([(ON_FAILURE, on_failure)] if on_failure else [])
    if not rows:
        return
    with db.engine.begin() as conn:
        others = sorted({other for _, other in rows})
        found = set(
            conn.execute(
                select(t.c.job_key).where(t.c.job_key.in_(others)).with_for_update()
            ).scalars()
        )
        for name, other in rows:
            if other not in found:
                what = "parent" if name == PARENT else "on_failure_job"
                raise InvalidParameter(what, "that job was deleted meanwhile")
        conn.execute(
            insert(links),
            [{"job_key": key, "link": name, "other_key": other} for name, other in rows],
        )


@rerun_transient
def related(db: Database, keys: list[str]) -> dict[str, Related]:
    """What links each of the jobs `keys` to others (parent_key and the links table), each
    other job as its (path, body); jobs that are gone are left out."""
    t, links = db.table, db.links
    result = {key: Related() for key in keys}
    if not keys:
        return result
    with db.engine.connect() as conn:
        own = dict(
            conn.execute(select(t.c.job_key, t.c.parent_key).where(t.c.job_key.in_(keys))).all()
        )
        children = conn.execute(
            select(t.c.parent_key, t.c.job_key).where(t.c.parent_key.in_(keys)).order_by(t.c.id)
        ).all()
        linked = conn.execute(
            select(links.c.job_key, links.c.link, links.c.other_key).where(
                links.c.job_key.in_(keys) | links.c.other_key.in_(keys)
            )
        ).all()
        named = {k for k in own.values() if k} | {c for _, c in children}
        named |= {row.job_key for row in linked} | {row.other_key for row in linked}
        jobs = {
            row.job_key: (row.id, (row.path, row.body))
            for row in conn.execute(
                select(t.c.id, t.c.job_key, t.c.path, t.c.body).where(
                    t.c.job_key.in_(sorted(named))
                )
            )
        }
    parents: dict[str, set[str]] = defaultdict(set)
    kids: dict[str, set[str]] = defaultdict(set)
    for key, parent in own.items():
        if parent:
            parents[key].add(parent)
    for parent, child in children:
        kids[parent].add(child)
    for row in linked:
        if row.link == PARENT:
            parents[row.job_key].add(row.other_key)
            kids[row.other_key].add(row.job_key)
        elif row.job_key in result and row.other_key in jobs:
            result[row.job_key].on_failure = jobs[row.other_key][1]

    def ordered(found: set[str], first: str | None = None) -> list[tuple[str, str]]:
        present = sorted((k for k in found if k in jobs), key=lambda k: (k != first, jobs[k][0]))
        return [jobs[k][1] for k in present]

    for key, one in result.items():
        one.parents = ordered(parents[key], own.get(key))
        one.children = ordered(kids[key])
    return result


def children_due(db: Database, parents: list[str]) -> CompoundSelect:
    """The ids of the jobs that a success of each of `parents` makes due: the first enabled
    child by parent_key (Kala's order: the others follow one after another, see after()),
    and every enabled child with several parents (links), at once."""
    t, links = db.table, db.links
    chained = select(func.min(t.c.id)).where(
        t.c.parent_key.in_(parents), t.c.enabled, ~t.c.job_key.in_(_with_parents(db))
    )
    linked = (
        select(t.c.id)
        .join(links, links.c.job_key == t.c.job_key)
        .where(links.c.other_key.in_(parents), links.c.link == PARENT, t.c.enabled)
    )
    return chained.group_by(t.c.parent_key).union_all(linked)


def sibling_due(db: Database, parent: str, after: int) -> Select:
    """The id of the enabled child of `parent` after the child `after` (by id), which a run of
    that child that ended makes due; none when `after` has several parents (a child of
    several parents, woken by any of them, starts no chain)."""
    t = db.table
    ended = select(t.c.job_key).where(t.c.id == after).scalar_subquery()
    return select(func.min(t.c.id)).where(
        t.c.parent_key == parent,
        t.c.id > after,
        t.c.enabled,
        ~t.c.job_key.in_(_with_parents(db)),
        ~ended.in_(_with_parents(db)),
    )


def on_failure_due(conn: Connection, db: Database, failed: list[str]) -> list[int]:
    """The ids of the jobs that runs of `failed` (failed for good) make due."""
    t, links = db.table, db.links
    return list(
        conn.execute(
            select(t.c.id)
            .join(links, links.c.other_key == t.c.job_key)
            .where(links.c.job_key.in_(failed), links.c.link == ON_FAILURE)
        ).scalars()
    )


def _with_parents(db: Database) -> Select:
    """The jobs with several parents."""
    links = db.links
    return select(links.c.job_key).where(links.c.link == PARENT)


def parents_of(conn: Connection, db: Database, keys: set[str]) -> dict[str, set[str]]:
    """Each job's parents: its parent_key and its parent links."""
    t, links = db.table, db.links
    found: dict[str, set[str]] = {key: set() for key in keys}
    for key, parent in conn.execute(
        select(t.c.job_key, t.c.parent_key).where(t.c.job_key.in_(sorted(keys)))
    ):
        if parent:
            found[key].add(parent)
    for key, parent in conn.execute(
        select(links.c.job_key, links.c.other_key).where(
            links.c.job_key.in_(sorted(keys)), links.c.link == PARENT
        )
    ):
        found[key].add(parent)
    return found


def children_of(conn: Connection, db: Database, keys: set[str]) -> set[str]:
    """The jobs with one of `keys` as a parent."""
    t, links = db.table, db.links
    by_key = conn.execute(select(t.c.job_key).where(t.c.parent_key.in_(sorted(keys)))).scalars()
    by_link = conn.execute(
        select(links.c.job_key).where(links.c.other_key.in_(sorted(keys)), links.c.link == PARENT)
    ).scalars()
    return set(by_key) | set(by_link)


def forget(conn: Connection, db: Database, keys: set[str]) -> None:
    """Drop every link from or to the jobs `keys` (deleted)."""
    links = db.links
    listed = sorted(keys)
    conn.execute(delete(links).where(links.c.job_key.in_(listed) | links.c.other_key.in_(listed)))
