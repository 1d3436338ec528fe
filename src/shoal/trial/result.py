"""What ``shoal try`` finds out about one page, as data: the result, its parts and each step's time.

:class:`TrialResult` is what :func:`~shoal.trial.run.try_page` returns and
``shoal try --json`` prints (:meth:`TrialResult.as_dict`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from shoal.errors import ShoalError

__all__ = ["LinkVerdict", "Step", "TableTrial", "TrialError", "TrialResult", "timed"]


class TrialError(ShoalError):
    """``shoal try`` cannot go on (no rule, refused address, robots.txt, nothing archived)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a trial and how long it took."""

    name: str
    seconds: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class LinkVerdict:
    """A link found on the page and what a crawl would do with it."""

    href: str
    """As written in the page."""
    url: str | None
    """Canonical absolute URL (None when the href is not a crawlable URL)."""
    rule: str | None
    kind: str | None
    kept: bool
    """True when a crawl would add it as pending."""
    reason: str | None
    """Why it is dropped or skipped (None when kept)."""


@dataclass(frozen=True, slots=True)
class TableTrial:
    """The rows one ``[parse]`` table takes from the page."""

    table: str
    rows: list[dict[str, Any]]
    missing: list[str]
    """Required fields missing (once per row)."""
    cast_errors: dict[str, int]
    error: str | None


@dataclass
class TrialResult:
    """Everything ``shoal try`` found out about one page."""

    url: str
    source: str
    """``fetch`` or ``archive``."""
    rule: str | None
    rule_index: int
    kind: str
    render: str
    http_status: int | None = None
    outcome: str = ""
    """What a crawl would record for the page itself (``done``, ``failed (permanent)``, a redirect)."""
    content_type: str | None = None
    final_url: str | None = None
    fetched_bytes: int = 0
    links: list[LinkVerdict] = field(default_factory=list)
    images: list[LinkVerdict] = field(default_factory=list)
    tables: list[TableTrial] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    @property
    def followed(self) -> list[str]:
        """The URLs a crawl would add from this page, in page order."""
        return [v.url for v in self.links if v.kept and v.url is not None]

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``shoal try --json``)."""
        d = asdict(self)
        d["followed"] = self.followed
        return d


@contextlib.contextmanager
def timed(steps: list[Step], name: str, detail: list[str] | None = None) -> Iterator[None]:
    """Append a :class:`Step` named ``name`` with the time the block took (``detail[0]`` as its detail)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        steps.append(Step(name, time.perf_counter() - t0, detail[0] if detail else ""))
