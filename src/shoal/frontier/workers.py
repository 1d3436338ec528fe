"""SQL of the ``workers`` table: registration, heartbeat, counters, stop, and giving leases back.

:class:`~shoal.frontier.sql.SqlFrontier` calls these functions inside its own
transactions.

Guarantees:

- A heartbeat touches only its worker's row, never URL rows, so it takes no
  lock that a claim or a completion waits on; it keeps every lease the worker holds.
- Each worker's counters are written only by its own syncs (an owner that never
  registered gets a row in state ``unregistered``, which the reaper does not
  count as alive); the crawl's figures are their sums.
- Leases given back by their owner cost no attempt; leases of a dead local
  process count as lost (``lease_lost``, the crawl's ``leases_reaped``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select, update

from shoal.frontier import claim as claim_sql
from shoal.frontier.tables import urls, workers

__all__ = ["count", "heartbeat", "register", "release", "release_dead", "running_on", "stop"]

_U = urls.c


def register(
    conn: Connection,
    crawl_id: int,
    worker_id: str,
    now: int,
    *,
    hostname: str,
    ip: str | None,
    pid: int,
    version: str,
    concurrency: int,
) -> None:
    """Insert the worker's row as ``running``."""
    conn.execute(
        workers.insert().values(
            id=worker_id,
            crawl_id=crawl_id,
            hostname=hostname,
            ip=ip,
            pid=pid,
            version=version,
            state="running",
            started_at=now,
            heartbeat_at=now,
            concurrency=concurrency,
        )
    )


def stop(conn: Connection, worker_id: str, state: str, detail: str | None, now: int) -> None:
    """Mark the worker ``state`` (stopped, failed, ...) with its last heartbeat now."""
    conn.execute(
        update(workers)
        .where(workers.c.id == worker_id)
        .values(
            state=state,
            stopped_at=now,
            heartbeat_at=now,
            detail=detail,
        )
    )


def heartbeat(conn: Connection, crawl_id: int, owner: str, now: int) -> int:
    """Touch the owner's heartbeat; 1 if it is registered, else 0."""
    values: dict[str, Any] = {"heartbeat_at": now}
    res = conn.execute(
        update(workers)
        .where(workers.c.id == owner, workers.c.crawl_id == crawl_id)
        .values(**values)
    )
    return max(res.rowcount or 0, 0)


def count(conn: Connection, crawl_id: int, owner: str, now: int, counts: dict[str, int]) -> None:
    """Add a sync's applied outcomes to its worker's counters (the crawl's are their sums).

    Each worker writes only its own row, so no sync of the fleet waits on
    another's. An owner that never registered (a tool, a test) gets a row
    in state ``unregistered``, which the reaper does not count as alive.
    """
    w = workers.c
    res = conn.execute(
        update(workers)
        .where(w.id == owner, w.crawl_id == crawl_id)
        .values({k: getattr(w, k) + v for k, v in counts.items()})
    )
    if not res.rowcount:
        conn.execute(
            workers.insert().values(
                id=owner,
                crawl_id=crawl_id,
                hostname="",
                pid=0,
                version="",
                state="unregistered",
                started_at=now,
                heartbeat_at=now,
                concurrency=0,
                **counts,
            )
        )


def release(conn: Connection, crawl_id: int, owner: str, now: int) -> int:
    """Give back every lease ``owner`` holds without charging an attempt; returns how many."""
    res = conn.execute(
        update(urls)
        .where(_U.crawl_id == crawl_id, _U.status == "leased", _U.lease_owner == owner)
        .values(**claim_sql.unleased(now, lost=False))
    )
    return max(res.rowcount or 0, 0)


def running_on(conn: Connection, crawl_id: int, hostname: str) -> list[Any]:
    """``(id, pid)`` of the crawl's workers registered as running on ``hostname``."""
    return list(
        conn.execute(
            select(workers.c.id, workers.c.pid).where(
                workers.c.crawl_id == crawl_id,
                workers.c.hostname == hostname,
                workers.c.state == "running",
            )
        ).all()
    )


def release_dead(conn: Connection, crawl_id: int, worker_id: str, now: int) -> int:
    """Return the leases of a worker whose process is gone, and mark it ``dead``; returns how many."""
    res = conn.execute(
        update(urls)
        .where(_U.crawl_id == crawl_id, _U.status == "leased", _U.lease_owner == worker_id)
        .values(**claim_sql.unleased(now, lost=True))
    )
    conn.execute(
        update(workers).where(workers.c.id == worker_id).values(state="dead", stopped_at=now)
    )
    n = max(res.rowcount or 0, 0)
    claim_sql.count_reaped(conn, crawl_id, n)
    return n
