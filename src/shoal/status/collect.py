"""What a crawl looks like now, read from the frontier: counts, hosts, throughput, errors, workers.

Works while a crawl runs (read-only transactions) on every backend.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import case, func, select

from shoal.frontier.contract import CrawlInfo
from shoal.frontier.sql import SqlFrontier
from shoal.frontier.tables import crawls, hosts, urls, workers
from shoal.redact import redact_text, redact_url

__all__ = ["CrawlStatus", "collect"]

STATUSES = ("pending", "leased", "done", "failed", "skipped")


@dataclass
class CrawlStatus:
    """A snapshot of one crawl."""

    crawl: str
    crawl_id: int
    state: str
    database: str
    now_ms: int
    counts: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    http_status: dict[str, int] = field(default_factory=dict)
    bytes_archived: int = 0
    lease_lost: int = 0
    retried: int = 0
    pages_last_minute: int = 0
    pages_last_10_minutes: int = 0
    first_fetch_ms: int | None = None
    last_fetch_ms: int | None = None
    timeline: list[tuple[int, int]] = field(default_factory=list)
    """(minute since the epoch, pages fetched in it)."""
    hosts: list[dict[str, Any]] = field(default_factory=list)
    last_errors: list[dict[str, Any]] = field(default_factory=list)
    workers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Every URL the crawl knows."""
        return sum(self.counts.values())

    @property
    def pages_per_second(self) -> float:
        """Average fetch rate between the first and the last fetch."""
        if (
            self.first_fetch_ms is None
            or self.last_fetch_ms is None
            or self.last_fetch_ms <= self.first_fetch_ms
        ):
            return 0.0
        fetched = self.counts.get("done", 0) + self.counts.get("failed", 0)
        return fetched / ((self.last_fetch_ms - self.first_fetch_ms) / 1000)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``shoal status --json``)."""
        d = asdict(self)
        d["total"] = self.total
        d["pages_per_second"] = round(self.pages_per_second, 2)
        return d


def collect(
    frontier: SqlFrontier,
    crawl: CrawlInfo,
    *,
    top_hosts: int = 15,
    errors: int = 10,
    heartbeat_dead_ms: int = 60_000,
) -> CrawlStatus:
    """Read a snapshot of ``crawl`` from the frontier."""
    cid = crawl.id
    now = frontier.now_ms()
    u = urls.c
    st = CrawlStatus(crawl.name, cid, crawl.state, frontier.safe_url, now)
    for status, n in frontier.query(
        select(u.status, func.count()).where(u.crawl_id == cid).group_by(u.status)
    ):
        st.counts[status] = int(n)
    for s in STATUSES:
        st.counts.setdefault(s, 0)
    for cls, n in frontier.query(
        select(u.error_class, func.count())
        .where(u.crawl_id == cid, u.status == "failed")
        .group_by(u.error_class)
    ):
        st.failed[cls or "unknown"] = int(n)
    for reason, n in frontier.query(
        select(u.skip_reason, func.count())
        .where(u.crawl_id == cid, u.status == "skipped")
        .group_by(u.skip_reason)
    ):
        st.skipped[reason or "?"] = int(n)
    for code, n in frontier.query(
        select(u.http_status, func.count())
        .where(u.crawl_id == cid, u.http_status.is_not(None))
        .group_by(u.http_status)
    ):
        st.http_status[str(code)] = int(n)
    row = frontier.query(
        select(
            func.coalesce(func.sum(u.warc_length), 0),
            func.coalesce(func.sum(u.lease_lost), 0),
            func.coalesce(func.sum(case((u.attempts > 1, 1), else_=0)), 0),
            func.min(u.fetched_at),
            func.max(u.fetched_at),
            func.coalesce(func.sum(case((u.fetched_at >= now - 60_000, 1), else_=0)), 0),
            func.coalesce(func.sum(case((u.fetched_at >= now - 600_000, 1), else_=0)), 0),
        ).where(u.crawl_id == cid, u.fetched_at.is_not(None))
    )[0]
    st.bytes_archived, st.lease_lost, st.retried = int(row[0]), int(row[1]), int(row[2])
    st.first_fetch_ms = int(row[3]) if row[3] is not None else None
    st.last_fetch_ms = int(row[4]) if row[4] is not None else None
    st.pages_last_minute, st.pages_last_10_minutes = int(row[5]), int(row[6])
    minute = u.fetched_at // 60000
    st.timeline = [
        (int(m), int(n))
        for m, n in frontier.query(
            select(minute.label("m"), func.count())
            .where(u.crawl_id == cid, u.fetched_at.is_not(None))
            .group_by("m")
            .order_by("m")
        )
        if m is not None
    ][-240:]
    h = hosts.c
    per_host = (
        select(
            h.host,
            h.min_delay_ms,
            h.next_fetch_at,
            h.paused_until,
            h.pause_reason,
            *[
                func.coalesce(func.sum(case((u.status == s, 1), else_=0)), 0).label(s)
                for s in STATUSES
            ],
        )
        .select_from(hosts.join(urls, (u.crawl_id == h.crawl_id) & (u.host_key == h.host_key)))
        .where(h.crawl_id == cid)
        .group_by(h.host, h.min_delay_ms, h.next_fetch_at, h.paused_until, h.pause_reason)
        .order_by(func.count().desc())
        .limit(top_hosts)
    )
    for r in frontier.query(per_host):
        m = r._mapping
        st.hosts.append(
            {
                "host": m["host"],
                "delay_s": m["min_delay_ms"] / 1000,
                "paused": bool(m["paused_until"] and m["paused_until"] > now),
                "pause_reason": m["pause_reason"]
                if m["paused_until"] and m["paused_until"] > now
                else None,
                **{s: int(m[s]) for s in STATUSES},
            }
        )
    for r in frontier.query(
        select(u.url, u.error_class, u.error_detail, u.http_status, u.fetched_at, u.status)
        .where(u.crawl_id == cid, u.error_class.is_not(None), u.status.in_(("failed", "pending")))
        .order_by(u.fetched_at.desc())
        .limit(errors)
    ):
        st.last_errors.append(
            {
                "url": redact_url(r.url),
                "class": r.error_class,
                "detail": redact_text(r.error_detail) if r.error_detail else r.error_detail,
                "http_status": r.http_status,
                "at": r.fetched_at,
                "status": r.status,
            }
        )
    w = workers.c
    for r in frontier.query(select(workers).where(w.crawl_id == cid).order_by(w.started_at)):
        m = dict(r._mapping)
        alive = m["state"] == "running" and now - m["heartbeat_at"] < heartbeat_dead_ms
        m["alive"] = alive
        m["heartbeat_age_s"] = round((now - m["heartbeat_at"]) / 1000, 1)
        if m.get("detail"):
            m["detail"] = redact_text(m["detail"])
        st.workers.append(m)
    state = frontier.query(select(crawls.c.state).where(crawls.c.id == cid))
    if state:
        st.state = state[0][0]
    return st
