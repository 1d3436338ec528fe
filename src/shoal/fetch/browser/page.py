"""What a rule does to a loaded page: wait for a selector, scroll, click, capture frames and a screenshot.

Every function is blocking (Selenium calls) and bounded by the fetch's
deadline, minus :data:`MARGIN` so that the browser's own timeouts fire first.
A scroll or click stops as soon as the page stops changing; frames are
captured only when they belong to the page's own site.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchFrameException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.by import By

from shoal.errors import BrowserError, ErrorClass, FetchError
from shoal.fetch.address import AddressPolicy
from shoal.fetch.browser.devtools import is_dead
from shoal.spec import Rule

__all__ = [
    "MARGIN",
    "RenderOptions",
    "capture_frames",
    "click",
    "left",
    "present",
    "same_site_frames",
    "screenshot",
    "scroll",
    "wait_for",
]

_MAX_CLICKS = 25
"""Clicks per ``click`` selector on one page (a "more comments" button pressed until gone)."""
_MAX_FRAMES = 10
_POLL = 0.05
_SETTLE = 1.0
"""Seconds a scroll or click waits for the page to change before giving up on it."""
_SCREENSHOT_MAX_HEIGHT = 16384
MARGIN = 0.3
"""Seconds kept back from the deadline so the browser's own timeouts fire before ours."""


@dataclass(slots=True, frozen=True)
class RenderOptions:
    """What the rule asks of the browser for one page, and the page's extra request headers."""

    wait_for: str | None = None
    wait_timeout: float = 10.0
    scroll: int = 0
    click: tuple[str, ...] = ()
    frames: bool = False
    screenshot: bool = False
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, rule: Rule | None, headers: tuple[tuple[str, str], ...] = ()) -> RenderOptions:
        """The options of ``rule`` (the defaults when None), with ``headers`` for the page's host."""
        if rule is None:
            return cls(headers=headers)
        return cls(
            headers=headers,
            wait_for=rule.wait_for,
            wait_timeout=rule.wait_timeout,
            scroll=rule.scroll,
            click=tuple(rule.click),
            frames=rule.frames,
            screenshot=rule.screenshot,
        )


def left(deadline: float, when: str) -> float:
    """Seconds left before ``deadline``; raises TRANSIENT BrowserError when none are."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise BrowserError(ErrorClass.TRANSIENT, f"fetch deadline reached {when}")
    return left


def present(driver: webdriver.Remote, selector: str, frames: bool, url: str) -> bool:
    """Whether ``selector`` matches in the page, or (with ``frames``) in one of its same-site frames."""
    if driver.find_elements(By.CSS_SELECTOR, selector):
        return True
    if not frames:
        return False
    for element in same_site_frames(driver, url):
        try:
            driver.switch_to.frame(element)
            if driver.find_elements(By.CSS_SELECTOR, selector):
                return True
        except (NoSuchFrameException, StaleElementReferenceException):
            continue
        finally:
            driver.switch_to.default_content()
    return False


def wait_for(driver: webdriver.Remote, url: str, opts: RenderOptions, deadline: float) -> None:
    """Wait until the rule's selector appears: MISSING after ``wait_timeout``, TRANSIENT at the deadline."""
    assert opts.wait_for is not None
    end = time.monotonic() + opts.wait_timeout
    while True:
        if present(driver, opts.wait_for, opts.frames, url):
            return
        now = time.monotonic()
        if now >= deadline - MARGIN:
            raise BrowserError(
                ErrorClass.TRANSIENT, f"deadline reached while waiting for {opts.wait_for!r}"
            )
        if now >= end:
            raise FetchError(
                ErrorClass.MISSING,
                f"{url}: {opts.wait_for!r} did not appear within {opts.wait_timeout:g}s",
            )
        time.sleep(min(_POLL, max(0.0, end - now)))


def _height(driver: webdriver.Remote) -> int:
    value = driver.execute_script(
        "const e = document.scrollingElement || document.documentElement;"
        "return e ? e.scrollHeight : 0;"
    )
    return int(value or 0)


def scroll(driver: webdriver.Remote, times: int, deadline: float) -> None:
    """Scroll to the bottom up to ``times`` times, stopping when the page no longer grows."""
    for _ in range(times):
        before = _height(driver)
        driver.execute_script(
            "const e = document.scrollingElement || document.documentElement;"
            "window.scrollTo(0, e ? e.scrollHeight : 0);"
        )
        end = min(time.monotonic() + _SETTLE, deadline - MARGIN)
        grew = False
        while time.monotonic() < end:
            time.sleep(_POLL)
            if _height(driver) > before:
                grew = True
                break
        if not grew:
            return


def _mutations(driver: webdriver.Remote) -> int:
    value = driver.execute_script(
        "if (!window.__shoalObserver) {"
        "  window.__shoalMutations = 0;"
        "  window.__shoalObserver = new MutationObserver(l => { window.__shoalMutations += l.length; });"
        "  window.__shoalObserver.observe(document, {childList: true, subtree: true, characterData: true});"
        "}"
        "return window.__shoalMutations;"
    )
    return int(value or 0)


def click(driver: webdriver.Remote, selector: str, deadline: float) -> None:
    """Click the first visible match of ``selector`` until it is gone or the page stops changing."""
    for _ in range(_MAX_CLICKS):
        if time.monotonic() >= deadline - MARGIN:
            return
        before = _mutations(driver)
        clicked = driver.execute_script(
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
        end = min(time.monotonic() + _SETTLE * 2, deadline - MARGIN)
        seen, quiet_since = before, time.monotonic()
        changed = False
        while time.monotonic() < end:
            time.sleep(_POLL / 2)
            now_count = _mutations(driver)
            if now_count != seen:
                seen, quiet_since, changed = now_count, time.monotonic(), True
            elif changed and time.monotonic() - quiet_since >= 0.2:
                break
        if not changed:
            return


def same_site_frames(driver: webdriver.Remote, url: str) -> list[Any]:
    """The iframe elements (at most 10) whose source belongs to the page's own site."""
    elements = driver.find_elements(By.CSS_SELECTOR, "iframe, frame")
    out = []
    for element in elements[:_MAX_FRAMES]:
        try:
            src = driver.execute_script("return arguments[0].src || '';", element)
        except StaleElementReferenceException:
            continue
        if src and _same_site(url, str(src)):
            out.append(element)
    return out


def capture_frames(driver: webdriver.Remote, url: str, deadline: float) -> list[tuple[str, str]]:
    """(URL, outer HTML) of each same-site frame."""
    captured: list[tuple[str, str]] = []
    for element in same_site_frames(driver, url):
        left(deadline, "while capturing frames")
        try:
            driver.switch_to.frame(element)
            got = driver.execute_script(
                "return [document.URL, document.documentElement ? document.documentElement.outerHTML : ''];"
            )
        except (NoSuchFrameException, StaleElementReferenceException):
            continue
        finally:
            driver.switch_to.default_content()
        frame_url, html = str(got[0]), str(got[1])
        if frame_url.startswith(("http://", "https://")) and _same_site(url, frame_url):
            captured.append((frame_url, html))
    return captured


def screenshot(driver: webdriver.Remote, cdp: Callable[..., Any]) -> bytes:
    """A PNG of the whole page (height capped), or of the viewport when DevTools cannot."""
    try:
        metrics = cdp("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
        width = max(1, min(int(size.get("width", 1366)), 4096))
        height = max(1, min(int(size.get("height", 900)), _SCREENSHOT_MAX_HEIGHT))
        shot = cdp(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            },
        )
        return base64.b64decode(shot["data"])
    except WebDriverException as exc:
        if is_dead(exc):
            raise
        return driver.get_screenshot_as_png()


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
