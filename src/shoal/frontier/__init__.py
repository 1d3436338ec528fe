"""The frontier: every URL of a crawl with its status, leases and per-host politeness.

Open one with :func:`open_frontier` (a SQLAlchemy URL: ``sqlite:///path``,
``postgresql://...``, ``mysql://...``).
"""

from __future__ import annotations

from shoal.frontier.contract import (
    ClaimedURL,
    CrawlInfo,
    Frontier,
    HostUpdate,
    NewURL,
    Outcome,
    Status,
    SyncResult,
)
from shoal.frontier.sql import SqlFrontier

__all__ = [
    "ClaimedURL",
    "CrawlInfo",
    "Frontier",
    "HostUpdate",
    "NewURL",
    "Outcome",
    "SqlFrontier",
    "Status",
    "SyncResult",
    "open_frontier",
]


def open_frontier(url: str, *, create: bool = True) -> SqlFrontier:
    """Open (and, when ``create``, migrate an empty) frontier database."""
    return SqlFrontier(url, create=create)
