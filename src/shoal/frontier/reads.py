"""Every read of the frontier that is not part of the claim/complete cycle: status, parse, events.

Each function takes an open :class:`~sqlalchemy.Connection` and runs its queries
inside the caller's transaction; :class:`~shoal.frontier.sql.SqlFrontier` calls
them in one read-only transaction (REPEATABLE READ on PostgreSQL and
MySQL/MariaDB, one read transaction on SQLite), so everything one call returns
comes from the same moment of the database: a status frame never mixes moments.
The queries are served by the indexes of :mod:`shoal.frontier.tables` (a test
reads their plans), so a status frame stays cheap at a million URLs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, case, func, select

from shoal.frontier import due as revisit_sql
from shoal.frontier.contract import CrawlInfo, Status
from shoal.frontier.due import RevisitSchedule
from shoal.frontier.tables import crawls, events, hosts, urls, workers

if TYPE_CHECKING:
    from shoal.frontier.contract import Frontier

__all__ = [
    "STATUSES",
    "CaptureRow",
    "ErrorRow",
    "HostRow",
    "StatusSnapshot",
    "ThroughputBucket",
    "WorkerRow",
    "capture_rows",
    "read_status",
    "snapshot",
    "status_counts",
    "unsent_events",
]

STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
"""Every URL status, in the order status displays show them."""

_U = urls.c
_H = hosts.c
_W = workers.c


@dataclass(frozen=True, slots=True)
class HostRow:
    """One host: its politeness state, its counters and its URLs by status."""

    host: str
    host_key: int
    min_delay_ms: int
    next_fetch_at: int
    paused_until: int
    pause_reason: str | None
    counts: dict[str, int]
    """URLs of the host by status (every status present, 0 when none)."""

    @property
    def total(self) -> int:
        """Every URL of the host."""
        return sum(self.counts.values())

    @property
    def fetches(self) -> int:
        """URLs of the host fetched to an end (done or failed)."""
        return self.counts.get(Status.DONE.value, 0) + self.counts.get(Status.FAILED.value, 0)

    @property
    def errors(self) -> int:
        """URLs of the host given up on an error (failed)."""
        return self.counts.get(Status.FAILED.value, 0)


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """One worker process as it last reported itself (counters written with every sync and at stop)."""

    id: str
    hostname: str
    ip: str | None
    pid: int
    version: str
    state: str
    started_at: int
    heartbeat_at: int
    stopped_at: int | None
    concurrency: int
    pages_done: int
    pages_failed: int
    bytes_archived: int
    detail: str | None


@dataclass(frozen=True, slots=True)
class ErrorRow:
    """A URL whose last attempt ended in an error (the full URL, not shortened)."""

    url: str
    error_class: str
    error_detail: str | None
    http_status: int | None
    at: int | None
    status: str
    """``failed`` (given up) or ``pending`` (a retry is scheduled)."""
    attempts: int


@dataclass(frozen=True, slots=True)
class ThroughputBucket:
    """Outcomes written in one minute (``minute`` = ms since the epoch // 60000)."""

    minute: int
    done: int
    failed: int
    errors: dict[str, int]
    """Failed outcomes of that minute by error class."""


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """One crawl at one moment, read in one read-only transaction.

    Every number here comes from the same database snapshot: ``counts`` sum to
    ``total``, the hosts' counts sum to ``counts``, and the workers' counters are
    what each worker wrote with its last sync (or at its stop).
    """

    crawl: CrawlInfo
    now_ms: int
    counts: dict[str, int]
    """URLs by status (every status present)."""
    failed: dict[str, int]
    """Failed URLs by error class."""
    skipped: dict[str, int]
    """Skipped URLs by skip reason."""
    http_status: dict[int, int]
    """URLs by the HTTP status of their last response."""
    fetched: int
    """Pages fetched for the first time (the sum of the workers' counters; ``max_pages`` bounds it)."""
    max_pages: int | None
    """The crawl-wide page budget, or None for no limit."""
    bytes_archived: int
    """Bytes of WARC records of the outcomes applied (the sum of the workers' counters)."""
    leases_reaped: int
    """Leases returned to pending from a dead worker (its heartbeat stopped, or it was killed)."""
    retried: int
    """Retries scheduled: outcomes that put a URL back to pending after an error."""
    first_fetch_ms: int | None
    last_fetch_ms: int | None
    pages_last_minute: int
    pages_last_10_minutes: int
    due_now: int
    """Pending URLs whose retry time has come (politeness may still hold them back)."""
    next_due_ms: int | None
    """The earliest retry time of a pending URL, or None when nothing is pending."""
    throughput: list[ThroughputBucket] = field(default_factory=list)
    hosts: list[HostRow] = field(default_factory=list)
    workers: list[WorkerRow] = field(default_factory=list)
    last_errors: list[ErrorRow] = field(default_factory=list)
    revisits: RevisitSchedule | None = None
    """What is due when, for a crawl whose pages are revisited (None otherwise)."""

    @property
    def total(self) -> int:
        """Every URL the crawl knows."""
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class CaptureRow:
    """A URL fetched and archived: where its response record is in the archive."""

    id: int
    url: str
    final_url: str | None
    url_key: int
    rule: int
    kind: str
    http_status: int | None
    fetched_at: int | None
    content_type: str | None
    warc_file: str
    warc_offset: int
    warc_length: int
    warc_record_id: str
    latest_record_id: str | None = None
    """The URL's latest record when it differs from the one above (a ``revisit`` record resolved
    to the capture holding its payload); ``--all-captures`` does not count it twice."""


def _counts_by(conn: Connection, col: Any, crawl_id: int, status: str) -> dict[Any, int]:
    q = select(col, func.count()).where(_U.crawl_id == crawl_id, _U.status == status).group_by(col)
    return {k: int(n) for k, n in conn.execute(q)}


def pages_fetched(crawl_id: int) -> Any:
    """The query for the crawl's pages fetched (first fetches): the sum of its workers' counters."""
    return select(func.coalesce(func.sum(_W.pages_new), 0)).where(_W.crawl_id == crawl_id)


def status_counts(conn: Connection, crawl_id: int) -> dict[str, int]:
    """URLs of the crawl by status, every status present (served by ``ix_urls_status``, or ``ix_urls_claim`` where the planner prefers it)."""
    counts = dict.fromkeys(STATUSES, 0)
    for s, n in conn.execute(
        select(_U.status, func.count()).where(_U.crawl_id == crawl_id).group_by(_U.status)
    ):
        counts[s] = int(n)
    return counts


def snapshot(
    conn: Connection,
    crawl_id: int,
    now: int,
    *,
    top_hosts: int = 50,
    errors: int = 20,
    minutes: int = 240,
) -> StatusSnapshot:
    """Read the whole status of a crawl; run it inside one read-only transaction."""
    c = conn.execute(select(crawls).where(crawls.c.id == crawl_id)).one()
    info = CrawlInfo(c.id, c.name, c.spec, c.state)
    sums = conn.execute(
        select(
            func.coalesce(func.sum(_W.pages_new), 0),
            func.coalesce(func.sum(_W.bytes_archived), 0),
            func.coalesce(func.sum(_W.retries), 0),
        ).where(_W.crawl_id == crawl_id)
    ).one()
    # One pass over the URLs by host and status gives both the per-host rows and the
    # totals (a second pass for the totals alone cost as much at a million URLs).
    per = _per_host(conn, crawl_id)
    counts = dict.fromkeys(STATUSES, 0)
    for by_status in per.values():
        for s, n in by_status.items():
            counts[s] += n
    failed = {
        (k or "unknown"): n for k, n in _counts_by(conn, _U.error_class, crawl_id, "failed").items()
    }
    skipped = {
        (k or "?"): n for k, n in _counts_by(conn, _U.skip_reason, crawl_id, "skipped").items()
    }
    http = {
        int(code): int(n)
        for code, n in conn.execute(
            select(_U.http_status, func.count())
            .where(_U.crawl_id == crawl_id, _U.http_status.is_not(None))
            .group_by(_U.http_status)
        )
    }
    first, last = conn.execute(
        select(func.min(_U.fetched_at), func.max(_U.fetched_at)).where(
            _U.crawl_id == crawl_id, _U.fetched_at.is_not(None)
        )
    ).one()
    recent = conn.execute(
        select(
            func.coalesce(func.sum(case((_U.fetched_at >= now - 60_000, 1), else_=0)), 0),
            func.count(),
        ).where(
            _U.crawl_id == crawl_id,
            _U.fetched_at >= now - 600_000,
            _U.status.in_((Status.DONE.value, Status.FAILED.value)),
        )
    ).one()
    due = conn.execute(
        select(
            func.coalesce(func.sum(case((_U.next_attempt_at <= now, 1), else_=0)), 0),
            func.min(_U.next_attempt_at),
        ).where(_U.crawl_id == crawl_id, _U.status == Status.PENDING.value)
    ).one()
    return StatusSnapshot(
        crawl=info,
        now_ms=now,
        counts=counts,
        failed=failed,
        skipped=skipped,
        http_status=dict(sorted(http.items())),
        fetched=int(sums[0]),
        max_pages=None if c.max_pages is None else int(c.max_pages),
        bytes_archived=int(sums[1]),
        leases_reaped=int(c.leases_reaped),
        retried=int(sums[2]),
        first_fetch_ms=None if first is None else int(first),
        last_fetch_ms=None if last is None else int(last),
        pages_last_minute=int(recent[0]),
        pages_last_10_minutes=int(recent[1]),
        due_now=int(due[0]),
        next_due_ms=None if due[1] is None else int(due[1]),
        throughput=throughput(conn, crawl_id, now, minutes),
        hosts=host_rows(conn, crawl_id, top_hosts, per),
        workers=worker_rows(conn, crawl_id),
        last_errors=last_errors(conn, crawl_id, errors),
        revisits=_revisits(conn, crawl_id, now),
    )


def _revisits(conn: Connection, crawl_id: int, now: int) -> RevisitSchedule | None:
    sched = revisit_sql.schedule(conn, crawl_id, now)
    return sched if sched.scheduled or sched.revisited or sched.due_now else None


def throughput(conn: Connection, crawl_id: int, now: int, minutes: int) -> list[ThroughputBucket]:
    """Outcomes per minute over the last ``minutes`` minutes (served by ``ix_urls_fetched``)."""
    minute = _U.fetched_at // 60000
    q = (
        select(minute.label("m"), _U.status, _U.error_class, func.count())
        .where(
            _U.crawl_id == crawl_id,
            _U.fetched_at >= (now // 60000 - minutes + 1) * 60000,
            _U.status.in_((Status.DONE.value, Status.FAILED.value)),
        )
        .group_by("m", _U.status, _U.error_class)
    )
    buckets: dict[int, tuple[int, int, dict[str, int]]] = {}
    for m, status, cls, n in conn.execute(q):
        done, fail, errs = buckets.get(int(m), (0, 0, {}))
        if status == Status.DONE.value:
            done += int(n)
        else:
            fail += int(n)
            errs[cls or "unknown"] = errs.get(cls or "unknown", 0) + int(n)
        buckets[int(m)] = (done, fail, errs)
    return [ThroughputBucket(m, d, f, e) for m, (d, f, e) in sorted(buckets.items())]


def _per_host(conn: Connection, crawl_id: int) -> dict[int, dict[str, int]]:
    """Every host's URLs by status (served by ``ix_urls_claim``, whose prefix is exactly that)."""
    per: dict[int, dict[str, int]] = {}
    for hk, status, n in conn.execute(
        select(_U.host_key, _U.status, func.count())
        .where(_U.crawl_id == crawl_id)
        .group_by(_U.host_key, _U.status)
    ):
        per.setdefault(int(hk), dict.fromkeys(STATUSES, 0))[status] = int(n)
    return per


def host_rows(
    conn: Connection, crawl_id: int, limit: int, per: dict[int, dict[str, int]] | None = None
) -> list[HostRow]:
    """The ``limit`` hosts with most URLs, with their URLs by status (``per``: already counted)."""
    if per is None:
        per = _per_host(conn, crawl_id)
    top = sorted(per, key=lambda k: (-sum(per[k].values()), k))[:limit]
    if not top:
        return []
    rows = {
        int(r.host_key): r
        for r in conn.execute(select(hosts).where(_H.crawl_id == crawl_id, _H.host_key.in_(top)))
    }
    return [
        HostRow(
            host=r.host,
            host_key=k,
            min_delay_ms=int(r.min_delay_ms),
            next_fetch_at=int(r.next_fetch_at),
            paused_until=int(r.paused_until),
            pause_reason=r.pause_reason,
            counts=per[k],
        )
        for k in top
        if (r := rows.get(k)) is not None
    ]


def worker_rows(conn: Connection, crawl_id: int) -> list[WorkerRow]:
    """Every worker that ever joined the crawl, oldest first (served by ``ix_workers_crawl``)."""
    return [
        WorkerRow(
            id=r.id,
            hostname=r.hostname,
            ip=r.ip,
            pid=int(r.pid),
            version=r.version,
            state=r.state,
            started_at=int(r.started_at),
            heartbeat_at=int(r.heartbeat_at),
            stopped_at=None if r.stopped_at is None else int(r.stopped_at),
            concurrency=int(r.concurrency),
            pages_done=int(r.pages_done),
            pages_failed=int(r.pages_failed),
            bytes_archived=int(r.bytes_archived),
            detail=r.detail,
        )
        for r in conn.execute(
            select(workers).where(_W.crawl_id == crawl_id).order_by(_W.started_at, _W.id)
        )
    ]


def last_errors(conn: Connection, crawl_id: int, limit: int) -> list[ErrorRow]:
    """The latest URLs that ended in an error, newest first (failed, or pending a retry)."""
    q = (
        select(
            _U.url,
            _U.error_class,
            _U.error_detail,
            _U.http_status,
            _U.fetched_at,
            _U.status,
            _U.attempts,
        )
        .where(
            _U.crawl_id == crawl_id,
            _U.status.in_((Status.FAILED.value, Status.PENDING.value)),
            _U.error_class.is_not(None),
        )
        .order_by(_U.fetched_at.desc())
        .limit(limit)
    )
    return [
        ErrorRow(
            r.url,
            r.error_class,
            r.error_detail,
            r.http_status,
            r.fetched_at,
            r.status,
            int(r.attempts),
        )
        for r in conn.execute(q)
    ]


def capture_rows(conn: Connection, crawl_id: int, *, assets: bool) -> list[CaptureRow]:
    """The archived responses of the crawl in archive order (pages, or only ``asset`` URLs).

    A page whose latest fetch was archived as a ``revisit`` record (a 304, an
    unchanged payload), or that is pending again for its revisit, is given as
    the full capture holding its payload (status 200); see :func:`_payload_row`.
    """
    raw = _done_captures(conn, crawl_id, assets=assets)
    if assets:
        return [r[0] for r in raw]
    rows = [_payload_row(r) for r in raw]
    rows.extend(_revisiting_captures(conn, crawl_id))
    rows.sort(key=lambda r: (r.warc_file, r.warc_offset))
    return rows


_CAPTURE = (
    _U.id,
    _U.url,
    _U.final_url,
    _U.url_key,
    _U.rule,
    _U.kind,
    _U.http_status,
    _U.fetched_at,
    _U.content_type,
    _U.warc_file,
    _U.warc_offset,
    _U.warc_length,
    _U.warc_record_id,
)
_PAYLOAD = (
    _U.payload_file,
    _U.payload_offset,
    _U.payload_length,
    _U.payload_record_id,
)


def _capture_row(
    r: Any,
    http_status: int | None,
    file: str,
    offset: int,
    length: int,
    record_id: str,
    latest_record_id: str | None = None,
) -> CaptureRow:
    """The capture of URL row ``r`` (selected with :data:`_CAPTURE`) whose response is that record."""
    return CaptureRow(
        int(r.id),
        r.url,
        r.final_url,
        int(r.url_key),
        int(r.rule),
        r.kind,
        http_status,
        r.fetched_at,
        r.content_type,
        file,
        int(offset),
        int(length),
        record_id,
        latest_record_id,
    )


def _payload_row(r: Any) -> CaptureRow:
    """The capture of a done row, resolved to its payload when the latest record is a revisit."""
    row: CaptureRow = r[0]
    file, offset, length, record_id = r[1:]
    if row.http_status in (200, 304) and record_id and file and record_id != row.warc_record_id:
        return replace(
            row,
            http_status=200,
            warc_file=file,
            warc_offset=int(offset),
            warc_length=int(length),
            warc_record_id=record_id,
            latest_record_id=row.warc_record_id,
        )
    return row


def _revisiting_captures(conn: Connection, crawl_id: int) -> list[CaptureRow]:
    """Pages pending or leased again for a revisit: their last full capture."""
    q = select(*_CAPTURE, *_PAYLOAD).where(
        _U.crawl_id == crawl_id,
        _U.status.in_((Status.PENDING.value, Status.LEASED.value)),
        _U.payload_record_id.is_not(None),
        _U.kind != "asset",
    )
    return [
        _capture_row(
            r,
            200,
            r.payload_file,
            r.payload_offset,
            r.payload_length,
            r.payload_record_id,
            r.warc_record_id if r.warc_record_id != r.payload_record_id else None,
        )
        for r in conn.execute(q)
    ]


def _done_captures(conn: Connection, crawl_id: int, *, assets: bool) -> list[Any]:
    kind = _U.kind == "asset" if assets else _U.kind != "asset"
    q = (
        select(*_CAPTURE, *_PAYLOAD)
        .where(
            _U.crawl_id == crawl_id,
            _U.status == Status.DONE.value,
            _U.warc_file.is_not(None),
            kind,
        )
        .order_by(_U.warc_file, _U.warc_offset)
    )
    return [
        (
            _capture_row(
                r,
                r.http_status,
                r.warc_file,
                r.warc_offset,
                r.warc_length,
                r.warc_record_id or "",
            ),
            r.payload_file,
            r.payload_offset,
            r.payload_length,
            r.payload_record_id,
        )
        for r in conn.execute(q)
    ]


def unsent_events(
    conn: Connection, crawl_id: int | None, kinds: list[str] | None, limit: int = 500
) -> list[dict[str, Any]]:
    """Events not yet notified, oldest first."""
    q = select(events).where(events.c.notified == 0)
    if crawl_id is not None:
        q = q.where(events.c.crawl_id == crawl_id)
    if kinds is not None:
        q = q.where(events.c.kind.in_(kinds))
    return [dict(r._mapping) for r in conn.execute(q.order_by(events.c.id).limit(limit))]


def read_status(frontier: Frontier, crawl_id: int) -> StatusSnapshot:
    """The status of a crawl, read in one consistent read-only transaction."""
    return frontier.status(crawl_id)
