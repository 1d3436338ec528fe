"""The frontier: every URL of a crawl with its status, leases and per-host politeness.

Open one with :class:`SqlFrontier` (a SQLAlchemy URL: ``sqlite:///path``,
``postgresql://...``, ``mysql://...``); type against :class:`Frontier`. Every
SQL statement of shoal lives in this package: ``sql.py`` (:class:`SqlFrontier`,
the sync), ``complete.py`` (outcomes written under their lease, with their
links and host changes), ``new_urls.py`` (seeds and links inserted, new
canonical URLs only), ``claim.py`` (the claim query, the page budget, the
lease reaper), ``workers.py`` (worker rows, heartbeats),
``events.py`` (event writes), ``warc_files.py`` (the WARC file registry),
``due.py`` (revisits coming due), ``reads.py`` (status, parse captures,
unsent events); ``dialects.py`` holds each database's differences.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from shoal.frontier import contract
from shoal.frontier.contract import *  # noqa: F403 (the contract is public here: contract.__all__)

if TYPE_CHECKING:
    from shoal.frontier.reads import CaptureRow, StatusSnapshot, read_status
    from shoal.frontier.sql import SqlFrontier

# SQLAlchemy loads on first use, not with the package: `shoal --help` and the
# spec (which imports frontier.revisit) must start without it.
_LAZY = {
    "CaptureRow": "shoal.frontier.reads",
    "StatusSnapshot": "shoal.frontier.reads",
    "read_status": "shoal.frontier.reads",
    "SqlFrontier": "shoal.frontier.sql",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shoal.frontier' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "CaptureRow",
    "SqlFrontier",
    "StatusSnapshot",
    "read_status",
]
__all__ += contract.__all__
