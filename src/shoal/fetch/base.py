"""The fetcher contract: one HTTP exchange (or one browser render) per call.

A fetcher performs exactly one request and does not follow redirects: the
worker follows them itself so that every hop is checked against scope, robots,
the address policy and the host's politeness slot.
"""

from __future__ import annotations

from typing import Protocol

from shoal.exchange import FetchRequest, FetchResult

__all__ = ["Fetcher"]


class Fetcher(Protocol):
    """Fetches one URL. Implemented by the HTTP fetcher and the browser fetcher."""

    async def fetch(self, request: FetchRequest) -> FetchResult:
        """Perform one request to ``request.url`` and return what came back, whatever its status.

        ``request.headers`` go on this request to the URL's own host only.

        Raises :class:`~shoal.errors.FetchError` (already classified) when no
        response could be had; a 404 or 500 is a result, not an error. The
        fetch must be over by ``request.deadline`` (``time.monotonic()`` seconds).
        """
        ...

    async def close(self) -> None:
        """Release connections, browsers and threads."""
        ...
