"""The demo crawl's spec and what a crawl with it must end with, derived from :mod:`shoal.demo.data`.

:func:`spec_text` is the bundled ``demo.toml`` with a live server's URL and a
data folder filled in; :func:`expected` the exact sets of URLs a correct
crawl with it ends ``done``, ``failed`` (with the error class) and
``skipped`` (with the reason), so tests can assert them.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Any

from shoal.demo.data import (
    BLOG_PAGES,
    BLOG_POSTS,
    BOARD_PAGES,
    BOARD_POSTS,
    BROKEN_LINKS,
    EUCKR_PAGES,
    EUCKR_POSTS,
    NOTICE_IMAGE,
    REDIRECTS,
    ROBOTS_DISALLOW,
    SPECIAL_PAGES,
    SpecialPage,
    blog_list_path,
    board_list_path,
    board_post_path,
    euckr_list_path,
    euckr_post_path,
)

__all__ = ["all_site_paths", "expected", "spec_text"]


def spec_text(base_url: str, data: str | PathLike[str] = "shoal-data/demo") -> str:
    """``demo.toml`` ready to crawl a live demo server.

    ``{base_url}`` becomes the server's URL (``http://127.0.0.1:PORT``) and
    ``{data}`` the folder of the demo's frontier database and WARC files.
    """
    text = resources.files("shoal.demo").joinpath("demo.toml").read_text(encoding="utf-8")
    folder = Path(data).as_posix().rstrip("/") or "."
    folder = folder.replace("\\", "\\\\").replace('"', '\\"')
    return text.replace("{base_url}", base_url.rstrip("/")).replace("{data}", folder)


def _spec_limits() -> dict[str, Any]:
    data = tomllib.loads(spec_text("http://127.0.0.1"))
    limits: dict[str, Any] = data.get("limits", {})
    return limits


def _outcome(page: SpecialPage, fetch_timeout: float, max_retries: int) -> tuple[str, str]:
    """``(status, class or reason)`` a correct crawl gives a special page."""
    if any(page.path.startswith(p) for p in ROBOTS_DISALLOW):
        return "skipped", "robots"
    if page.delay >= fetch_timeout:
        return "failed", "transient"
    if page.first_status is not None and page.first_status >= 500 and max_retries < 1:
        return "failed", "transient"
    if page.status >= 500:
        return "failed", "transient"
    if page.status >= 400:
        return "failed", "permanent"
    return "done", ""


def all_site_paths() -> list[str]:
    """Every page of the blog and both boards (home and the special pages aside), list pages first."""
    paths = [blog_list_path(p) for p in range(1, BLOG_PAGES + 1)]
    paths += [board_list_path(p) for p in range(1, BOARD_PAGES + 1)]
    paths += [euckr_list_path(p) for p in range(1, EUCKR_PAGES + 1)]
    paths += [p.path for p in BLOG_POSTS]
    paths += [board_post_path(n) for n in range(1, BOARD_POSTS + 1)]
    paths += [euckr_post_path(n) for n in range(1, EUCKR_POSTS + 1)]
    return paths


def expected(base_url: str, *, detail_links: bool = False) -> dict[str, Any]:
    """What a correct crawl of the site with ``demo.toml`` ends with.

    Returns ``{"done": set of URLs, "failed": {URL: error class}, "skipped":
    {URL: reason}}`` with URLs in canonical (WHATWG) form. A worker extracts
    links from list pages only, so the broken link inside post 7 is never seen;
    ``detail_links=True`` gives the outcome for a crawler that also follows the
    links of detail pages (then ``/blog/posts/999`` fails permanent).
    """
    from shoal.urls import canonicalize

    base = base_url.rstrip("/") + "/"

    def url(path: str) -> str:
        return canonicalize(path, base).url

    limits = _spec_limits()
    fetch_timeout = float(limits.get("fetch_timeout", 60.0))
    max_retries = int(limits.get("max_retries", 3))

    done = {url("/")} | {url(p) for p in all_site_paths()} | {url(NOTICE_IMAGE)}
    failed: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for page in SPECIAL_PAGES:
        status, why = _outcome(page, fetch_timeout, max_retries)
        if status == "done":
            done.add(url(page.path))
        elif status == "failed":
            failed[url(page.path)] = why
        else:
            skipped[url(page.path)] = why
    hop = "/redirect/1"
    while hop in REDIRECTS:
        done.add(url(hop))
        hop = REDIRECTS[hop][1]
    done.add(url(hop))
    if detail_links:
        for target in BROKEN_LINKS.values():
            failed[url(target)] = "permanent"
    return {"done": done, "failed": failed, "skipped": skipped}
