"""``shoal try`` for a terminal: the rule, the links, each table's values and the steps' times, as rich tables.

Text from the page (URLs, values, errors) is put in :class:`~rich.text.Text`
or escaped, so it prints as written, never as rich markup.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from shoal.trial.result import TrialResult

__all__ = ["render_trial"]


def _value(v: Any, width: int = 160) -> str:
    s = v.isoformat() if hasattr(v, "isoformat") else repr(v) if not isinstance(v, str) else v
    s = " ".join(s.split())
    return s if len(s) <= width else s[: width - 1] + "…"


_LONG_BUILTINS = frozenset({"main_text", "html"})


def render_trial(r: TrialResult) -> RenderableType:
    """The trial for a terminal: the rule, the links, each table's values, the steps' times."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("url", escape(r.url))
    head.add_row(
        "rule",
        escape(f"{r.rule or '(none)'} (kind {r.kind}, render {r.render})"),
    )
    head.add_row("outcome", Text(r.outcome))
    head.add_row(
        "page",
        escape(
            f"{'archived capture' if r.source == 'archive' else 'fetched'}: HTTP {r.http_status}, "
            f"{r.content_type or '?'}, {r.fetched_bytes} bytes"
            + (f", final URL {r.final_url}" if r.final_url and r.final_url != r.url else "")
        ),
    )
    parts: list[RenderableType] = [head]
    if r.kind == "list":
        t = Table(
            title=f"links: {len(r.followed)} followed, {len(r.links) - len(r.followed)} dropped"
        )
        for col in ("url", "rule", "kind", "what a crawl does"):
            t.add_column(col, overflow="fold")
        for v in r.links:
            t.add_row(
                Text(v.url or v.href),
                Text(v.rule or "-"),
                Text(v.kind or "-"),
                Text("follow" if v.kept else v.reason or "", style="green" if v.kept else "yellow"),
            )
        parts.append(t)
    if r.images:
        t = Table(title=f"images archived: {len(r.images)}")
        t.add_column("url", overflow="fold")
        for v in r.images:
            t.add_row(Text(v.url or f"{v.href} ({v.reason})"))
        parts.append(t)
    for tt in r.tables:
        t = Table(title=escape(f"[parse] table {tt.table}: {len(tt.rows)} row(s)"))
        t.add_column("field", style="bold")
        t.add_column("value", overflow="fold")
        if tt.error:
            t.add_row("error", Text(tt.error, style="red"))
        for i, row in enumerate(tt.rows):
            if i:
                t.add_section()
            for k, val in row.items():
                t.add_row(Text(k), Text(_value(val, 80 if k in _LONG_BUILTINS else 160)))
        if tt.missing:
            t.add_row("missing", Text(", ".join(sorted(set(tt.missing))), style="red"))
        if tt.cast_errors:
            t.add_row(
                "not cast",
                Text(", ".join(f"{k} {n}" for k, n in tt.cast_errors.items()), style="red"),
            )
        parts.append(t)
    if not r.tables:
        parts.append(Text("no [parse] table takes this page (see their `from`)", style="dim"))
    steps = Table(title="steps")
    steps.add_column("step")
    steps.add_column("ms", justify="right")
    steps.add_column("detail")
    for s in r.steps:
        steps.add_row(Text(s.name), f"{s.seconds * 1000:.1f}", Text(s.detail))
    parts.append(steps)
    parts.append(Text("values are shown before redaction and without OCR", style="dim"))
    return Group(*parts)
