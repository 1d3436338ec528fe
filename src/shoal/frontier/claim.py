"""SQL of the claim: the page budget, the lease of due URLs per host, politeness slots, and the reaper.

:class:`~shoal.frontier.sql.SqlFrontier` calls these functions inside its own
transactions (``sync``, ``reserve_slot``, ``skip_pending``); ``lock`` is its
``FOR UPDATE [SKIP LOCKED]`` wrapper. :mod:`shoal.frontier.workers` gives leases
back with :func:`unleased`.

Guarantees:

- A claim leases only pending URLs that are due, of hosts not paused and whose
  next politeness slot is within the horizon; host rows are locked with their
  URLs, so the minimum interval per host holds for the whole fleet. A slot
  taken outside a claim (:func:`reserve_slot`) locks the host row the same way.
- Under a crawl's ``max_pages``, first fetches (done plus in flight) never
  exceed the budget fleet-wide; once spent, only refetches are claimed.
- The reaper takes back a lease only when its time passed *and* its owner's
  heartbeat is older than ``lease_ms``; rows another transaction holds are
  skipped, not waited for. A lease taken back counts in ``lease_lost`` (and
  the crawl's ``leases_reaped``); one its owner gives back costs no attempt.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, func, select, true, update

from shoal.errors import SkipReason
from shoal.frontier import dialects, policy, reads, warc_files
from shoal.frontier import due as revisit_sql
from shoal.frontier.contract import ClaimedURL, Status
from shoal.frontier.tables import crawls, hosts, urls, workers

__all__ = [
    "budget",
    "chunks",
    "count_reaped",
    "lease_due",
    "reap",
    "reserve_slot",
    "skip_unfetched",
    "unleased",
]

log = logging.getLogger(__name__)

_U = urls.c
_H = hosts.c

Lock = Callable[..., Any]


def chunks(seq: Sequence[int], n: int) -> Iterable[Sequence[int]]:
    """``seq`` in slices of at most ``n`` (bounded ``IN (...)`` lists)."""
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def budget(
    conn: Connection, crawl_id: int, want: int, done_now: int, lock: Lock
) -> tuple[int, bool]:
    """How many URLs this claim may lease under the crawl's ``max_pages``, and whether only refetches.

    The budget counts first fetches: pages fetched plus first fetches in
    flight never exceed it, fleet-wide (the claim holds the crawl row while
    it counts, so two workers cannot both spend the last pages). Once it is
    spent, claims take only refetches of pages already fetched (revisits),
    and the sync that finds it spent marks every pending first fetch
    ``skipped`` (``max_pages``), including links found by pages still in flight.
    """
    c = crawls.c
    budget = conn.execute(select(c.max_pages).where(c.id == crawl_id)).scalar()
    if budget is None:
        return want, False
    # Claims of a budgeted crawl take turns on its row while they count.
    conn.execute(lock(select(c.id).where(c.id == crawl_id), skip=False)).one()
    fetched = conn.execute(reads.pages_fetched(crawl_id)).scalar_one()
    first_in_flight = conn.execute(
        select(func.count())
        .select_from(urls)
        .where(
            _U.crawl_id == crawl_id,
            _U.status == Status.LEASED.value,
            _U.first_fetched_at.is_(None),
        )
    ).scalar_one()
    spent = int(fetched) + done_now
    if spent >= int(budget):
        skip_unfetched(conn, crawl_id, SkipReason.MAX_PAGES.value)
    left = int(budget) - spent - int(first_in_flight)
    if left <= 0:
        return want, True
    return min(want, left), False


def skip_unfetched(conn: Connection, crawl_id: int, reason: str) -> int:
    """Mark ``skipped`` with ``reason`` every pending URL never fetched; returns how many.

    A page fetched before and pending again for its revisit keeps its place.
    """
    res = conn.execute(
        update(urls)
        .where(
            _U.crawl_id == crawl_id,
            _U.status == Status.PENDING.value,
            _U.first_fetched_at.is_(None),
        )
        .values(status=Status.SKIPPED.value, skip_reason=reason)
    )
    return max(res.rowcount or 0, 0)


def unleased(now: int, *, lost: bool) -> dict[str, Any]:
    """The values that put a leased URL back to pending, due now, its lease cleared.

    A ``lost`` lease (its owner died) counts in ``lease_lost``; a lease its owner
    gives back returns the attempt the claim charged.
    """
    charge = {"lease_lost": _U.lease_lost + 1} if lost else {"attempts": _U.attempts - 1}
    return dict(
        status=Status.PENDING.value,
        lease_owner=None,
        lease_token=None,
        lease_expires_at=None,
        next_attempt_at=now,
        **charge,
    )


def count_reaped(conn: Connection, crawl_id: int, n: int) -> None:
    """Add ``n`` lost leases to the crawl's ``leases_reaped`` (its one shared row: written only when leases came back)."""
    if n:
        conn.execute(
            update(crawls)
            .where(crawls.c.id == crawl_id)
            .values(leases_reaped=crawls.c.leases_reaped + n)
        )


def lease_due(
    conn: Connection,
    engine: Engine,
    rng: random.Random,
    lock: Lock,
    crawl_id: int,
    owner: str,
    want: int,
    lease_ms: int,
    per_host: int,
    jitter: float,
    horizon_ms: int,
    now: int,
    *,
    refetch_only: bool = False,
) -> list[ClaimedURL]:
    """Lease up to ``want`` due URLs to ``owner``, host by host in next-slot order, each with its fetch slot."""
    # With the page budget spent, only pages fetched before (revisits) may be claimed.
    budget_ok = _U.first_fetched_at.is_not(None) if refetch_only else true()
    due = dialects.has_row(
        engine,
        select(_U.id).where(
            _U.crawl_id == _H.crawl_id,
            _U.host_key == _H.host_key,
            _U.status == "pending",
            _U.next_attempt_at <= now,
            budget_ok,
        ),
    )
    hq = (
        select(_H.host_key, _H.min_delay_ms, _H.next_fetch_at)
        .where(
            _H.crawl_id == crawl_id,
            _H.paused_until <= now,
            _H.next_fetch_at <= now + horizon_ms,
            due,
        )
        .order_by(_H.next_fetch_at)
        .limit(min(max(want, 1), 256))
    )
    host_rows = conn.execute(lock(hq)).all()
    token = rng.getrandbits(62)
    expires = now + lease_ms
    out: list[ClaimedURL] = []
    for hrow in host_rows:
        if len(out) >= want:
            break
        leased = 0
        if per_host < want:
            leased = conn.execute(
                select(func.count())
                .select_from(urls)
                .where(_U.crawl_id == crawl_id, _U.host_key == hrow.host_key, _U.status == "leased")
            ).scalar_one()
        quota = policy.host_quota(per_host, leased, hrow.min_delay_ms, horizon_ms, want - len(out))
        if quota <= 0:
            continue
        uq = (
            select(
                _U.id,
                _U.url,
                _U.rule,
                _U.kind,
                _U.depth,
                _U.redirects,
                _U.attempts,
                *revisit_sql.PREVIOUS_COLUMNS,
            )
            .where(
                _U.crawl_id == crawl_id,
                _U.host_key == hrow.host_key,
                _U.status == "pending",
                _U.next_attempt_at <= now,
                budget_ok,
            )
            .order_by(_U.priority, _U.id)
            .limit(quota)
        )
        rows = conn.execute(lock(uq)).all()
        if not rows:
            continue
        ids = [r.id for r in rows]
        for chunk in chunks(ids, 500):
            conn.execute(
                update(urls)
                .where(_U.id.in_(chunk))
                .values(
                    status="leased",
                    lease_owner=owner,
                    lease_token=token,
                    lease_expires_at=expires,
                    attempts=_U.attempts + 1,
                )
            )
        slots = _take_slots(conn, rng, crawl_id, hrow.host_key, hrow, jitter, len(rows), now)
        for r, slot in zip(rows, slots, strict=True):
            out.append(
                ClaimedURL(
                    r.id,
                    r.url,
                    hrow.host_key,
                    r.rule,
                    r.kind,
                    r.depth,
                    r.redirects,
                    r.attempts + 1,
                    token,
                    slot,
                    revisit_sql.previous_of(r),
                )
            )
    return out


def reserve_slot(
    conn: Connection,
    rng: random.Random,
    lock: Lock,
    crawl_id: int,
    host_key: int,
    jitter: float,
    now: int,
) -> int:
    """Take the next politeness slot of a host outside a claim (redirect hops, robots); ``now`` for an unknown host."""
    row = conn.execute(
        lock(
            select(_H.min_delay_ms, _H.next_fetch_at).where(
                _H.crawl_id == crawl_id, _H.host_key == host_key
            ),
            skip=False,
        )
    ).first()
    if row is None:
        return now
    return _take_slots(conn, rng, crawl_id, host_key, row, jitter, 1, now)[0]


def _take_slots(
    conn: Connection,
    rng: random.Random,
    crawl_id: int,
    host_key: int,
    host: Any,
    jitter: float,
    n: int,
    now: int,
) -> list[int]:
    """``n`` fetch slots of a host whose row the caller locked (``host``: its ``min_delay_ms``,
    ``next_fetch_at``); the host's next free slot moves past them."""
    slots, next_free = policy.assign_slots(
        now, host.next_fetch_at, host.min_delay_ms, jitter, n, rng
    )
    if host.min_delay_ms > 0:
        conn.execute(
            update(hosts)
            .where(_H.crawl_id == crawl_id, _H.host_key == host_key)
            .values(next_fetch_at=next_free)
        )
    return slots


def reap(conn: Connection, crawl_id: int, now: int, lease_ms: int, lock: Lock) -> int:
    """Return to pending the URLs whose lease expired and whose owner stopped heartbeating.

    A live worker's heartbeat touches only its ``workers`` row, never the URL
    rows, so heartbeats take no row locks that claims or completions wait on.
    """
    alive = (
        select(workers.c.id)
        .where(
            workers.c.id == _U.lease_owner,
            workers.c.state == "running",
            workers.c.heartbeat_at >= now - lease_ms,
        )
        .exists()
    )
    # Rows another transaction holds (a frozen worker's completion, say) are
    # skipped, not waited for: one stopped process must not stall the fleet.
    expired = select(_U.id).where(
        _U.crawl_id == crawl_id, _U.status == "leased", _U.lease_expires_at < now, ~alive
    )
    ids = sorted(r[0] for r in conn.execute(lock(expired.limit(5000))))
    n = 0
    for chunk in chunks(ids, 500):
        res = conn.execute(
            update(urls)
            .where(_U.id.in_(chunk), _U.status == "leased")
            .values(**unleased(now, lost=True))
        )
        n += max(res.rowcount or 0, 0)
    if n:
        log.info("returned %d URL(s) to pending from a dead worker (lease expired)", n)
    lost = warc_files.release_lost(conn, crawl_id, now, lease_ms, lock)
    if lost:
        log.warning("returned %d URL(s) to pending: their WARC file was never uploaded", lost)
    return n
