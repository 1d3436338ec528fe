"""What one fetch hands to the archive and the worker: the request asked for and the exchange received.

These are plain data, shared by ``fetch`` (which fills them), ``archive`` (which
writes them as WARC records) and ``worker`` (which decides what happens next).
They live outside those packages so that none of them imports another for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shoal.spec import Rule

__all__ = ["FetchRequest", "FetchResult", "Rendered"]


@dataclass(slots=True, frozen=True)
class FetchRequest:
    """One request a worker asks a fetcher for.

    ``headers`` are extra request headers for this URL only (the spec's
    ``[scope.headers]`` for the URL's own host, conditional-request validators):
    the fetcher sends them on the main request and never on a request to another
    host (a redirect, a subresource, a frame). ``deadline`` is a
    ``time.monotonic()`` instant by which the fetch must be over. With
    ``html_only`` the body of a 2xx answer whose type is not HTML is not read
    (the worker skips such pages when ``archive_non_html`` is off).
    """

    url: str
    rule: Rule | None
    deadline: float
    headers: tuple[tuple[str, str], ...] = ()
    html_only: bool = False


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
