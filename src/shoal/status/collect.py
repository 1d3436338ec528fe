"""What a crawl looks like now, read from the frontier: counts, hosts, throughput, errors, workers.

Guarantees:

- One :class:`CrawlStatus` is one moment of the database: every number comes
  from :meth:`~shoal.frontier.contract.Frontier.status`, which reads in one
  read-only transaction (so ``counts`` sum to ``total`` and the hosts' counts
  agree with them, even while workers write).
- No SQL here: the queries live in :mod:`shoal.frontier.reads`.
- Secrets never leave: URLs and error details are redacted (credentials,
  secret query parameters) before they reach a terminal, JSON or a page.
- :meth:`CrawlStatus.as_dict` is what ``shoal status --json`` prints and
  what the dashboard page shows: the page's numbers are these numbers.
- The parse quality of the last ``shoal parse`` comes from its report file
  (``quality.json`` in the tables folder), when one is given and exists.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shoal.frontier.contract import CrawlInfo, Frontier
from shoal.frontier.reads import STATUSES
from shoal.secrets import redact_text, redact_url

__all__ = ["STATUSES", "CrawlStatus", "collect", "crawl_summary", "parse_quality", "report_path"]

HEARTBEAT_DEAD_MS = 60_000
"""A running worker whose heartbeat is older than this is shown as dead."""


@dataclass
class CrawlStatus:
    """A snapshot of one crawl, ready to show (see the module docstring)."""

    crawl: str
    crawl_id: int
    state: str
    database: str
    now_ms: int
    counts: dict[str, int] = field(default_factory=dict)
    """URLs by status (every status present)."""
    failed: dict[str, int] = field(default_factory=dict)
    """Failed URLs by error class."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Skipped URLs by reason."""
    http_status: dict[str, int] = field(default_factory=dict)
    fetched: int = 0
    """Pages fetched (the counter ``limits.max_pages`` bounds)."""
    max_pages: int | None = None
    bytes_archived: int = 0
    lease_lost: int = 0
    """URLs returned to pending from a dead worker (its leases expired or it was killed)."""
    retried: int = 0
    pages_last_minute: int = 0
    pages_last_10_minutes: int = 0
    first_fetch_ms: int | None = None
    last_fetch_ms: int | None = None
    due_now: int = 0
    next_due_ms: int | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)
    """Per minute with outcomes: ``minute`` (ms since the epoch // 60000), ``done``, ``failed``, ``errors`` by class."""
    hosts: list[dict[str, Any]] = field(default_factory=list)
    last_errors: list[dict[str, Any]] = field(default_factory=list)
    workers: list[dict[str, Any]] = field(default_factory=list)
    machines: list[dict[str, Any]] = field(default_factory=list)
    """Workers grouped by the machine (host name) they run on: the fleet's instances."""
    parse: dict[str, Any] | None = None
    """The last parse's quality summary, when its report was found."""
    revisits: dict[str, Any] | None = None
    """For a crawl with revisit rules: pages due now, the next due times, refetches, new URLs found."""

    @property
    def total(self) -> int:
        """Every URL the crawl knows."""
        return sum(self.counts.values())

    @property
    def pending(self) -> int:
        """URLs not finished yet (pending or leased)."""
        return self.counts.get("pending", 0) + self.counts.get("leased", 0)

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

    @property
    def recent_rate(self) -> float:
        """Pages per second over the last 10 minutes (or since the first fetch, if later)."""
        if self.first_fetch_ms is None:
            return 0.0
        window = min(600.0, max(1.0, (self.now_ms - self.first_fetch_ms) / 1000))
        return self.pages_last_10_minutes / window

    @property
    def eta_s(self) -> float | None:
        """Seconds until the pending URLs are finished at :attr:`recent_rate`.

        None when nothing moves: no recent fetch, or every worker that joined is gone.
        """
        if self.pending == 0:
            return 0.0
        if self.workers and not any(w["alive"] for w in self.workers):
            return None
        rate = self.recent_rate
        return self.pending / rate if rate > 0 else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``shoal status --json``, the dashboard's data)."""
        d = asdict(self)
        d["total"] = self.total
        d["pending"] = self.pending
        d["pages_per_second"] = round(self.pages_per_second, 2)
        d["recent_pages_per_second"] = round(self.recent_rate, 2)
        eta = self.eta_s
        d["eta_s"] = None if eta is None else round(eta)
        d["workers_alive"] = sum(1 for w in self.workers if w["alive"])
        return d


def report_path(spec: Any) -> Path | None:
    """Where ``shoal parse`` of ``spec`` writes its quality report (None without a [parse] section)."""
    if not getattr(spec, "parse", None):
        return None
    try:
        from shoal.parse import parse_config
        from shoal.parse.quality import REPORT_JSON
    except ImportError:  # the parse extra is not installed: no report to show
        return None
    ps = parse_config(spec, import_functions=False)
    out = ps.out.replace("{name}", spec.name)
    if "://" in out:  # tables in SQL: the report sits in the default folder
        out = f"shoal-data/{spec.name}/tables"
    return (
        Path(spec.resolve_path(out)) / REPORT_JSON
    )  # relative to the spec's folder, as parse writes it


def parse_quality(path: Path | None) -> dict[str, Any] | None:
    """The summary of a parse report: per table pages, rows, failed pages, required fields missing."""
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    tables = []
    for name, t in sorted(data.get("tables", {}).items()):
        fields = t.get("fields", [])
        tables.append(
            {
                "table": name,
                "pages": int(t.get("pages", 0)),
                "rows": int(t.get("rows", 0)),
                "errors": int(t.get("errors", 0)),
                "missing_required": sum(
                    int(f.get("missing", 0)) for f in fields if f.get("required")
                ),
                "cast_errors": sum(int(f.get("cast_errors", 0)) for f in fields),
                "redacted": int(t.get("redacted_total", 0)),
            }
        )
    return {
        "generated_at": data.get("generated_at"),
        "ok": bool(data.get("ok", True)),
        "failures": list(data.get("failures", [])),
        "tables": tables,
        "report": str(path),
    }


def collect(
    frontier: Frontier,
    crawl: CrawlInfo,
    *,
    top_hosts: int = 15,
    errors: int = 10,
    heartbeat_dead_ms: int = HEARTBEAT_DEAD_MS,
    report: Path | None = None,
) -> CrawlStatus:
    """Read a snapshot of ``crawl`` from the frontier (one read-only transaction)."""
    snap = frontier.status(crawl.id, top_hosts=top_hosts, errors=errors)
    now = snap.now_ms
    st = CrawlStatus(snap.crawl.name, crawl.id, snap.crawl.state, frontier.safe_url, now)
    st.counts = {s: int(snap.counts.get(s, 0)) for s in STATUSES}
    st.failed = dict(sorted(snap.failed.items()))
    st.skipped = dict(sorted(snap.skipped.items()))
    st.http_status = {str(k): v for k, v in snap.http_status.items()}
    st.fetched, st.max_pages = snap.fetched, snap.max_pages
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
    st.due_now, st.next_due_ms = snap.due_now, snap.next_due_ms
    if snap.revisits is not None:
        r = snap.revisits
        st.revisits = {
            "due_now": r.due_now,
            "next_due_in_s": None if r.next_at is None else round((r.next_at - now) / 1000, 1),
            "upcoming": [{"in_s": round((t - now) / 1000, 1), "pages": n} for t, n in r.upcoming],
            "scheduled": r.scheduled,
            "revisited": r.revisited,
            "found_new": r.found_new,
        }
    st.timeline = [
        {"minute": b.minute, "done": b.done, "failed": b.failed, "errors": dict(b.errors)}
        for b in snap.throughput
    ]
    for h in snap.hosts:
        paused = h.paused_until > now
        st.hosts.append(
            {
                "host": h.host,
                "delay_s": round(h.min_delay_ms / 1000, 3),
                "next_slot_in_s": round(max(0, h.next_fetch_at - now) / 1000, 1),
                "paused": paused,
                "pause_reason": h.pause_reason if paused else None,
                "paused_for_s": round((h.paused_until - now) / 1000) if paused else 0,
                "total": h.total,
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
                "attempts": e.attempts,
            }
        )
    machines: dict[str, dict[str, Any]] = {}
    for w in snap.workers:
        m: dict[str, Any] = asdict(w)
        m["alive"] = w.state == "running" and now - w.heartbeat_at < heartbeat_dead_ms
        m["heartbeat_age_s"] = round((now - w.heartbeat_at) / 1000, 1)
        if w.detail:
            m["detail"] = redact_text(w.detail)
        st.workers.append(m)
        mc = machines.setdefault(
            w.hostname,
            {
                "hostname": w.hostname,
                "ip": w.ip,
                "workers": 0,
                "alive": 0,
                "pages_done": 0,
                "pages_failed": 0,
                "bytes_archived": 0,
                "heartbeat_age_s": m["heartbeat_age_s"],
            },
        )
        mc["workers"] += 1
        mc["alive"] += int(m["alive"])
        mc["pages_done"] += w.pages_done
        mc["pages_failed"] += w.pages_failed
        mc["bytes_archived"] += w.bytes_archived
        mc["heartbeat_age_s"] = min(mc["heartbeat_age_s"], m["heartbeat_age_s"])
    st.machines = list(machines.values())
    st.parse = parse_quality(report)
    return st


def crawl_summary(
    frontier: Frontier, crawl: CrawlInfo, run: dict[str, Any], finished: bool
) -> dict[str, Any]:
    """What ``shoal crawl``, ``shoal work`` and ``shoal demo`` print and write with ``--summary-json``.

    The crawl's totals read now from the frontier, and ``run`` (the worker's
    ``WorkerStats.summary()``) as ``this_run``.
    """
    st = collect(frontier, crawl)
    return {
        "crawl": crawl.name,
        "finished": finished,
        "done": st.counts["done"],
        "failed": st.failed,
        "skipped": st.skipped,
        "pending": st.counts["pending"] + st.counts["leased"],
        "bytes_archived": st.bytes_archived,
        "lease_lost": st.lease_lost,
        "elapsed": run["elapsed"],
        "pages_per_second": run["pages_per_second"],
        "this_run": run,
    }
