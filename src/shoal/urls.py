"""URL canonical form, keys and scope: the hot path of link handling.

Parsing and joining follow the WHATWG URL standard through ada-url. The
canonical form of a URL is its WHATWG serialisation with the fragment, any
``user:password@`` and tracking parameters removed; two URLs with the same canonical form are the
same frontier row. Keys are 64-bit signed integers (blake2b) so that every
database can index them cheaply.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ada_url import URL

from shoal.errors import URLError

__all__ = [
    "Canonical",
    "HostScope",
    "canonicalize",
    "host_key",
    "host_of",
    "key64",
    "normalize_url",
    "resolve",
    "url_key",
]


@dataclass(frozen=True, slots=True)
class Canonical:
    """A canonical URL with its host (``name[:port]``) and both keys."""

    url: str
    host: str
    url_key: int
    host_key: int


def key64(text: str) -> int:
    """A signed 64-bit key of ``text`` (blake2b), stable across processes and machines."""
    return int.from_bytes(
        hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
        "big",
        signed=True,
    )


def url_key(url: str) -> int:
    """The key of a canonical URL."""
    return key64(url)


def host_key(host: str) -> int:
    """The key of a host (``name[:port]``, lower case); politeness is kept per host key."""
    return key64(host.lower())


def _strip_params(query: str, strip: re.Pattern[str]) -> str:
    kept = [p for p in query[1:].split("&") if p and not strip.match(p.split("=", 1)[0])]
    return "?" + "&".join(kept) if kept else ""


def _strip_pattern(params: Iterable[str]) -> re.Pattern[str] | None:
    parts = [fnmatch.translate(p) for p in params]
    return re.compile("|".join(parts)) if parts else None


def resolve(href: str, base: str | None = None) -> URL:
    """Parse ``href`` (relative to ``base``) as a WHATWG URL, or raise :class:`URLError`."""
    try:
        return URL(href, base) if base is not None else URL(href)
    except ValueError:
        raise URLError(f"not a valid URL: {href[:200]!r}") from None


def canonicalize(
    href: str, base: str | None = None, strip: re.Pattern[str] | None = None
) -> Canonical:
    """Resolve and canonicalise a URL; only http and https are accepted.

    The canonical form has no ``user:password@``: a seed's credentials are sent
    as its host's ``Authorization`` header (see ``HostHeaders``), never stored.
    """
    u = resolve(href.strip(), base)
    if u.protocol not in ("http:", "https:"):
        raise URLError(f"only http and https URLs are crawled, not {u.protocol[:-1]!r}")
    if not u.hostname:
        raise URLError(f"URL has no host: {href[:200]!r}")
    if ("@" in href or (base is not None and "@" in base)) and (u.username or u.password):
        u.username = ""  # credentials never enter the frontier, the archive's URLs or tables
        u.password = ""
    if strip is not None and u.search:
        u.search = _strip_params(u.search, strip)
    text = u.href
    # Cut at "#" rather than test u.hash: an empty fragment ("/page#") has hash "" but
    # still serialises its "#". A serialised URL has no other "#" than the fragment's.
    cut = text.find("#")
    if cut >= 0:
        text = text[:cut]
    host = u.host
    return Canonical(text, host, key64(text), key64(host))


def normalize_url(url: str) -> str:
    """The canonical form of ``url`` with its query kept whole, for telling whether two spellings
    name one resource (the browser proxy matches Chromium's requests this way); ``url`` itself
    when it is not an http(s) URL."""
    try:
        return canonicalize(url).url
    except URLError:
        return url


def host_of(url: str) -> str:
    """``name[:port]`` of a URL, as used for politeness and scope."""
    return resolve(url).host


def _split_port(host: str) -> tuple[str, str]:
    """``(name, ":port" or "")`` of ``name[:port]``; IPv6 names keep their brackets."""
    if host.startswith("["):
        end = host.find("]") + 1
        return (host[:end], host[end:]) if end > 0 else (host, "")
    if host.count(":") == 1:
        name, _, port = host.partition(":")
        return name, ":" + port
    return host, ""


def _host_name(name: str) -> str:
    """A host name as WHATWG URLs serialise it (IDNA to punycode, lower case), else as given."""
    try:
        return URL(f"http://{name}/").hostname or name
    except ValueError:
        return name


class HostScope:
    """Decides which hosts are in scope: exact names, ``*.suffix`` patterns, or any host.

    Entries are normalised as URL hosts are (IDNA names to punycode, lower case),
    so ``한국.kr`` matches the host ``xn--3e0b707e.kr`` of a canonical URL. An
    entry with a port matches that port only; one without matches every port.
    Decisions are cached per host because a crawl meets the same hosts millions of times.
    """

    def __init__(self, allowed: Iterable[str], strip_params: Iterable[str] = ()) -> None:
        self.exact: set[str] = set()
        self.suffixes: list[str] = []
        self.any = False
        for h in allowed:
            h = h.strip().lower()
            if h == "*":
                self.any = True
            elif h.startswith("*."):
                self.suffixes.append("." + _host_name(h[2:]))
            else:
                name, port = _split_port(h)
                self.exact.add(_host_name(name) + port)
        self.strip = _strip_pattern(strip_params)
        self._cache: dict[str, bool] = {}

    def allows(self, host: str) -> bool:
        """True when ``host`` (``name[:port]``) may be crawled."""
        hit = self._cache.get(host)
        if hit is not None:
            return hit
        host_lc = host.lower()
        name = _split_port(host_lc)[0]
        ok = (
            self.any
            or host_lc in self.exact
            or name in self.exact
            or any(name.endswith(s) or name == s[1:] for s in self.suffixes)
        )
        if len(self._cache) < 100_000:
            self._cache[host] = ok
        return ok
