"""What the browser proxy records: the page's exchange, refusals, and a log of requests.

Plain data, written on the proxy's loop and read by the browser fetcher's threads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "BROWSER_SERVICE_HOSTS",
    "REFUSED_HEADER",
    "Exchange",
    "Headers",
    "ProxyRecord",
    "Refusal",
]

REFUSED_HEADER = "X-Shoal-Refused"
"""Header of the proxy's own 403 answer when the address policy refused a request."""

BROWSER_SERVICE_HOSTS = frozenset(
    {
        "accounts.google.com",
        "update.googleapis.com",
        "clients1.google.com",
        "clients2.google.com",
        "clients2.googleusercontent.com",
        "redirector.gvt1.com",
        "edgedl.me.gvt1.com",
        "dl.google.com",
        "optimizationguide-pa.googleapis.com",
        "content-autofill.googleapis.com",
        "safebrowsing.googleapis.com",
        "safebrowsing.google.com",
        "android.clients.google.com",
        "chromewebstore.googleapis.com",
    }
)
"""Hosts Chromium talks to on its own behalf, never for a page worth crawling.

No switch stops every such request: Chromium 156 still posts GAIA
``ListAccounts`` to accounts.google.com when a profile's network comes up, and
asks update.googleapis.com for the on-device model manifest, whatever the
flags. The browser fetcher refuses these hosts in the proxy, before any DNS
lookup, so they never leave the machine.
"""


Headers = list[tuple[str, str]]


@dataclass(slots=True)
class ProxyRecord:
    """The exchange of the page a channel was told to expect, as it went over the wire.

    ``body`` is de-chunked but still content-encoded. ``error`` is set instead of
    a response when none could be had: ``address_policy`` (refused), ``dns``,
    ``connect``, ``timeout``, ``disconnect`` (no complete response head) or
    ``malformed`` (an unreadable status line or headers). ``redirect_held`` says the 3xx was
    kept from the browser (it got a stub page).
    """

    url: str
    method: str = "GET"
    status: int = 0
    reason: str = ""
    http_version: str = "HTTP/1.1"
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    request_headers: Headers = field(default_factory=list)
    peer_ip: str | None = None
    started_at: float = 0.0
    elapsed: float = 0.0
    truncated: str | None = None
    error: str | None = None
    detail: str = ""
    redirect_held: bool = False


@dataclass(slots=True, frozen=True)
class Refusal:
    """A request the proxy refused: nothing was sent to ``addresses``.

    ``why`` is ``address_policy`` (the policy refuses every address),
    ``own_socket`` (chromedriver, DevTools or the proxy itself) or
    ``out_of_scope`` (a private address at a host:port the scope does not name).
    """

    url: str
    host: str
    addresses: tuple[str, ...]
    at: float
    port: int = 0
    why: str = "address_policy"


@dataclass(slots=True, frozen=True)
class Exchange:
    """A one-line summary of any request that went through a channel (bounded log)."""

    method: str
    url: str
    status: int
    peer_ip: str | None
    error: str | None = None
