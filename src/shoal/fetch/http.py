"""The HTTP fetcher: one request per call through aiohttp, bytes kept as received.

Redirects are not followed here (the worker follows them so that every hop is
checked). What one call guarantees:

- **Address policy.** DNS answers pass through :class:`~shoal.fetch.address.PolicyResolver` before
  any connection; an IP literal in the URL (which aiohttp never resolves) is
  checked before the request; and every socket is checked against the policy
  just before it connects (aiohttp's ``socket_factory``), so no path reaches a
  refused address. A refusal raises :class:`~shoal.errors.PolicyRefusal`
  (``address_policy``). :meth:`HttpFetcher.check_address` answers the same
  question without a request, so the worker can skip a refused host before
  asking for its robots.txt.
- **Size.** The body is read still content-encoded (that is what the WARC
  keeps) and decoded as it streams by a :class:`~shoal.content.codings.StreamDecoder`: each chunk is
  decompressed in bounded steps and counted against ``max_body_bytes``, so a
  decompression bomb stops at the cap with its memory bounded by the cap, not
  by what it would expand to. Raw bytes are capped the same way. A body over
  the cap keeps what was read, marked ``truncated="length"``.
- **Time.** One total deadline covers connect, headers and body: a server that
  drips a byte a second or hangs after its headers is cut at the deadline,
  keeping what arrived (``truncated="time"``).
- **Broken servers.** Malformed status lines, headers, duplicate
  Content-Length and bad chunked framing are
  :class:`~shoal.errors.FetchError` ``permanent``; refused connections, DNS
  failures and a connection closed before the response are ``transient``; a
  body cut by a reset or an early close keeps what arrived
  (``truncated="disconnect"``). With aiohttp's C parser a malformed chunk
  *after* the first body bytes stalls the read instead of raising (aiohttp
  issue 10355): the deadline then ends it as ``time``.
- **Secrets.** Credentials in the URL (``http://user:pass@host/``) are sent as
  Basic authorization and removed from the URL the result carries; the
  recorded request headers have their secret values redacted
  (:func:`shoal.secrets.redact_headers`), so neither reaches the WARC.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.resolver import DefaultResolver

from shoal.content import HTML_TYPES
from shoal.content.codings import StreamDecoder, content_codings
from shoal.errors import (
    AddressRefused,
    ContentCodingError,
    ErrorClass,
    FetchError,
    PolicyRefusal,
    SkipReason,
    URLError,
)
from shoal.exchange import FetchRequest, FetchResult
from shoal.fetch.address import AddressPolicy, PolicyResolver
from shoal.secrets import redact_headers, redact_text
from shoal.urls import resolve

__all__ = [
    "HostHeaders",
    "HttpFetcher",
    "StaticResolver",
    "split_userinfo",
]


class _PeerResponse(aiohttp.ClientResponse):
    """Remembers the address its connection goes to (the connection may be released before it is read)."""

    peer_ip: str | None = None

    async def start(self, connection: Any) -> aiohttp.ClientResponse:
        transport = connection.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        if peer:
            self.peer_ip = str(peer[0])
        return await super().start(connection)


class StaticResolver(AbstractResolver):
    """Resolves names from a fixed table (``{"name": ["127.0.0.2", ...]}``), like an /etc/hosts file.

    Names not in the table go to ``fallback`` (the system resolver when None)
    or, with ``fallback=False``, fail as unknown names. Tests use it to make a
    name resolve to 127.0.0.2 or 169.254.169.254 without touching DNS; the
    fetcher wraps it in the same :class:`PolicyResolver` as in production.
    """

    def __init__(
        self, table: Mapping[str, Iterable[str]], fallback: AbstractResolver | bool | None = None
    ) -> None:
        self.table = {k.lower(): list(v) for k, v in table.items()}
        self._fallback = fallback

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The table's addresses of ``host`` (port as given), else the fallback's answer."""
        addresses = self.table.get(host.lower().rstrip("."))
        if addresses is None:
            if self._fallback is False:
                raise OSError(socket.EAI_NONAME, f"{host} is not in the static table")
            if not isinstance(self._fallback, AbstractResolver):
                self._fallback = DefaultResolver()
            return await self._fallback.resolve(host, port, family)
        out: list[ResolveResult] = []
        for a in addresses:
            fam = socket.AF_INET6 if ":" in a else socket.AF_INET
            if family not in (socket.AF_UNSPEC, fam):
                continue
            out.append(
                ResolveResult(
                    hostname=host,
                    host=a,
                    port=port,
                    family=fam,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
            )
        if not out:
            raise OSError(socket.EAI_NODATA, f"{host} has no address of family {family!r}")
        return out

    async def close(self) -> None:
        """Close the fallback resolver, if one was made."""
        if isinstance(self._fallback, AbstractResolver):
            await self._fallback.close()


def split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """``url`` without ``user:password@``, and the (percent-decoded) credentials it carried, if any."""
    end = url.find("/", url.find("//") + 2)
    if url.find("@", 0, end if end >= 0 else len(url)) < 0:
        return url, None
    try:
        u = resolve(url)
    except URLError:
        return url, None
    if not u.username and not u.password:
        return url, None
    creds = (unquote(u.username), unquote(u.password))
    u.username = ""
    u.password = ""
    return u.href, creds


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class HostHeaders:
    """Extra request headers per host (credentials, session cookies), sent to that host only.

    ``table`` maps ``name[:port]`` to headers; an entry with a port matches
    that port only, one without matches every port of that name. No wildcard:
    a credential is never sent to a subdomain or another site, so a redirect
    to another host drops ``Authorization`` and ``Cookie`` by construction.
    Seeds given with ``user:password@`` add a Basic ``Authorization`` for
    their host (the URLs the crawl discovers are stored without credentials).
    """

    def __init__(
        self, table: Mapping[str, Mapping[str, str]] | None = None, seeds: Iterable[str] = ()
    ) -> None:
        self._table: dict[str, dict[str, str]] = {}
        for host, headers in (table or {}).items():
            self._table.setdefault(_host_id(host), {}).update(headers)
        for seed in seeds:
            _, creds = split_userinfo(seed)
            if creds is None:
                continue
            try:
                host = resolve(seed).host
            except URLError:
                continue
            self._table.setdefault(_host_id(host), {}).setdefault("Authorization", _basic(*creds))

    def __bool__(self) -> bool:
        return bool(self._table)

    def for_url(self, url: str) -> dict[str, str]:
        """The headers to send with a request to ``url`` (empty when none)."""
        if not self._table:
            return {}
        try:
            host = resolve(url).host.lower()
        except URLError:
            return {}
        hit = self._table.get(host)
        if hit is None and (host.count(":") == 1 or "]:" in host):
            hit = self._table.get(host.rsplit(":", 1)[0])
        return hit or {}


def _host_id(host: str) -> str:
    host = host.strip().lower()
    try:
        return resolve(f"http://{host}/").host.lower()
    except URLError:
        return host


# -- the fetcher -------------------------------------------------------------------------------


_HTTP_VERSION = {(1, 1): "1.1", (1, 0): "1.0", (0, 9): "0.9"}


class HttpFetcher:
    """Fetches URLs with aiohttp under the address policy and the spec's caps.

    ``resolver`` replaces the system resolver under the policy (tests give a
    :class:`StaticResolver`); every answer still passes the policy.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        user_agent: str,
        max_body_bytes: int,
        connect_timeout: float = 10.0,
        concurrency: int = 64,
        extra_headers: dict[str, str] | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.policy = policy
        self.user_agent = user_agent
        self.max_body_bytes = max_body_bytes
        self.connect_timeout = connect_timeout
        self.concurrency = concurrency
        self.headers = {
            "User-Agent": user_agent,
            "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "Accept-Encoding": "gzip, deflate, br, zstd",
            "Accept-Language": "ko,en;q=0.8",
        }
        if extra_headers:
            self.headers.update(extra_headers)
        self._resolver = PolicyResolver(policy, resolver)
        self._own_inner = resolver is None
        self._session: aiohttp.ClientSession | None = None
        self._checked: dict[str, tuple[float, str | None]] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.concurrency,
                limit_per_host=0,
                ttl_dns_cache=300,
                resolver=self._resolver,
                enable_cleanup_closed=False,
                socket_factory=self._socket,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, connect=self.connect_timeout),
                skip_auto_headers=("User-Agent",),
                cookie_jar=aiohttp.DummyCookieJar(),
                response_class=_PeerResponse,
            )
        return self._session

    def _socket(self, addr_info: Any) -> socket.socket:
        """Every socket aiohttp opens: the last check of the address policy, before connecting."""
        family, type_, proto, _, address = addr_info
        if not self.policy.allows(str(address[0])):
            raise AddressRefused(str(address[0]), [str(address[0])], connecting=True)
        return socket.socket(family=family, type=type_, proto=proto)

    def _literal_refusal(self, host: str) -> PolicyRefusal | None:
        """The refusal of an IP-literal host, None for an allowed literal or a name."""
        literal = host[1:-1] if host.startswith("[") else host
        try:
            ipaddress.ip_address(literal.split("%", 1)[0])
        except ValueError:
            return None
        if self.policy.allows(literal):
            return None
        return PolicyRefusal(
            SkipReason.ADDRESS_POLICY, f"address {literal} is refused by the address policy"
        )

    async def check_address(self, url: str) -> None:
        """Raise :class:`~shoal.errors.PolicyRefusal` when the policy refuses every address of ``url``'s host.

        Names are resolved (answers kept five minutes per host); a name that
        does not resolve passes, so that the fetch itself reports the DNS
        failure as transient. Only a hint for the worker's order of checks:
        the fetch enforces the policy on its own connection whatever this says.
        """
        if self.policy.allow_private:
            return
        try:
            host = resolve(url).hostname
        except URLError:
            return
        refusal = self._literal_refusal(host)
        if refusal is not None:
            raise refusal
        if host.startswith("[") or not host:
            return
        now = time.monotonic()
        hit = self._checked.get(host)
        if hit is None or hit[0] < now:
            detail: str | None = None
            try:
                await asyncio.wait_for(
                    self._resolver.resolve(host, 0, socket.AF_UNSPEC), self.connect_timeout
                )
            except AddressRefused as exc:
                detail = str(exc)
            except (OSError, TimeoutError, ValueError):
                detail = None
            if len(self._checked) > 10_000:
                self._checked.clear()
            hit = self._checked[host] = (now + 300, detail)
        if hit[1] is not None:
            raise PolicyRefusal(SkipReason.ADDRESS_POLICY, hit[1])

    async def fetch(self, request: FetchRequest) -> FetchResult:
        """One GET of ``request.url``; a response of any status is a result, no response is a FetchError.

        ``request.headers`` are added to this request only (the worker passes a
        host's :class:`HostHeaders`). With ``request.html_only`` the body of a
        2xx response whose type is not in :data:`HTML_TYPES` is not read.
        """
        url, deadline, html_only = request.url, request.deadline, request.html_only
        session = self._get_session()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError(
                ErrorClass.TRANSIENT, "fetch deadline passed before the request started"
            )
        target, creds = split_userinfo(url)
        req_headers = dict(self.headers)
        req_headers.update(request.headers)
        if creds is not None and not any(k.lower() == "authorization" for k in req_headers):
            req_headers["Authorization"] = _basic(*creds)
        try:
            host = resolve(target).hostname
        except URLError as exc:
            raise FetchError(ErrorClass.PERMANENT, f"invalid URL: {exc}") from None
        refusal = self._literal_refusal(host)
        if refusal is not None:
            raise refusal
        started = time.time()
        t0 = time.monotonic()
        resp: aiohttp.ClientResponse | None = None
        peer_ip: str | None = None
        body = bytearray()
        decoder: StreamDecoder | None = None
        decoded = bytearray()
        undecodable = False
        truncated: str | None = None
        try:
            try:
                async with asyncio.timeout(remaining):
                    resp = await session.get(target, headers=req_headers, allow_redirects=False)
                    peer_ip = _peer_ip(resp)
                    if peer_ip is not None and not self.policy.allows(peer_ip):
                        resp.close()
                        raise PolicyRefusal(
                            SkipReason.ADDRESS_POLICY,
                            f"connected address {peer_ip} is refused by the address policy",
                        )
                    try:
                        codings = content_codings(resp.headers.get("Content-Encoding"))
                    except ContentCodingError:
                        codings = None
                    if codings is None:
                        undecodable = True
                    elif codings:
                        decoder = StreamDecoder(codings, self.max_body_bytes)
                    ctype = (
                        (resp.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
                    )
                    if html_only and 200 <= resp.status < 300 and ctype not in HTML_TYPES:
                        resp.close()
                    else:
                        truncated = await self._read_body(resp, body, decoder, decoded)
            except BaseException:
                if resp is not None:
                    resp.close()
                raise
        except PolicyRefusal:
            raise
        except AddressRefused as exc:
            raise PolicyRefusal(SkipReason.ADDRESS_POLICY, str(exc)) from None
        except TimeoutError as exc:
            if resp is None:
                if isinstance(exc, aiohttp.ServerTimeoutError):
                    raise FetchError(
                        ErrorClass.TRANSIENT, f"connect timed out after {self.connect_timeout:.1f}s"
                    ) from None
                raise FetchError(
                    ErrorClass.TRANSIENT, f"no response within the {remaining:.1f}s deadline"
                ) from None
            truncated = "time"
            resp.close()
        except aiohttp.ClientConnectorDNSError as exc:
            if isinstance(exc.os_error, AddressRefused):  # the resolver refused every address
                raise PolicyRefusal(SkipReason.ADDRESS_POLICY, str(exc.os_error)) from None
            raise FetchError(ErrorClass.TRANSIENT, f"DNS lookup failed: {exc.os_error}") from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, AddressRefused):
                raise PolicyRefusal(SkipReason.ADDRESS_POLICY, str(exc.os_error)) from None
            raise FetchError(ErrorClass.TRANSIENT, f"cannot connect: {exc.os_error}") from None
        except aiohttp.InvalidURL as exc:
            raise FetchError(
                ErrorClass.PERMANENT, f"invalid URL: {redact_text(str(exc))}"
            ) from None
        except aiohttp.ServerDisconnectedError:
            raise FetchError(
                ErrorClass.TRANSIENT, "server closed the connection without a response"
            ) from None
        except aiohttp.ClientResponseError as exc:
            # Malformed status line or headers, duplicate Content-Length, bad chunk framing.
            raise FetchError(
                ErrorClass.PERMANENT, f"malformed HTTP response: {_one_line(exc.message)}"
            ) from None
        except aiohttp.ClientOSError as exc:
            raise FetchError(
                ErrorClass.TRANSIENT, f"connection error: {redact_text(str(exc))}"
            ) from None
        except aiohttp.ClientError as exc:
            raise FetchError(
                ErrorClass.TRANSIENT, f"{type(exc).__name__}: {redact_text(str(exc))}"
            ) from None
        except ValueError as exc:  # yarl/idna refusing a URL that ada accepted
            raise FetchError(
                ErrorClass.PERMANENT, f"invalid URL: {redact_text(str(exc))}"
            ) from None
        assert resp is not None
        if truncated is not None:
            resp.close()  # the connection is in an unknown state: never reuse it
        raw = bytes(body)
        if decoder is None:
            dec: bytes | None = None if undecodable else raw
        elif decoder.failed is not None:
            dec = None
        else:
            dec = bytes(decoded)
            if decoder.over and truncated is None:
                truncated = "length"
        return FetchResult(
            url=target,
            status=resp.status,
            reason=resp.reason or "",
            http_version=_HTTP_VERSION.get((resp.version.major, resp.version.minor), "1.1")
            if resp.version
            else "1.1",
            headers=[
                (k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
                for k, v in resp.raw_headers
            ],
            body=raw,
            request_headers=redact_headers(resp.request_info.headers.items()),
            peer_ip=peer_ip,
            started_at=started,
            elapsed=time.monotonic() - t0,
            truncated=truncated,
            decoded=dec,
        )

    async def _read_body(
        self,
        resp: aiohttp.ClientResponse,
        body: bytearray,
        decoder: StreamDecoder | None,
        decoded: bytearray,
    ) -> str | None:
        """Read the body into ``body`` (raw) and ``decoded``; returns why it is incomplete, else None."""
        cap = self.max_body_bytes
        try:
            async for chunk in resp.content.iter_any():
                room = cap - len(body)
                cut = len(chunk) > room
                if cut:
                    chunk = chunk[:room]
                body += chunk
                if decoder is not None:
                    decoded += decoder.feed(chunk)
                    if decoder.over:
                        resp.close()
                        return "length"
                if cut:
                    resp.close()
                    return "length"
        except aiohttp.ClientPayloadError:
            return "disconnect"  # reset or closed before Content-Length / the last chunk
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            return "disconnect"
        except HttpProcessingError:
            resp.close()
            return "unspecified"  # malformed framing in the body (aiohttp's Python parser)
        return None

    async def close(self) -> None:
        """Close the connection pool and the resolver."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._resolver.close()
        self._resolver.inner = None if self._own_inner else self._resolver.inner


def _one_line(text: str) -> str:
    return redact_text(" ".join(text.split()))[:500]


def _peer_ip(resp: aiohttp.ClientResponse) -> str | None:
    ip = getattr(resp, "peer_ip", None)
    if ip is not None:
        return str(ip)
    conn: Any = resp.connection
    peer = (
        conn.transport.get_extra_info("peername")
        if conn is not None and conn.transport is not None
        else None
    )
    return str(peer[0]) if peer else None
