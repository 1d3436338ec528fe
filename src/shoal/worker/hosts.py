"""Politeness as one worker carries it out: robots.txt, the host's slot, Crawl-delay spacing.

The fleet-wide part lives in the frontier: each claim gives a URL the
politeness slot (``not_before``) reserved for it on its host, and a robots
Crawl-delay raises the host's interval there (a :class:`HostUpdate` with the
outcome). What one worker adds:

- **Slots kept.** :meth:`Politeness.wait_slot` waits for the slot; a slot
  missed by more than a small tolerance (the worker was busy) is reserved
  anew, because starting late would bring this request closer to the next
  worker's.
- **Crawl-delay at once.** URLs claimed before the host's robots.txt was read
  hold slots at the old interval: :meth:`Politeness.pace` spaces them by the
  Crawl-delay here (later claims get it from the hosts table).
- **robots.txt.** :meth:`Politeness.robots_ok` answers allowed, disallowed,
  or "cannot be read now" (5xx, 429, timeout: disallowed for now, retried).
- **Memory.** :class:`HostMemory` is what this worker remembers of a host
  between fetches (never shared): its 403/429 streak, whether a refusal was
  logged, the robots delay, the robots ``Sitemap:`` URLs not yet added.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from shoal.errors import URLError
from shoal.fetch.robots import RobotsCache
from shoal.frontier.contract import ClaimedURL, Frontier, HostUpdate
from shoal.spec import Spec
from shoal.urls import canonicalize

__all__ = ["HostMemory", "Politeness"]

T = TypeVar("T")


@dataclass
class HostMemory:
    """What this worker remembers of a host between fetches (not shared)."""

    refusal_logged: bool = False
    block_streak: int = 0
    robots_delay_ms: int | None = None
    next_start: float = 0.0
    """Monotonic time before which this worker starts no request to the host (Crawl-delay)."""
    sitemaps: list[str] | None = None
    """The host's robots.txt ``Sitemap:`` URLs not yet added (``sitemaps = "robots"``)."""


class Politeness:
    """One worker's side of politeness (see the module docstring).

    ``retry`` runs a frontier call with the worker's database grace
    (:meth:`shoal.worker.sync.FrontierSync.retry`).
    """

    def __init__(
        self,
        *,
        spec: Spec,
        frontier: Frontier,
        crawl_id: int,
        robots: RobotsCache | None,
        retry: Callable[..., Awaitable[Any]],
    ) -> None:
        self.spec = spec
        self.frontier = frontier
        self.crawl_id = crawl_id
        self.robots = robots
        self._retry = retry
        self.delay_ms = int(spec.politeness.delay * 1000)
        self._hosts: dict[int, HostMemory] = {}

    def host(self, key: int) -> HostMemory:
        """This worker's memory of host ``key``."""
        m = self._hosts.get(key)
        if m is None:
            m = self._hosts[key] = HostMemory()
        return m

    async def robots_ok(
        self, c: ClaimedURL, mem: HostMemory
    ) -> tuple[bool | None, HostUpdate | None, str]:
        """What robots.txt says of ``c``: ``(True, crawl-delay update, "")`` allowed, ``(False, ...)``
        disallowed, ``(None, None, why)`` robots.txt could not be read (5xx, 429, timeout,
        unreachable): disallowed for now, the URL is retried once the cache may ask again."""
        if self.robots is None:
            return True, None, ""
        robots = await self.robots.robots(c.url)
        if self.spec.crawl.sitemaps == "robots" and mem.sitemaps is None:
            mem.sitemaps = robots.sitemaps()
        if not robots.allowed(c.url):
            if robots.temporary:
                why = f"HTTP {robots.status}" if robots.status is not None else "unreachable"
                return None, None, f"robots.txt unavailable ({why}): disallowed for now"
            return False, None, ""
        delay = robots.crawl_delay()
        update = None
        if delay is not None:
            ms = int(min(delay, self.spec.politeness.max_crawl_delay) * 1000)
            if ms > self.delay_ms and mem.robots_delay_ms != ms:
                mem.robots_delay_ms = ms
                update = HostUpdate(c.host_key, min_delay_ms=ms)
        return True, update, ""

    async def wait_slot(self, not_before_ms: int, host_key: int) -> None:
        """Wait for a politeness slot; a slot missed by more than the tolerance is reserved anew."""
        tolerance = min(250, max(10, self.delay_ms // 20))
        for _ in range(5):
            wait = not_before_ms - self.frontier.now_ms()
            if wait > 0:
                await asyncio.sleep(wait / 1000)
                wait = not_before_ms - self.frontier.now_ms()
            if self.delay_ms <= 0 or -wait <= tolerance:
                return
            not_before_ms = await self._retry(
                self.frontier.reserve_slot, self.crawl_id, host_key, self.spec.politeness.jitter
            )

    async def pace(self, mem: HostMemory) -> None:
        """Space this worker's requests to a host by its robots Crawl-delay, when it has one."""
        if mem.robots_delay_ms is None:
            return
        now = time.monotonic()
        start = max(now, mem.next_start)
        mem.next_start = start + mem.robots_delay_ms / 1000
        if start > now:
            await asyncio.sleep(start - now)

    async def wait_host_slot(self, url: str) -> None:
        """Take a politeness slot of ``url``'s host outside a claim (robots.txt fetches)."""
        if self.delay_ms <= 0:
            return
        try:
            key = canonicalize(url).host_key
        except URLError:
            return
        slot = await self._retry(
            self.frontier.reserve_slot, self.crawl_id, key, self.spec.politeness.jitter
        )
        await self.wait_slot(slot, key)
