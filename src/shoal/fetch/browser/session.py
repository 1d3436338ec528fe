"""One browser: guard + chromedriver + Chromium and its Selenium session, and how it renders a page.

A :class:`BrowserSession` is blocking and used from the fetcher's threads
(never on the event loop). :meth:`BrowserSession.render` loads one page through
the browser's :class:`~shoal.fetch.proxy.channel.ProxyChannel`, waits for the
rule's selector, scrolls, clicks, captures same-site frames and a screenshot,
and returns the page's own HTTP exchange with the rendered DOM.

*Errors*, translated at this boundary: Selenium ``TimeoutException`` ->
``TRANSIENT`` (the browser is recycled, a hung page may have wedged it); a
``wait_for`` selector that never appears and ``NoSuchElementException`` ->
``MISSING``; a crashed browser or dead chromedriver -> :class:`Crashed` (the
fetcher retries the page once on a fresh browser); a browser that cannot start
-> ``CRITICAL`` with an install hint.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import psutil
import urllib3
from selenium import webdriver
from selenium.common.exceptions import (
    InvalidArgumentException,
    InvalidSelectorException,
    NoSuchElementException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chromium.remote_connection import ChromiumRemoteConnection
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.client_config import ClientConfig

from shoal.errors import BrowserError, ErrorClass, FetchError, PolicyRefusal, SkipReason
from shoal.exchange import FetchResult, Rendered
from shoal.fetch.address import AddressPolicy
from shoal.fetch.browser.devtools import devtools_record, is_dead, message
from shoal.fetch.browser.launch import (
    INSTALL_HINT,
    chromium_flags,
    find_chromedriver,
    find_chromium,
    launch_driver,
    real_binary,
    stop_guard,
)
from shoal.fetch.browser.page import (
    MARGIN,
    RenderOptions,
    capture_frames,
    click,
    left,
    screenshot,
    scroll,
    wait_for,
)
from shoal.fetch.proxy.channel import ProxyChannel
from shoal.fetch.proxy.reach import Reach
from shoal.fetch.proxy.records import ProxyRecord
from shoal.fetch.proxy.server import FilteringProxy

__all__ = ["BrowserSession", "Crashed", "probe_browser", "start_session"]

HTML_TYPE = "text/html; charset=utf-8"


class _RefuseAll(AddressPolicy):
    """A policy allowing no address at all (the doctor's probe needs no network)."""

    def allows(self, ip: object) -> bool:
        """Never."""
        return False


class Crashed(Exception):
    """The browser or its driver died under a page: retry once on a fresh browser."""


@dataclass(slots=True, eq=False)
class BrowserSession:
    """One guard + chromedriver + Chromium and its Selenium session. Blocking; used from threads."""

    guard: subprocess.Popen[bytes]
    driver: webdriver.Remote
    channel: ProxyChannel
    workdir: str
    grace: float
    page_load_timeout: float
    pages: int = 0
    broken: bool = False
    hung: bool = False
    stopped: bool = False
    started: float = field(default_factory=time.monotonic)
    own_ports: list[int] = field(default_factory=list)
    driver_port: int = 0
    """chromedriver's port on 127.0.0.1."""
    """chromedriver's, DevTools' and any other listening port of this browser's processes."""

    def alive(self) -> bool:
        """Whether the guard (and so chromedriver) still runs and stop() was not called."""
        return not self.stopped and self.guard.poll() is None

    def pids(self) -> list[int]:
        """The guard, chromedriver and every Chromium process of this browser."""
        try:
            proc = psutil.Process(self.guard.pid)
            return [self.guard.pid, *(p.pid for p in proc.children(recursive=True))]
        except psutil.Error:
            return []

    def cdp(self, cmd: str, params: dict[str, Any] | None = None) -> Any:
        """Run a Chrome DevTools Protocol command through chromedriver; its result."""
        return self.driver.execute("executeCdpCommand", {"cmd": cmd, "params": params or {}})[
            "value"
        ]

    def kill(self) -> None:
        """Ask the guard to tear everything down, without waiting (safe on the event loop).

        A hung browser is killed at once (SIGUSR1 to the guard): a renderer stuck
        in a script never handles SIGTERM, so the grace period would be wasted.
        """
        self.broken = True
        with contextlib.suppress(OSError):
            self.guard.send_signal(signal.SIGUSR1 if self.hung else signal.SIGTERM)
        with contextlib.suppress(OSError, ValueError):
            if self.guard.stdin is not None:
                self.guard.stdin.close()

    def stop(self) -> None:
        """Quit Chromium: SIGTERM to the whole tree, SIGKILL after the grace period, profile removed."""
        if self.stopped:
            return
        self.stopped = True
        self.kill()
        try:
            self.guard.wait(self.grace + 8)
        except subprocess.TimeoutExpired:
            # The guard itself is stuck: kill it and whatever is left of its session.
            with contextlib.suppress(OSError):
                os.killpg(self.guard.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.guard.wait(5)
        _close_connection(self.driver.command_executor)
        self.channel.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
        for port in self.own_ports:
            self.channel.proxy.reach.remove_own_port(port)
        self.own_ports.clear()

    # Rendering.

    def render(self, url: str, opts: RenderOptions, deadline: float) -> FetchResult:
        """Render one page (blocking). Raises FetchError, or Crashed when the browser died."""
        self.pages += 1
        try:
            return self._render(url, opts, deadline)
        except FetchError:
            raise
        except TimeoutException as exc:
            self.broken = self.hung = True
            raise BrowserError(ErrorClass.TRANSIENT, f"browser timed out: {message(exc)}") from None
        except NoSuchElementException as exc:
            raise FetchError(ErrorClass.MISSING, f"element not found: {message(exc)}") from None
        except InvalidSelectorException as exc:
            raise FetchError(
                ErrorClass.PERMANENT, f"invalid CSS selector in the rule: {message(exc)}"
            ) from None
        except InvalidArgumentException as exc:
            raise FetchError(
                ErrorClass.PERMANENT, f"the browser refused the URL: {message(exc)}"
            ) from None
        except WebDriverException as exc:
            self.broken = True
            if is_dead(exc) or not self.alive():
                raise Crashed(message(exc)) from None
            raise BrowserError(ErrorClass.UNKNOWN, f"browser error: {message(exc)}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self.broken = True
            raise Crashed(f"lost chromedriver: {exc}") from None

    def _render(self, url: str, opts: RenderOptions, deadline: float) -> FetchResult:
        driver = self.driver
        started = time.time()
        t0 = time.monotonic()
        left(deadline, "before the page load")
        self.channel.expect(url, headers=opts.headers)
        https = url.lower().startswith("https:")
        # The performance log is drained before every page so that it holds this page only.
        driver.execute("getLog", {"type": "performance"})
        timeout = min(self.page_load_timeout, left(deadline, "before the page load") - MARGIN)
        if timeout <= 0:
            raise BrowserError(ErrorClass.TRANSIENT, "deadline too close to load a page")
        driver.set_page_load_timeout(timeout)
        try:
            driver.get(url)
        except TimeoutException:
            self.broken = self.hung = True
            raise BrowserError(
                ErrorClass.TRANSIENT, f"page load of {url} timed out after {timeout:.1f}s"
            ) from None
        except WebDriverException as exc:
            if "net::ERR_" not in str(exc.msg or ""):
                raise
            # A navigation error: the proxy record (below) says what happened.
        # The load has finished, so the proxy has relayed the whole page; it may still be
        # reading a body the browser gave up on (a download), hence the wait.
        record = None if https else self.channel.wait_record(deadline - time.monotonic() - MARGIN)
        if record is None:
            record = devtools_record(self.driver, self.cdp, self.channel, url)
        self._raise_for(record, url)
        result = FetchResult(
            url=url,
            status=record.status,
            reason=record.reason,
            http_version=_version(record.http_version),
            headers=record.headers,
            body=record.body,
            request_headers=record.request_headers,
            method=record.method,
            peer_ip=record.peer_ip,
            started_at=record.started_at or started,
            elapsed=record.elapsed,
            truncated=record.truncated,
        )
        if record.redirect_held or (300 <= record.status < 400 and record.status != 304):
            return result
        if not _is_html(result.content_type):
            return result
        if 200 <= record.status < 300:
            if opts.wait_for:
                wait_for(self.driver, url, opts, deadline)
            if opts.scroll:
                scroll(self.driver, opts.scroll, deadline)
            for selector in opts.click:
                click(self.driver, selector, deadline)
        left(deadline, "before the DOM was captured")
        html = driver.page_source
        result.rendered_html = html
        result.rendered.append(Rendered(url=url, content_type=HTML_TYPE, data=html.encode("utf-8")))
        if opts.frames:
            for frame_url, frame_html in capture_frames(self.driver, url, deadline):
                result.frame_urls.append(frame_url)
                result.rendered.append(
                    Rendered(
                        url=frame_url,
                        content_type=HTML_TYPE,
                        data=frame_html.encode("utf-8"),
                        kind="resource",
                    )
                )
        if opts.screenshot:
            left(deadline, "before the screenshot")
            result.rendered.append(
                Rendered(
                    url=f"screenshot:{url}",
                    content_type="image/png",
                    data=screenshot(self.driver, self.cdp),
                    kind="resource",
                )
            )
        if not result.elapsed:
            result.elapsed = time.monotonic() - t0
        return result

    def _raise_for(self, record: ProxyRecord, url: str) -> None:
        if record.error is None:
            return
        if record.error in ("address_policy", "browser_service"):
            raise PolicyRefusal(SkipReason.ADDRESS_POLICY, f"{url}: refused by the address policy")
        if record.error == "malformed":
            raise FetchError(
                ErrorClass.PERMANENT, f"{url}: malformed HTTP response: {record.detail}"
            )
        raise FetchError(ErrorClass.TRANSIENT, f"{url}: {record.error}: {record.detail}")


def start_session(
    *,
    proxy: FilteringProxy | None,
    chromium: str,
    chromedriver: str,
    user_agent: str | None,
    page_load_timeout: float,
    grace: float,
    ignore_certificate_errors: bool,
    start_timeout: float = 30.0,
) -> BrowserSession:
    """Start guard + chromedriver + Chromium and open a session (blocking). Raises BrowserError."""
    workdir = tempfile.mkdtemp(prefix="shoal-chromium-")
    profile = os.path.join(workdir, "profile")
    os.mkdir(profile)
    channel: ProxyChannel | None = None
    guard: subprocess.Popen[bytes] | None = None
    driver: webdriver.Remote | None = None
    own: list[int] = []
    try:
        if proxy is not None:
            channel = proxy.open_channel()
        else:
            channel = FilteringProxy(Reach(_RefuseAll()), max_body_bytes=0).open_channel()
        launched = launch_driver(
            chromedriver, workdir=workdir, grace=grace, start_timeout=start_timeout
        )
        guard = launched.guard
        # Refused before Chromium can run a page: a page must never reach chromedriver.
        own.append(launched.port)
        channel.proxy.reach.add_own_port(launched.port)
        options = _options(
            chromium=real_binary(chromium),
            profile=profile,
            workdir=workdir,
            proxy=channel.address,
            user_agent=user_agent,
            ignore_certificate_errors=ignore_certificate_errors,
        )
        address = launched.url
        config = ClientConfig(remote_server_addr=address, timeout=int(page_load_timeout + 60))
        connection = ChromiumRemoteConnection(
            remote_server_addr=address,
            vendor_prefix="goog",
            browser_name="chrome",
            ignore_proxy=True,
            client_config=config,
        )
        try:
            driver = webdriver.Remote(command_executor=connection, options=options)
        except WebDriverException as exc:
            _close_connection(connection)
            raise BrowserError(
                ErrorClass.CRITICAL,
                f"Chromium {chromium} could not start: {message(exc)}; {INSTALL_HINT}",
            ) from None
        browser = BrowserSession(
            guard=guard,
            driver=driver,
            channel=channel,
            workdir=workdir,
            grace=grace,
            page_load_timeout=page_load_timeout,
            own_ports=own,
            driver_port=launched.port,
        )
        for port in _listening_ports(guard.pid, driver) - set(own):
            own.append(port)
            channel.proxy.reach.add_own_port(port)
        driver.set_script_timeout(10)
        browser.cdp("Network.enable")
        # Every page must reach the proxy: no cache, no service worker answering for the network.
        browser.cdp("Network.setCacheDisabled", {"cacheDisabled": True})
        browser.cdp("Network.setBypassServiceWorker", {"bypass": True})
        browser.cdp("Browser.setDownloadBehavior", {"behavior": "deny"})
        return browser
    except BaseException as exc:
        if channel is not None:
            for port in own:
                channel.proxy.reach.remove_own_port(port)
        if driver is not None:
            _close_connection(driver.command_executor)
        if guard is not None:
            stop_guard(guard, grace)
        if channel is not None:
            channel.close()
            if proxy is None:
                channel.proxy.close()
        shutil.rmtree(workdir, ignore_errors=True)
        if isinstance(exc, (BrowserError, KeyboardInterrupt, SystemExit)):
            raise
        if isinstance(exc, (WebDriverException, OSError, urllib3.exceptions.HTTPError)):
            raise BrowserError(
                ErrorClass.CRITICAL, f"the browser cannot start: {exc}; {INSTALL_HINT}"
            ) from None
        raise


def _options(
    *,
    chromium: str,
    profile: str,
    workdir: str,
    proxy: str,
    user_agent: str | None,
    ignore_certificate_errors: bool,
) -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in chromium_flags(
        profile_dir=profile,
        proxy=proxy,
        user_agent=user_agent,
        ignore_certificate_errors=ignore_certificate_errors,
    ):
        options.add_argument(flag)
    options.page_load_strategy = "normal"
    options.unhandled_prompt_behavior = "dismiss"
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    options.add_experimental_option(
        "perfLoggingPrefs", {"enableNetwork": True, "enablePage": False}
    )
    # chromedriver would make Chromium log everything to stderr.
    options.add_experimental_option("excludeSwitches", ["enable-logging"])
    options.add_experimental_option(
        "prefs",
        {
            "download_restrictions": 3,
            "download.default_directory": os.path.join(workdir, "downloads"),
            "download.prompt_for_download": False,
            "profile.default_content_setting_values.notifications": 2,
            "profile.default_content_setting_values.geolocation": 2,
            "profile.default_content_setting_values.popups": 2,
            "safebrowsing.enabled": False,
            "translate.enabled": False,
            "intl.accept_languages": "ko,en",
            # Start on about:blank, not on the default search engine's new tab page
            # (Debian's Chromium would open DuckDuckGo's).
            "session.restore_on_startup": 4,
            "session.startup_urls": ["about:blank"],
            "homepage": "about:blank",
            "homepage_is_newtabpage": False,
            "signin.allowed": False,
            "search.suggest_enabled": False,
            "net.network_prediction_options": 2,
            "alternate_error_pages.enabled": False,
        },
    )
    return options


def probe_browser(
    chromium: str | None = None, chromedriver: str | None = None, *, timeout: float = 30.0
) -> tuple[str, float]:
    """Start one guarded headless Chromium, render a ``data:`` page, stop it.

    Returns the browser's product string and the seconds it took; raises
    :class:`~shoal.errors.BrowserError` (``CRITICAL``) when the browser cannot
    start or the page does not render. The browser may reach no address at all.
    """
    found_chromium = find_chromium(chromium)
    found_driver = find_chromedriver(chromedriver)
    if found_chromium is None:
        raise BrowserError(
            ErrorClass.CRITICAL, f"Chromium not found ({chromium or 'PATH'}); {INSTALL_HINT}"
        )
    if found_driver is None:
        raise BrowserError(
            ErrorClass.CRITICAL,
            f"chromedriver not found ({chromedriver or 'PATH'}); {INSTALL_HINT}",
        )
    t0 = time.monotonic()
    browser = start_session(
        proxy=None,
        chromium=found_chromium,
        chromedriver=found_driver,
        user_agent=None,
        page_load_timeout=timeout,
        grace=2.0,
        ignore_certificate_errors=False,
        start_timeout=timeout,
    )
    try:
        browser.driver.set_page_load_timeout(timeout)
        browser.driver.get("data:text/html,<title>shoal</title><p id=ok>rendered</p>")
        text = browser.driver.find_element(By.ID, "ok").text
        if text != "rendered":
            raise BrowserError(ErrorClass.CRITICAL, f"the test page rendered wrongly: {text!r}")
        product = str(browser.cdp("Browser.getVersion").get("product", "?"))
    except WebDriverException as exc:
        raise BrowserError(
            ErrorClass.CRITICAL, f"the test page did not render: {message(exc)}"
        ) from None
    finally:
        browser.stop()
        browser.channel.proxy.close()
    return product, time.monotonic() - t0


# Helpers.


def _listening_ports(root: int, driver: webdriver.Remote) -> set[int]:
    """Ports that ``root`` (the guard) and its descendants listen on, DevTools' included.

    chromedriver reports DevTools' address as ``goog:chromeOptions.debuggerAddress``;
    the process scan catches any other listening socket of the browser.
    """
    ports: set[int] = set()
    with contextlib.suppress(AttributeError, KeyError, IndexError, TypeError, ValueError):
        address = str(driver.capabilities["goog:chromeOptions"]["debuggerAddress"])
        ports.add(int(address.rsplit(":", 1)[1]))
    try:
        top = psutil.Process(root)
        procs = [top, *top.children(recursive=True)]
    except psutil.Error:
        return ports
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr:
                    ports.add(int(conn.laddr.port))
    return ports


def _close_connection(connection: Any) -> None:
    """Close Selenium's HTTP connection pool to chromedriver (untyped in Selenium)."""
    with contextlib.suppress(Exception):
        connection.close()


def _version(status_line_version: str) -> str:
    """``HTTP/1.1`` -> ``1.1``, the form the HTTP fetcher uses."""
    return status_line_version.removeprefix("HTTP/") or "1.1"


def _is_html(content_type: str) -> bool:
    return content_type in ("", "text/html", "application/xhtml+xml")
