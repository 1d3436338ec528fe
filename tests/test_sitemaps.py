"""Sitemaps and feeds as seeds: parsing hostile XML safely, gzip caps, dates, host mapping, crawls."""

from __future__ import annotations

import asyncio
import gzip
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from shoal.crawl import run_async, run_loop, start_crawl
from shoal.errors import ListingError
from shoal.fetch.sitemaps import Entry, HostMap, read_listing
from shoal.frontier import SqlFrontier
from shoal.frontier.tables import urls
from shoal.spec import parse_spec
from tests.sites.fresh import FreshSite
from tests.test_revisit import settled

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def test_sitemap_index_lists_child_sitemaps_with_lastmod() -> None:
    """A sitemap index yields its child sitemaps, their <lastmod> as epoch milliseconds."""
    body = (
        f"<?xml version='1.0'?><sitemapindex {NS}>"
        "<sitemap><loc>https://b.example/s1.xml.gz</loc><lastmod>2024-05-01</lastmod></sitemap>"
        "<sitemap><loc> https://b.example/s2.xml </loc></sitemap></sitemapindex>"
    ).encode()
    got = read_listing(body)
    assert got.kind == "sitemapindex"
    assert got.entries == [
        Entry("https://b.example/s1.xml.gz", 1714521600000),
        Entry("https://b.example/s2.xml", None),
    ]


def test_gzip_sitemap_is_inflated_and_bounded() -> None:
    """A gzip urlset is read; one that inflates past the cap is refused, not expanded."""
    body = gzip.compress(
        f"<urlset {NS}><url><loc>https://b.example/p/1</loc>"
        "<lastmod>2024-05-01T10:00:00+02:00</lastmod></url>"
        "<url><loc>javascript:alert(1)</loc></url></urlset>".encode()
    )
    got = read_listing(body)
    assert got.kind == "urlset"
    assert got.entries == [Entry("https://b.example/p/1", 1714550400000)]
    bomb = gzip.compress(b"<urlset>" + b" " * 5_000_000 + b"</urlset>")
    with pytest.raises(ListingError, match="inflates past"):
        read_listing(bomb, max_bytes=1_000_000)


def test_entity_declarations_are_refused() -> None:
    """A billion-laughs document is refused without expanding its entities."""
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b"<urlset><url><loc>&lol2;</loc></url></urlset>"
    )
    with pytest.raises(ListingError, match="unsafe XML"):
        read_listing(bomb)
    with pytest.raises(ListingError, match="not well-formed"):
        read_listing(b"<html><body>not a sitemap")
    with pytest.raises(ListingError, match="not a sitemap"):
        read_listing(b"<html><body>x</body></html>")


def test_rss_and_atom_items_become_page_urls() -> None:
    """RSS <item><link> and Atom <entry><link rel=alternate> are pages, with pubDate/updated."""
    rss = (
        b"<rss version='2.0'><channel><title>t</title><link>https://b.example/</link>"
        b"<item><link>https://b.example/p/2</link><pubDate>Wed, 01 May 2024 00:00:00 GMT</pubDate></item>"
        b"<item><title>no link</title></item></channel></rss>"
    )
    got = read_listing(rss)
    assert got.kind == "feed"
    assert got.entries == [Entry("https://b.example/p/2", 1714521600000)]
    atom = (
        b"<feed xmlns='http://www.w3.org/2005/Atom'><entry>"
        b"<link rel='edit' href='https://b.example/edit/3'/>"
        b"<link href='https://b.example/p/3'/><updated>2024-05-01T00:00:00Z</updated></entry></feed>"
    )
    assert read_listing(atom).entries == [Entry("https://b.example/p/3", 1714521600000)]


def test_entries_are_capped() -> None:
    """No more than max_entries entries come out of one document."""
    body = f"<urlset {NS}>" + "".join(
        f"<url><loc>https://b.example/p/{i}</loc></url>" for i in range(100)
    )
    got = read_listing((body + "</urlset>").encode(), max_entries=10)
    assert len(got.entries) == 10


def test_host_map_rewrites_production_hosts_only() -> None:
    """A mapped host takes the crawled host and the document's scheme; others stay as they are."""
    m = HostMap({"blog.example.com": "127.0.0.1:8611", "cdn.example.com:8443": "127.0.0.1:9"})
    base = "http://127.0.0.1:8611/sitemap.xml"
    assert m.map("https://blog.example.com/post/1?a=b", base) == "http://127.0.0.1:8611/post/1?a=b"
    assert m.map("https://BLOG.example.com", base) == "http://127.0.0.1:8611/"
    assert m.map("https://cdn.example.com:8443/x", base) == "http://127.0.0.1:9/x"
    assert m.map("https://cdn.example.com/x", base) == "https://cdn.example.com/x"
    assert m.map("https://other.example.org/x", base) == "https://other.example.org/x"
    assert not HostMap({})


# -- crawls seeded by sitemaps and feeds -----------------------------------------------------

SPEC = """\
[crawl]
name = "seeds"
seeds = [{seeds}]
host_map = {{ "blog.example.com" = "{hostport}" }}
{extra}

[[rules]]
name = "post"
glob = "/post/*"
kind = "detail"

[[rules]]
name = "about"
glob = "/about"
kind = "detail"

[scope]
allow_private = true

[politeness]
delay = 0
jitter = 0

[storage]
frontier = "sqlite:///{data}/frontier.sqlite"
archive = "{data}/warc"
fsync = false

[worker]
concurrency = 4
flush_interval = 0.05
"""


def crawl_site(site: FreshSite, tmp_path: Path, seeds: str, extra: str = "") -> dict[str, Any]:
    text = SPEC.format(seeds=seeds, hostport=site.hostport, data=tmp_path, extra=extra)
    spec = parse_spec(text)
    frontier = SqlFrontier(spec.frontier_url())
    try:
        crawl = start_crawl(frontier, spec, text)
        _stats, finished = run_loop(
            run_async(spec, frontier, crawl, progress=False, install_signals=False)
        )
        assert finished
        return {r.url: r for r in frontier.query(select(urls))}
    finally:
        frontier.close()


def test_sitemap_index_and_gzip_sitemaps_seed_the_mapped_host(tmp_path: Path) -> None:
    """An index's gzip sitemap and plain sitemap give the posts and pages, mapped; foreign hosts stay out."""
    with FreshSite() as site:
        for t in ("one", "two", "three"):
            site.publish(t)
        rows = crawl_site(site, tmp_path, f'{{ sitemap = "{site.url("/sitemap_index.xml")}" }}')
        assert site.pages() == [
            "/about",
            "/post/1",
            "/post/2",
            "/post/3",
            "/sitemap-pages.xml",
            "/sitemap-posts.xml.gz",
            "/sitemap_index.xml",
        ]
        assert all(site.hits(p) == 1 for p in site.pages())
        assert site.hits("/robots.txt") == 1
        assert {u: r.status for u, r in rows.items()} == {site.url(p): "done" for p in site.pages()}
        assert rows[site.url("/sitemap-posts.xml.gz")].kind == "sitemap"
        assert not any("example" in u for u in rows)


def test_rss_atom_and_robots_sitemaps_seed_pages(tmp_path: Path) -> None:
    """RSS and Atom entries become pages; sitemaps = "robots" follows robots.txt's Sitemap: line."""
    with FreshSite() as site:
        site.publish("one")
        site.publish("two")
        rows = crawl_site(
            site,
            tmp_path,
            f'{{ feed = "{site.url("/feed.rss")}" }}, {{ feed = "{site.url("/atom.xml")}" }}',
        )
        assert site.hits("/post/1") == 1 and site.hits("/post/2") == 1
        assert rows[site.url("/feed.rss")].kind == "feed"
        assert site.hits("/sitemap_index.xml") == 0
    with FreshSite() as site:
        site.publish("one")
        crawl_site(site, tmp_path / "robots", f'"{site.url("/about")}"', 'sitemaps = "robots"')
        assert site.hits("/sitemap_index.xml") == 1
        assert site.hits("/post/1") == 1 and site.hits("/about") == 1


def test_sitemap_lastmod_refreshes_exactly_the_changed_pages(tmp_path: Path) -> None:
    """On the sitemap's revisit, a page whose <lastmod> is after its last fetch is fetched again; others are not."""
    with FreshSite(now=time.time()) as site:
        for t in ("one", "two", "three"):
            site.publish(t)
        text = SPEC.format(
            seeds=f'"{site.url("/list")}", {{ sitemap = "{site.url("/sitemap_index.xml")}" }}',
            hostport=site.hostport,
            data=tmp_path,
            extra="",
        )
        text += '\n[[rules]]\nname = "list"\nregex = "/list$"\nkind = "list"\nrevisit = "1h"\n'
        spec = parse_spec(text)
        frontier = SqlFrontier(spec.frontier_url())
        crawl = start_crawl(frontier, spec, text)

        async def main() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(
                run_async(spec, frontier, crawl, progress=False, install_signals=False, stop=stop)
            )
            try:
                await settled(frontier, crawl.id)
                assert [site.hits(f"/post/{i}") for i in (1, 2, 3)] == [1, 1, 1]
                site.advance(120)
                site.comment(2, "news")
                frontier._offset_ms += 3_600_000 + 1000
                await settled(frontier, crawl.id)
                assert [site.hits(f"/post/{i}") for i in (1, 2, 3)] == [1, 2, 1]
                assert site.hits("/post/2", 200) == 2
                assert site.hits("/sitemap-posts.xml.gz") == 2 and site.hits("/list") == 2
            finally:
                stop.set()
                await asyncio.wait_for(task, 60)

        try:
            asyncio.run(main())
        finally:
            frontier.close()
