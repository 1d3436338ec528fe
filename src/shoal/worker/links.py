"""Links to follow: routing, pagination and the trap limits.

On a list page, the links the rule names (or every link) are read out of the
HTML by :mod:`shoal.worker.markup` (the only parsing done during a crawl), then resolved, canonicalised, kept in scope, matched to a rule and
checked against the trap limits. URL handling, not HTML parsing, is the hot
spot (DESIGN.md), so resolutions are cached per origin.

Crawler traps, each recorded ``skipped`` with its reason (never silently dropped):

- ``max_depth``: more hops from a seed than ``limits.max_depth``. Following a
  list's own pagination does not count as a hop while the pages give
  something new, so a board with thousands of list pages is crawled whole.
  With rules, pagination is a list page linking to a list page of the same
  rule; with no rules, a page linking to a page of the same URL shape (the
  same URL but for its numbers: ``/blog/page/3/`` → ``/blog/page/4/``,
  ``?page=3`` → ``?page=4``, see :func:`url_shape`).
- ``empty_pages``: pagination that goes on past the content, such as
  ``?page=n+1`` beyond a board's last page or an empty infinite calendar. A
  list page is *productive* when its new links include at least one URL for
  the crawl that is not a list page of its own rule (a post, another
  section); links from a *barren* page to its own rule's list pages cost a
  hop. So each page past the end of a board moves one level deeper, and the
  first beyond ``max_depth`` is skipped as ``empty_pages``: a trap costs at
  most ``max_depth`` pages per chain (times the width of a pagination window
  that links the next ten pages), and the state travels with the URL's depth
  in the frontier, so it holds across workers and restarts. A list whose
  pages only ever link their next page (the data sits on the list pages
  themselves, as on quotes sites and many boards) is not barren while each
  page shows something new: its text, numbers aside, differs from every
  page of that list seen before (:func:`page_print`). Once a rule's pages
  have linked anything besides their pagination, this worker judges its
  pages by their new links alone.
- ``calendar``: a URL dated more than ``limits.calendar_years_ahead`` years
  after this year (``/2031/05/``, ``2031-05-01``, ``?year=2031``,
  ``?ym=203105``), which stops an infinite calendar that links every day.
  Only date-shaped parts count; years more than a century ahead are taken
  for numbers. A calendar that links every day *backwards* is not caught by
  either rule: ``limits.max_pages`` or a narrower rule is the remedy.
- ``url_too_long``, ``too_many_segments``, ``repeated_segments``
  (``/a/b/a/b/a/b/...``): see :meth:`LinkExtractor.trap_reason`.

Hostile markup is tamed before parsing: see :mod:`shoal.worker.markup`.

Credentials are never carried into the frontier: a link or redirect target
with ``user:password@`` (a relative link on a page fetched with credentials
inherits them under WHATWG rules) is stored without them; the worker sends a
host's credentials itself (:class:`shoal.fetch.http.HostHeaders`).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from shoal.errors import SkipReason, URLError
from shoal.exchange import FetchResult
from shoal.frontier.contract import ClaimedURL, NewURL, Status
from shoal.spec import LimitsSpec, Rule, Spec, UrlPattern
from shoal.urls import Canonical, HostScope, canonicalize
from shoal.worker import markup

__all__ = [
    "LinkExtractor",
    "PageLinks",
    "Router",
    "Target",
    "crawl_scope",
    "page_base",
    "page_print",
    "url_shape",
]

# Dates as calendars write them: ISO months (2031-05, 2031-05-01), /2031/05/ with two-digit months,
# year=2031, date|ym|ymd|month|cal=203105[01] or 2031-05[-01]. Bare four-digit numbers elsewhere
# (?start=2040 offsets, /t/topic/2100/10 post numbers, /item/2150-3) are not taken for years.
_DATE_PATTERNS = (
    re.compile(r"(?<![0-9])([12][0-9]{3})-(?:0[1-9]|1[0-2])(?![0-9])"),
    re.compile(r"/([12][0-9]{3})/(?:0[1-9]|1[0-2])/"),
    re.compile(r"[?&;](?:year|yr|yyyy)=([12][0-9]{3})(?![0-9])", re.IGNORECASE),
    re.compile(
        r"[?&;](?:date|ym|ymd|month|cal)=([12][0-9]{3})[-/.]?(?:0[1-9]|1[0-2])(?:[-/.]?(?:0[1-9]|[12][0-9]|3[01]))?(?![0-9])",
        re.IGNORECASE,
    ),
)
_CALENDAR_SPAN = 100
"""Years further ahead than this are taken for numbers, not dates (so an id such as 4711 is not a trap)."""


_DIGITS = re.compile(r"[0-9]+")
_DIGITS_B = re.compile(rb"[0-9]+")
_TAGS_B = re.compile(rb"<[^>]*>")


def crawl_scope(spec: Spec) -> HostScope:
    """The hosts a crawl of ``spec`` follows links to, and the query parameters it strips.

    ``[scope] allowed_hosts`` when set, else the hosts of the seeds and of the
    ``[crawl]`` sources (sitemaps, feeds); a seed that is not a crawlable URL
    adds none.
    """
    hosts = list(spec.scope.allowed_hosts)
    if not hosts:
        for url in [*spec.crawl.seeds, *(source.url for source in spec.crawl.sources)]:
            with contextlib.suppress(URLError):
                hosts.append(canonicalize(url).host)
    return HostScope(hosts, spec.scope.strip_query_params)


def page_base(url: str, base: str | None) -> tuple[str, str]:
    """What relative links on page ``url`` resolve against, and its origin (``scheme://host:port``).

    ``base`` is the page's ``<base href>``: it counts when it resolves to a
    crawlable URL, else the page's own URL is the base.
    """
    base_url = url
    if base:
        with contextlib.suppress(URLError):
            base_url = canonicalize(base, url).url
    cut = base_url.find("/", base_url.find("//") + 2)
    return base_url, base_url[:cut] if cut >= 0 else base_url


def url_shape(url: str) -> str:
    """``url`` with every run of digits replaced by ``#``: the pages of one pagination share it."""
    return _DIGITS.sub("#", url)


def page_print(html: str | bytes) -> bytes:
    """A fingerprint of a page's text without its tags and numbers.

    Two pages past the end of a list (``page 41: no posts``, ``page 42: no
    posts``) share it; two pages of data do not.
    """
    data = html.encode("utf-8", "replace") if isinstance(html, str) else html
    text = _DIGITS_B.sub(b"", _TAGS_B.sub(b" ", data))
    return hashlib.blake2b(b" ".join(text.split()), digest_size=16).digest()


@dataclass(slots=True)
class PageLinks:
    """What one list page gave: its rows for the frontier and what was left out.

    ``cut``: links past ``max_links_per_page`` (counted, not resolved; the
    first of them is in ``links`` as ``skipped max_links``). ``unfetchable``:
    new links left out because the crawl's ``max_pages`` can no longer reach them.
    """

    links: list[NewURL]
    cut: int = 0
    unfetchable: int = 0


@dataclass(frozen=True, slots=True)
class Target:
    """Where a URL goes: its rule index (-1 for the implicit catch-all), kind and priority."""

    rule: int
    kind: str
    priority: int


class Router:
    """Matches URLs to the spec's rules; the first matching rule wins.

    With no rules at all every in-scope URL is a list page (crawl the site);
    with rules, a URL that matches none is out of scope and not added.
    """

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self._path_patterns: list[tuple[int, UrlPattern, bool]] = []
        for i, r in enumerate(rules):
            on_path = r.glob is not None and r.glob.startswith("/")
            self._path_patterns.append((i, r.compiled(), on_path))

    def match(self, url: str) -> Target | None:
        """The target of ``url``, or None when no rule covers it."""
        if not self.rules:
            return Target(-1, "list", 0)
        path = None
        for i, pat, on_path in self._path_patterns:
            if on_path:
                if path is None:
                    cut = url.find("/", url.find("//") + 2)
                    path = url[cut:] if cut >= 0 else "/"
                hit = pat.match(path) is not None
            elif self.rules[i].regex is not None:
                hit = pat.search(url) is not None
            else:
                hit = pat.match(url) is not None
            if hit:
                r = self.rules[i]
                return Target(i, r.kind, r.priority)
        return None

    def rule(self, index: int) -> Rule | None:
        """The rule at ``index``, or None for the implicit catch-all."""
        return self.rules[index] if 0 <= index < len(self.rules) else None


class LinkExtractor:
    """Turns a list page into the :class:`NewURL` rows to add to the frontier."""

    def __init__(
        self, router: Router, scope: HostScope, limits: LimitsSpec, cache_size: int = 200_000
    ) -> None:
        self.router = router
        self.scope = scope
        self.limits = limits
        self.cache_size = cache_size
        self._cache: dict[tuple[str, str], Canonical | None] = {}
        self.seen: set[int] = set()
        """url_keys this worker knows the frontier has: later pages need not send them again."""
        self._hub_rules: set[int] = set()
        self._prints: dict[int, set[bytes]] = {}

    def remember(self, links: Iterable[NewURL]) -> None:
        """Note links the frontier now holds (their outcome was accepted)."""
        self.seen.update(n.url_key for n in links)

    def html_of(self, res: FetchResult) -> str | bytes:
        """The document to look for links in: the rendered DOM, or the decoded body."""
        return markup.html_of(res, self.limits.max_body_bytes)

    def assets(self, c: ClaimedURL, selector: str, res: FetchResult) -> list[NewURL]:
        """Images the rule asks for (for OCR at parse time), fetched as ``asset`` URLs of any host."""
        out = []
        page: set[int] = set()
        for src in self.srcs(self.html_of(res), selector):
            try:
                canon = canonicalize(src, c.url, self.scope.strip)
            except URLError:
                continue
            if canon.url_key in self.seen or canon.url_key in page:
                continue
            page.add(canon.url_key)
            out.append(
                NewURL(
                    canon.url,
                    canon.url_key,
                    canon.host,
                    canon.host_key,
                    c.rule,
                    "asset",
                    c.depth,
                    priority=c.depth * 100 - 1,
                    parent_id=c.id,
                )
            )
        return out

    def extract(
        self, c: ClaimedURL, rule: Rule | None, res: FetchResult, budget: int | None = None
    ) -> PageLinks:
        """The frontier rows of the links found on list page ``c`` that the frontier may not have.

        At most ``limits.max_links_per_page`` new in-scope links are taken, in
        document order; the first one past the cut is kept as a ``skipped``
        ``max_links`` row (so the cut shows in the status and where it was)
        and the rest are only counted, never resolved or stored; a page with
        more than :data:`~shoal.worker.markup.READ_LINKS_PER_CAP` times as many link tags is parsed
        only up to there, so its memory is bounded by the cap, not the page. With
        ``budget`` (pages the crawl may still fetch) no more pending rows are
        made than could ever be fetched.

        Links to be written join :attr:`seen` only once an outcome carrying them
        is accepted (:meth:`remember`): a fenced outcome's links are dropped, and
        a later page must be free to bring them again.
        """
        html = self.html_of(res)
        selectors = rule.follow if rule is not None else None
        hrefs, base, unread, first_unread = markup.bounded_hrefs(
            html, selectors, self.limits.max_links_per_page
        )
        base_url, origin = page_base(c.url, base)
        seen = self.seen
        page: set[int] = set()
        targets: list[tuple[Canonical, Target]] = []
        cap = self.limits.max_links_per_page
        marker: tuple[Canonical, Target] | None = None
        over = 0
        for i, href in enumerate(hrefs):
            canon = self.resolve(href, base_url, origin)
            if canon is None or canon.url_key in seen or canon.url_key in page:
                continue
            page.add(canon.url_key)
            target = self._target(canon)
            if target is None:
                seen.add(canon.url_key)  # out of scope: never sent
                continue
            if len(targets) >= cap:
                marker = (canon, target)
                over = len(hrefs) - i  # the marker and every href after it, unresolved
                break
            targets.append((canon, target))
        over += unread
        if marker is None and first_unread is not None:
            # Every tag read was taken or known: the cut is at the first tag left unread.
            canon = self.resolve(first_unread, base_url, origin)
            if canon is not None and canon.url_key not in seen and canon.url_key not in page:
                target = self._target(canon)
                if target is not None:
                    marker = (canon, target)
        del hrefs
        if len(seen) > 2_000_000:
            seen.clear()
        links = self._page_rows(
            targets,
            parent_id=c.id,
            parent_rule=c.rule,
            parent_kind=c.kind,
            parent_depth=c.depth,
            parent_url=c.url,
            fingerprint=lambda: page_print(html),
        )
        unfetchable = 0
        if budget is not None:
            pending = [n for n in links if n.status is Status.PENDING]
            if len(pending) > budget:
                drop = {n.url_key for n in pending[budget:]}
                unfetchable = len(drop)
                links = [n for n in links if n.url_key not in drop]
        if marker is not None:
            row = self._row(marker[0], marker[1], c.id, c.depth, 0, True, False)
            row.status, row.skip_reason = Status.SKIPPED, SkipReason.MAX_LINKS.value
            links.append(row)
        return PageLinks(links, over, unfetchable)

    def hrefs(self, html: str | bytes, selectors: list[str] | None) -> tuple[list[str], str | None]:
        """The raw href values the selectors pick, and the document's ``<base href>``."""
        return markup.hrefs(html, selectors)

    def srcs(self, html: str | bytes, selector: str) -> list[str]:
        """The ``src`` of the elements the selector picks (images to archive)."""
        return markup.srcs(html, selector)

    def resolve(self, href: str, base_url: str, origin: str) -> Canonical | None:
        """Canonical form of ``href`` on a page at ``base_url``, or None if it is not a crawlable URL."""
        href = href.strip()
        if not href or href[0] == "#":
            return None
        if href.startswith(("http://", "https://")):
            key = ("", href)
        elif href[0] == "/" and not href.startswith("//"):
            key = (origin, href)
        else:
            key = (base_url, href)
        hit = self._cache.get(key, False)
        if hit is not False:
            return hit  # type: ignore[return-value]
        try:
            c: Canonical | None = canonicalize(href, base_url, self.scope.strip)
        except URLError:
            c = None
        if len(self._cache) >= self.cache_size:
            self._cache.clear()
        self._cache[key] = c
        return c

    def trap_reason(self, url: str) -> SkipReason | None:
        """Why a URL looks like a crawler trap, else None.

        Too long (``max_url_length``), too many path segments
        (``max_path_segments``), one segment repeated more than
        ``max_repeated_segments`` times (``/a/b/a/b/a/b/...``), or dated too far
        ahead (``calendar_years_ahead``).
        """
        lim = self.limits
        if len(url) > lim.max_url_length:
            return SkipReason.URL_TOO_LONG
        cut = url.find("/", url.find("//") + 2)
        path = url[cut:].split("?", 1)[0] if cut >= 0 else "/"
        segments = [s for s in path.split("/") if s]
        if len(segments) > lim.max_path_segments:
            return SkipReason.TOO_MANY_SEGMENTS
        if len(segments) > lim.max_repeated_segments:
            top = Counter(segments).most_common(1)[0][1]
            if top > lim.max_repeated_segments:
                return SkipReason.REPEATED_SEGMENTS
        if lim.calendar_years_ahead is not None and cut >= 0 and self._dated_too_far(url[cut:]):
            return SkipReason.CALENDAR
        return None

    def _dated_too_far(self, path_qs: str) -> bool:
        year = time.gmtime().tm_year
        last = year + (self.limits.calendar_years_ahead or 0)
        for pattern in _DATE_PATTERNS:
            for m in pattern.finditer(path_qs):
                if last < int(m.group(1)) <= year + _CALENDAR_SPAN:
                    return True
        return False

    def _target(self, c: Canonical) -> Target | None:
        if not self.scope.allows(c.host):
            return None
        return self.router.match(c.url)

    @staticmethod
    def _same_list(
        c: Canonical, target: Target, parent_rule: int, parent_kind: str, parent_shape: str | None
    ) -> bool:
        """Whether a link is the linking list page's own pagination (see the module docstring)."""
        if parent_kind != "list" or target.kind != "list" or target.rule != parent_rule:
            return False
        return target.rule >= 0 or (parent_shape is not None and url_shape(c.url) == parent_shape)

    def _barren(self, rule: int, fingerprint: Callable[[], bytes] | None) -> bool:
        """A page that gave nothing but its own pagination: is it past the end of its list?"""
        if rule in self._hub_rules or fingerprint is None:
            return True
        prints = self._prints.setdefault(rule, set())
        fp = fingerprint()
        if fp in prints:
            return True
        if len(prints) >= 100_000:
            prints.clear()
        prints.add(fp)
        return False

    def new_url(
        self,
        c: Canonical,
        *,
        parent_id: int | None,
        parent_rule: int,
        parent_kind: str,
        parent_depth: int,
        redirects: int = 0,
        barren: bool = False,
    ) -> NewURL | None:
        """The frontier row for a discovered URL, or None when it is out of scope.

        Depth grows by one per hop, except along a rule's own pagination (a list
        page linking to a list page of the same rule) from a productive page, so
        a board with thousands of list pages is not cut by the depth limit;
        ``barren`` says the linking page gave nothing new (see the module docstring).
        """
        target = self._target(c)
        if target is None:
            return None
        same = self._same_list(c, target, parent_rule, parent_kind, None)
        return self._row(c, target, parent_id, parent_depth, redirects, barren, same)

    def page_links(
        self,
        found: Iterable[Canonical],
        *,
        parent_id: int | None,
        parent_rule: int,
        parent_kind: str,
        parent_depth: int,
        parent_url: str | None = None,
        fingerprint: Callable[[], bytes] | None = None,
    ) -> list[NewURL]:
        """The frontier rows of the links newly found on one page (out-of-scope ones left out).

        ``parent_url`` (the page's URL) lets a crawl with no rules tell its
        pagination by URL shape. The page is barren when none of its new links
        is a URL for the crawl other than its own pagination, and either its
        rule's pages have linked other things before or ``fingerprint`` (the
        page's :func:`page_print`) repeats one of the list's; a barren page's
        pagination costs a hop.
        """
        targets = [(c, t) for c in found if (t := self._target(c)) is not None]
        return self._page_rows(
            targets,
            parent_id=parent_id,
            parent_rule=parent_rule,
            parent_kind=parent_kind,
            parent_depth=parent_depth,
            parent_url=parent_url,
            fingerprint=fingerprint,
        )

    def _page_rows(
        self,
        targets: list[tuple[Canonical, Target]],
        *,
        parent_id: int | None,
        parent_rule: int,
        parent_kind: str,
        parent_depth: int,
        parent_url: str | None,
        fingerprint: Callable[[], bytes] | None,
    ) -> list[NewURL]:
        shape = url_shape(parent_url) if parent_url is not None and parent_rule < 0 else None
        own = [self._same_list(c, t, parent_rule, parent_kind, shape) for c, t in targets]
        if not all(own):
            self._hub_rules.add(parent_rule)
            barren = False
        else:
            barren = self._barren(parent_rule, fingerprint)
        return [
            self._row(c, t, parent_id, parent_depth, 0, barren, same)
            for (c, t), same in zip(targets, own, strict=True)
        ]

    def _row(
        self,
        c: Canonical,
        target: Target,
        parent_id: int | None,
        parent_depth: int,
        redirects: int,
        barren: bool,
        same_list: bool,
    ) -> NewURL:
        depth = parent_depth if same_list and not barren else parent_depth + 1
        status = Status.PENDING
        reason: str | None = None
        if redirects == 0 and depth > self.limits.max_depth:
            status = Status.SKIPPED
            reason = (SkipReason.EMPTY_PAGES if same_list else SkipReason.MAX_DEPTH).value
        else:
            trap = self.trap_reason(c.url)
            if trap is not None:
                status, reason = Status.SKIPPED, trap.value
        return NewURL(
            url=c.url,
            url_key=c.url_key,
            host=c.host,
            host_key=c.host_key,
            rule=target.rule,
            kind=target.kind,
            depth=depth,
            priority=depth * 100 + target.priority,
            parent_id=parent_id,
            redirects=redirects,
            status=status,
            skip_reason=reason,
        )
