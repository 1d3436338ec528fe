"""The fetcher contract: one HTTP exchange (or one browser render) per call.

A fetcher performs exactly one request and does not follow redirects: the
worker follows them itself so that every hop is checked against scope, robots,
the address policy and the host's politeness slot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from shoal.spec import Rule

__all__ = ["FetchResult", "Fetcher", "Rendered"]


@dataclass(slots=True)
class Rendered:
    """Something the browser saw, archived next to the response it belongs to.

    ``kind`` is ``"conversion"`` for a rendered DOM (the document as the browser
    built it) and ``"resource"`` for a screenshot or a captured iframe.
    """

    url: str
    content_type: str
    data: bytes
    kind: str = "conversion"


@dataclass(slots=True)
class FetchResult:
    """One HTTP exchange, exactly as received.

    ``body`` is the payload as it came over the wire after de-chunking, still
    content-encoded (gzip, br, ...): that is what goes into the WARC.
    ``decoded`` is the body after content decoding, capped as it streamed in
    (the HTTP fetcher fills it; None when the body needed no decoding).
    """

    url: str
    status: int
    reason: str
    http_version: str
    headers: list[tuple[str, str]]
    body: bytes
    request_headers: list[tuple[str, str]]
    method: str = "GET"
    peer_ip: str | None = None
    started_at: float = 0.0
    elapsed: float = 0.0
    truncated: str | None = None
    """Why the body is incomplete (``length``, ``time``, ``disconnect``), else None."""
    decoded: bytes | None = None
    rendered: list[Rendered] = field(default_factory=list)
    rendered_html: str | None = None
    """The browser's DOM of the main document; links of rendered list pages come from it."""
    frame_urls: list[str] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """The first response header called ``name`` (case-insensitive), else None."""
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return None

    @property
    def content_type(self) -> str:
        """The media type in lower case without parameters ('' when absent)."""
        ct = self.header("content-type") or ""
        return ct.split(";", 1)[0].strip().lower()


class Fetcher(Protocol):
    """Fetches one URL. Implemented by the HTTP fetcher and the browser fetcher."""

    async def fetch(self, url: str, rule: Rule | None, *, deadline: float) -> FetchResult:
        """Perform one request to ``url`` and return what came back, whatever its status.

        Raises :class:`~shoal.errors.FetchError` (already classified) when no
        response could be had; a 404 or 500 is a result, not an error. The
        fetch must be over by ``deadline`` (``time.monotonic()`` seconds).
        """
        ...

    async def close(self) -> None:
        """Release connections, browsers and threads."""
        ...
