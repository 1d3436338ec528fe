"""The worker that ties the parts: claim → fetch → archive → links → complete.

- :mod:`~shoal.worker.loop`: :class:`Worker`, the fetch tasks: claimed URL → checks → fetch → archive.
- :mod:`~shoal.worker.outcomes`: what becomes of a claimed URL (skips, failures and retries, responses carried out).
- :mod:`~shoal.worker.sync`: :class:`~shoal.worker.sync.FrontierSync`, outcomes out and claims in, batched; heartbeats.
- :mod:`~shoal.worker.hosts`: politeness as one worker carries it out (robots.txt, slots, Crawl-delay).
- :mod:`~shoal.worker.links`: links found on a page, routed to rules, checked against the trap limits.
- :mod:`~shoal.worker.markup`: reading hrefs and srcs out of (hostile) HTML with lexbor, bounded.
- :mod:`~shoal.worker.revisits`: conditional-request headers and revisit outcomes.
- :mod:`~shoal.worker.stats`: :class:`WorkerStats`, what this worker did.
"""

from __future__ import annotations

from shoal.worker.loop import Worker, make_worker_id
from shoal.worker.stats import WorkerStats

__all__ = ["Worker", "WorkerStats", "make_worker_id"]
