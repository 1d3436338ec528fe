"""SQL of the ``events`` table's writes: appending events and claiming one for notification.

:class:`~shoal.frontier.sql.SqlFrontier` calls these functions inside its own
transactions; the unsent events are read by :func:`shoal.frontier.reads.unsent_events`.

Guarantees: a message is cut to 4,000 characters; :func:`claim` marks an event
notified for exactly one caller of the fleet.
"""

from __future__ import annotations

from sqlalchemy import Connection, select, update

from shoal.frontier.tables import events

__all__ = ["claim", "has_signature", "record"]


def record(
    conn: Connection,
    crawl_id: int,
    now: int,
    kind: str,
    message: str,
    *,
    severity: str,
    worker_id: str | None,
    url: str | None,
    host: str | None,
    error_class: str | None,
    signature: str | None,
) -> None:
    """Append one event."""
    conn.execute(
        events.insert().values(
            crawl_id=crawl_id,
            at=now,
            kind=kind,
            severity=severity,
            worker_id=worker_id,
            url=url,
            host=host,
            error_class=error_class,
            signature=signature,
            message=message[:4000],
        )
    )


def has_signature(conn: Connection, crawl_id: int, signature: str) -> bool:
    """True when a ``new_error`` event of this signature exists for the crawl."""
    q = (
        select(events.c.id)
        .where(
            events.c.crawl_id == crawl_id,
            events.c.kind == "new_error",
            events.c.signature == signature,
        )
        .limit(1)
    )
    return conn.execute(q).first() is not None


def claim(conn: Connection, event_id: int) -> bool:
    """Mark an event notified; True only for the transaction that changed it."""
    res = conn.execute(
        update(events).where(events.c.id == event_id, events.c.notified == 0).values(notified=1)
    )
    return bool(res.rowcount)
