"""The HTTP fetcher: one request per call through aiohttp, bytes kept as received.

Redirects are not followed here (the worker follows them so that every hop is
checked). The body is read still content-encoded, capped, under one total
deadline; DNS answers pass through the address policy before any connection,
and the address actually connected to is checked again.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from shoal.errors import ErrorClass, FetchError, PolicyRefusal, SkipReason
from shoal.fetch.address import AddressPolicy
from shoal.fetch.base import FetchResult
from shoal.spec import Rule

__all__ = ["AddressRefused", "HttpFetcher", "PolicyResolver"]


class AddressRefused(Exception):
    """Every address a host name resolved to is refused by the address policy."""

    def __init__(self, host: str, addresses: list[str]) -> None:
        super().__init__(f"{host} resolves only to refused addresses {addresses}")
        self.host = host
        self.addresses = addresses


class PolicyResolver(AbstractResolver):
    """Resolves names, then keeps only the addresses the policy allows."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        infos = await self.inner.resolve(host, port, family)
        allowed = [i for i in infos if self.policy.allows(i["host"])]
        if not allowed:
            raise AddressRefused(host, [i["host"] for i in infos])
        return allowed

    async def close(self) -> None:
        await self.inner.close()


_HTTP_VERSION = {(1, 1): "1.1", (1, 0): "1.0", (0, 9): "0.9"}


class HttpFetcher:
    """Fetches URLs with aiohttp under the address policy and the spec's caps."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        user_agent: str,
        max_body_bytes: int,
        connect_timeout: float = 10.0,
        concurrency: int = 64,
        extra_headers: dict[str, str] | None = None,
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
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.concurrency,
                limit_per_host=0,
                ttl_dns_cache=300,
                resolver=PolicyResolver(self.policy),
                enable_cleanup_closed=False,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, connect=self.connect_timeout),
                skip_auto_headers=("User-Agent",),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def fetch(self, url: str, rule: Rule | None = None, *, deadline: float, headers: dict[str, str] | None = None) -> FetchResult:
        """One GET of ``url``; a response of any status is a result, no response is a FetchError."""
        session = self._get_session()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError(ErrorClass.TRANSIENT, "fetch deadline passed before the request started")
        started = time.time()
        t0 = time.monotonic()
        req_headers = self.headers if headers is None else {**self.headers, **headers}
        resp: aiohttp.ClientResponse | None = None
        peer_ip: str | None = None
        body = bytearray()
        truncated: str | None = None
        try:
            async with asyncio.timeout(remaining):
                resp = await session.get(url, headers=req_headers, allow_redirects=False)
                peer_ip = _peer_ip(resp)
                if peer_ip is not None and not self.policy.allows(peer_ip):
                    resp.close()
                    raise PolicyRefusal(SkipReason.ADDRESS_POLICY, f"connected address {peer_ip} is refused by the address policy")
                cap = self.max_body_bytes
                length = resp.content_length
                if length is not None and length <= cap:
                    body += await resp.read()
                else:
                    async for chunk in resp.content.iter_chunked(65536):
                        room = cap - len(body)
                        if len(chunk) > room:
                            body += chunk[:room]
                            truncated = "length"
                            break
                        body += chunk
                    if truncated:
                        resp.close()
        except PolicyRefusal:
            raise
        except AddressRefused as exc:
            raise PolicyRefusal(SkipReason.ADDRESS_POLICY, str(exc)) from None
        except TimeoutError:
            if resp is None:
                raise FetchError(ErrorClass.TRANSIENT, f"no response within the {remaining:.1f}s deadline") from None
            truncated = "time"
            resp.close()
        except aiohttp.ClientPayloadError as exc:
            if resp is None:
                raise FetchError(ErrorClass.TRANSIENT, f"broken response body: {exc}") from None
            truncated = "disconnect"
        except aiohttp.InvalidURL as exc:
            raise FetchError(ErrorClass.PERMANENT, f"invalid URL: {exc}") from None
        except aiohttp.ClientConnectorDNSError as exc:
            raise FetchError(ErrorClass.TRANSIENT, f"DNS lookup failed: {exc.os_error}") from None
        except aiohttp.ClientConnectorError as exc:
            raise FetchError(ErrorClass.TRANSIENT, f"cannot connect: {exc.os_error}") from None
        except aiohttp.ServerDisconnectedError:
            if resp is None:
                raise FetchError(ErrorClass.TRANSIENT, "server closed the connection without a response") from None
            truncated = "disconnect"
        except aiohttp.ClientResponseError as exc:
            # Malformed status line or headers: the server's answer cannot be read.
            raise FetchError(ErrorClass.PERMANENT, f"malformed HTTP response: {exc.message}") from None
        except aiohttp.ClientOSError as exc:
            raise FetchError(ErrorClass.TRANSIENT, f"connection error: {exc}") from None
        except aiohttp.ClientError as exc:
            raise FetchError(ErrorClass.TRANSIENT, f"{type(exc).__name__}: {exc}") from None
        assert resp is not None
        sent = resp.request_info.headers
        return FetchResult(
            url=url,
            status=resp.status,
            reason=resp.reason or "",
            http_version=_HTTP_VERSION.get((resp.version.major, resp.version.minor), "1.1") if resp.version else "1.1",
            headers=[(k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape")) for k, v in resp.raw_headers],
            body=bytes(body),
            request_headers=[(k, v) for k, v in sent.items()],
            peer_ip=peer_ip,
            started_at=started,
            elapsed=time.monotonic() - t0,
            truncated=truncated,
        )

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _peer_ip(resp: aiohttp.ClientResponse) -> str | None:
    conn: Any = resp.connection
    if conn is None or conn.transport is None:
        return None
    peer = conn.transport.get_extra_info("peername")
    if not peer:
        return None
    return str(peer[0])
