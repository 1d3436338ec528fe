"""Telling people: frontier events turned into messages through apprise URLs.

Workers and ``shoal parse`` record events (``finished``, ``critical``,
``new_error``, ``blocked``, ``quality``, and ``new_pages`` when revisits find
new URLs: opt in through ``[notify] events``) in the frontier; a :class:`Notifier`
sends the ones not sent yet to every apprise URL of the spec's ``[notify]``
section (``slack://...``, ``tgram://...``, ``mailto://...``, ``json://...``).
Each event is claimed in the database before it is sent, so a fleet of workers
sends it once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from shoal.frontier.contract import Frontier
from shoal.spec import NotifySpec

__all__ = ["Notifier", "format_event"]

log = logging.getLogger(__name__)

_TITLES = {
    "finished": "shoal: crawl {crawl} finished",
    "critical": "shoal: a worker of {crawl} stopped on a critical error",
    "new_error": "shoal: a new kind of error in {crawl}",
    "blocked": "shoal: a host blocks crawl {crawl}",
    "quality": "shoal: data quality dropped in {crawl}",
    "new_pages": "shoal: new pages in {crawl}",
}


def format_event(event: dict[str, Any], crawl: str) -> tuple[str, str]:
    """The (title, body) of the message for one event row."""
    title = _TITLES.get(event["kind"], "shoal: {crawl}: " + event["kind"]).format(crawl=crawl)
    body = event["message"]
    extra = [
        f"{k}: {event[k]}" for k in ("url", "host", "error_class", "worker_id") if event.get(k)
    ]
    if extra:
        body += "\n" + "\n".join(extra)
    return title, body


@dataclass
class Notifier:
    """Sends a crawl's pending events of the chosen kinds to apprise URLs."""

    spec: NotifySpec

    def enabled(self) -> bool:
        """True when the spec names at least one destination."""
        return bool(self.spec.urls)

    def send_pending(self, frontier: Frontier, crawl_id: int, crawl_name: str) -> int:
        """Send every event not sent yet; returns how many were sent. Failures are logged, never raised."""
        if not self.enabled():
            return 0
        import apprise

        app = apprise.Apprise()
        for url in self.spec.urls:
            if not app.add(url):
                log.warning(
                    "notify: %s is not an apprise URL this installation understands",
                    url.split("://", 1)[0] + "://...",
                )
        sent = 0
        for ev in frontier.pending_events(crawl_id, self.spec.events):
            if not frontier.claim_event(ev["id"]):
                continue  # another worker is sending it
            title, body = format_event(ev, crawl_name)
            try:
                ok = app.notify(body=body, title=title)
            except Exception as exc:  # a notification service must never stop a crawl
                log.warning("notify: sending %s failed: %s", ev["kind"], exc)
                continue
            if ok:
                sent += 1
            else:
                log.warning("notify: no destination accepted the %s message", ev["kind"])
        return sent
