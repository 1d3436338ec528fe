"""robots.txt: RFC 9309 rules on top of protego, and a per-host cache with one fetch in flight.

protego parses the file (it forgives the usual mistakes: a missing colon,
"Dissallow", ...), groups the records, and matches the longest rule with
Allow winning ties. A thin layer here fixes where it differs from RFC 9309
and from Google's reference parser, which the robotstxt-spec-test vectors
follow:

- user agents: our product token is the crawler's User-Agent up to its first
  ``/`` or space (``shoal`` of ``shoal/0.1 (...)``); a group applies when the
  leading run of ``[A-Za-z_-]`` of its ``User-agent`` value equals it, ignoring
  case (``User-agent: shoal/2.0`` names ``shoal``). protego alone finds a
  group's name anywhere in our token (``barbarbot`` would apply to
  ``barbarbot-prod``) and reads ``User-agent: AB42bot`` as naming
  ``AB42bot``, where Google's parser and the spec tests read ``AB``.
- a (possibly partial) UTF-8 byte order mark at the start of the file is skipped.
- the body is cut at 500 KiB (RFC 9309 section 2.5), dropping the incomplete last line.

Two matching modes (``compat``), which differ only in what the spec-test vectors
and the RFC's text disagree on:

- ``"rfc9309"`` (the default): percent-encoded unreserved characters are
  decoded before comparison (``%62`` is ``b``), non-ASCII characters of a URL
  are percent-encoded, and ``/robots.txt`` is implicitly allowed.
- ``"google"``: paths are compared as written after upper-casing escapes and
  percent-encoding non-ASCII characters of the rules only (the caller
  encodes its URLs), and ``/robots.txt`` obeys the rules like any path.

URLs given to shoal are WHATWG serialisations (already percent-encoded), so
both modes agree on them except for escapes of unreserved characters.

Fetch results map to rules as RFC 9309 section 2.3.1 says: 2xx is parsed, 4xx
(and more than five redirects) means no robots.txt so everything is allowed,
5xx, 429 and an unreachable server mean "disallow everything for now" (a
*temporary* result that the cache retries after minutes, not a day).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import quote

from ada_url import URL
from protego import Protego

from shoal.errors import URLError

__all__ = [
    "MAX_ROBOTS_BYTES",
    "Compat",
    "Robots",
    "RobotsCache",
    "RobotsGetter",
    "product_token",
]

log = logging.getLogger(__name__)

MAX_ROBOTS_BYTES: Final = 500 * 1024
"""RFC 9309 section 2.5: a crawler must parse at least the first 500 KiB; the rest is dropped."""

Compat = Literal["rfc9309", "google"]
"""Matching mode; see the module docstring."""

RobotsGetter = Callable[[str], Awaitable[tuple[int, bytes, str | None]]]
"""``async get(url) -> (status, body, location)``: one GET without following redirects.

``body`` is the content-decoded payload (at least the first 500 KiB),
``location`` the ``Location`` header or None. It raises (``OSError``,
``asyncio.TimeoutError``, a :class:`shoal.errors.FetchError`, ...) when the
server cannot be reached; :class:`RobotsCache` treats any exception as
"unreachable".
"""

_TOKEN: Final = re.compile(r"[A-Za-z_-]*")
_UA_LINE: Final = re.compile(r"(?i)^(\s*user(?:-|\s+)?agent\s*:?\s*)([^#]*)")
_ESCAPE: Final = re.compile(r"%([0-9a-fA-F]{2})")
_NON_ASCII: Final = re.compile(r"[^\x00-\x7f]+")
_NEVER: Final = "0 0"
"""A User-agent value that no product token contains (tokens have no whitespace)."""
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})


def product_token(user_agent: str) -> str:
    """The crawler's product token: its User-Agent up to the first ``/`` or whitespace, lower case.

    ``shoal/0.1 (web archive crawler)`` gives ``shoal``. RFC 9309 section 2.2.1
    wants it made of letters, ``_`` and ``-`` only: groups are named that way,
    so a token with other characters matches no group but ``*``.
    """
    parts = user_agent.strip().split("/", 1)[0].split(None, 1)
    return parts[0].lower() if parts else ""


def _group_token(value: str) -> str:
    """The product token a ``User-agent`` line names: its leading run of ``[A-Za-z_-]``, lower case."""
    m = _TOKEN.match(value)
    return m.group().lower() if m else ""


def _upper_escapes(text: str) -> str:
    return _ESCAPE.sub(lambda m: "%" + m.group(1).upper(), text) if "%" in text else text


def _encode_non_ascii(text: str) -> str:
    return _NON_ASCII.sub(lambda m: quote(m.group(), safe=""), text)


def _ua_value(value: str, token: str) -> str:
    """What protego should see as a User-agent value so that it matches exactly as RFC 9309 says."""
    value = value.strip()
    if value.startswith("*") and (len(value) == 1 or value[1].isspace()):
        return "*"
    theirs = _group_token(value)
    return token if theirs and theirs == token else _NEVER


def _prepare(text: str, token: str, compat: Compat) -> str:
    """Rewrite a robots.txt so that protego's grouping and matching follow RFC 9309."""
    out: list[str] = []
    for line in text.splitlines():
        m = _UA_LINE.match(line)
        if m is not None and m.group(2).strip():
            out.append(m.group(1) + _ua_value(m.group(2), token) + line[m.end() :])
        elif compat == "google":
            # Escapes are kept as written ("%" itself escaped so protego does not decode
            # them); non-ASCII characters of the rules are percent-encoded first.
            out.append(_encode_non_ascii(_upper_escapes(line)).replace("%", "%25"))
        else:
            out.append(line)
    return "\n".join(out)


def _path_of(url: str) -> str:
    """The path and query of a URL (or of a bare path), without its fragment; ``/`` at least."""
    start = url.find("://")
    if start >= 0:
        rest = url[start + 3 :]
        cut = len(rest)
        for sep in "/?#":
            i = rest.find(sep)
            if 0 <= i < cut:
                cut = i
        url = rest[cut:]
    url = url.partition("#")[0]
    if not url.startswith("/"):
        url = "/" + url
    return url


@dataclass(frozen=True, slots=True)
class _Verdict:
    allow_all: bool = False
    disallow_all: bool = False


class Robots:
    """The robots.txt rules of one host as they apply to one user agent.

    Build it with :meth:`from_response` (or :meth:`unreachable`); ask it with
    :meth:`allowed` and :meth:`crawl_delay`. ``temporary`` is True when the
    rules are a stand-in for a robots.txt that could not be read (5xx, 429,
    unreachable): everything is disallowed and the cache retries soon.
    """

    __slots__ = ("_compat", "_parser", "_token", "_verdict", "status", "temporary")

    def __init__(
        self,
        parser: Protego | None,
        token: str,
        *,
        compat: Compat = "rfc9309",
        allow_all: bool = False,
        disallow_all: bool = False,
        temporary: bool = False,
        status: int | None = None,
    ) -> None:
        self._parser = parser
        self._token = token
        self._compat: Compat = compat
        self._verdict = _Verdict(allow_all, disallow_all)
        self.temporary = temporary
        """True for "disallow everything for now" (5xx, 429, unreachable)."""
        self.status = status
        """The HTTP status the rules came from (None when unreachable)."""

    @classmethod
    def parse(cls, body: bytes | str, user_agent: str, *, compat: Compat = "rfc9309") -> Robots:
        """Rules from the text of a robots.txt (bytes are cut at 500 KiB and decoded as UTF-8)."""
        if isinstance(body, bytes):
            if len(body) > MAX_ROBOTS_BYTES:
                body = body[:MAX_ROBOTS_BYTES]
                # A line cut in half could allow more than its author meant.
                body = body[: max(body.rfind(b"\n"), body.rfind(b"\r")) + 1]
            # A byte order mark, even a partial one, is not part of the first line.
            for bom in (b"\xef\xbb\xbf", b"\xef\xbb", b"\xef"):
                if body.startswith(bom):
                    body = body[len(bom) :]
                    break
            text = body.decode("utf-8", "replace")
        else:
            text = body.removeprefix("\ufeff")
        token = product_token(user_agent)
        return cls(Protego.parse(_prepare(text, token, compat)), token, compat=compat, status=200)

    @classmethod
    def from_response(
        cls, status: int, body: bytes, user_agent: str, *, compat: Compat = "rfc9309"
    ) -> Robots:
        """Rules from the final response to ``GET /robots.txt`` (redirects already followed).

        2xx: the body is parsed. 3xx (a redirect not followed, or too many) and
        4xx other than 429: no robots.txt, everything is allowed. 5xx, 429 and
        anything else: everything is disallowed for now (``temporary``).
        """
        if 200 <= status < 300:
            robots = cls.parse(body, user_agent, compat=compat)
            robots.status = status
            return robots
        token = product_token(user_agent)
        if 300 <= status < 500 and status != 429:
            return cls(None, token, compat=compat, allow_all=True, status=status)
        return cls(None, token, compat=compat, disallow_all=True, temporary=True, status=status)

    @classmethod
    def unreachable(cls) -> Robots:
        """The rules of a host whose robots.txt could not be fetched: disallow all, for now."""
        return cls(None, "", disallow_all=True, temporary=True)

    @classmethod
    def allow_everything(cls) -> Robots:
        """The rules of a host without a robots.txt."""
        return cls(None, "", allow_all=True)

    def allowed(self, url: str) -> bool:
        """True when the user agent may fetch ``url`` (a full URL or a path with its query)."""
        verdict = self._verdict
        if verdict.allow_all:
            return True
        if verdict.disallow_all or self._parser is None:
            return False
        path = _path_of(url)
        if self._compat == "google":
            path = _upper_escapes(path).replace("%", "%25")
            if path.partition("?")[0] == "/robots.txt":
                # protego always allows /robots.txt; an escaped dot hides it from that shortcut
                # and is decoded back before matching.
                path = "/robots%2Etxt" + path[len("/robots.txt") :]
        return self._parser.can_fetch("http://h" + path, self._token)

    def crawl_delay(self) -> float | None:
        """The Crawl-delay (seconds) of the group that applies to the user agent, else None."""
        if self._parser is None:
            return None
        return self._parser.crawl_delay(self._token)

    def sitemaps(self) -> list[str]:
        """The URLs of the file's ``Sitemap:`` lines (any group), in order; none when it was not read."""
        if self._parser is None:
            return []
        return [str(u) for u in self._parser.sitemaps][:100]

    def __repr__(self) -> str:
        kind = (
            "allow-all"
            if self._verdict.allow_all
            else "disallow-all"
            if self._verdict.disallow_all
            else "rules"
        )
        return f"<Robots {kind} status={self.status} temporary={self.temporary}>"


@dataclass(slots=True)
class _Entry:
    robots: Robots
    expires: float
    fetched: float


class RobotsCache:
    """robots.txt per origin (``scheme://host[:port]``), fetched once and kept for a while.

    ``get`` performs one GET (see :data:`RobotsGetter`); the cache follows up
    to ``max_redirects`` redirects itself, to any host, and resolves relative
    ``Location`` values. Concurrent lookups of one origin share one fetch.

    Entries live ``ttl`` seconds (24 h, the longest RFC 9309 section 2.4
    allows) and temporary ones ("disallow for now") ``temporary_ttl`` seconds.
    When a refresh fails, rules fetched before keep being used (the RFC's
    exception for an unreachable robots.txt) and the refresh is retried after
    ``temporary_ttl``, for at most ``max_stale`` seconds (30 days).
    """

    def __init__(
        self,
        get: RobotsGetter,
        user_agent: str,
        *,
        ttl: float = 24 * 3600.0,
        temporary_ttl: float = 300.0,
        max_stale: float = 30 * 24 * 3600.0,
        max_redirects: int = 5,
        max_hosts: int = 100_000,
        compat: Compat = "rfc9309",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._get = get
        self.user_agent = user_agent
        self.ttl = ttl
        self.temporary_ttl = temporary_ttl
        self.max_stale = max_stale
        self.max_redirects = max_redirects
        self.max_hosts = max_hosts
        self.compat: Compat = compat
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Task[Robots]] = {}

    @staticmethod
    def origin(url: str) -> str:
        """``scheme://host[:port]`` of an http(s) URL: the unit robots.txt applies to."""
        try:
            u = URL(url)
        except ValueError:
            raise URLError(f"not a valid URL: {url[:200]!r}") from None
        if u.protocol not in ("http:", "https:"):
            raise URLError(f"robots.txt applies to http and https URLs, not {u.protocol[:-1]!r}")
        return f"{u.protocol}//{u.host}"

    async def robots(self, url: str) -> Robots:
        """The rules for the origin of ``url``, fetched when missing or expired."""
        origin = self.origin(url)
        entry = self._entries.get(origin)
        if entry is not None and entry.expires > self._clock():
            return entry.robots
        task = self._inflight.get(origin)
        if task is None:
            task = asyncio.ensure_future(self._refresh(origin))
            self._inflight[origin] = task
            task.add_done_callback(lambda t: self._forget(origin, t))
        # A caller that is cancelled does not cancel the fetch the others wait for.
        return await asyncio.shield(task)

    async def allowed(self, url: str) -> bool:
        """True when robots.txt lets the user agent fetch ``url``."""
        return (await self.robots(url)).allowed(url)

    async def crawl_delay(self, url: str) -> float | None:
        """The Crawl-delay (seconds) for the origin of ``url``, else None."""
        return (await self.robots(url)).crawl_delay()

    def _forget(self, origin: str, task: asyncio.Task[Robots]) -> None:
        if self._inflight.get(origin) is task:
            del self._inflight[origin]

    async def _refresh(self, origin: str) -> Robots:
        robots = await self._fetch(origin)
        now = self._clock()
        old = self._entries.get(origin)
        if (
            robots.temporary
            and old is not None
            and not old.robots.temporary
            and now - old.fetched < self.max_stale
        ):
            self._entries[origin] = _Entry(old.robots, now + self.temporary_ttl, old.fetched)
            return old.robots
        ttl = self.temporary_ttl if robots.temporary else self.ttl
        self._store(origin, _Entry(robots, now + ttl, now))
        return robots

    def _store(self, origin: str, entry: _Entry) -> None:
        self._entries.pop(origin, None)
        if len(self._entries) >= self.max_hosts:
            now = self._clock()
            for key in [k for k, e in self._entries.items() if e.expires <= now]:
                del self._entries[key]
            while len(self._entries) >= self.max_hosts:
                del self._entries[next(iter(self._entries))]  # the oldest
        self._entries[origin] = entry

    async def _fetch(self, origin: str) -> Robots:
        url = origin + "/robots.txt"
        for _ in range(self.max_redirects + 1):
            try:
                status, body, location = await self._get(url)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # unreachable, whatever the getter raised
                log.info("robots.txt of %s unreachable: %r", origin, exc)
                return Robots.unreachable()
            if status not in _REDIRECTS:
                return Robots.from_response(status, body, self.user_agent, compat=self.compat)
            if not location:
                break
            try:
                target = URL(location, url)
            except ValueError:
                break
            if target.protocol not in ("http:", "https:"):
                break
            target.hash = ""
            url = target.href
        # RFC 9309 section 2.3.1.2: past five redirects the robots.txt may be taken as unavailable.
        return Robots.allow_everything()
