"""Showing a crawl's status in a terminal: rich tables, and a one-line summary for logs.

Every piece of text that comes from the crawl (host names, URLs, error
details, crawl names) is put in :class:`~rich.text.Text` or escaped, so a
bracketed word such as ``[parse]`` prints as written, never as rich markup.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from shoal.status.collect import STATUSES, CrawlStatus
from shoal.status.live import format_eta

__all__ = ["age", "render_crawl_summary", "render_status", "summary_line"]

_COLORS = {
    "pending": "cyan",
    "leased": "blue",
    "done": "green",
    "failed": "red",
    "skipped": "yellow",
}


def age(ms: int | None, now: int) -> str:
    """How long ago ``ms`` was, for people (``12s ago``, ``5m ago``); ``-`` when unknown."""
    if ms is None:
        return "-"
    s = (now - ms) / 1000
    return f"{s:.0f}s ago" if s < 120 else f"{s / 60:.0f}m ago"


def _pairs(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"


def summary_line(st: CrawlStatus) -> str:
    """One line: the counts, rate and ETA (``--watch`` without a terminal)."""
    c = st.counts
    return (
        f"crawl {st.crawl} ({st.state}): done {c['done']}/{st.total}, pending {st.pending}, "
        f"failed {c['failed']}, skipped {c['skipped']}, {st.recent_rate:.1f} pages/s, "
        f"ETA {format_eta(st.eta_s)}, {st.bytes_archived / 1e6:.2f} MB"
    )


def render_status(st: CrawlStatus) -> RenderableType:
    """The status as rich renderables: totals, classes and reasons, hosts, workers, parse, last errors."""
    head = Table(title=escape(f"crawl {st.crawl} ({st.state}) — {st.database}"), show_header=True)
    for s in STATUSES:
        head.add_column(s, style=_COLORS[s], justify="right")
    head.add_column("total", justify="right")
    head.add_row(*[str(st.counts.get(s, 0)) for s in STATUSES], str(st.total))

    rates = Table(show_header=False, box=None)
    rates.add_column(style="bold")
    rates.add_column()
    rates.add_row(
        "throughput",
        f"{st.pages_last_minute} pages in the last minute, {st.pages_last_10_minutes} in 10 min, "
        f"{st.pages_per_second:.1f} pages/s overall",
    )
    rates.add_row(
        "ETA", f"{format_eta(st.eta_s)} for {st.pending} pending at {st.recent_rate:.1f} pages/s"
    )
    budget = f" of {st.max_pages} (max_pages)" if st.max_pages is not None else ""
    rates.add_row("fetched", f"{st.fetched}{budget}")
    rates.add_row("archived", f"{st.bytes_archived / 1e6:.2f} MB")
    rates.add_row("failed by class", Text(_pairs(st.failed)))
    rates.add_row("skipped by reason", Text(_pairs(st.skipped)))
    rates.add_row("retried URLs", str(st.retried))
    rates.add_row(
        "returned from a dead worker",
        f"{st.lease_lost} (their leases expired: possibly fetched twice)",
    )
    rates.add_row(
        "HTTP status", ", ".join(f"{k}: {v}" for k, v in sorted(st.http_status.items())) or "-"
    )
    if st.revisits is not None:
        rv = st.revisits
        nxt = ", ".join(f"{u['pages']} in {format_eta(u['in_s'])}" for u in rv["upcoming"]) or "-"
        rates.add_row(
            "revisits",
            f"{rv['due_now']} due now; next: {nxt}; {rv['scheduled']} pages scheduled, "
            f"{rv['revisited']} refetches, {rv['found_new']} new URLs found by the last ones",
        )

    hosts = Table(title="hosts", show_header=True)
    hosts.add_column("host")
    for s in STATUSES:
        hosts.add_column(s, justify="right", style=_COLORS[s])
    for c in ("delay", "next slot", "state"):
        hosts.add_column(c, justify="right" if c != "state" else "left")
    for h in st.hosts:
        hosts.add_row(
            Text(h["host"]),
            *[str(h[s]) for s in STATUSES],
            f"{h['delay_s']:.2f}s",
            f"in {h['next_slot_in_s']:.1f}s",
            Text(f"paused ({h['pause_reason']}, {h['paused_for_s']}s)" if h["paused"] else "ok"),
        )

    parts: list[Any] = [head, rates, hosts]
    if st.workers:
        w = Table(title="workers", show_header=True)
        for c in ("worker", "host / ip", "state", "heartbeat", "done", "failed", "MB"):
            w.add_column(c, justify="right" if c in ("done", "failed", "MB") else "left")
        for r in st.workers:
            state = (
                r["state"]
                if r["state"] != "running"
                else ("alive" if r["alive"] else "dead (no heartbeat)")
            )
            w.add_row(
                Text(r["id"]),
                Text(f"{r['hostname']} / {r['ip'] or '-'}"),
                state,
                age(r["heartbeat_at"], st.now_ms),
                str(r["pages_done"]),
                str(r["pages_failed"]),
                f"{r['bytes_archived'] / 1e6:.1f}",
            )
        parts.append(w)
    if st.parse is not None:
        p = Table(title=escape(f"last parse ({st.parse['generated_at']})"), show_header=True)
        for c in ("table", "pages", "rows", "failed pages", "required missing", "not cast"):
            p.add_column(c, justify="left" if c == "table" else "right")
        for t in st.parse["tables"]:
            p.add_row(
                Text(t["table"]),
                str(t["pages"]),
                str(t["rows"]),
                str(t["errors"]),
                str(t["missing_required"]),
                str(t["cast_errors"]),
            )
        parts.append(p)
    if st.last_errors:
        e = Table(title="last errors", show_header=True)
        for c in ("when", "class", "status", "url", "detail"):
            e.add_column(c, overflow="fold" if c == "url" else "ellipsis")
        for r in st.last_errors:
            e.add_row(
                age(r["at"], st.now_ms),
                Text(r["class"]),
                "retrying" if r["status"] == "pending" else "failed",
                Text(r["url"]),
                Text((r["detail"] or "")[:120]),
            )
        parts.append(e)
    return Group(*parts)


def render_crawl_summary(summary: dict[str, Any]) -> Table:
    """The summary of a crawl run (:func:`~shoal.status.collect.crawl_summary`) as a table."""
    t = Table(
        title=escape(
            f"crawl {summary['crawl']} — {'finished' if summary['finished'] else 'stopped'}"
        ),
        show_header=False,
    )
    t.add_column(style="bold")
    t.add_column()
    t.add_row("done", str(summary["done"]))
    t.add_row(
        "failed",
        escape(", ".join(f"{k}: {v}" for k, v in sorted(summary["failed"].items())) or "0"),
    )
    t.add_row(
        "skipped",
        escape(", ".join(f"{k}: {v}" for k, v in sorted(summary["skipped"].items())) or "0"),
    )
    if summary["pending"]:
        t.add_row("left", f"{summary['pending']} pending (run the same command again to resume)")
    t.add_row("archived", f"{summary['bytes_archived'] / 1e6:.2f} MB")
    r = summary["this_run"]
    t.add_row(
        "this run",
        f"{r['done']} pages in {r['elapsed']:.1f}s = {r['pages_per_second']:.1f} pages/s",
    )
    return t
