"""What a crawl looks like now, for people and machines.

- :mod:`~shoal.status.collect`: one consistent snapshot of a crawl, read from the frontier.
- :mod:`~shoal.status.target`: which crawl to look at (a spec file, a database URL, the local one).
- :mod:`~shoal.status.render`: the snapshot as rich tables for the terminal.
- :mod:`~shoal.status.live`: ``--watch`` refreshing in place, progress log lines, JSON logs.
- :mod:`~shoal.status.dashboard`: the self-updating HTML page (``shoal dashboard``,
  ``shoal status --html``), charts by plotly served from the installed package.
"""

from __future__ import annotations

from shoal.status.collect import STATUSES, CrawlStatus, collect

__all__ = ["STATUSES", "CrawlStatus", "collect"]
