"""Talking to chromedriver and Chrome DevTools: rebuilding a page's exchange, reading their errors.

:func:`devtools_record` rebuilds the main document's HTTP exchange from the
performance log (``Network.*`` events) and ``Network.getResponseBody``: the
record of an ``https://`` page (whose bytes the proxy only tunnels) and the
fallback when the proxy did not see the page (e.g. served by a service
worker). Chrome hands over the body *decoded*, so ``Content-Encoding`` and
``Transfer-Encoding`` are dropped from the headers and ``Content-Length`` is
set to the decoded size: the record stays self-consistent but is not
byte-exact as it is for http pages. The result is always the first hop: for a
redirect, the 3xx with an empty body.

:func:`is_dead` tells a WebDriver error that means the browser or chromedriver
is gone (the page is retried on a fresh browser) from one about the page.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import (
    InvalidSessionIdException,
    NoSuchWindowException,
    SessionNotCreatedException,
    WebDriverException,
)

from shoal.errors import BrowserError, ErrorClass
from shoal.fetch.proxy.channel import ProxyChannel, endpoint
from shoal.fetch.proxy.records import ProxyRecord
from shoal.urls import normalize_url

__all__ = ["devtools_record", "is_dead", "message", "split_headers"]

log = logging.getLogger(__name__)

Cdp = Callable[..., Any]


def devtools_record(
    driver: webdriver.Remote, cdp: Cdp, channel: ProxyChannel, url: str
) -> ProxyRecord:
    """The page's exchange rebuilt from DevTools network events (https, or no proxy record)."""
    entries = driver.execute("getLog", {"type": "performance"})["value"]
    top = cdp("Page.getFrameTree")["frameTree"]["frame"]["id"]
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
    record = ProxyRecord(url=url, method=str(request.get("method", "GET")), started_at=time.time())
    host, port = endpoint(url) or ("", 0)
    tunnel_error = channel.tunnel_error(host, port)
    if tunnel_error is not None and tunnel_error[0] in ("address_policy", "browser_service"):
        record.error, record.detail = tunnel_error
        return record
    if rid is None:
        if tunnel_error is not None:
            record.error, record.detail = tunnel_error
            return record
        raise BrowserError(ErrorClass.UNKNOWN, f"{url}: the browser made no request for the page")
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
    headers = devtools_headers(extra, response)
    record.request_headers = split_headers(raw_request_headers or request_headers)
    record.peer_ip = channel.tunnel_peer(host, port) or response.get("remoteIPAddress")
    timing = response.get("timing") or {}
    if timing.get("receiveHeadersEnd") is not None:
        record.elapsed = float(timing["receiveHeadersEnd"]) / 1000.0
    body = b""
    if first_redirect is None:
        try:
            got = cdp("Network.getResponseBody", {"requestId": rid})
            text = str(got.get("body", ""))
            body = base64.b64decode(text) if got.get("base64Encoded") else text.encode("utf-8")
        except WebDriverException as exc:
            if is_dead(exc):
                raise
            log.warning("%s: response body not available from DevTools: %s", url, message(exc))
            record.truncated = "disconnect"
    drop = {"content-encoding", "transfer-encoding", "content-length"}
    record.headers = [(k, v) for k, v in headers if k.lower() not in drop]
    if first_redirect is None:
        record.headers.append(("Content-Length", str(len(body))))
    record.body = body
    return record


def split_headers(headers: dict[str, Any]) -> list[tuple[str, str]]:
    """DevTools' header dict as (name, value) pairs, one per line of a folded value."""
    out: list[tuple[str, str]] = []
    for name, value in headers.items():
        for line in str(value).split("\n"):
            out.append((str(name), line))
    return out


def devtools_headers(
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
        return split_headers(dict(extra["headers"]))
    return split_headers(dict(response.get("headers") or {}))


def message(exc: WebDriverException) -> str:
    """The first line of a WebDriver error, at most 300 characters."""
    text = (exc.msg or type(exc).__name__).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


DEAD_MARKERS = (
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


def is_dead(exc: WebDriverException) -> bool:
    """Whether the error means the browser or chromedriver is gone (retry on a fresh browser)."""
    if isinstance(
        exc, (InvalidSessionIdException, NoSuchWindowException, SessionNotCreatedException)
    ):
        return True
    text = str(exc.msg or "").lower()
    return any(marker in text for marker in DEAD_MARKERS)
