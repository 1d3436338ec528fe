"""The frontier: every URL of a crawl with its status, leases and per-host politeness.

Open one with :class:`SqlFrontier` (a SQLAlchemy URL: ``sqlite:///path``,
``postgresql://...``, ``mysql://...``); type against :class:`Frontier`. Every
SQL statement of shoal lives in this package: ``sql.py`` (the claim/complete
cycle), ``reads.py`` (status, parse captures, events).
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
from shoal.frontier.reads import CaptureRow, StatusSnapshot, read_status
from shoal.frontier.sql import SqlFrontier

__all__ = [
    "CaptureRow",
    "ClaimedURL",
    "CrawlInfo",
    "Frontier",
    "HostUpdate",
    "NewURL",
    "Outcome",
    "SqlFrontier",
    "Status",
    "StatusSnapshot",
    "SyncResult",
    "read_status",
]
