"""SQL of the ``warc_files`` table: where each WARC file is and whether its captures are safe.

:class:`~shoal.frontier.sql.SqlFrontier` calls these functions inside its own
transactions; nothing else writes the table.

Guarantees:

- A file's row exists (``open``) before any URL completed with a reference
  into it can be written: the archive sink records it when the writer
  creates the file, before the first reference is handed out.
- A file destined for S3 (``location`` starting ``s3://``) is unsafe until
  ``uploaded``. When its worker is no longer alive (not ``running``, or no
  heartbeat for ``lease_ms``), :func:`release_lost` marks it ``lost`` and puts
  every URL whose capture (or revisit payload) is in it back to pending, in
  the same transaction, so a terminated machine loses no page.
- Files of a local archive are safe once ``closed``; they are never released.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select, update

from shoal.frontier.tables import urls, warc_files, workers

__all__ = [
    "UNSAFE",
    "WarcFileRow",
    "closed",
    "lost_files_waiting",
    "opened",
    "release_lost",
    "unsafe_files",
    "uploaded",
]

UNSAFE = ("open", "closed")
"""States of a file whose captures are not yet safe (when its location is ``s3://``)."""

_W = warc_files.c
_U = urls.c


@dataclass(frozen=True, slots=True)
class WarcFileRow:
    """One row of ``warc_files``."""

    name: str
    worker_id: str
    hostname: str
    state: str
    size: int | None
    sha256: str | None
    location: str | None


def opened(
    conn: Connection,
    crawl_id: int,
    name: str,
    worker_id: str,
    hostname: str,
    location: str,
    now: int,
) -> None:
    """Record a file its writer just created (``open``), or adopt an unsafe one a dead worker left.

    A worker that finds a complete file of a dead process on its disk takes it
    over (its row now names this worker and ``opened_at`` the time it did), so
    the file is not released as lost while this worker is uploading it.
    """
    exists = conn.execute(select(_W.id).where(_W.crawl_id == crawl_id, _W.name == name)).first()
    if exists is None:
        conn.execute(
            insert(warc_files).values(
                crawl_id=crawl_id,
                name=name,
                worker_id=worker_id,
                hostname=hostname,
                state="open",
                location=location,
                opened_at=now,
            )
        )
    else:
        conn.execute(
            update(warc_files)
            .where(_W.id == exists[0], _W.state.in_(UNSAFE))
            .values(worker_id=worker_id, hostname=hostname, opened_at=now)
        )


def closed(conn: Connection, crawl_id: int, name: str, size: int, sha256: str, now: int) -> None:
    """The file is complete on its worker's disk (a file already uploaded or lost keeps its state)."""
    conn.execute(
        update(warc_files)
        .where(_W.crawl_id == crawl_id, _W.name == name)
        .values(size=size, sha256=sha256, closed_at=now)
    )
    conn.execute(
        update(warc_files)
        .where(_W.crawl_id == crawl_id, _W.name == name, _W.state == "open")
        .values(state="closed")
    )


def uploaded(conn: Connection, crawl_id: int, name: str, location: str, now: int) -> None:
    """The file is in S3 at ``location`` and its checksum was confirmed by the server."""
    conn.execute(
        update(warc_files)
        .where(_W.crawl_id == crawl_id, _W.name == name)
        .values(state="uploaded", location=location, uploaded_at=now)
    )


def _unsafe_s3(crawl_id: int) -> tuple[Any, ...]:
    """The conditions of a file of the crawl bound for S3 and not uploaded yet."""
    return (_W.crawl_id == crawl_id, _W.state.in_(UNSAFE), _W.location.like("s3://%"))


def unsafe_files(conn: Connection, crawl_id: int, hostname: str | None = None) -> list[WarcFileRow]:
    """Files bound for S3 that are not uploaded yet (of one host, or all)."""
    q = select(_W.name, _W.worker_id, _W.hostname, _W.state, _W.size, _W.sha256, _W.location).where(
        *_unsafe_s3(crawl_id)
    )
    if hostname is not None:
        q = q.where(_W.hostname == hostname)
    return [WarcFileRow(*r) for r in conn.execute(q.order_by(_W.id))]


def _alive(now: int, lease_ms: int) -> Any:
    """The file's worker still counts as alive: running with a heartbeat within the lease, or
    not registered yet (a worker adopts files before its first heartbeat) and the file taken
    over within the lease."""
    w = workers.c
    running = (
        select(w.id)
        .where(
            w.id == _W.worker_id,
            w.crawl_id == _W.crawl_id,
            w.state == "running",
            w.heartbeat_at >= now - lease_ms,
        )
        .exists()
    )
    registered = select(w.id).where(w.id == _W.worker_id, w.crawl_id == _W.crawl_id).exists()
    return or_(running, and_(~registered, _W.opened_at >= now - lease_ms))


def lost_files_waiting(conn: Connection, crawl_id: int, now: int, silent_ms: int) -> bool:
    """Whether an unsafe S3 file's worker has been silent for ``silent_ms`` (it is probably dead).

    Such a file is released once its worker's lease has passed; until then the
    crawl is not finished, so the URLs it held are not forgotten.
    """
    q = (
        select(_W.id)
        .where(
            *_unsafe_s3(crawl_id),
            ~_alive(now, silent_ms),
        )
        .limit(1)
    )
    return conn.execute(q).first() is not None


def release_lost(
    conn: Connection,
    crawl_id: int,
    now: int,
    lease_ms: int,
    lock: Callable[[Any], Any],
) -> int:
    """Mark ``lost`` the unsafe S3 files of dead workers and put their URLs back to pending.

    A worker is dead when it is not ``running`` or its heartbeat is older than
    ``lease_ms``. Every URL whose ``warc_file`` or ``payload_file`` is such a
    file goes back to ``pending`` with its capture reference cleared, due now.
    Returns the number of URLs put back.
    """
    names = [
        r[0]
        for r in conn.execute(
            lock(
                select(_W.name)
                .where(
                    *_unsafe_s3(crawl_id),
                    ~_alive(now, lease_ms),
                )
                .limit(100)
            )
        )
    ]
    total = 0
    for name in names:
        res = conn.execute(
            update(urls)
            .where(
                _U.crawl_id == crawl_id,
                _U.status != "leased",
                or_(_U.warc_file == name, _U.payload_file == name),
            )
            .values(
                status="pending",
                next_attempt_at=now,
                warc_file=None,
                warc_offset=None,
                warc_length=None,
                warc_record_id=None,
                payload_file=None,
                payload_offset=None,
                payload_length=None,
                payload_record_id=None,
                payload_digest=None,
                etag=None,
                last_modified=None,
                skip_reason=None,
                error_class=None,
                error_detail=None,
            )
        )
        total += max(res.rowcount or 0, 0)
        conn.execute(
            update(warc_files)
            .where(_W.crawl_id == crawl_id, _W.name == name, _W.state.in_(UNSAFE))
            .values(state="lost")
        )
    return total
