"""One listening port of the browser proxy, used by one browser.

Thread-safe: the proxy's loop writes, the fetcher's threads read.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from shoal.fetch.proxy.records import Exchange, Headers, ProxyRecord
from shoal.urls import normalize_url

if TYPE_CHECKING:
    from shoal.fetch.proxy.server import FilteringProxy

__all__ = ["ProxyChannel", "endpoint"]


def endpoint(url: str) -> tuple[str, int] | None:
    """(host in lower case without brackets, port with the scheme's default) of ``url``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    default = 443 if parts.scheme.lower() in ("https", "wss") else 80
    return parts.hostname.lower(), port or default


class ProxyChannel:
    """One listening port of the proxy, used by one browser.

    The browser fetcher calls :meth:`expect` before navigating, then
    :meth:`wait_record` for the response of that URL. Thread-safe: the proxy
    loop writes, fetcher threads read.
    """

    def __init__(self, proxy: FilteringProxy, port: int, server: asyncio.Server) -> None:
        self.proxy = proxy
        self.port = port
        self._server = server
        self._cond = threading.Condition()
        self._expected: str | None = None
        self._hold_redirects = True
        self._page: tuple[str, int] | None = None
        self._headers: Headers = []
        self._record: ProxyRecord | None = None
        self._claimed = False
        self._tunnels: dict[tuple[str, int], str] = {}
        self._tunnel_errors: dict[tuple[str, int], tuple[str, str]] = {}
        self.exchanges: deque[Exchange] = deque(maxlen=500)
        """The last requests seen on this channel, oldest first."""

    @property
    def address(self) -> str:
        """``http://127.0.0.1:PORT``, the value of Chromium's ``--proxy-server``."""
        return f"http://{self.proxy.host}:{self.port}"

    def expect(
        self, url: str, *, hold_redirects: bool = True, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Record the next exchange for ``url`` in full; forget the previous record.

        ``headers`` go on every plain-http request to the page's own host:port
        from now on (replacing the browser's headers of the same names), never
        on a request to another host or port.
        """
        with self._cond:
            self._expected = normalize_url(url)
            self._hold_redirects = hold_redirects
            self._page = endpoint(url)
            self._headers = list(headers)
            self._record = None
            self._claimed = False
            self._tunnel_errors.clear()

    def wait_record(self, timeout: float) -> ProxyRecord | None:
        """The complete record of the expected URL, waiting up to ``timeout`` seconds.

        None when the browser never asked the proxy for it (an https page, a
        page served from a service worker) or the record is not complete in time.
        """
        end = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while self._record is None:
                left = end - time.monotonic()
                if left <= 0 or not self._claimed:
                    break
                self._cond.wait(left)
            return self._record

    def tunnel_peer(self, host: str, port: int) -> str | None:
        """The address a ``CONNECT`` tunnel to ``host:port`` was opened to, if any."""
        with self._cond:
            return self._tunnels.get((host.lower(), port))

    def tunnel_error(self, host: str, port: int) -> tuple[str, str] | None:
        """Why the last ``CONNECT`` to ``host:port`` since :meth:`expect` failed: (kind, detail)."""
        with self._cond:
            return self._tunnel_errors.get((host.lower(), port))

    # Called on the proxy loop.

    def headers_for(self, host: str, port: int) -> Headers:
        """The page's extra headers when ``host:port`` is the page's own, else none."""
        with self._cond:
            if self._headers and self._page == (host.lower().strip("[]"), port):
                return list(self._headers)
            return []

    def _claim(self, url: str) -> tuple[bool, bool]:
        """Whether ``url`` is the expected one (claimed once), and whether to hold its redirect."""
        with self._cond:
            if self._claimed or self._expected is None or normalize_url(url) != self._expected:
                return False, False
            self._claimed = True
            return True, self._hold_redirects

    def _finish(self, record: ProxyRecord) -> None:
        with self._cond:
            self._record = record
            self._cond.notify_all()

    def _note_tunnel(
        self, host: str, port: int, ip: str | None, error: tuple[str, str] | None
    ) -> None:
        with self._cond:
            key = (host.lower(), port)
            if ip is not None:
                self._tunnels[key] = ip
                if len(self._tunnels) > 1000:
                    self._tunnels.pop(next(iter(self._tunnels)))
            if error is not None:
                self._tunnel_errors[key] = error

    def close(self) -> None:
        """Stop listening; open connections of this channel are dropped."""
        self.proxy._close_channel(self)
