"""The browser fetcher: pages rendered by a pool of headless Chromium browsers.

How a page is fetched::

    BrowserFetcher.fetch ──► pool slot ──► BrowserSession (guard + chromedriver + Chromium)
        │ thread (blocking Selenium calls never run on the event loop)
        ▼
    Chromium ──every request──► FilteringProxy channel (127.0.0.1, address policy, reach rules)
                                   └─ keeps the page's own HTTP exchange as received

*The real response.* Every request of the browser goes through a channel of
the :mod:`shoal.fetch.proxy`. For an ``http://`` page the proxy forwards the
request itself and keeps the response exactly as received (status line,
headers, body de-chunked but still content-encoded): that becomes the
:class:`~shoal.exchange.FetchResult`. An ``https://`` page goes through an
opaque ``CONNECT`` tunnel, so its response is rebuilt from Chrome DevTools
(:mod:`shoal.fetch.browser.devtools`).

*Redirects are not followed* (the fetcher contract): for an http page the proxy
keeps the 3xx and gives the browser a stub page, and the result is the 3xx with
no rendering. For https the browser has already followed the redirect when the
DevTools record is read; the result is still the first 3xx hop (with an empty
body) and the worker follows it like any other.

*What a page may reach.* The proxy refuses any request (document, script,
image, iframe, XHR, redirect hop, WebSocket, https tunnel) whose host has no
allowed address; refusals are listed in :attr:`BrowserFetcher.refused`. On a
private or loopback address a page reaches only the host:port pairs of the
crawl's scope (``scope_hosts``), never another port there; shoal's own sockets
(chromedriver, DevTools, the proxy) are refused whatever the policy says (see
:mod:`shoal.fetch.proxy.reach`). A page whose own address is refused raises
:class:`~shoal.errors.PolicyRefusal`.

*Headers.* ``request.headers`` (the spec's ``[scope.headers]`` for the page's
host) are added by the proxy to the requests whose host:port is the page's
own, never to a request to another host. Chromium tunnels https through the
proxy opaquely, so an ``https://`` page with headers is refused (``PERMANENT``,
naming the fix) instead of being fetched without them.

*No outside connections of its own.* Chromium is started headless with
background networking, component updates, sync, first-run, default apps,
extensions, safe browsing, translate, QUIC and DNS prefetch off, on about:blank
rather than the search engine's new tab page. What no switch stops (GAIA
``ListAccounts``, the on-device model manifest) is refused by the proxy before
any DNS lookup (:data:`~shoal.fetch.proxy.records.BROWSER_SERVICE_HOSTS`).

*Process hygiene* (after brozzler): see :mod:`shoal.fetch.browser.guard`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shoal.errors import BrowserError, ErrorClass, FetchError
from shoal.exchange import FetchRequest, FetchResult
from shoal.fetch.address import AddressPolicy
from shoal.fetch.browser.launch import INSTALL_HINT, find_chromedriver, find_chromium
from shoal.fetch.browser.page import RenderOptions
from shoal.fetch.browser.session import BrowserSession, Crashed, start_session
from shoal.fetch.proxy.reach import Reach
from shoal.fetch.proxy.records import BROWSER_SERVICE_HOSTS, Exchange, Refusal
from shoal.fetch.proxy.server import FilteringProxy

__all__ = ["BrowserFetcher"]

log = logging.getLogger(__name__)


class BrowserFetcher:
    """Renders pages in a pool of headless Chromium browsers (the ``render = "browser"`` rules).

    ``pool_size`` browsers at most, started lazily; each is replaced after
    ``recycle_pages`` pages, after a timeout, and after a crash (the page is
    then retried once on a fresh browser). All blocking Selenium calls run in
    the fetcher's own threads. ``max_body_bytes`` caps the kept body of a page
    (the browser still receives all of it). ``ignore_certificate_errors`` is for
    tests against self-signed servers only.

    ``scope_hosts`` are the crawl's seed URLs and ``allowed_hosts`` entries: on a
    private or loopback address that ``policy`` allows, a page reaches only the
    host:port pairs they name (see :class:`~shoal.fetch.proxy.reach.Reach`).
    """

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        scope_hosts: Iterable[str],
        pool_size: int,
        recycle_pages: int,
        user_agent: str,
        chromium: str | None = None,
        chromedriver: str | None = None,
        page_load_timeout: float = 30,
        max_body_bytes: int = 20 * 1024 * 1024,
        stop_grace: float = 5.0,
        ignore_certificate_errors: bool = False,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.policy = policy
        self.pool_size = pool_size
        self.recycle_pages = max(1, recycle_pages)
        self.user_agent = user_agent
        self.chromium = chromium
        self.chromedriver = chromedriver
        self.page_load_timeout = page_load_timeout
        self.stop_grace = stop_grace
        self.ignore_certificate_errors = ignore_certificate_errors
        self.reach = Reach(policy, scope_hosts)
        """What a page may connect to; holds the ports of shoal's own sockets."""
        self._proxy = FilteringProxy(
            self.reach, max_body_bytes=max_body_bytes, deny_hosts=BROWSER_SERVICE_HOSTS
        )
        # Renders and starts; stops (which may wait out a grace period) have their own threads.
        self._executor = ThreadPoolExecutor(
            max_workers=2 * pool_size, thread_name_prefix="shoal-browser"
        )
        self._stopper = ThreadPoolExecutor(
            max_workers=pool_size, thread_name_prefix="shoal-browser-stop"
        )
        self._idle: list[BrowserSession] = []
        self._live: set[BrowserSession] = set()
        self._pending: set[asyncio.Future[None]] = set()
        self._slots: asyncio.Semaphore | None = None
        self._closed = False
        self.browsers_started = 0
        """How many browsers this fetcher has started (recycling and crashes included)."""

    @property
    def refused(self) -> list[Refusal]:
        """Requests of rendered pages that the address policy refused, oldest first."""
        return self._proxy.refused

    @property
    def exchanges(self) -> list[Exchange]:
        """The last requests the browsers made (bounded), for logs and tests."""
        return self._proxy.exchanges

    def own_ports(self) -> set[int]:
        """Ports of shoal's own sockets that pages are refused (chromedriver, DevTools, the proxy)."""
        return self.reach.own_ports()

    def driver_ports(self) -> list[int]:
        """The chromedriver port of each live browser (for tests that attack it)."""
        return [b.driver_port for b in list(self._live)]

    def process_ids(self) -> list[int]:
        """Every guard, chromedriver and Chromium process of the live browsers."""
        return [pid for browser in list(self._live) for pid in browser.pids()]

    async def fetch(self, request: FetchRequest) -> FetchResult:
        """Render ``request.url`` as its rule says; the page's own HTTP response is the result.

        Raises :class:`~shoal.errors.FetchError` (or its subclasses
        ``BrowserError``, ``PolicyRefusal``) already classified; a 404 is a result.
        """
        url, rule, deadline = request.url, request.rule, request.deadline
        if self._closed:
            raise RuntimeError("BrowserFetcher is closed")
        if request.headers and url.lower().startswith("https:"):
            names = ", ".join(sorted({k for k, _ in request.headers}))
            raise FetchError(
                ErrorClass.PERMANENT,
                f"{url}: [scope.headers] ({names}) cannot be sent on an https page rendered in the "
                "browser (Chromium tunnels https through shoal's proxy opaquely); "
                'fetch it with render = "http" or remove the headers for this host',
            )
        opts = RenderOptions.of(rule, request.headers)
        slots = self._get_slots()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError(
                ErrorClass.TRANSIENT, "fetch deadline passed before the render started"
            )
        try:
            await asyncio.wait_for(slots.acquire(), remaining)
        except TimeoutError:
            raise BrowserError(
                ErrorClass.TRANSIENT, "no browser became free before the deadline"
            ) from None
        try:
            for attempt in (1, 2):
                browser = await self._checkout(deadline)
                try:
                    result = await self._render(browser, url, opts, deadline)
                except Crashed as exc:
                    self._discard(browser)
                    if attempt == 1 and not self._closed and deadline - time.monotonic() > 1.0:
                        log.warning(
                            "browser died rendering %s (%s); retrying on a fresh browser", url, exc
                        )
                        continue
                    raise BrowserError(
                        ErrorClass.TRANSIENT, f"the browser died rendering {url}: {exc}"
                    ) from None
                except BaseException:
                    self._release(browser)
                    raise
                self._release(browser)
                return result
            raise AssertionError("unreachable")
        finally:
            slots.release()

    async def close(self) -> None:
        """Stop every browser (SIGTERM, then SIGKILL after the grace period), the proxy and the threads."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        browsers = list(self._live)
        self._idle.clear()
        waits: list[asyncio.Future[Any]] = [
            loop.run_in_executor(self._stopper, b.stop) for b in browsers
        ]
        waits += list(self._pending)
        if waits:
            await asyncio.gather(*waits, return_exceptions=True)
        self._live.clear()
        await loop.run_in_executor(None, self._proxy.close)
        await loop.run_in_executor(None, self._executor.shutdown)
        await loop.run_in_executor(None, self._stopper.shutdown)

    # The pool, on the event loop.

    def _get_slots(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.pool_size)
        return self._slots

    async def _checkout(self, deadline: float) -> BrowserSession:
        while self._idle:
            browser = self._idle.pop()
            if browser.alive():
                return browser
            self._discard(browser)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._start)
        try:
            return await asyncio.wait_for(
                asyncio.shield(future), max(0.0, deadline - time.monotonic())
            )
        except TimeoutError:
            future.add_done_callback(self._park)
            raise BrowserError(
                ErrorClass.TRANSIENT, "the browser did not start before the deadline"
            ) from None
        except asyncio.CancelledError:
            future.add_done_callback(self._park)
            raise

    def _start(self) -> BrowserSession:
        chromium = find_chromium(self.chromium)
        chromedriver = find_chromedriver(self.chromedriver)
        if chromium is None:
            raise BrowserError(
                ErrorClass.CRITICAL,
                f"Chromium not found ({self.chromium or 'PATH'}); {INSTALL_HINT}",
            )
        if chromedriver is None:
            raise BrowserError(
                ErrorClass.CRITICAL,
                f"chromedriver not found ({self.chromedriver or 'PATH'}); {INSTALL_HINT}",
            )
        browser = start_session(
            proxy=self._proxy,
            chromium=chromium,
            chromedriver=chromedriver,
            user_agent=self.user_agent,
            page_load_timeout=self.page_load_timeout,
            grace=self.stop_grace,
            ignore_certificate_errors=self.ignore_certificate_errors,
        )
        return browser

    def _park(self, future: asyncio.Future[BrowserSession]) -> None:
        """A browser whose start outlived its fetch: keep it for the next page, or stop it."""
        if future.cancelled() or future.exception() is not None:
            return
        browser = future.result()
        self._live.add(browser)
        self.browsers_started += 1
        if self._closed or len(self._live) > self.pool_size:
            self._discard(browser)
        else:
            self._idle.append(browser)

    async def _render(
        self, browser: BrowserSession, url: str, opts: RenderOptions, deadline: float
    ) -> FetchResult:
        if browser not in self._live:
            self._live.add(browser)
            self.browsers_started += 1
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, browser.render, url, opts, deadline)
        try:
            return await asyncio.wait_for(
                asyncio.shield(future), max(0.0, deadline - time.monotonic())
            )
        except TimeoutError:
            # The thread is still inside Selenium: killing the browser makes it return.
            browser.hung = True
            browser.kill()
            future.add_done_callback(_consume)
            raise BrowserError(
                ErrorClass.TRANSIENT, f"rendering {url} did not finish by the deadline"
            ) from None
        except asyncio.CancelledError:
            browser.kill()
            future.add_done_callback(_consume)
            raise

    def _release(self, browser: BrowserSession) -> None:
        if (
            self._closed
            or browser.broken
            or not browser.alive()
            or browser.pages >= self.recycle_pages
        ):
            self._discard(browser)
        else:
            self._idle.append(browser)

    def _discard(self, browser: BrowserSession) -> None:
        """Stop a browser in the background; close() waits for it."""
        self._live.discard(browser)
        with contextlib.suppress(ValueError):
            self._idle.remove(browser)
        browser.kill()
        loop = asyncio.get_running_loop()
        try:
            future: asyncio.Future[None] = loop.run_in_executor(self._stopper, browser.stop)
        except RuntimeError:  # closed already: the stop threads are gone
            threading.Thread(target=browser.stop, name="shoal-browser-stop", daemon=True).start()
            return
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        future.add_done_callback(_consume)


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
