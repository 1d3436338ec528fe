"""Reading links out of HTML: the only HTML parsing done during a crawl (selectolax's lexbor).

:func:`html_of` gives the document of a response (the rendered DOM, or the
body decoded by its charset); :func:`hrefs`, :func:`bounded_hrefs` and
:func:`srcs` pick raw ``href``/``src`` values with the rule's CSS selectors.
What becomes of them (resolution, scope, rules, traps) is
:mod:`shoal.worker.links`.

Hostile markup: the HTML tree builder's work grows with the square of the
nesting depth (100,000 nested ``<div>`` take minutes), and a ``<select>`` with
tens of thousands of options is as bad. A large document (more than
:data:`TAME_ABOVE_TAGS` tags) is tamed first by :func:`tame_html`, which drops
the start and end tags of elements nested deeper than :data:`MAX_NESTING` (browsers cap their DOM
depth in a similar way) and options past :data:`MAX_OPTIONS`; links themselves
(``a``, ``area``, ``base``) are never dropped.

Guarantee: memory is bounded by the link cap, not the page: :func:`bounded_hrefs`
parses a page only up to its (:data:`READ_LINKS_PER_CAP` × cap)-th link tag.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from typing import Any

from selectolax.lexbor import LexborHTMLParser

from shoal.content.charset import decode_html
from shoal.content.codings import content_decode
from shoal.errors import ContentCodingError
from shoal.exchange import FetchResult
from shoal.spec import lexbor_css

__all__ = [
    "DEFAULT_FOLLOW",
    "MAX_NESTING",
    "MAX_OPTIONS",
    "READ_LINKS_PER_CAP",
    "TAME_ABOVE_TAGS",
    "bounded_hrefs",
    "hrefs",
    "html_of",
    "srcs",
    "tame_html",
]

DEFAULT_FOLLOW = "a[href], area[href]"

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


def html_of(res: FetchResult, max_body_bytes: int) -> str | bytes:
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
            body, _ = content_decode(body, enc, max_body_bytes)
    text, codec = decode_html(body, res.header("content-type"))
    return body if codec in ("utf-8", "utf_8") else text


def hrefs(html: str | bytes, selectors: list[str] | None) -> tuple[list[str], str | None]:
    """The raw href values the selectors pick, and the document's ``<base href>``."""
    tree = LexborHTMLParser(_tamed(html))
    return _select(tree, selectors)


def bounded_hrefs(
    html: str | bytes, selectors: list[str] | None, max_links: int
) -> tuple[list[str], str | None, int, str | None]:
    """:func:`hrefs` of the document up to its :data:`READ_LINKS_PER_CAP` × cap-th link tag.

    A parsed document costs memory in proportion to its tags (a 19 MB
    page of 560,000 links takes about 340 MB as a tree), so a page with
    far more link tags than ``max_links`` (``max_links_per_page``) is read only that far;
    the third value counts the link tags left unread (they are cut), the
    fourth is the href of the first of them.
    """
    limit = READ_LINKS_PER_CAP * max_links
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
    hrefs, base = _select(tree, selectors)
    return hrefs, base, unread, first


def _select(tree: LexborHTMLParser, selectors: list[str] | None) -> tuple[list[str], str | None]:
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


def srcs(html: str | bytes, selector: str) -> list[str]:
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
