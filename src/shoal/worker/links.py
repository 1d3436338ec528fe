"""Links to follow: the only parsing done during a crawl.

On a list page, the links the rule names (or every link) are extracted with
selectolax, resolved, canonicalised, kept in scope, matched to a rule and
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

Hostile markup: the HTML tree builder's work grows with the square of the
nesting depth (100,000 nested ``<div>`` take minutes), and a ``<select>`` with
tens of thousands of options is as bad. A large document (more than
:data:`TAME_ABOVE_TAGS` tags) is tamed first by :func:`tame_html`, which drops
the start and end tags of elements nested deeper than :data:`MAX_NESTING` (browsers cap their DOM
depth in a similar way) and options past :data:`MAX_OPTIONS`; links themselves
(``a``, ``area``, ``base``) are never dropped.

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
from typing import Any

from selectolax.lexbor import LexborHTMLParser

from shoal.content.charset import decode_html
from shoal.content.codings import content_decode
from shoal.errors import ContentCodingError, SkipReason, URLError
from shoal.exchange import FetchResult
from shoal.frontier.contract import ClaimedURL, NewURL, Status
from shoal.spec import LimitsSpec, Rule, UrlPattern, lexbor_css
from shoal.urls import Canonical, HostScope, canonicalize

__all__ = [
    "MAX_NESTING",
    "MAX_OPTIONS",
    "TAME_ABOVE_TAGS",
    "LinkExtractor",
    "PageLinks",
    "Router",
    "Target",
    "page_print",
    "tame_html",
    "url_shape",
]

DEFAULT_FOLLOW = "a[href], area[href]"

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


MAX_NESTING = 512
"""Elements nested deeper than this lose their tags before parsing (their content stays)."""
MAX_OPTIONS = 1000
"""``<option>``/``<optgroup>`` tags past this many are dropped before parsing."""
TAME_ABOVE_TAGS = 4096
"""Documents with more ``<`` than this go through :func:`tame_html`; smaller ones cannot be slow."""

_TAG_STR = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]*)[^<>]*?(/?)>")
_TAG_BYTES = re.compile(rb"<(/?)([A-Za-z][A-Za-z0-9:-]*)[^<>]*?(/?)>")
_VOID = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "keygen",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    }
)
_KEEP = frozenset({"a", "area", "base", "html", "head", "body"})
_SIBLINGS = frozenset(
    {"li", "p", "td", "th", "tr", "option", "optgroup", "dt", "dd", "rb", "rt", "rp"}
)
_OPTIONS = frozenset({"option", "optgroup"})


def tame_html(
    html: str | bytes, max_nesting: int = MAX_NESTING, max_options: int = MAX_OPTIONS
) -> str | bytes:
    """``html`` with the tags that make parsing quadratic removed (see the module docstring).

    Depth is estimated from start and end tags, with ``<li>``, ``<p>``,
    ``<td>``, ``<option>``... closing an open one of the same name as HTML
    does; stray end tags are dropped. ``<x/>`` counts as a start tag (HTML
    ignores the slash on non-void elements). Text and links are kept; only
    wrapper tags past the limits disappear, so the parse stays linear.
    """
    is_bytes = isinstance(html, bytes)
    pattern: re.Pattern[Any] = _TAG_BYTES if is_bytes else _TAG_STR
    depth = 0
    options = 0
    open_count: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    cuts: list[tuple[int, int]] = []
    for m in pattern.finditer(html):
        raw_name = m.group(2)
        name = (raw_name.decode("ascii", "replace") if is_bytes else raw_name).lower()
        if name in _VOID or name in _KEEP:
            continue
        if m.group(1):  # an end tag
            if dropped[name]:
                dropped[name] -= 1
                cuts.append(m.span())
            elif open_count[name]:
                open_count[name] -= 1
                depth = max(0, depth - 1)
            else:
                cuts.append(m.span())
            continue
        if name in _OPTIONS:
            options += 1
            if options > max_options:
                cuts.append(m.span())
                continue
        if name in _SIBLINGS and open_count[name]:
            continue  # closes the open one and opens a new one: same depth
        if depth >= max_nesting:
            dropped[name] += 1
            cuts.append(m.span())
            continue
        open_count[name] += 1
        depth += 1
    if not cuts:
        return html
    pieces: list[Any] = []
    pos = 0
    for start, end in cuts:
        pieces.append(html[pos:start])
        pos = end
    pieces.append(html[pos:])
    return (b"" if is_bytes else "").join(pieces)


def _tamed(html: str | bytes) -> str | bytes:
    lt = b"<" if isinstance(html, bytes) else "<"
    return tame_html(html) if html.count(lt) > TAME_ABOVE_TAGS else html  # type: ignore[arg-type]


READ_LINKS_PER_CAP = 4
"""A list page is parsed up to its (this × ``max_links_per_page``)-th link tag at most."""
_LINK_TAG_STR = re.compile(r"<(?:a|area)[\s/>]", re.IGNORECASE)
_LINK_TAG_BYTES = re.compile(rb"<(?:a|area)[\s/>]", re.IGNORECASE)

_HREF_STR = re.compile(r"""href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)
_HREF_BYTES = re.compile(rb"""href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)


def _first_href(tag: str | bytes) -> str | None:
    """The href of the first link tag at the start of ``tag`` (raw, not unescaped), if any."""
    if isinstance(tag, bytes):
        end = tag.find(b">")
        mb = _HREF_BYTES.search(tag, 0, end if end >= 0 else len(tag))
        return (
            next((g for g in mb.groups() if g is not None), b"").decode("utf-8", "replace")
            if mb
            else None
        )
    end = tag.find(">")
    m = _HREF_STR.search(tag, 0, end if end >= 0 else len(tag))
    return next((g for g in m.groups() if g is not None), "") if m else None


_DIGITS = re.compile(r"[0-9]+")
_DIGITS_B = re.compile(rb"[0-9]+")
_TAGS_B = re.compile(rb"<[^>]*>")


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
        if res.rendered_html is not None:
            return res.rendered_html
        if res.decoded is not None:  # decoded (and capped) by the fetcher as it streamed
            text, codec = decode_html(res.decoded, res.header("content-type"))
            return res.decoded if codec in ("utf-8", "utf_8") else text
        body = res.body
        enc = res.header("content-encoding")
        if enc and enc.strip().lower() not in ("identity", ""):
            with contextlib.suppress(ContentCodingError):  # mislabelled (a plain body called gzip)
                body, _ = content_decode(body, enc, self.limits.max_body_bytes)
        text, codec = decode_html(body, res.header("content-type"))
        return body if codec in ("utf-8", "utf_8") else text

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
        more than :data:`READ_LINKS_PER_CAP` times as many link tags is parsed
        only up to there, so its memory is bounded by the cap, not the page. With
        ``budget`` (pages the crawl may still fetch) no more pending rows are
        made than could ever be fetched.

        Links to be written join :attr:`seen` only once an outcome carrying them
        is accepted (:meth:`remember`): a fenced outcome's links are dropped, and
        a later page must be free to bring them again.
        """
        html = self.html_of(res)
        selectors = rule.follow if rule is not None else None
        hrefs, base, unread, first_unread = self._bounded_hrefs(html, selectors)
        base_url = c.url
        if base:
            with contextlib.suppress(URLError):
                base_url = canonicalize(base, c.url).url
        cut = base_url.find("/", base_url.find("//") + 2)
        origin = base_url[:cut] if cut >= 0 else base_url
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
        tree = LexborHTMLParser(_tamed(html))
        return self._select(tree, selectors)

    def _bounded_hrefs(
        self, html: str | bytes, selectors: list[str] | None
    ) -> tuple[list[str], str | None, int, str | None]:
        """:meth:`hrefs` of the document up to its :data:`READ_LINKS_PER_CAP` × cap-th link tag.

        A parsed document costs memory in proportion to its tags (a 19 MB
        page of 560,000 links takes about 340 MB as a tree), so a page with
        far more link tags than ``max_links_per_page`` is read only that far;
        the third value counts the link tags left unread (they are cut), the
        fourth is the href of the first of them.
        """
        limit = READ_LINKS_PER_CAP * self.limits.max_links_per_page
        unread = 0
        first: str | None = None
        if len(html) > limit * 8:  # a page this long may hold more link tags than the limit
            pattern: re.Pattern[Any] = _LINK_TAG_BYTES if isinstance(html, bytes) else _LINK_TAG_STR
            end = None
            for i, m in enumerate(pattern.finditer(html)):
                if i == limit:
                    end = m.start()
                elif i > limit:
                    unread = i - limit + 1
            if end is not None:
                unread = max(unread, 1)
                first = _first_href(html[end : end + 4096])
                html = html[:end]
        tree = LexborHTMLParser(_tamed(html))
        hrefs, base = self._select(tree, selectors)
        return hrefs, base, unread, first

    def _select(
        self, tree: LexborHTMLParser, selectors: list[str] | None
    ) -> tuple[list[str], str | None]:
        base_node = tree.css_first("base[href]")
        base = base_node.attributes.get("href") if base_node is not None else None
        out: list[str] = []
        for sel in selectors or [DEFAULT_FOLLOW]:
            for node in tree.css(lexbor_css(sel)):
                href = node.attributes.get("href") if node.tag in ("a", "area", "link") else None
                if href is None and node.tag not in ("a", "area", "link"):
                    for a in node.css("a[href]"):
                        h = a.attributes.get("href")
                        if h:
                            out.append(h)
                    continue
                if href:
                    out.append(href)
        return out, base

    def srcs(self, html: str | bytes, selector: str) -> list[str]:
        """The ``src`` of the elements the selector picks (images to archive)."""
        tree = LexborHTMLParser(_tamed(html))
        out = []
        for node in tree.css(lexbor_css(selector)):
            src = node.attributes.get("src")
            if not src:
                img = node.css_first("img[src]")
                src = img.attributes.get("src") if img is not None else None
            if src:
                out.append(src)
        return out

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
