"""Links to follow: the only parsing done during a crawl.

On a list page, the links the rule names (or every link) are extracted with
selectolax, resolved, canonicalised, kept in scope, matched to a rule and
checked against the trap limits. URL handling, not HTML parsing, is the hot
spot (DESIGN.md), so resolutions are cached per origin.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser

from shoal.errors import SkipReason
from shoal.frontier.contract import NewURL, Status
from shoal.spec import LimitsSpec, Rule
from shoal.urls import Canonical, HostScope, URLError, canonicalize

__all__ = ["LinkExtractor", "Router", "Target"]

DEFAULT_FOLLOW = "a[href], area[href]"


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
        self._path_patterns: list[tuple[int, re.Pattern[str], bool]] = []
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

    def __init__(self, router: Router, scope: HostScope, limits: LimitsSpec, cache_size: int = 200_000) -> None:
        self.router = router
        self.scope = scope
        self.limits = limits
        self.cache_size = cache_size
        self._cache: dict[tuple[str, str], Canonical | None] = {}

    def hrefs(self, html: str | bytes, selectors: list[str] | None) -> tuple[list[str], str | None]:
        """The raw href values the selectors pick, and the document's ``<base href>``."""
        tree = LexborHTMLParser(html)
        base_node = tree.css_first("base[href]")
        base = base_node.attributes.get("href") if base_node is not None else None
        out: list[str] = []
        for sel in selectors or [DEFAULT_FOLLOW]:
            for node in tree.css(sel):
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
        tree = LexborHTMLParser(html)
        out = []
        for node in tree.css(selector):
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
        """Why a URL looks like a crawler trap (too long, too many or repeated segments), else None."""
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
        return None

    def new_url(self, c: Canonical, *, parent_id: int | None, parent_rule: int, parent_kind: str, parent_depth: int,
                redirects: int = 0) -> NewURL | None:
        """The frontier row for a discovered URL, or None when it is out of scope.

        Depth grows by one per hop, except along a rule's own pagination (a list
        page linking to a list page of the same rule), so a board with thousands
        of list pages is not cut by the depth limit.
        """
        if not self.scope.allows(c.host):
            return None
        target = self.router.match(c.url)
        if target is None:
            return None
        same_list = target.rule >= 0 and target.rule == parent_rule and parent_kind == "list" and target.kind == "list"
        depth = parent_depth if same_list else parent_depth + 1
        status = Status.PENDING
        reason: str | None = None
        if redirects == 0 and depth > self.limits.max_depth:
            status, reason = Status.SKIPPED, SkipReason.MAX_DEPTH.value
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
