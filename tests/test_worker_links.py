"""Links in real crawls: pagination and depth, the link-flood cut and the page budget (the hostile site on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from shoal.exchange import FetchResult
from shoal.frontier import SqlFrontier
from shoal.frontier.contract import ClaimedURL
from shoal.frontier.tables import events, urls
from shoal.spec import LimitsSpec
from shoal.urls import HostScope
from shoal.worker.links import LinkExtractor, Router, page_print, url_shape
from shoal.worker.markup import READ_LINKS_PER_CAP
from tests.sites.hostile import (
    BLOG_PAGES,
    FLOOD_LINKS,
    QUOTE_PAGES,
    HostileSite,
    run_crawl,
    spec_text,
    start_hostile_site,
)

DEFAULT_BODY_CAP = 20 * 1024 * 1024


@pytest.fixture
def site() -> Iterator[HostileSite]:
    """The hostile site on free ports of 127.0.0.1."""
    s = start_hostile_site()
    yield s
    s.stop()


def rows(spec: Any, table: Any = urls) -> list[Any]:
    """Every row of a frontier table."""
    f = SqlFrontier(spec.frontier_url(), create=False)
    try:
        return list(f.query(select(table)))
    finally:
        f.close()


def test_url_shape_and_page_print() -> None:
    """Pages of one pagination share a URL shape; pages that differ only in numbers share a print."""
    assert url_shape("http://h/blog/page/3/") == url_shape("http://h/blog/page/14/")
    assert url_shape("http://h/list?page=2") != url_shape("http://h/list")
    assert page_print("<p>page 41: no posts</p>") == page_print(b"<div>page 42: no posts</div>")
    assert page_print("<p>alpha bravo</p>") != page_print("<p>alpha charlie</p>")


def test_no_rules_crawl_follows_a_long_pagination_to_its_end(
    site: HostileSite, tmp_path: Path
) -> None:
    """With no rules and the default depth, a 25-page blog is fetched whole: pagination costs no depth."""
    text = spec_text("blog", tmp_path, [f"{site.base_url}/blog/"], [])
    spec, _ = run_crawl(text)
    assert spec.limits.max_depth == 10 < BLOG_PAGES
    got = {r.url: r for r in rows(spec)}
    pages = [f"{site.base_url}/blog/"] + [
        f"{site.base_url}/blog/page/{n}/" for n in range(2, BLOG_PAGES + 1)
    ]
    assert [got[u].status for u in pages] == ["done"] * BLOG_PAGES
    assert {got[u].depth for u in pages[1:]} == {1}  # the first hop changes the URL shape
    posts = [r for u, r in got.items() if "/blog/post/" in u]
    assert len(posts) == 2 * BLOG_PAGES and all(r.status == "done" for r in posts)


def test_a_list_whose_only_link_is_its_next_page_is_not_barren(
    site: HostileSite, tmp_path: Path
) -> None:
    """`follow = ["li.next a"]` with max_depth = 3 fetches all 10 list pages: each shows new data."""
    text = spec_text(
        "quotes",
        tmp_path,
        [f"{site.base_url}/quotes/page/1/"],
        [{"name": "quotes", "glob": "/quotes/*", "kind": "list", "follow": ["li.next a"]}],
        {"limits": {"max_depth": 3}},
    )
    spec, _ = run_crawl(text)
    got = {r.url: r for r in rows(spec)}
    want = {f"{site.base_url}/quotes/page/{n}/" for n in range(1, QUOTE_PAGES + 1)}
    assert set(got) == want
    assert all(got[u].status == "done" and got[u].depth == 0 for u in want)


def test_a_link_flood_is_cut_and_the_cut_recorded(site: HostileSite, tmp_path: Path) -> None:
    """A 560,000-link page (~19 MB) with the defaults: 5,000 links taken, the next recorded skipped (max_links), the cut counted in an event."""
    text = spec_text(
        "flood",
        tmp_path,
        [f"{site.base_url}/flood"],
        [],
        {"limits": {"max_body_bytes": DEFAULT_BODY_CAP}},
    )
    spec, stats = run_crawl(text)
    cap = spec.limits.max_links_per_page
    assert cap == 5000
    got = {r.url: r for r in rows(spec)}
    assert got[f"{site.base_url}/flood"].status == "done"
    flood = {u: r for u, r in got.items() if "/post/f" in u}
    assert len(flood) == cap + 1
    assert sum(r.skip_reason == "robots" for r in flood.values()) == cap
    marker = [u for u, r in flood.items() if r.skip_reason == "max_links"]
    assert marker == [f"{site.base_url}/post/f{cap}"]
    assert stats.links_cut == FLOOD_LINKS - cap
    ev = [e for e in rows(spec, events) if e.kind == "max_links"]
    assert len(ev) == 1 and f"{FLOOD_LINKS - cap} link(s)" in ev[0].message


def test_no_link_is_stored_that_max_pages_can_never_reach(
    site: HostileSite, tmp_path: Path
) -> None:
    """With max_pages = 3, the flood page adds only the 2 links the budget can still fetch (and the cut marker)."""
    text = spec_text(
        "budget",
        tmp_path,
        [f"{site.base_url}/flood?n=20000"],
        [],
        {"limits": {"max_body_bytes": DEFAULT_BODY_CAP, "max_pages": 3}},
    )
    spec, _ = run_crawl(text)
    flood = [r for r in rows(spec) if "/post/f" in r.url]
    assert sorted((r.url.rsplit("/", 1)[1], r.skip_reason) for r in flood) == [
        ("f0", "robots"),
        ("f1", "robots"),
        ("f5000", "max_links"),
    ]


def test_a_cut_past_the_parsed_part_is_still_recorded() -> None:
    """When every link tag read is known, the first tag left unread becomes the max_links marker and the rest are counted."""
    cap = 10
    read = READ_LINKS_PER_CAP * cap
    tags = ['<a href="/same">s</a>'] * read + [f'<a href="/d{i}">d</a>' for i in range(20)]
    body = ("<html><body>" + "\n".join(tags) + "</body></html>").encode()
    page = FetchResult(
        "http://h.test/", 200, "OK", "1.1", [("Content-Type", "text/html")], body, []
    )
    ex = LinkExtractor(Router([]), HostScope(["h.test"]), LimitsSpec(max_links_per_page=cap))
    c = ClaimedURL(1, "http://h.test/", 0, -1, "list", 0, 0, 1, 7, 0)
    got = ex.extract(c, None, page)
    assert [(n.url, n.skip_reason) for n in got.links] == [
        ("http://h.test/same", None),
        ("http://h.test/d0", "max_links"),
    ]
    assert got.cut == 20
