"""What a worker does for revisits, sitemaps and feeds: conditional requests, revisit records, due times.

The worker loop calls these at three points: building the request
(:func:`request_headers`), archiving the answer (:func:`archive`) and settling
the outcome (:func:`settle`). Sitemap and feed URLs (kinds ``sitemap`` and
``feed``) are read by :func:`listing_links` into the URLs they list.

Guarantees:

- A 304 to a conditional request, and a 200 whose payload digest equals the
  last full capture's, are archived as ``revisit`` records that refer to that
  capture; nothing else is ever archived as a revisit. Such an answer extracts
  no links (the page has none that are new).
- Any other answer is archived in full (``write_exchange``) and, for a 200,
  becomes the URL's new payload (its digest, record and time), which later
  revisits refer to.
- A ``done`` outcome of a rule with ``revisit`` carries its next due time
  (:func:`shoal.frontier.revisit.next_revisit`); sitemaps and feeds come due
  with the shortest revisit of the crawl's sources.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shoal.archive import WarcRef, WarcWriter
from shoal.archive.encode import sha1_digest
from shoal.errors import ListingError, URLError
from shoal.exchange import FetchResult
from shoal.fetch.sitemaps import HostMap, read_listing
from shoal.frontier.contract import ClaimedURL, NewURL, Outcome, Status
from shoal.frontier.revisit import (
    PayloadRef,
    Verdict,
    conditional_headers,
    next_revisit,
    validators,
    verdict,
)
from shoal.spec import Spec
from shoal.urls import Canonical, HostScope, canonicalize

__all__ = [
    "LISTING_KINDS",
    "Archived",
    "RevisitPlan",
    "archive",
    "idle_seconds",
    "listing_links",
    "new_pages_message",
    "request_headers",
    "settle",
    "source_urls",
    "source_urls_of",
]

log = logging.getLogger(__name__)

LISTING_KINDS = ("sitemap", "feed")
"""URL kinds whose body lists other URLs (read here, not by the HTML link extractor)."""


@dataclass(frozen=True, slots=True)
class RevisitPlan:
    """The crawl's revisit settings, read once from the spec.

    ``keeps_open`` is True when any rule or source is revisited: the crawl is
    then never finished, and its workers wait for the next due page.
    """

    rules: tuple[tuple[float | None, float | None], ...]
    sources: float | None
    keeps_open: bool

    @classmethod
    def of(cls, spec: Spec) -> RevisitPlan:
        """The plan of a spec: per rule ``(revisit, revisit_for)`` and the sources' interval."""
        rules = tuple((r.revisit, r.revisit_for) for r in spec.rules)
        intervals = [r.revisit for r in spec.rules if r.revisit is not None]
        sources = None
        if spec.crawl.sources or spec.crawl.sitemaps:
            sources = min(intervals) if intervals else None
        return cls(rules, sources, bool(intervals))

    def due(self, c: ClaimedURL, now: int) -> int | None:
        """When a page just fetched is due again (ms), or None."""
        first = c.previous.first_fetched_at if c.previous is not None else None
        if c.kind in LISTING_KINDS:
            return next_revisit(now, first, self.sources, None)
        if 0 <= c.rule < len(self.rules):
            every, window = self.rules[c.rule]
            return next_revisit(now, first, every, window)
        return None


def request_headers(c: ClaimedURL) -> tuple[tuple[str, str], ...]:
    """The conditional headers of a refetch (none on a first fetch)."""
    return conditional_headers(c.previous)


@dataclass(frozen=True, slots=True)
class Archived:
    """Where an answer went in the archive and what it was compared with the last capture."""

    ref: WarcRef
    verdict: Verdict
    payload: PayloadRef | None
    """The new full capture (a 200 archived in full), else None (the stored one stays)."""


def archive(
    writer: WarcWriter, c: ClaimedURL, result: FetchResult, fetched_at: float | None
) -> Archived:
    """Archive ``result``: a ``revisit`` record when nothing changed, else the whole exchange.

    Runs on the worker's archive thread (it digests the body).
    """
    prev = c.previous
    digest = (
        sha1_digest(result.body)
        if result.status == 200 and result.truncated is None and not result.rendered
        else None
    )
    v = verdict(prev, result.status, digest)
    if v is not Verdict.CHANGED and prev is not None and prev.payload is not None:
        p = prev.payload
        ref = writer.write_revisit(
            result,
            profile="server-not-modified"
            if v is Verdict.NOT_MODIFIED
            else "identical-payload-digest",
            refers_to=p.record_id,
            refers_to_uri=c.url,
            refers_to_date=p.at / 1000,
            payload_digest=p.digest,
            fetched_at=fetched_at,
        )
        return Archived(ref, v, None)
    ref = writer.write_exchange(result, fetched_at=fetched_at)
    payload = None
    if digest is not None:
        at = int((fetched_at if fetched_at is not None else result.started_at) * 1000)
        payload = PayloadRef(digest, ref.file, ref.offset, ref.length, ref.record_id, at)
    return Archived(ref, v, payload)


def settle(
    o: Outcome, c: ClaimedURL, archived: Archived, result: FetchResult, due: int | None
) -> bool:
    """Fill a ``done`` outcome's revisit fields; True when the page brought nothing new.

    Validators are stored from a full 200 capture (or refreshed by a 304 that
    sends new ones); ``due`` is the next due time from :meth:`RevisitPlan.due`.
    """
    o.revisit = c.previous is not None
    o.revisit_at = due
    o.payload = archived.payload
    etag, last = validators(result.headers)
    if archived.verdict is Verdict.NOT_MODIFIED:
        prev = c.previous
        if prev is not None and (etag or last):
            o.validators = (etag or prev.etag, last or prev.last_modified)
        return True
    if result.status == 200:
        o.validators = (etag, last)
    return archived.verdict is Verdict.IDENTICAL


def listing_links(
    c: ClaimedURL,
    body: bytes,
    host_map: HostMap,
    make_page: Callable[[Canonical, ClaimedURL], NewURL | None],
    in_scope: Callable[[str], bool],
    *,
    max_bytes: int,
) -> tuple[list[NewURL], list[tuple[int, int]], str | None]:
    """The URLs a sitemap or feed lists, and the ``(url_key, lastmod ms)`` of its dated pages.

    Child sitemaps of an index on a host ``in_scope`` allows become ``sitemap``
    URLs; pages go through ``make_page(canonical, parent)`` (the worker's scope
    and rules; None drops the URL). Hosts are mapped by ``host_map`` first.
    Returns an error message instead of raising when the body cannot be read.
    """
    try:
        listing = read_listing(body, max_bytes=max_bytes)
    except ListingError as exc:
        return [], [], f"cannot read {c.kind} {c.url}: {exc}"
    out: list[NewURL] = []
    dated: list[tuple[int, int]] = []
    seen: set[int] = set()
    for e in listing.entries:
        try:
            canon = canonicalize(host_map.map(e.url, c.url))
        except URLError:
            continue
        if canon.url_key in seen:
            continue
        seen.add(canon.url_key)
        if listing.kind == "sitemapindex":
            if not in_scope(canon.host):
                continue
            out.append(_source_url(canon, "sitemap", c.depth, parent_id=c.id))
            continue
        new = make_page(canon, c)
        if new is None:
            continue
        out.append(new)
        if e.lastmod is not None and new.status is Status.PENDING:
            dated.append((canon.url_key, e.lastmod))
    return out, dated, None


def _source_url(canon: Canonical, kind: str, depth: int, **fields: Any) -> NewURL:
    """A frontier row of ``kind`` (sitemap or feed) for ``canon``, under no rule (rule -1)."""
    return NewURL(canon.url, canon.url_key, canon.host, canon.host_key, -1, kind, depth, **fields)


def source_urls(spec: Spec, extra: list[tuple[str, str]] | None = None) -> list[NewURL]:
    """The spec's sitemap and feed seeds (plus ``extra`` ``(kind, url)``) as frontier rows."""
    out = []
    pairs = [(s.kind, s.url) for s in spec.crawl.sources] + list(extra or [])
    for kind, url in pairs:
        try:
            canon = canonicalize(url)
        except URLError:
            continue
        out.append(_source_url(canon, kind, 0, priority=-1))
    return out


def source_urls_of(urls: list[str], base: str, host_map: HostMap, scope: HostScope) -> list[NewURL]:
    """Sitemap URLs named by a host's robots.txt (``sitemaps = "robots"``), mapped and in scope."""
    out = []
    for url in urls:
        try:
            canon = canonicalize(host_map.map(url, base))
        except URLError:
            continue
        if scope.allows(canon.host):
            out.append(_source_url(canon, "sitemap", 0, priority=-1))
    return out


def idle_seconds(wake_at: int | None, now: int) -> float:
    """How long an idle worker of a crawl that stays open sleeps: until the next due page, at most 1 s.

    The cap lets it notice pages made due by others (a sitemap's lastmod, a new
    submission) and a stop request promptly.
    """
    if wake_at is None:
        return 1.0
    return min(1.0, max(0.05, (wake_at - now) / 1000))


def new_pages_message(crawl: str, found: dict[int, int], urls: dict[int, str]) -> str:
    """The text of a ``new_pages`` event: how many new URLs, found on which revisited pages."""
    total = sum(found.values())
    pages = sorted(((n, urls.get(k) or f"#{k}") for k, n in found.items() if n), reverse=True)
    shown = ", ".join(f"{u} (+{n})" for n, u in pages[:5])
    more = f" and {len(pages) - 5} more" if len(pages) > 5 else ""
    return (
        f"crawl {crawl}: {total} new URL(s) found by revisiting {len(pages)} page(s): {shown}{more}"
    )
