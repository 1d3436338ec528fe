"""``shoal try SPEC URL``: one page through the spec, to check rules, selectors and fields before a crawl.

- :mod:`~shoal.trial.run`: :func:`try_page` and what it guarantees (rule
  matching, politeness, links, tables);
- :mod:`~shoal.trial.source`: getting the page, fetched or from the archive;
- :mod:`~shoal.trial.result`: :class:`TrialResult` and its parts;
- :mod:`~shoal.trial.render`: :func:`render_trial` for a terminal.
"""

from __future__ import annotations

from shoal.trial.render import render_trial
from shoal.trial.result import LinkVerdict, Step, TableTrial, TrialError, TrialResult
from shoal.trial.run import try_page

__all__ = [
    "LinkVerdict",
    "Step",
    "TableTrial",
    "TrialError",
    "TrialResult",
    "render_trial",
    "try_page",
]
