"""Status that moves: ``--watch`` refreshing in place, progress lines, JSON logs for machines.

Guarantees:

- On a terminal, :func:`watch` redraws one frame in place (rich ``Live``),
  never a scroll of frames; each frame is one snapshot (the caller's ``read``
  returns a :class:`~shoal.status.collect.CrawlStatus` read in one transaction).
- Without a terminal (a pipe, a log file, systemd), the same loop writes one
  line per interval: a summary for people, or with ``--json`` one JSON object
  per line.
- :class:`Progress` turns successive counts into a rate and an ETA; its line
  is what a crawl prints every N seconds when no terminal is attached.
- :class:`JsonLogFormatter` writes each log record as one JSON object a line
  (``--log-format json``), the structured fields of a progress record included.
- :func:`crawl_progress` is the display of a running crawl: crawl-wide
  done/pending/failed/skipped (read from the frontier every few seconds, a
  cheap indexed count), this worker's rate, in flight and queue, the crawl's
  rate and ETA; redrawn in place on a terminal, else one ``shoal.progress``
  log line every ``every`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

__all__ = [
    "PROGRESS_LOGGER",
    "JsonLogFormatter",
    "Progress",
    "ProgressSample",
    "format_eta",
    "watch",
]

PROGRESS_LOGGER = "shoal.progress"
"""The logger of the periodic progress lines (structured fields in ``record.fields``)."""


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (UTC ISO 8601), ``level``, ``logger``, ``message``, and ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (exceptions as their text under ``exc``)."""
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def format_eta(seconds: float | None) -> str:
    """A duration for people: ``42s``, ``3m05s``, ``2h04m``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@dataclass(frozen=True, slots=True)
class ProgressSample:
    """Where a crawl stands at one instant, and how fast it moves."""

    done: int
    pending: int
    failed: int
    skipped: int
    rate: float
    """URLs finished (done or failed) per second over the recent window."""
    eta_s: float | None
    """Seconds until the pending URLs are finished at ``rate`` (None while the rate is 0)."""

    @property
    def total(self) -> int:
        """Every URL counted."""
        return self.done + self.pending + self.failed + self.skipped

    def line(self) -> str:
        """One line for a log: ``done 120/400 (30%), pending 270, failed 10, ... ETA 1m10s``."""
        total = self.total
        pct = f" ({100 * (self.done + self.failed + self.skipped) / total:.0f}%)" if total else ""
        return (
            f"done {self.done}/{total}{pct}, pending {self.pending}, failed {self.failed}, "
            f"skipped {self.skipped}, {self.rate:.1f} pages/s, ETA {format_eta(self.eta_s)}"
        )

    def fields(self) -> dict[str, Any]:
        """The sample as JSON-friendly fields (for ``--log-format json``)."""
        return {
            "done": self.done,
            "pending": self.pending,
            "failed": self.failed,
            "skipped": self.skipped,
            "total": self.total,
            "pages_per_second": round(self.rate, 2),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
        }


@dataclass
class Progress:
    """Rate and ETA from successive (time, finished) counts over a sliding window.

    ``clock`` is injectable so that the arithmetic is testable without waiting.
    """

    window_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _points: deque[tuple[float, int]] = field(default_factory=deque)

    def sample(self, done: int, pending: int, failed: int, skipped: int) -> ProgressSample:
        """Record the counts now and return the sample with its rate and ETA."""
        now = self.clock()
        finished = done + failed
        pts = self._points
        pts.append((now, finished))
        while len(pts) > 2 and now - pts[0][0] > self.window_s:
            pts.popleft()
        t0, f0 = pts[0]
        rate = (finished - f0) / (now - t0) if now > t0 and finished >= f0 else 0.0
        eta = pending / rate if rate > 0 else (0.0 if pending == 0 else None)
        return ProgressSample(done, pending, failed, skipped, rate, eta)


def watch(
    read: Callable[[], Any],
    *,
    render: Callable[[Any], RenderableType],
    summary: Callable[[Any], str],
    as_json: Callable[[Any], dict[str, Any]] | None,
    console: Console,
    interval: float,
    stop: Callable[[Any], bool] = lambda _st: False,
    max_frames: int | None = None,
) -> int:
    """Show ``read()`` every ``interval`` seconds until Ctrl-C (or ``stop``); returns the frames shown.

    On a terminal (and without JSON) one frame is redrawn in place; otherwise
    each frame is one line: ``summary(st)``, or ``as_json(st)`` as JSON.
    """
    frames = 0

    def done() -> bool:
        return max_frames is not None and frames >= max_frames

    if console.is_terminal and as_json is None:
        st = read()
        frames = 1
        with Live(render(st), console=console, auto_refresh=False, transient=False) as live:
            while not stop(st) and not done():
                time.sleep(interval)
                st = read()
                frames += 1
                live.update(render(st), refresh=True)
        return frames
    while True:
        st = read()
        frames += 1
        if as_json is not None:
            console.print_json(json.dumps(as_json(st), default=str), indent=None)
        else:
            console.print(summary(st), markup=False, highlight=False, soft_wrap=True)
        if stop(st) or done():
            return frames
        time.sleep(interval)


def _progress_view(worker: Any, name: str, sample: ProgressSample | None) -> RenderableType:
    s = worker.stats
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    t.add_row("crawl", Text.assemble(name, "  ", (worker.frontier.safe_url, "dim")))
    if sample is not None:
        t.add_row(
            "crawl-wide",
            f"[green]done {sample.done}[/] of {sample.total}, [cyan]pending {sample.pending}[/], "
            f"[red]failed {sample.failed}[/], [yellow]skipped {sample.skipped}[/]",
        )
        t.add_row("rate", f"{sample.rate:.1f} pages/s, ETA {format_eta(sample.eta_s)}")
    failed = ", ".join(f"{k} {v}" for k, v in sorted(s.failed.items())) or "0"
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(s.skipped.items())) or "0"
    t.add_row(
        "this worker",
        f"done {s.done}, {s.rate():.1f} pages/s now, {s.done / max(s.elapsed, 1e-9):.1f} average",
    )
    t.add_row("failed", Text(failed, style="red"))
    t.add_row("skipped", Text(skipped, style="yellow"))
    t.add_row("retries", f"{s.retries}   in flight {worker.inflight}, queued {worker.queued}")
    t.add_row("archived", f"{s.bytes_archived / 1e6:.1f} MB   elapsed {s.elapsed:.0f}s")
    if s.db_errors:
        t.add_row("database", f"[red]{s.db_errors} unreachable error(s)[/]")
    return Group(Text("shoal crawl — Ctrl-C stops cleanly", style="dim"), t)


async def crawl_progress(
    worker: Any,
    name: str,
    console: Console | None,
    *,
    every: float = 10.0,
    counts_every: float = 2.0,
) -> None:
    """Show a running crawl until cancelled (see the module docstring).

    ``worker`` is a :class:`shoal.worker.Worker` (its ``stats``, ``inflight``,
    ``queued``, ``frontier`` and ``crawl_id``).
    """
    plog = logging.getLogger(PROGRESS_LOGGER)
    progress = Progress()
    sample: ProgressSample | None = None
    read_at = 0.0
    logged_at = time.monotonic()
    terminal = console is not None and console.is_terminal
    live = (
        Live(_progress_view(worker, name, None), console=console, auto_refresh=False)
        if terminal
        else None
    )
    if live is not None:
        live.start()
    try:
        while True:
            now = time.monotonic()
            if now - read_at >= counts_every:
                read_at = now
                with contextlib.suppress(Exception):  # the worker reports database trouble itself
                    c = await asyncio.to_thread(worker.frontier.status_counts, worker.crawl_id)
                    sample = progress.sample(
                        c.get("done", 0),
                        c.get("pending", 0) + c.get("leased", 0),
                        c.get("failed", 0),
                        c.get("skipped", 0),
                    )
            worker.stats.sample()
            worker.stats.inflight = worker.inflight
            if live is not None:
                live.update(_progress_view(worker, name, sample), refresh=True)
            elif sample is not None and now - logged_at >= every:
                logged_at = now
                plog.info(
                    "%s: %s",
                    name,
                    sample.line(),
                    extra={"fields": {"crawl": name, **sample.fields()}},
                )
            await asyncio.sleep(0.5)
    finally:
        if live is not None:
            live.stop()
