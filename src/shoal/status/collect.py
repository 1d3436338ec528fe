"""What a crawl looks like now, read from the frontier: counts, hosts, throughput, errors, workers.

Works while a crawl runs (read-only transactions) on every backend.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from shoal.frontier.contract import CrawlInfo, Frontier
from shoal.frontier.reads import STATUSES
from shoal.secrets import redact_text, redact_url

__all__ = ["STATUSES", "CrawlStatus", "collect"]


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
    frontier: Frontier,
    crawl: CrawlInfo,
    *,
    top_hosts: int = 15,
    errors: int = 10,
    heartbeat_dead_ms: int = 60_000,
) -> CrawlStatus:
    """Read a snapshot of ``crawl`` from the frontier (one read-only transaction)."""
    snap = frontier.status(crawl.id, top_hosts=top_hosts, errors=errors)
    now = snap.now_ms
    st = CrawlStatus(snap.crawl.name, crawl.id, snap.crawl.state, frontier.safe_url, now)
    st.counts = dict(snap.counts)
    st.failed = dict(snap.failed)
    st.skipped = dict(snap.skipped)
    st.http_status = {str(k): v for k, v in snap.http_status.items()}
    st.bytes_archived, st.lease_lost, st.retried = (
        snap.bytes_archived,
        snap.leases_reaped,
        snap.retried,
    )
    st.first_fetch_ms, st.last_fetch_ms = snap.first_fetch_ms, snap.last_fetch_ms
    st.pages_last_minute, st.pages_last_10_minutes = (
        snap.pages_last_minute,
        snap.pages_last_10_minutes,
    )
    st.timeline = [(b.minute, b.done + b.failed) for b in snap.throughput]
    for h in snap.hosts:
        paused = h.paused_until > now
        st.hosts.append(
            {
                "host": h.host,
                "delay_s": h.min_delay_ms / 1000,
                "paused": paused,
                "pause_reason": h.pause_reason if paused else None,
                **h.counts,
            }
        )
    for e in snap.last_errors:
        st.last_errors.append(
            {
                "url": redact_url(e.url),
                "class": e.error_class,
                "detail": redact_text(e.error_detail) if e.error_detail else e.error_detail,
                "http_status": e.http_status,
                "at": e.at,
                "status": e.status,
            }
        )
    for w in snap.workers:
        m: dict[str, Any] = asdict(w)
        m["alive"] = w.state == "running" and now - w.heartbeat_at < heartbeat_dead_ms
        m["heartbeat_age_s"] = round((now - w.heartbeat_at) / 1000, 1)
        if w.detail:
            m["detail"] = redact_text(w.detail)
        st.workers.append(m)
    return st
