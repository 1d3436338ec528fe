"""The browser fetcher: pages rendered by headless Chromium driven by Selenium.

How a page is fetched::

    BrowserFetcher.fetch ──► pool slot ──► _Browser (chromedriver + Chromium, one guard)
        │ thread (blocking Selenium calls never run on the event loop)
        ▼
    Chromium ──every request──► FilteringProxy channel (127.0.0.1, address policy)
                                   └─ keeps the page's own HTTP exchange as received

*The real response.* Every request of the browser goes through a
:class:`~shoal.fetch.proxy.FilteringProxy` channel of its own. For an
``http://`` page the proxy forwards the request itself and keeps the response
exactly as received (status line, headers, body de-chunked but still
content-encoded): that becomes the :class:`FetchResult`. An ``https://`` page
goes through an opaque ``CONNECT`` tunnel, so its response is rebuilt from
Chrome DevTools network events (the performance log) and
``Network.getResponseBody``; Chrome hands over the body *decoded*, so
``Content-Encoding`` and ``Transfer-Encoding`` are dropped from the headers and
``Content-Length`` set to the decoded size (the record stays self-consistent,
but is not byte-exact as it is for http pages). The DevTools path is also the
fallback whenever the proxy did not see the page (e.g. served by a service worker).

*Redirects are not followed* (the fetcher contract): for an http page the proxy
keeps the 3xx and gives the browser a stub page, and the result is the 3xx with
no rendering. For https the browser has already followed the redirect when the
DevTools record is read; the result is still the first 3xx hop (with an empty
body) and the worker follows it like any other.

*Address policy.* The proxy refuses any request (document, script, image,
iframe, XHR, redirect hop, WebSocket, https tunnel) whose host has no allowed
address; refusals are listed in :attr:`BrowserFetcher.refused`. A page whose
own address is refused raises :class:`~shoal.errors.PolicyRefusal`.

*No outside connections of its own.* Chromium is started headless with
background networking, component updates, sync, first-run, default apps,
extensions, safe browsing, translate, QUIC and DNS prefetch off, on about:blank
rather than the search engine's new tab page. What no switch stops (GAIA
``ListAccounts``, the on-device model manifest) is refused by the proxy before
any DNS lookup (:data:`~shoal.fetch.proxy.BROWSER_SERVICE_HOSTS`).

*Process hygiene* (after brozzler). Each chromedriver runs under a small guard
process (``python -I -S -c``, source in :data:`_GUARD_SOURCE`) started in a new
session, so Chromium sits in a process group of its own and a Ctrl-C to the
worker's terminal does not reach it. The guard is a child subreaper
(``PR_SET_CHILD_SUBREAPER``): every Chromium process orphaned below it is
re-parented to it, never to init. It watches a pipe from the worker; the pipe
closes when the worker exits in any way, ``SIGKILL`` included, and then the
guard sends ``SIGTERM`` to every descendant, ``SIGKILL`` after a grace period,
reaps them and deletes the throwaway profile directory. A browser wedged by a
page is killed at once (its renderer would never handle ``SIGTERM``).
chromedriver gets ``PR_SET_PDEATHSIG`` from the guard's main thread, which lives
as long as the guard, so it dies with the guard. ``PR_SET_PDEATHSIG`` is
deliberately not used on the worker side: it fires when the *thread* that
forked the child exits, and browsers are started from pool threads.

*Errors*, translated at this boundary: Selenium ``TimeoutException`` ->
``TRANSIENT`` (the browser is recycled, a hung page may have wedged it); a
``wait_for`` selector that never appears and ``NoSuchElementException`` ->
``MISSING``; a crashed browser or dead chromedriver -> the page is retried once
on a fresh browser, then ``TRANSIENT``; Chromium or chromedriver missing, or a
browser that cannot start -> ``CRITICAL`` with an install hint.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psutil
import urllib3
from selenium import webdriver
from selenium.common.exceptions import (
    InvalidArgumentException,
    InvalidSelectorException,
    InvalidSessionIdException,
    NoSuchElementException,
    NoSuchFrameException,
    NoSuchWindowException,
    SessionNotCreatedException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chromium.remote_connection import ChromiumRemoteConnection
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.client_config import ClientConfig

from shoal.errors import BrowserError, ErrorClass, FetchError, PolicyRefusal, SkipReason
from shoal.exchange import FetchRequest, FetchResult, Rendered
from shoal.fetch.address import AddressPolicy
from shoal.fetch.doctor import find_chromedriver, find_chromium
from shoal.fetch.proxy import (
    BROWSER_SERVICE_HOSTS,
    Exchange,
    FilteringProxy,
    ProxyChannel,
    ProxyRecord,
    Refusal,
    normalize_url,
)
from shoal.spec import Rule

__all__ = [
    "INSTALL_HINT",
    "BrowserFetcher",
    "chromium_flags",
    "find_chromedriver",
    "find_chromium",
    "probe_browser",
]

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "install hint: apt-get install chromium chromium-driver (Debian/Ubuntu) "
    "or set [worker] chromedriver path (and chromium path) to existing executables"
)
HTML_TYPE = "text/html; charset=utf-8"

_DEBIAN_CHROMIUM = "/usr/lib/chromium/chromium"

_MAX_CLICKS = 25
"""Clicks per ``click`` selector on one page (a "more comments" button pressed until gone)."""
_MAX_FRAMES = 10
_POLL = 0.05
_SETTLE = 1.0
"""Seconds a scroll or click waits for the page to change before giving up on it."""
_SCREENSHOT_MAX_HEIGHT = 16384
_MARGIN = 0.3
"""Seconds kept back from the deadline so the browser's own timeouts fire before ours."""

# The guard runs as `python -I -S -c _GUARD_SOURCE WORKDIR GRACE DRIVER ARGS...`: standard
# library only, so it starts in ~20 ms and needs nothing from the worker's environment.
_GUARD_SOURCE = r"""
import ctypes, os, shutil, signal, subprocess, sys, threading, time

PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36

def main():
    workdir, grace, cmd = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    me = os.getpid()
    # A plain flag, not a threading.Event: a signal handler that takes a lock the
    # interrupted main thread already holds (Event.wait does) deadlocks.
    stop = [False]

    def on_signal(*_):
        stop[0] = True

    def on_hard(*_):  # SIGUSR1: the browser is wedged, skip the grace period
        nonlocal grace
        grace = 0.0
        stop[0] = True

    signal.signal(signal.SIGUSR1, on_hard)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def die_with_guard():
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    def watch_owner():
        # The worker holds the write end of stdin: EOF means it exited (or asked us to stop).
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        stop[0] = True

    try:
        driver = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, preexec_fn=die_with_guard)
    except OSError as exc:
        print("shoal guard: cannot start %s: %s" % (cmd[0], exc), file=sys.stderr, flush=True)
        shutil.rmtree(workdir, ignore_errors=True)
        sys.exit(127)
    threading.Thread(target=watch_owner, daemon=True).start()
    while not stop[0] and driver.poll() is None:
        time.sleep(0.05)

    def descendants():
        parent, alive = {}, set()
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % name, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            fields = data[data.rfind(b")") + 2:].split()
            pid = int(name)
            parent[pid] = int(fields[1])
            if fields[0] != b"Z" and (int(fields[2]) == me or int(fields[1]) == me):
                alive.add(pid)
        found, todo = set(), [me]
        while todo:
            p = todo.pop()
            for child, ppid in parent.items():
                if ppid == p and child not in found:
                    found.add(child)
                    todo.append(child)
        return {p for p in found | alive if p != me and _running(p)}

    def _running(pid):
        try:
            with open("/proc/%d/stat" % pid, "rb") as f:
                data = f.read()
        except OSError:
            return False
        return data[data.rfind(b")") + 2:].split()[0] != b"Z"

    def reap():
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def signal_all(sig):
        for pid in descendants():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    signal_all(signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end:
        reap()
        if not descendants():
            break
        time.sleep(0.05)
    signal_all(signal.SIGKILL)
    end = time.monotonic() + 5
    while time.monotonic() < end:
        reap()
        if not descendants():
            break
        time.sleep(0.02)
    reap()
    shutil.rmtree(workdir, ignore_errors=True)

main()
"""


class _RefuseAll(AddressPolicy):
    """A policy allowing no address at all (the doctor's probe needs no network)."""

    def allows(self, ip: object) -> bool:
        return False


class _Crashed(Exception):
    """The browser or its driver died under a page: retry once on a fresh browser."""


def _real_binary(path: str) -> str:
    """Skip Debian's ``/usr/bin/chromium`` launcher script when the real binary is next to it.

    The script adds flags of its own from ``/etc/chromium.d`` (remote extensions
    among them) that a crawler does not want.
    """
    try:
        with open(path, "rb") as f:
            is_script = f.read(2) == b"#!"
    except OSError:
        return path
    if is_script and os.access(_DEBIAN_CHROMIUM, os.X_OK):
        return _DEBIAN_CHROMIUM
    return path


def chromium_flags(
    *,
    profile_dir: str,
    proxy: str | None,
    user_agent: str | None,
    ignore_certificate_errors: bool = False,
) -> list[str]:
    """The command-line flags of a crawling Chromium: headless, quiet, no outside connections.

    Everything that would phone home (component and extension updates, sync,
    safe browsing, translate, metrics, domain reliability, field trials) is off,
    QUIC is off so that every request can go through the HTTP proxy, and WebRTC
    may not use UDP outside the proxy.
    """
    flags = [
        "--headless=new",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile_dir}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-client-side-phishing-detection",
        "--disable-domain-reliability",
        "--disable-breakpad",
        "--disable-crash-reporter",
        "--disable-field-trial-config",
        "--disable-background-timer-throttling",
        "--disable-backgrounding-occluded-windows",
        "--disable-renderer-backgrounding",
        "--disable-notifications",
        "--disable-quic",
        "--dns-prefetch-disable",
        "--no-pings",
        "--metrics-recording-only",
        "--password-store=basic",
        "--use-mock-keychain",
        "--mute-audio",
        "--hide-scrollbars",
        "--window-size=1366,900",
        "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--disable-features=Translate,OptimizationHints,OptimizationGuideModelDownloading,"
        "MediaRouter,DialMediaRouteProvider,AutofillServerCommunication,"
        "CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions,"
        "HttpsUpgrades,HttpsFirstBalancedModeAutoEnable,PrivacySandboxSettings4,"
        "SafeBrowsingEnhancedProtection,NetworkTimeServiceQuerying,"
        "AcceptCHFrame,DnsOverHttps,LensOverlay",
    ]
    if os.geteuid() == 0:
        flags.append("--no-sandbox")
    if proxy:
        flags += [f"--proxy-server={proxy}", "--proxy-bypass-list=<-loopback>"]
    if user_agent:
        flags.append(f"--user-agent={user_agent}")
    if ignore_certificate_errors:
        flags.append("--ignore-certificate-errors")
    return flags


@dataclass(slots=True, frozen=True)
class _Options:
    wait_for: str | None = None
    wait_timeout: float = 10.0
    scroll: int = 0
    click: tuple[str, ...] = ()
    frames: bool = False
    screenshot: bool = False

    @classmethod
    def of(cls, rule: Rule | None) -> _Options:
        if rule is None:
            return cls()
        return cls(
            wait_for=rule.wait_for,
            wait_timeout=rule.wait_timeout,
            scroll=rule.scroll,
            click=tuple(rule.click),
            frames=rule.frames,
            screenshot=rule.screenshot,
        )


@dataclass(slots=True, eq=False)
class _Browser:
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

    def alive(self) -> bool:
        return not self.stopped and self.guard.poll() is None

    def pids(self) -> list[int]:
        """The guard, chromedriver and every Chromium process of this browser."""
        try:
            proc = psutil.Process(self.guard.pid)
            return [self.guard.pid, *(p.pid for p in proc.children(recursive=True))]
        except psutil.Error:
            return []

    def cdp(self, cmd: str, params: dict[str, Any] | None = None) -> Any:
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

    # Rendering.

    def render(self, url: str, opts: _Options, deadline: float) -> FetchResult:
        """Render one page (blocking). Raises FetchError, or _Crashed when the browser died."""
        self.pages += 1
        try:
            return self._render(url, opts, deadline)
        except FetchError:
            raise
        except TimeoutException as exc:
            self.broken = self.hung = True
            raise BrowserError(ErrorClass.TRANSIENT, f"browser timed out: {_msg(exc)}") from None
        except NoSuchElementException as exc:
            raise FetchError(ErrorClass.MISSING, f"element not found: {_msg(exc)}") from None
        except InvalidSelectorException as exc:
            raise FetchError(
                ErrorClass.PERMANENT, f"invalid CSS selector in the rule: {_msg(exc)}"
            ) from None
        except InvalidArgumentException as exc:
            raise FetchError(
                ErrorClass.PERMANENT, f"the browser refused the URL: {_msg(exc)}"
            ) from None
        except WebDriverException as exc:
            self.broken = True
            if _is_dead(exc) or not self.alive():
                raise _Crashed(_msg(exc)) from None
            raise BrowserError(ErrorClass.UNKNOWN, f"browser error: {_msg(exc)}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self.broken = True
            raise _Crashed(f"lost chromedriver: {exc}") from None

    def _render(self, url: str, opts: _Options, deadline: float) -> FetchResult:
        driver = self.driver
        started = time.time()
        t0 = time.monotonic()
        _left(deadline, "before the page load")
        self.channel.expect(url)
        https = url.lower().startswith("https:")
        # The performance log is drained before every page so that it holds this page only.
        driver.execute("getLog", {"type": "performance"})
        timeout = min(self.page_load_timeout, _left(deadline, "before the page load") - _MARGIN)
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
        record = None if https else self.channel.wait_record(deadline - time.monotonic() - _MARGIN)
        if record is None:
            record = self._devtools_record(url)
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
                self._wait_for(url, opts, deadline)
            if opts.scroll:
                self._scroll(opts.scroll, deadline)
            for selector in opts.click:
                self._click(selector, deadline)
        _left(deadline, "before the DOM was captured")
        html = driver.page_source
        result.rendered_html = html
        result.rendered.append(Rendered(url=url, content_type=HTML_TYPE, data=html.encode("utf-8")))
        if opts.frames:
            for frame_url, frame_html in self._frames(url, deadline):
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
            _left(deadline, "before the screenshot")
            result.rendered.append(
                Rendered(
                    url=f"screenshot:{url}",
                    content_type="image/png",
                    data=self._screenshot(),
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

    def _devtools_record(self, url: str) -> ProxyRecord:
        """The page's exchange rebuilt from DevTools network events (https, or no proxy record)."""
        entries = self.driver.execute("getLog", {"type": "performance"})["value"]
        top = self.cdp("Page.getFrameTree")["frameTree"]["frame"]["id"]
        want = normalize_url(url)
        events: list[tuple[str, dict[str, Any]]] = []
        for entry in entries:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                message = json.loads(entry["message"])["message"]
                events.append((message["method"], message.get("params") or {}))
        rid: str | None = None
        request: dict[str, Any] = {}
        first_redirect: dict[str, Any] | None = None
        for method, p in events:
            if method != "Network.requestWillBeSent" or p.get("type") != "Document":
                continue
            if p.get("frameId") != top or p.get("requestId") != p.get("loaderId"):
                continue
            if rid is None:
                if normalize_url(str(p.get("request", {}).get("url", ""))) != want and any(
                    normalize_url(str(q.get("request", {}).get("url", ""))) == want
                    for m, q in events
                    if m == "Network.requestWillBeSent" and q.get("type") == "Document"
                ):
                    continue
                rid, request = p["requestId"], p.get("request", {})
            elif p.get("requestId") == rid and p.get("redirectResponse") and first_redirect is None:
                first_redirect = p["redirectResponse"]
        record = ProxyRecord(
            url=url, method=str(request.get("method", "GET")), started_at=time.time()
        )
        host, port = _host_port(url)
        tunnel_error = self.channel.tunnel_error(host, port)
        if tunnel_error is not None and tunnel_error[0] in ("address_policy", "browser_service"):
            record.error, record.detail = tunnel_error
            return record
        if rid is None:
            if tunnel_error is not None:
                record.error, record.detail = tunnel_error
                return record
            raise BrowserError(
                ErrorClass.UNKNOWN, f"{url}: the browser made no request for the page"
            )
        request_headers: dict[str, Any] = dict(request.get("headers") or {})
        raw_request_headers: dict[str, Any] | None = None
        response: dict[str, Any] | None = first_redirect
        extra: dict[str, Any] | None = None  # the first hop's raw response headers
        failed: str | None = None
        for method, p in events:
            if p.get("requestId") != rid:
                continue
            if method == "Network.responseReceived" and response is None:
                response = p.get("response")
            elif method == "Network.responseReceivedExtraInfo" and extra is None:
                extra = p
            elif method == "Network.requestWillBeSentExtraInfo" and raw_request_headers is None:
                raw_request_headers = dict(p.get("headers") or {}) or None
            elif method == "Network.loadingFailed":
                failed = str(p.get("errorText", "loading failed"))
        if response is None:
            if tunnel_error is not None:
                record.error, record.detail = tunnel_error
            else:
                record.error, record.detail = "connect", failed or "no response"
            return record
        record.status = int(response.get("status", 0))
        record.reason = str(response.get("statusText", ""))
        protocol = str(response.get("protocol", "http/1.1")).lower()
        record.http_version = "HTTP/1.0" if protocol == "http/1.0" else "HTTP/1.1"
        headers = _devtools_headers(extra, response)
        record.request_headers = _split_headers(raw_request_headers or request_headers)
        record.peer_ip = self.channel.tunnel_peer(host, port) or response.get("remoteIPAddress")
        timing = response.get("timing") or {}
        if timing.get("receiveHeadersEnd") is not None:
            record.elapsed = float(timing["receiveHeadersEnd"]) / 1000.0
        body = b""
        if first_redirect is None:
            try:
                got = self.cdp("Network.getResponseBody", {"requestId": rid})
                text = str(got.get("body", ""))
                body = base64.b64decode(text) if got.get("base64Encoded") else text.encode("utf-8")
            except WebDriverException as exc:
                if _is_dead(exc):
                    raise
                log.warning("%s: response body not available from DevTools: %s", url, _msg(exc))
                record.truncated = "disconnect"
        drop = {"content-encoding", "transfer-encoding", "content-length"}
        record.headers = [(k, v) for k, v in headers if k.lower() not in drop]
        if first_redirect is None:
            record.headers.append(("Content-Length", str(len(body))))
        record.body = body
        return record

    def _present(self, selector: str, frames: bool, url: str) -> bool:
        if self.driver.find_elements(By.CSS_SELECTOR, selector):
            return True
        if not frames:
            return False
        for element in self._same_site_frames(url):
            try:
                self.driver.switch_to.frame(element)
                if self.driver.find_elements(By.CSS_SELECTOR, selector):
                    return True
            except (NoSuchFrameException, StaleElementReferenceException):
                continue
            finally:
                self.driver.switch_to.default_content()
        return False

    def _wait_for(self, url: str, opts: _Options, deadline: float) -> None:
        assert opts.wait_for is not None
        end = time.monotonic() + opts.wait_timeout
        while True:
            if self._present(opts.wait_for, opts.frames, url):
                return
            now = time.monotonic()
            if now >= deadline - _MARGIN:
                raise BrowserError(
                    ErrorClass.TRANSIENT, f"deadline reached while waiting for {opts.wait_for!r}"
                )
            if now >= end:
                raise FetchError(
                    ErrorClass.MISSING,
                    f"{url}: {opts.wait_for!r} did not appear within {opts.wait_timeout:g}s",
                )
            time.sleep(min(_POLL, max(0.0, end - now)))

    def _height(self) -> int:
        value = self.driver.execute_script(
            "const e = document.scrollingElement || document.documentElement;"
            "return e ? e.scrollHeight : 0;"
        )
        return int(value or 0)

    def _scroll(self, times: int, deadline: float) -> None:
        for _ in range(times):
            before = self._height()
            self.driver.execute_script(
                "const e = document.scrollingElement || document.documentElement;"
                "window.scrollTo(0, e ? e.scrollHeight : 0);"
            )
            end = min(time.monotonic() + _SETTLE, deadline - _MARGIN)
            grew = False
            while time.monotonic() < end:
                time.sleep(_POLL)
                if self._height() > before:
                    grew = True
                    break
            if not grew:
                return

    def _mutations(self) -> int:
        value = self.driver.execute_script(
            "if (!window.__shoalObserver) {"
            "  window.__shoalMutations = 0;"
            "  window.__shoalObserver = new MutationObserver(l => { window.__shoalMutations += l.length; });"
            "  window.__shoalObserver.observe(document, {childList: true, subtree: true, characterData: true});"
            "}"
            "return window.__shoalMutations;"
        )
        return int(value or 0)

    def _click(self, selector: str, deadline: float) -> None:
        for _ in range(_MAX_CLICKS):
            if time.monotonic() >= deadline - _MARGIN:
                return
            before = self._mutations()
            clicked = self.driver.execute_script(
                "for (const el of document.querySelectorAll(arguments[0])) {"
                "  if (el.disabled || !el.getClientRects().length) continue;"
                "  el.scrollIntoView({block: 'center'}); el.click(); return true;"
                "}"
                "return false;",
                selector,
            )
            if not clicked:
                return
            # Wait until the click changed the page and the changes stopped for a moment.
            end = min(time.monotonic() + _SETTLE * 2, deadline - _MARGIN)
            seen, quiet_since = before, time.monotonic()
            changed = False
            while time.monotonic() < end:
                time.sleep(_POLL / 2)
                now_count = self._mutations()
                if now_count != seen:
                    seen, quiet_since, changed = now_count, time.monotonic(), True
                elif changed and time.monotonic() - quiet_since >= 0.2:
                    break
            if not changed:
                return

    def _same_site_frames(self, url: str) -> list[Any]:
        elements = self.driver.find_elements(By.CSS_SELECTOR, "iframe, frame")
        out = []
        for element in elements[:_MAX_FRAMES]:
            try:
                src = self.driver.execute_script("return arguments[0].src || '';", element)
            except StaleElementReferenceException:
                continue
            if src and _same_site(url, str(src)):
                out.append(element)
        return out

    def _frames(self, url: str, deadline: float) -> list[tuple[str, str]]:
        captured: list[tuple[str, str]] = []
        for element in self._same_site_frames(url):
            _left(deadline, "while capturing frames")
            try:
                self.driver.switch_to.frame(element)
                got = self.driver.execute_script(
                    "return [document.URL, document.documentElement ? document.documentElement.outerHTML : ''];"
                )
            except (NoSuchFrameException, StaleElementReferenceException):
                continue
            finally:
                self.driver.switch_to.default_content()
            frame_url, html = str(got[0]), str(got[1])
            if frame_url.startswith(("http://", "https://")) and _same_site(url, frame_url):
                captured.append((frame_url, html))
        return captured

    def _screenshot(self) -> bytes:
        try:
            metrics = self.cdp("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
            width = max(1, min(int(size.get("width", 1366)), 4096))
            height = max(1, min(int(size.get("height", 900)), _SCREENSHOT_MAX_HEIGHT))
            shot = self.cdp(
                "Page.captureScreenshot",
                {
                    "format": "png",
                    "captureBeyondViewport": True,
                    "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
                },
            )
            return base64.b64decode(shot["data"])
        except WebDriverException as exc:
            if _is_dead(exc):
                raise
            return self.driver.get_screenshot_as_png()


def _start_browser(
    *,
    proxy: FilteringProxy | None,
    chromium: str,
    chromedriver: str,
    user_agent: str | None,
    page_load_timeout: float,
    grace: float,
    ignore_certificate_errors: bool,
    start_timeout: float = 30.0,
) -> _Browser:
    """Start guard + chromedriver + Chromium and open a session (blocking). Raises BrowserError."""
    workdir = tempfile.mkdtemp(prefix="shoal-chromium-")
    profile = os.path.join(workdir, "profile")
    os.mkdir(profile)
    channel: ProxyChannel | None = None
    guard: subprocess.Popen[bytes] | None = None
    driver: webdriver.Remote | None = None
    try:
        if proxy is not None:
            channel = proxy.open_channel()
        else:
            channel = FilteringProxy(_RefuseAll(), max_body_bytes=0).open_channel()
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env["SE_OFFLINE"] = "true"
        with open(os.path.join(workdir, "driver.log"), "wb") as log_file:
            guard = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    "-c",
                    _GUARD_SOURCE,
                    workdir,
                    str(grace),
                    chromedriver,
                    f"--port={port}",
                    "--allowed-ips=127.0.0.1",
                ],
                stdin=subprocess.PIPE,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        end = time.monotonic() + start_timeout
        while not _port_open(port):
            if guard.poll() is not None:
                raise BrowserError(
                    ErrorClass.CRITICAL,
                    f"chromedriver {chromedriver} exited at start: {_tail(workdir)}; {INSTALL_HINT}",
                )
            if time.monotonic() > end:
                raise BrowserError(
                    ErrorClass.CRITICAL,
                    f"chromedriver did not listen within {start_timeout:g}s; {INSTALL_HINT}",
                )
            time.sleep(0.02)
        options = _options(
            chromium=_real_binary(chromium),
            profile=profile,
            workdir=workdir,
            proxy=channel.address,
            user_agent=user_agent,
            ignore_certificate_errors=ignore_certificate_errors,
        )
        address = f"http://127.0.0.1:{port}"
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
                f"Chromium {chromium} could not start: {_msg(exc)}; {INSTALL_HINT}",
            ) from None
        browser = _Browser(
            guard=guard,
            driver=driver,
            channel=channel,
            workdir=workdir,
            grace=grace,
            page_load_timeout=page_load_timeout,
        )
        driver.set_script_timeout(10)
        browser.cdp("Network.enable")
        # Every page must reach the proxy: no cache, no service worker answering for the network.
        browser.cdp("Network.setCacheDisabled", {"cacheDisabled": True})
        browser.cdp("Network.setBypassServiceWorker", {"bypass": True})
        browser.cdp("Browser.setDownloadBehavior", {"behavior": "deny"})
        return browser
    except BaseException as exc:
        if driver is not None:
            _close_connection(driver.command_executor)
        if guard is not None:
            with contextlib.suppress(OSError, ValueError):
                if guard.stdin is not None:
                    guard.stdin.close()
            with contextlib.suppress(OSError):
                guard.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                guard.wait(grace + 8)
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


class BrowserFetcher:
    """Renders pages in a pool of headless Chromium browsers (the ``render = "browser"`` rules).

    ``pool_size`` browsers at most, started lazily; each is replaced after
    ``recycle_pages`` pages, after a timeout, and after a crash (the page is
    then retried once on a fresh browser). All blocking Selenium calls run in
    the fetcher's own threads. ``max_body_bytes`` caps the kept body of a page
    (the browser still receives all of it). ``ignore_certificate_errors`` is for
    tests against self-signed servers only.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        *,
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
        self._proxy = FilteringProxy(
            policy, max_body_bytes=max_body_bytes, deny_hosts=BROWSER_SERVICE_HOSTS
        )
        # Renders and starts; stops (which may wait out a grace period) have their own threads.
        self._executor = ThreadPoolExecutor(
            max_workers=2 * pool_size, thread_name_prefix="shoal-browser"
        )
        self._stopper = ThreadPoolExecutor(
            max_workers=pool_size, thread_name_prefix="shoal-browser-stop"
        )
        self._idle: list[_Browser] = []
        self._live: set[_Browser] = set()
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
        opts = _Options.of(rule)
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
                except _Crashed as exc:
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

    async def _checkout(self, deadline: float) -> _Browser:
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

    def _start(self) -> _Browser:
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
        browser = _start_browser(
            proxy=self._proxy,
            chromium=chromium,
            chromedriver=chromedriver,
            user_agent=self.user_agent,
            page_load_timeout=self.page_load_timeout,
            grace=self.stop_grace,
            ignore_certificate_errors=self.ignore_certificate_errors,
        )
        return browser

    def _park(self, future: asyncio.Future[_Browser]) -> None:
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
        self, browser: _Browser, url: str, opts: _Options, deadline: float
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

    def _release(self, browser: _Browser) -> None:
        if (
            self._closed
            or browser.broken
            or not browser.alive()
            or browser.pages >= self.recycle_pages
        ):
            self._discard(browser)
        else:
            self._idle.append(browser)

    def _discard(self, browser: _Browser) -> None:
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
    browser = _start_browser(
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
            ErrorClass.CRITICAL, f"the test page did not render: {_msg(exc)}"
        ) from None
    finally:
        browser.stop()
        browser.channel.proxy.close()
    return product, time.monotonic() - t0


# Helpers.


def _close_connection(connection: Any) -> None:
    """Close Selenium's HTTP connection pool to chromedriver (untyped in Selenium)."""
    with contextlib.suppress(Exception):
        connection.close()


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _left(deadline: float, when: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise BrowserError(ErrorClass.TRANSIENT, f"fetch deadline reached {when}")
    return left


def _msg(exc: WebDriverException) -> str:
    text = (exc.msg or type(exc).__name__).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


_DEAD_MARKERS = (
    "invalid session id",
    "session deleted",
    "no such session",
    "chrome not reachable",
    "disconnected",
    "target crashed",
    "tab crashed",
    "page crash",
    "target window already closed",
    "unable to receive message from renderer",
    "connection refused",
    "max retries exceeded",
)


def _is_dead(exc: WebDriverException) -> bool:
    if isinstance(
        exc, (InvalidSessionIdException, NoSuchWindowException, SessionNotCreatedException)
    ):
        return True
    text = str(exc.msg or "").lower()
    return any(marker in text for marker in _DEAD_MARKERS)


def _version(status_line_version: str) -> str:
    """``HTTP/1.1`` -> ``1.1``, the form the HTTP fetcher uses."""
    return status_line_version.removeprefix("HTTP/") or "1.1"


def _is_html(content_type: str) -> bool:
    return content_type in ("", "text/html", "application/xhtml+xml")


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    default = 443 if parts.scheme.lower() == "https" else 80
    return (parts.hostname or "").lower(), port or default


_SECOND_LEVEL = frozenset(
    {"co", "com", "net", "org", "ac", "go", "or", "ne", "re", "gov", "edu", "mil", "pe", "kg"}
)


def _site(host: str) -> str:
    """The registrable domain of ``host``, approximated without the public suffix list.

    Two labels (``naver.com``), three under a two-letter country code whose
    second level is generic (``example.co.kr``); an IP address is its own site.
    """
    host = host.lower().rstrip(".")
    if not host or AddressPolicy().is_ip_literal(host):
        return host
    labels = host.split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _same_site(a: str, b: str) -> bool:
    """Whether two http(s) URLs belong to the same site (frames of other sites are not captured)."""
    try:
        ha, hb = urlsplit(a).hostname or "", urlsplit(b).hostname or ""
    except ValueError:
        return False
    return bool(ha) and bool(hb) and _site(ha) == _site(hb)


def _split_headers(headers: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, value in headers.items():
        for line in str(value).split("\n"):
            out.append((str(name), line))
    return out


def _devtools_headers(
    extra: dict[str, Any] | None, response: dict[str, Any]
) -> list[tuple[str, str]]:
    """Response headers in wire order when DevTools has the raw text, else as a dict."""
    if extra is not None and extra.get("headersText"):
        lines = str(extra["headersText"]).split("\r\n")[1:]
        return [
            (name.strip(), value.strip())
            for name, sep, value in (line.partition(":") for line in lines)
            if sep and name.strip()
        ]
    if extra is not None and extra.get("headers"):
        return _split_headers(dict(extra["headers"]))
    return _split_headers(dict(response.get("headers") or {}))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _tail(workdir: str, limit: int = 600) -> str:
    try:
        with open(os.path.join(workdir, "driver.log"), "rb") as f:
            data = f.read()[-limit:]
    except OSError:
        return "(no log)"
    return data.decode("utf-8", "replace").strip().replace("\n", " | ") or "(empty log)"
