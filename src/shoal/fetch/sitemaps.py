"""Seeds from sitemaps and feeds: sitemap indexes, (gzip) sitemaps, RSS and Atom, read as hostile input.

A sitemap or feed is fetched like any page (through the frontier as a URL of
kind ``sitemap`` or ``feed``: politeness, robots.txt, address policy, the WARC
archive); this module only reads the bytes that came back and maps the hosts
they name.

Guarantees:

- XML is parsed by :mod:`defusedxml`: a document with entity declarations
  (billion laughs, external entities) is refused, never expanded; no network
  access is ever made by the parser.
- A gzip body is inflated with a cap (``max_bytes``): a gzip bomb ends the
  read with :class:`ListingError`, not a full memory.
- At most ``max_entries`` entries are returned per document (the sitemap
  protocol's limit is 50,000); entries that are not ``http(s)`` URLs are dropped.
- ``<lastmod>`` (W3C datetime), Atom ``<updated>``/``<published>`` and RSS
  ``<pubDate>`` become epoch milliseconds; an unreadable date is None.
- :class:`HostMap` rewrites a production host (``blog.example.com``) to the
  host crawled (``127.0.0.1:8611``) with the scheme of the document that named
  it; other hosts are left as they are (the crawl's scope then decides).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from shoal.content.codings import StreamDecoder
from shoal.errors import ListingError

__all__ = ["Entry", "HostMap", "Listing", "ListingError", "read_listing"]

MAX_ENTRIES = 50_000


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry: a page (of a sitemap or a feed) or a child sitemap (of an index)."""

    url: str
    lastmod: int | None = None
    """When the page last changed (epoch ms), if the document says."""


@dataclass(frozen=True, slots=True)
class Listing:
    """What one sitemap or feed lists.

    ``kind`` is ``sitemapindex`` (entries are child sitemaps), ``urlset``
    (entries are pages) or ``feed`` (RSS or Atom items: pages).
    """

    kind: Literal["sitemapindex", "urlset", "feed"]
    entries: list[Entry]


def _local(tag: Any) -> str:
    """An element's name without its namespace (``{ns}loc`` -> ``loc``)."""
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1].lower()


def _inflate(body: bytes, max_bytes: int) -> bytes:
    """A gzipped sitemap inflated through the one content decoder, capped at ``max_bytes``."""
    decoder = StreamDecoder(["gzip"], max_bytes)
    out = decoder.feed(body)
    if decoder.failed or decoder.broken:
        raise ListingError(f"corrupt gzip data: {decoder.failed or decoder.broken}")
    if decoder.over:
        raise ListingError(f"inflates past {max_bytes} bytes (a gzip bomb?)")
    return out


def _date(text: str | None) -> int | None:
    """W3C datetime (``2024-05-01``, ``2024-05-01T10:00:00+02:00``, ``...Z``) or RFC 822, as epoch ms."""
    if not text:
        return None
    text = text.strip()
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        try:
            dt = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _web_url(text: str | None) -> str | None:
    if not text:
        return None
    url = text.strip()
    return url if url.lower().startswith(("http://", "https://")) and len(url) <= 4096 else None


def _child_text(el: Any, *names: str) -> str | None:
    for child in el:
        if _local(child.tag) in names and child.text:
            return str(child.text)
    return None


def _atom_link(entry: Any) -> str | None:
    fallback = None
    for child in entry:
        if _local(child.tag) != "link":
            continue
        href = child.get("href")
        rel = (child.get("rel") or "alternate").lower()
        if rel == "alternate" and href:
            return str(href)
        fallback = fallback or href
    return str(fallback) if fallback else None


def read_listing(
    body: bytes, *, max_bytes: int = 50 * 1024 * 1024, max_entries: int = MAX_ENTRIES
) -> Listing:
    """What a sitemap index, sitemap, RSS or Atom document lists; gzip bodies are inflated first.

    Raises :class:`ListingError` naming the problem when the body is not one of
    those (or is refused as unsafe, or inflates past ``max_bytes``).
    """
    if body[:2] == b"\x1f\x8b":
        body = _inflate(body, max_bytes)
    if len(body) > max_bytes:
        raise ListingError(f"larger than {max_bytes} bytes")
    try:
        root = fromstring(body, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise ListingError(f"refused unsafe XML ({type(exc).__name__})") from None
    except Exception as exc:  # ElementTree.ParseError and expat errors: not XML
        raise ListingError(f"not well-formed XML: {exc}") from None
    name = _local(root.tag)
    entries: list[Entry] = []

    def add(url: str | None, lastmod: int | None) -> bool:
        u = _web_url(url)
        if u is not None:
            entries.append(Entry(u, lastmod))
        return len(entries) < max_entries

    if name in ("sitemapindex", "urlset"):
        child_name = "sitemap" if name == "sitemapindex" else "url"
        for el in root:
            if _local(el.tag) == child_name and not add(
                _child_text(el, "loc"), _date(_child_text(el, "lastmod"))
            ):
                break
        return Listing("sitemapindex" if name == "sitemapindex" else "urlset", entries)
    if name in ("rss", "rdf"):
        items = root.iter()
        for el in items:
            if _local(el.tag) != "item":
                continue
            link = _child_text(el, "link") or el.get(
                "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}about"
            )
            when = _date(_child_text(el, "pubdate", "date", "updated"))
            if not add(link, when):
                break
        return Listing("feed", entries)
    if name == "feed":
        for el in root:
            if _local(el.tag) == "entry" and not add(
                _atom_link(el), _date(_child_text(el, "updated", "published"))
            ):
                break
        return Listing("feed", entries)
    raise ListingError(
        f"root element <{name or '?'}> is not a sitemap (<urlset>, <sitemapindex>) or a feed (<rss>, <feed>)"
    )


class HostMap:
    """Maps the hosts a sitemap or feed names (production) to the host crawled (a mirror, a staging copy).

    Keys and values are ``host`` or ``host:port``; a key without a port matches
    the host on any port. A mapped URL takes the scheme of the document that
    named it (``base``), since the crawled copy serves what its own sitemap
    URL was fetched with.
    """

    def __init__(self, table: dict[str, str]) -> None:
        self._table = {k.lower(): v for k, v in table.items()}

    def __bool__(self) -> bool:
        return bool(self._table)

    def map(self, url: str, base: str) -> str:
        """``url`` with its host replaced when the table maps it, else ``url`` unchanged."""
        if not self._table:
            return url
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
            port = parts.port
        except ValueError:
            return url
        target = None
        if port is not None:
            target = self._table.get(f"{host}:{port}")
        if target is None:
            target = self._table.get(host)
        if target is None:
            return url
        scheme = urlsplit(base).scheme or parts.scheme
        return urlunsplit((scheme, target, parts.path or "/", parts.query, ""))
