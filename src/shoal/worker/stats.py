"""Counters a worker keeps about its own work (the database keeps the truth)."""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field

from shoal.frontier.contract import Outcome, Status

__all__ = ["WorkerStats"]


@dataclass
class WorkerStats:
    """What one worker did: outcomes by class and reason, bytes, throughput samples."""

    started: float = field(default_factory=time.monotonic)
    done: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    fenced: int = 0
    bytes_archived: int = 0
    links_added: int = 0
    links_cut: int = 0
    """Links past ``max_links_per_page`` on the pages this worker fetched."""
    leases_reaped: int = 0
    leases_dropped: int = 0
    """Claimed URLs not fetched because their lease was taken back while this worker was silent."""
    claimed: int = 0
    inflight: int = 0
    queued: int = 0
    db_errors: int = 0
    revisits: int = 0
    """Pages fetched again (``done`` refetches, counted in ``done`` too)."""
    found_new: int = 0
    """New URLs the revisits found."""
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=120))

    def count(self, o: Outcome) -> None:
        """Count one outcome: done, failed by class, skipped by reason, or a retry."""
        if o.status is Status.DONE:
            self.done += 1
            self.revisits += 1 if o.revisit else 0
        elif o.status is Status.FAILED:
            self.failed[o.error_class or "unknown"] += 1
        elif o.status is Status.SKIPPED:
            self.skipped[o.skip_reason or "?"] += 1
        elif o.error_class:
            self.retries += 1

    def sample(self) -> None:
        """Record (time, pages done) for the throughput display."""
        self.samples.append((time.monotonic(), self.done))

    def rate(self, window: float = 10.0) -> float:
        """Pages per second over the last ``window`` seconds."""
        now = time.monotonic()
        pts = [s for s in self.samples if now - s[0] <= window]
        if len(pts) < 2:
            return 0.0
        (t0, d0), (t1, d1) = pts[0], pts[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0

    @property
    def elapsed(self) -> float:
        """Seconds since the worker started."""
        return time.monotonic() - self.started

    def summary(self) -> dict[str, object]:
        """A JSON-friendly summary of the run."""
        el = self.elapsed
        return {
            "done": self.done,
            "failed": dict(self.failed),
            "skipped": dict(self.skipped),
            "retries": self.retries,
            "fenced": self.fenced,
            "bytes_archived": self.bytes_archived,
            "links_added": self.links_added,
            "links_cut": self.links_cut,
            "leases_reaped": self.leases_reaped,
            "leases_dropped": self.leases_dropped,
            "elapsed": round(el, 3),
            "pages_per_second": round(self.done / el, 2) if el > 0 else 0.0,
        }
