"""Revisit SQL: due pages back to ``pending``, validators and payloads per URL, the schedule.

The claim itself is unchanged: it only ever takes ``pending`` URLs through
``ix_urls_claim``. A page of a rule with ``revisit`` keeps its due time in
``revisit_at`` once ``done``; :func:`promote`, run inside the claim
transaction, turns the due ones back into ``pending`` (with their attempts
reset) through ``ix_urls_revisit``, so revisits take the same lease, fence and
politeness path as first fetches. Rows are locked with ``SKIP LOCKED`` where
the dialect has it, so two workers never promote the same row twice.

Guarantees: a promoted row keeps its validators and the location of its last
full payload (``payload_*``), which the worker sends as conditional headers and
a ``revisit`` record refers to; an outcome that carries no new payload or
validators leaves the stored ones alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Integer, bindparam, case, func, select, update

from shoal.frontier.contract import Outcome, Status
from shoal.frontier.revisit import PayloadRef, Previous
from shoal.frontier.tables import urls, workers

__all__ = [
    "PREVIOUS_COLUMNS",
    "RevisitSchedule",
    "count_unknown",
    "outcome_params",
    "outcome_values",
    "previous_of",
    "promote",
    "record_found",
    "refresh",
    "revisit_counts",
    "schedule",
    "wake_at",
]

_U = urls.c

PREVIOUS_COLUMNS = (
    _U.first_fetched_at,
    _U.fetched_at,
    _U.etag,
    _U.last_modified,
    _U.payload_digest,
    _U.payload_file,
    _U.payload_offset,
    _U.payload_length,
    _U.payload_record_id,
    _U.payload_at,
)
"""Columns the claim reads so the worker knows a URL's last fetch (see :func:`previous_of`)."""


def previous_of(row: Any) -> Previous | None:
    """The last fetch of a claimed row, or None for a URL never fetched successfully."""
    if row.first_fetched_at is None:
        return None
    payload = None
    if row.payload_record_id and row.payload_file and row.payload_digest:
        payload = PayloadRef(
            row.payload_digest,
            row.payload_file,
            int(row.payload_offset or 0),
            int(row.payload_length or 0),
            row.payload_record_id,
            int(row.payload_at or 0),
        )
    return Previous(row.fetched_at, row.first_fetched_at, row.etag, row.last_modified, payload)


def _flag(name: str) -> Any:
    return bindparam(name, type_=Integer)


def outcome_values() -> dict[str, Any]:
    """Extra SET clauses of the fenced outcome UPDATE (parameters from :func:`outcome_params`).

    No clause reads a column another one sets, so MySQL's left-to-right SET
    evaluation gives the same result as the other dialects.
    """
    set_val = _flag("_set_validators") == 1
    set_pay = _flag("_set_payload") == 1
    out: dict[str, Any] = {
        "revisit_at": bindparam("_revisit_at"),
        "first_fetched_at": case(
            (_flag("_done") == 1, func.coalesce(_U.first_fetched_at, bindparam("_first_at"))),
            else_=_U.first_fetched_at,
        ),
        "revisits": _U.revisits + _flag("_is_revisit"),
        "etag": case((set_val, bindparam("_etag")), else_=_U.etag),
        "last_modified": case((set_val, bindparam("_last_modified")), else_=_U.last_modified),
    }
    for col in ("digest", "file", "offset", "length", "record_id", "at"):
        name = f"payload_{col}"
        out[name] = case((set_pay, bindparam(f"_p_{col}")), else_=getattr(_U, name))
    return out


def outcome_params(o: Outcome, now: int) -> dict[str, Any]:
    """The parameters of :func:`outcome_values` for one outcome."""
    done = o.status is Status.DONE
    p = o.payload
    etag, last = o.validators if o.validators is not None else (None, None)
    return {
        "_revisit_at": o.revisit_at if done else None,
        "_done": 1 if done else 0,
        "_first_at": o.fetched_at if o.fetched_at is not None else now,
        "_is_revisit": 1 if done and o.revisit else 0,
        "_set_validators": 1 if done and o.validators is not None else 0,
        "_etag": etag,
        "_last_modified": last,
        "_set_payload": 1 if done and p is not None else 0,
        "_p_digest": p.digest if p else None,
        "_p_file": p.file if p else None,
        "_p_offset": p.offset if p else None,
        "_p_length": p.length if p else None,
        "_p_record_id": p.record_id if p else None,
        "_p_at": p.at if p else None,
    }


def promote(conn: Connection, crawl_id: int, now: int, lock: Callable[[Any], Any]) -> int:
    """Turn up to 1,000 ``done`` pages whose revisit is due back into ``pending``; returns how many.

    ``lock`` adds ``FOR UPDATE SKIP LOCKED`` where the dialect has row locks:
    rows another transaction is promoting or completing are left for later. A
    promoted row keeps its ``revisit_at`` (counted as due by status) until its
    outcome sets the next one.
    """
    q = (
        select(_U.id)
        .where(_U.crawl_id == crawl_id, _U.revisit_at <= now, _U.status == "done")
        .order_by(_U.revisit_at)
        .limit(1000)
    )
    ids = sorted(r[0] for r in conn.execute(lock(q)))
    if not ids:
        return 0
    res = conn.execute(
        update(urls)
        .where(_U.id.in_(ids), _U.status == "done")
        .values(status="pending", attempts=0, next_attempt_at=now)
    )
    return max(res.rowcount or 0, 0)


def revisit_counts(applied: Sequence[Outcome], found: dict[int, int]) -> dict[str, int]:
    """The worker counters a sync adds: refetches among the outcomes applied, new URLs they found."""
    return {
        "revisits": sum(1 for o in applied if o.revisit and o.status is Status.DONE),
        "found_new": sum(found.values()),
    }


def count_unknown(conn: Connection, crawl_id: int, outcomes: Sequence[Outcome]) -> dict[int, int]:
    """For revisit outcomes: how many of each one's links are not in the frontier yet.

    Read before the links are inserted; a link two outcomes share counts for the first.
    """
    wanted = [o for o in outcomes if o.revisit and o.status is Status.DONE]
    if not wanted:
        return {}
    keys = sorted({n.url_key for o in wanted for n in o.links})
    known: set[int] = set()
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        known.update(
            r[0]
            for r in conn.execute(
                select(_U.url_key).where(_U.crawl_id == crawl_id, _U.url_key.in_(chunk))
            )
        )
    out: dict[int, int] = {}
    for o in wanted:
        fresh = {n.url_key for n in o.links if n.status is Status.PENDING} - known
        known |= fresh
        out[o.url_id] = len(fresh)
    return out


def record_found(conn: Connection, found: dict[int, int]) -> None:
    """Store on each revisited page how many new URLs its last fetch found."""
    if found:
        conn.execute(
            update(urls).where(_U.id == bindparam("_id")).values(found_new=bindparam("_n")),
            [{"_id": k, "_n": v} for k, v in sorted(found.items())],
        )


def wake_at(conn: Connection, crawl_id: int) -> int | None:
    """The earliest time (ms) a URL may become claimable: a pending retry or a revisit, or None."""
    t_pending = conn.execute(
        select(func.min(_U.next_attempt_at)).where(
            _U.crawl_id == crawl_id, _U.status.in_(("pending", "leased"))
        )
    ).scalar()
    t_revisit = conn.execute(
        select(func.min(_U.revisit_at)).where(
            _U.crawl_id == crawl_id, _U.revisit_at.is_not(None), _U.status == "done"
        )
    ).scalar()
    times = [int(t) for t in (t_pending, t_revisit) if t is not None]
    return min(times) if times else None


def refresh(conn: Connection, crawl_id: int, items: Sequence[tuple[int, int]], now: int) -> int:
    """Make pages a sitemap says changed (``<lastmod>`` after their last fetch) due now.

    ``items`` are ``(url_key, lastmod ms)``; pages not fetched since are left
    alone unless done, and pages fetched after their lastmod are not touched.
    Returns how many became due.
    """
    total = 0
    for key, lastmod in sorted(items):
        res = conn.execute(
            update(urls)
            .where(
                _U.crawl_id == crawl_id,
                _U.url_key == key,
                _U.status == "done",
                _U.fetched_at < lastmod,
            )
            .values(revisit_at=now)
        )
        total += max(res.rowcount or 0, 0)
    return total


@dataclass(frozen=True, slots=True)
class RevisitSchedule:
    """What is due when, for ``shoal status``.

    ``due_now`` counts pages whose revisit is due (or promoted and waiting for
    a slot); ``upcoming`` lists ``(due time ms, pages)`` of the next due times;
    ``revisited`` is how many refetches were made in all, ``found_new`` how many
    new URLs they found (sums of the workers' counters). Every count is served by an index.
    """

    due_now: int
    next_at: int | None
    upcoming: list[tuple[int, int]]
    scheduled: int
    revisited: int
    found_new: int


def schedule(conn: Connection, crawl_id: int, now: int, buckets: int = 5) -> RevisitSchedule:
    """The revisit schedule of a crawl (see :class:`RevisitSchedule`)."""
    due_now = conn.execute(
        select(func.count()).where(_U.crawl_id == crawl_id, _U.revisit_at <= now)
    ).scalar_one()
    times = [
        int(r[0])
        for r in conn.execute(
            select(_U.revisit_at)
            .where(_U.crawl_id == crawl_id, _U.revisit_at > now)
            .order_by(_U.revisit_at)
            .limit(10_000)
        )
    ]
    upcoming: list[tuple[int, int]] = []
    for t in times:  # pages due within a second of each other are one entry
        if upcoming and t - upcoming[-1][0] < 1000:
            upcoming[-1] = (upcoming[-1][0], upcoming[-1][1] + 1)
        elif len(upcoming) < buckets:
            upcoming.append((t, 1))
        else:
            break
    scheduled = conn.execute(
        select(func.count()).where(_U.crawl_id == crawl_id, _U.revisit_at.is_not(None))
    ).scalar_one()
    revisited, found = conn.execute(
        select(
            func.coalesce(func.sum(workers.c.revisits), 0),
            func.coalesce(func.sum(workers.c.found_new), 0),
        ).where(workers.c.crawl_id == crawl_id)
    ).one()
    return RevisitSchedule(
        due_now=int(due_now),
        next_at=times[0] if times else None,
        upcoming=upcoming,
        scheduled=int(scheduled),
        revisited=int(revisited),
        found_new=int(found),
    )
