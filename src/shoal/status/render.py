"""Showing a crawl's status to a person: rich tables for the terminal, an HTML page with charts."""

from __future__ import annotations

import html
import time
from typing import Any

from rich.console import Group
from rich.table import Table

from shoal.status.collect import STATUSES, CrawlStatus

__all__ = ["render_status", "status_page"]

_COLORS = {
    "pending": "cyan",
    "leased": "blue",
    "done": "green",
    "failed": "red",
    "skipped": "yellow",
}


def _age(ms: int | None, now: int) -> str:
    if ms is None:
        return "-"
    s = (now - ms) / 1000
    return f"{s:.0f}s ago" if s < 120 else f"{s / 60:.0f}m ago"


def render_status(st: CrawlStatus) -> Group:
    """The status as rich renderables: totals, classes and reasons, hosts, workers, last errors."""
    head = Table(title=f"crawl {st.crawl} ({st.state}) — {st.database}", show_header=True)
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
    rates.add_row("archived", f"{st.bytes_archived / 1e6:.2f} MB")
    rates.add_row(
        "failed by class", ", ".join(f"{k} {v}" for k, v in sorted(st.failed.items())) or "none"
    )
    rates.add_row(
        "skipped by reason", ", ".join(f"{k} {v}" for k, v in sorted(st.skipped.items())) or "none"
    )
    rates.add_row("retried URLs", str(st.retried))
    rates.add_row("expired leases", f"{st.lease_lost} (URLs possibly fetched twice)")
    rates.add_row(
        "HTTP status", ", ".join(f"{k}: {v}" for k, v in sorted(st.http_status.items())) or "-"
    )

    hosts = Table(title="hosts", show_header=True)
    hosts.add_column("host")
    for s in STATUSES:
        hosts.add_column(s, justify="right", style=_COLORS[s])
    hosts.add_column("delay", justify="right")
    hosts.add_column("state")
    for h in st.hosts:
        hosts.add_row(
            h["host"],
            *[str(h[s]) for s in STATUSES],
            f"{h['delay_s']:.1f}s",
            f"paused ({h['pause_reason']})" if h["paused"] else "ok",
        )

    parts: list[Any] = [head, rates, hosts]
    if st.workers:
        w = Table(title="workers", show_header=True)
        for c in ("worker", "host / ip", "state", "heartbeat", "done", "failed", "MB"):
            w.add_column(c)
        for r in st.workers:
            state = (
                r["state"]
                if r["state"] != "running"
                else ("alive" if r["alive"] else "dead (no heartbeat)")
            )
            w.add_row(
                r["id"],
                f"{r['hostname']} / {r['ip'] or '-'}",
                state,
                _age(r["heartbeat_at"], st.now_ms),
                str(r["pages_done"]),
                str(r["pages_failed"]),
                f"{r['bytes_archived'] / 1e6:.1f}",
            )
        parts.append(w)
    if st.last_errors:
        e = Table(title="last errors", show_header=True)
        for c in ("when", "class", "status", "url", "detail"):
            e.add_column(c)
        for r in st.last_errors:
            e.add_row(
                _age(r["at"], st.now_ms),
                r["class"],
                "retrying" if r["status"] == "pending" else "failed",
                r["url"],
                (r["detail"] or "")[:80],
            )
        parts.append(e)
    return Group(*parts)


def _bar_svg(items: list[tuple[str, int]], color: str, width: int = 560) -> str:
    if not items:
        return "<p>none</p>"
    top = max(n for _, n in items) or 1
    rows = []
    for i, (label, n) in enumerate(items):
        w = int((width - 200) * n / top)
        y = i * 26
        rows.append(
            f'<text x="0" y="{y + 17}" font-size="13">{html.escape(label)}</text>'
            f'<rect x="180" y="{y + 4}" width="{w}" height="18" fill="{color}"/>'
            f'<text x="{185 + w}" y="{y + 17}" font-size="13">{n}</text>'
        )
    return f'<svg width="{width}" height="{len(items) * 26 + 6}">{"".join(rows)}</svg>'


def _timeline_svg(points: list[tuple[int, int]], width: int = 720, height: int = 200) -> str:
    if not points:
        return "<p>no pages fetched yet</p>"
    m0, m1 = points[0][0], points[-1][0]
    span = max(1, m1 - m0)
    top = max(n for _, n in points) or 1
    bw = max(2, (width - 60) // (span + 1))
    bars = []
    for m, n in points:
        x = 50 + (m - m0) * (width - 60) // (span + 1)
        h = int((height - 30) * n / top)
        bars.append(
            f'<rect x="{x}" y="{height - 20 - h}" width="{bw - 1}" height="{h}" fill="#2a7"/>'
        )
    axis = (
        f'<text x="0" y="14" font-size="12">{top}/min</text>'
        f'<text x="50" y="{height - 4}" font-size="12">{time.strftime("%H:%M", time.gmtime(m0 * 60))} UTC</text>'
        f'<text x="{width - 60}" y="{height - 4}" font-size="12">{time.strftime("%H:%M", time.gmtime(m1 * 60))}</text>'
    )
    return f'<svg width="{width}" height="{height}">{axis}{"".join(bars)}</svg>'


def status_page(st: CrawlStatus) -> str:
    """A self-contained HTML page: throughput over time, statuses, errors by class, skips by reason, hosts."""
    e = html.escape
    counts = [(s, st.counts.get(s, 0)) for s in STATUSES]
    host_rows = "".join(
        f"<tr><td>{e(h['host'])}</td>"
        + "".join(f"<td>{h[s]}</td>" for s in STATUSES)
        + f"<td>{h['delay_s']:.1f}s</td><td>{'paused' if h['paused'] else 'ok'}</td></tr>"
        for h in st.hosts
    )
    err_rows = "".join(
        f"<tr><td>{e(r['class'])}</td><td>{e(r['url'])}</td><td>{e((r['detail'] or '')[:120])}</td></tr>"
        for r in st.last_errors
    )
    return f"""<!doctype html><meta charset="utf-8"><title>shoal: {e(st.crawl)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}td,th{{padding:2px 8px;text-align:left}}
table{{border-collapse:collapse}}tr:nth-child(even){{background:#f4f4f4}}</style>
<h1>crawl {e(st.crawl)} <small>({e(st.state)})</small></h1>
<p>{st.total} URLs; {st.pages_per_second:.1f} pages/s overall; {st.bytes_archived / 1e6:.2f} MB archived;
{st.lease_lost} expired leases.</p>
<h2>pages fetched per minute</h2>{_timeline_svg(st.timeline)}
<h2>URLs by status</h2>{_bar_svg(counts, "#47a")}
<h2>failed by error class</h2>{_bar_svg(sorted(st.failed.items()), "#c44")}
<h2>skipped by reason</h2>{_bar_svg(sorted(st.skipped.items()), "#cb4")}
<h2>hosts</h2><table><tr><th>host</th>{"".join(f"<th>{s}</th>" for s in STATUSES)}<th>delay</th><th>state</th></tr>{host_rows}</table>
<h2>last errors</h2><table><tr><th>class</th><th>url</th><th>detail</th></tr>{err_rows}</table>
"""
