"""A filtering HTTP forward proxy on 127.0.0.1 that every browser request goes through.

Chromium is started with ``--proxy-server=http://127.0.0.1:PORT`` and
``--proxy-bypass-list=<-loopback>``, so nothing it loads (document, script,
image, iframe, XHR, redirect target, WebSocket) reaches the network except
through this proxy. For each request the proxy resolves the host once, checks
every resolved address with :meth:`AddressPolicy.allows` and connects only to
the allowed ones (no second resolution, so no DNS rebinding between check and
connect), exactly as the HTTP fetcher's resolver does. A request whose host has
no allowed address gets ``403`` with ``X-Shoal-Refused: address_policy`` and is
listed in :attr:`FilteringProxy.refused`.

Plain ``http://`` requests are forwarded by the proxy itself, which lets it keep
the exact response of the page being rendered (status line, headers, body after
de-chunking and still content-encoded): the browser fetcher turns that record
into its :class:`~shoal.exchange.FetchResult`. ``CONNECT`` tunnels (https,
wss) are checked the same way and then carry opaque TLS bytes, so for an https
page the fetcher reconstructs the response from Chrome DevTools instead (see
:mod:`shoal.fetch.browser`); the proxy only contributes the peer address.

Each browser gets its own :class:`ProxyChannel` (its own port), so a response is
attributed to the browser that asked for it without guessing. All channels are
served by one event loop on one daemon thread owned by the proxy.

When the page being rendered answers with a redirect, the proxy keeps the 3xx
in the record and hands the browser a small stub page instead of the redirect:
fetchers never follow redirects (the worker follows them, checking each hop
against scope, robots and politeness).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from shoal.fetch.address import AddressPolicy

__all__ = [
    "BROWSER_SERVICE_HOSTS",
    "REFUSED_HEADER",
    "Exchange",
    "FilteringProxy",
    "ProxyChannel",
    "ProxyRecord",
    "Refusal",
    "normalize_url",
]

log = logging.getLogger(__name__)

REFUSED_HEADER = "X-Shoal-Refused"
"""Header of the proxy's own 403 answer when the address policy refused a request."""

BROWSER_SERVICE_HOSTS = frozenset(
    {
        "accounts.google.com",
        "update.googleapis.com",
        "clients1.google.com",
        "clients2.google.com",
        "clients2.googleusercontent.com",
        "redirector.gvt1.com",
        "edgedl.me.gvt1.com",
        "dl.google.com",
        "optimizationguide-pa.googleapis.com",
        "content-autofill.googleapis.com",
        "safebrowsing.googleapis.com",
        "safebrowsing.google.com",
        "android.clients.google.com",
        "chromewebstore.googleapis.com",
    }
)
"""Hosts Chromium talks to on its own behalf, never for a page worth crawling.

No switch stops every such request: Chromium 156 still posts GAIA
``ListAccounts`` to accounts.google.com when a profile's network comes up, and
asks update.googleapis.com for the on-device model manifest, whatever the
flags. The browser fetcher refuses these hosts in the proxy, before any DNS
lookup, so they never leave the machine.
"""

_MAX_HEAD = 64 * 1024
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_REDIRECT_STUB = (
    b"<!doctype html><html><head><title>redirect held by shoal</title></head><body></body></html>"
)

Headers = list[tuple[str, str]]


@dataclass(slots=True)
class ProxyRecord:
    """The exchange of the page a channel was told to expect, as it went over the wire.

    ``body`` is de-chunked but still content-encoded. ``error`` is set instead of
    a response when none could be had: ``address_policy`` (refused), ``dns``,
    ``connect``, ``timeout``, ``disconnect`` (no complete response head) or
    ``malformed`` (an unreadable status line or headers). ``redirect_held`` says the 3xx was
    kept from the browser (it got a stub page).
    """

    url: str
    method: str = "GET"
    status: int = 0
    reason: str = ""
    http_version: str = "HTTP/1.1"
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    request_headers: Headers = field(default_factory=list)
    peer_ip: str | None = None
    started_at: float = 0.0
    elapsed: float = 0.0
    truncated: str | None = None
    error: str | None = None
    detail: str = ""
    redirect_held: bool = False


@dataclass(slots=True, frozen=True)
class Refusal:
    """A request the address policy refused: nothing was sent to ``addresses``."""

    url: str
    host: str
    addresses: tuple[str, ...]
    at: float


@dataclass(slots=True, frozen=True)
class Exchange:
    """A one-line summary of any request that went through a channel (bounded log)."""

    method: str
    url: str
    status: int
    peer_ip: str | None
    error: str | None = None


class _Refused(Exception):
    def __init__(self, addresses: tuple[str, ...]) -> None:
        super().__init__("refused by the address policy")
        self.addresses = addresses


class _Denied(Exception):
    """A browser-service host: refused without a DNS lookup, not an address-policy refusal."""


class _UpstreamError(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def normalize_url(url: str) -> str:
    """The form used to match a browser request to the URL a channel expects.

    Lower-case scheme and host, default port dropped, empty path as ``/``,
    unsafe characters percent-encoded the way Chromium sends them, no fragment.
    """
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    with contextlib.suppress(UnicodeError):
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    if ":" in host:
        host = f"[{host}]"
    netloc = host.lower()
    if (
        port is not None
        and not (scheme == "http" and port == 80)
        and not (scheme == "https" and port == 443)
    ):
        netloc = f"{netloc}:{port}"
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    query = quote(parts.query, safe="/?%:@!$&'()*+,;=-._~")
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if parts.query else "")


class ProxyChannel:
    """One listening port of the proxy, used by one browser.

    The browser fetcher calls :meth:`expect` before navigating, then
    :meth:`wait_record` for the response of that URL. Thread-safe: the proxy
    loop writes, fetcher threads read.
    """

    def __init__(self, proxy: FilteringProxy, port: int, server: asyncio.Server) -> None:
        self.proxy = proxy
        self.port = port
        self._server = server
        self._cond = threading.Condition()
        self._expected: str | None = None
        self._hold_redirects = True
        self._record: ProxyRecord | None = None
        self._claimed = False
        self._tunnels: dict[tuple[str, int], str] = {}
        self._tunnel_errors: dict[tuple[str, int], tuple[str, str]] = {}
        self.exchanges: deque[Exchange] = deque(maxlen=500)
        """The last requests seen on this channel, oldest first."""

    @property
    def address(self) -> str:
        """``http://127.0.0.1:PORT``, the value of Chromium's ``--proxy-server``."""
        return f"http://{self.proxy.host}:{self.port}"

    def expect(self, url: str, *, hold_redirects: bool = True) -> None:
        """Record the next exchange for ``url`` in full; forget the previous record."""
        with self._cond:
            self._expected = normalize_url(url)
            self._hold_redirects = hold_redirects
            self._record = None
            self._claimed = False
            self._tunnel_errors.clear()

    def wait_record(self, timeout: float) -> ProxyRecord | None:
        """The complete record of the expected URL, waiting up to ``timeout`` seconds.

        None when the browser never asked the proxy for it (an https page, a
        page served from a service worker) or the record is not complete in time.
        """
        end = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while self._record is None:
                left = end - time.monotonic()
                if left <= 0 or not self._claimed:
                    break
                self._cond.wait(left)
            return self._record

    def tunnel_peer(self, host: str, port: int) -> str | None:
        """The address a ``CONNECT`` tunnel to ``host:port`` was opened to, if any."""
        with self._cond:
            return self._tunnels.get((host.lower(), port))

    def tunnel_error(self, host: str, port: int) -> tuple[str, str] | None:
        """Why the last ``CONNECT`` to ``host:port`` since :meth:`expect` failed: (kind, detail)."""
        with self._cond:
            return self._tunnel_errors.get((host.lower(), port))

    # Called on the proxy loop.

    def _claim(self, url: str) -> tuple[bool, bool]:
        """Whether ``url`` is the expected one (claimed once), and whether to hold its redirect."""
        with self._cond:
            if self._claimed or self._expected is None or normalize_url(url) != self._expected:
                return False, False
            self._claimed = True
            return True, self._hold_redirects

    def _finish(self, record: ProxyRecord) -> None:
        with self._cond:
            self._record = record
            self._cond.notify_all()

    def _note_tunnel(
        self, host: str, port: int, ip: str | None, error: tuple[str, str] | None
    ) -> None:
        with self._cond:
            key = (host.lower(), port)
            if ip is not None:
                self._tunnels[key] = ip
                if len(self._tunnels) > 1000:
                    self._tunnels.pop(next(iter(self._tunnels)))
            if error is not None:
                self._tunnel_errors[key] = error

    def close(self) -> None:
        """Stop listening; open connections of this channel are dropped."""
        self.proxy._close_channel(self)


class FilteringProxy:
    """A forward proxy enforcing an :class:`AddressPolicy`, run on its own thread and loop.

    ``max_body_bytes`` caps what is kept of the expected page (the browser still
    gets all of it); ``connect_timeout`` and ``idle_timeout`` bound each upstream
    connection and each read.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        host: str = "127.0.0.1",
        max_body_bytes: int = 20 * 1024 * 1024,
        connect_timeout: float = 10.0,
        idle_timeout: float = 60.0,
        max_refusals: int = 1000,
        deny_hosts: frozenset[str] = frozenset(),
    ) -> None:
        self.policy = policy
        self.deny_hosts = frozenset(h.lower() for h in deny_hosts)
        self.host = host
        self.max_body_bytes = max_body_bytes
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self._refused: deque[Refusal] = deque(maxlen=max_refusals)
        self._exchanges: deque[Exchange] = deque(maxlen=2000)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._channels: dict[int, ProxyChannel] = {}
        self._tasks: dict[int, set[asyncio.Task[None]]] = {}

    @property
    def refused(self) -> list[Refusal]:
        """Requests refused by the address policy, oldest first (bounded)."""
        with self._lock:
            return list(self._refused)

    @property
    def exchanges(self) -> list[Exchange]:
        """The last requests seen on any channel, oldest first (bounded)."""
        with self._lock:
            return list(self._exchanges)

    @property
    def ports(self) -> list[int]:
        """The ports of the open channels."""
        with self._lock:
            return list(self._channels)

    def start(self) -> None:
        """Start the proxy thread and its loop (idempotent)."""
        with self._lock:
            if self._thread is not None:
                return
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()
                loop.close()

            self._loop = loop
            self._thread = threading.Thread(target=run, name="shoal-proxy", daemon=True)
            self._thread.start()
        ready.wait()

    def open_channel(self) -> ProxyChannel:
        """Listen on a new port of 127.0.0.1 and return its channel (starts the proxy)."""
        self.start()
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._open(), self._loop)
        return future.result(timeout=10)

    async def _open(self) -> ProxyChannel:
        holder: list[ProxyChannel] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(holder[0], reader, writer)

        server = await asyncio.start_server(handle, self.host, 0, limit=_MAX_HEAD)
        port = int(server.sockets[0].getsockname()[1])
        channel = ProxyChannel(self, port, server)
        holder.append(channel)
        with self._lock:
            self._channels[port] = channel
            self._tasks[port] = set()
        return channel

    def _close_channel(self, channel: ProxyChannel) -> None:
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return
        future = asyncio.run_coroutine_threadsafe(self._shut(channel), loop)
        with contextlib.suppress(Exception):
            future.result(timeout=10)

    async def _shut(self, channel: ProxyChannel) -> None:
        with self._lock:
            self._channels.pop(channel.port, None)
            tasks = self._tasks.pop(channel.port, set())
        channel._server.close()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(channel._server.wait_closed(), 2)

    def close(self) -> None:
        """Close every channel and stop the thread (idempotent)."""
        with self._lock:
            channels = list(self._channels.values())
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        for channel in channels:
            if loop is not None and loop.is_running():
                future = asyncio.run_coroutine_threadsafe(self._shut(channel), loop)
                with contextlib.suppress(Exception):
                    future.result(timeout=10)
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)

    def __enter__(self) -> FilteringProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # The proxy itself, on its loop.

    async def _serve(
        self, channel: ProxyChannel, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        with self._lock:
            tasks = self._tasks.get(channel.port)
            if tasks is None:
                writer.close()
                return
            tasks.add(task)
        try:
            head = await self._read_head(reader)
            if head is None:
                return
            method, target, _version, headers = _parse_request_head(head)
            if method == "CONNECT":
                await self._tunnel(channel, target, reader, writer)
            else:
                await self._forward(channel, method, target, headers, reader, writer)
        except (_BadRequest, UnicodeDecodeError, ValueError) as exc:
            await _reply(writer, 400, "Bad Request", str(exc))
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, OSError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            with self._lock:
                self._tasks.get(channel.port, set()).discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _read_head(self, reader: asyncio.StreamReader) -> bytes | None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.idle_timeout)
        except asyncio.IncompleteReadError as exc:
            if not exc.partial.strip():
                return None
            raise _BadRequest("incomplete request head") from None
        except asyncio.LimitOverrunError:
            raise _BadRequest("request head too large") from None
        return head

    async def _resolve(self, host: str, port: int) -> list[str]:
        """Resolve once and check every address; raise _Refused or _UpstreamError."""
        bare = host.strip("[]")
        if bare.lower().rstrip(".") in self.deny_hosts:
            raise _Denied()
        if self.policy.is_ip_literal(bare):
            addresses = [bare]
        else:
            loop = asyncio.get_running_loop()
            try:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(bare, port, type=socket.SOCK_STREAM), self.connect_timeout
                )
            except (socket.gaierror, UnicodeError) as exc:
                raise _UpstreamError("dns", f"cannot resolve {bare}: {exc}") from None
            except TimeoutError:
                raise _UpstreamError("dns", f"resolving {bare} timed out") from None
            addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        allowed = [a for a in addresses if self.policy.allows(a)]
        if port in self.ports:
            # The proxy's own ports: forwarding there would loop through the proxy.
            allowed = [a for a in allowed if not _is_loopback(a)]
        if not allowed:
            raise _Refused(tuple(addresses))
        return allowed

    async def _connect(
        self, addresses: Iterable[str], port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
        last: Exception | None = None
        for address in addresses:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(address, port, limit=_MAX_HEAD), self.connect_timeout
                )
            except (OSError, TimeoutError) as exc:
                last = exc
                continue
            return reader, writer, address
        kind = "timeout" if isinstance(last, TimeoutError) else "connect"
        raise _UpstreamError(kind, f"cannot connect to port {port}: {last!r}")

    def _log(self, channel: ProxyChannel, exchange: Exchange) -> None:
        channel.exchanges.append(exchange)
        with self._lock:
            self._exchanges.append(exchange)

    def _note_refusal(self, url: str, host: str, addresses: tuple[str, ...]) -> None:
        with self._lock:
            self._refused.append(Refusal(url, host, addresses, time.time()))
        log.info("address policy refused %s (%s)", url, ", ".join(addresses) or "no address")

    async def _tunnel(
        self,
        channel: ProxyChannel,
        target: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        host, _, port_text = target.rpartition(":")
        if not host or not port_text.isdigit():
            raise _BadRequest(f"bad CONNECT target {target!r}")
        port = int(port_text)
        host = host.strip("[]").lower()
        shown = f"https://{host}/" if port == 443 else f"https://{_bracket(host)}:{port}/"
        try:
            addresses = await self._resolve(host, port)
            up_reader, up_writer, peer = await self._connect(addresses, port)
        except _Denied:
            channel._note_tunnel(host, port, None, ("browser_service", "a browser service host"))
            self._log(channel, Exchange("CONNECT", shown, 403, None, "browser_service"))
            await _reply(
                writer,
                403,
                "Forbidden",
                "browser service host",
                refused=True,
                why="browser_service",
            )
            return
        except _Refused as exc:
            self._note_refusal(shown, host, exc.addresses)
            channel._note_tunnel(
                host, port, None, ("address_policy", "refused by the address policy")
            )
            self._log(channel, Exchange("CONNECT", shown, 403, None, "address_policy"))
            await _reply(writer, 403, "Forbidden", "refused by the address policy", refused=True)
            return
        except _UpstreamError as exc:
            channel._note_tunnel(host, port, None, (exc.kind, exc.detail))
            self._log(channel, Exchange("CONNECT", shown, 502, None, exc.kind))
            await _reply(writer, 502, "Bad Gateway", exc.detail, error=exc.kind)
            return
        channel._note_tunnel(host, port, peer, None)
        self._log(channel, Exchange("CONNECT", shown, 200, peer))
        try:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await _pipe_both(reader, writer, up_reader, up_writer)
        finally:
            up_writer.close()

    async def _forward(
        self,
        channel: ProxyChannel,
        method: str,
        target: str,
        headers: Headers,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        parts = urlsplit(target)
        if parts.scheme.lower() != "http" or not parts.hostname:
            raise _BadRequest(f"not an absolute http:// request target: {target!r}")
        host = parts.hostname
        port = parts.port or 80
        origin_form = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        is_main, hold_redirect = channel._claim(target)
        record = ProxyRecord(url=target, method=method, started_at=time.time())
        t0 = time.monotonic()

        def fail(kind: str, detail: str) -> None:
            self._log(channel, Exchange(method, target, 0, None, kind))
            if is_main:
                record.error, record.detail = kind, detail
                record.elapsed = time.monotonic() - t0
                channel._finish(record)

        try:
            addresses = await self._resolve(host, port)
            up_reader, up_writer, peer = await self._connect(addresses, port)
        except _Denied:
            fail("browser_service", "a browser service host")
            await _reply(
                writer,
                403,
                "Forbidden",
                "browser service host",
                refused=True,
                why="browser_service",
            )
            return
        except _Refused as exc:
            self._note_refusal(target, host, exc.addresses)
            fail("address_policy", "refused by the address policy")
            await _reply(writer, 403, "Forbidden", "refused by the address policy", refused=True)
            return
        except _UpstreamError as exc:
            fail(exc.kind, exc.detail)
            await _reply(writer, 502, "Bad Gateway", exc.detail, error=exc.kind)
            return
        record.peer_ip = peer
        upgrade = _is_websocket_upgrade(headers)
        out_headers = _strip_hop_by_hop(headers, keep_upgrade=upgrade)
        if upgrade:
            out_headers += [
                ("Connection", "Upgrade"),
                ("Upgrade", _header(headers, "upgrade") or "websocket"),
            ]
        else:
            out_headers.append(("Connection", "close"))
        framing, length = _request_framing(headers)
        if framing == "chunked":  # relayed as is, so the framing header goes along
            out_headers.append(("Transfer-Encoding", "chunked"))
        record.request_headers = out_headers
        try:
            up_writer.write(_head_bytes(f"{method} {origin_form} HTTP/1.1", out_headers))
            if framing != "none":
                await self._copy_body(reader, up_writer, framing, length, None)
            await up_writer.drain()
            await self._respond(
                channel,
                record,
                method,
                up_reader,
                reader,
                writer,
                is_main,
                hold_redirect,
                upgrade,
                up_writer,
            )
        except _UpstreamError as exc:
            fail(exc.kind, exc.detail)
            with contextlib.suppress(Exception):
                await _reply(writer, 502, "Bad Gateway", exc.detail, error=exc.kind)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            kind = "timeout" if isinstance(exc, TimeoutError) else "disconnect"
            if is_main and record.status == 0:
                fail(kind, f"{type(exc).__name__}: {exc}")
            elif is_main:
                record.truncated = record.truncated or (
                    "time" if kind == "timeout" else "disconnect"
                )
                record.elapsed = time.monotonic() - t0
                channel._finish(record)
        finally:
            up_writer.close()
        if is_main and record.status and record.error is None:
            record.elapsed = record.elapsed or time.monotonic() - t0
            channel._finish(record)

    async def _respond(
        self,
        channel: ProxyChannel,
        record: ProxyRecord,
        method: str,
        up_reader: asyncio.StreamReader,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        is_main: bool,
        hold_redirect: bool,
        upgrade: bool,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        t0 = time.monotonic()
        while True:
            try:
                head = await asyncio.wait_for(up_reader.readuntil(b"\r\n\r\n"), self.idle_timeout)
            except asyncio.IncompleteReadError as exc:
                raise _UpstreamError(
                    "disconnect", "the server closed the connection without a response"
                ) from exc
            except asyncio.LimitOverrunError:
                raise _UpstreamError("malformed", "response head too large") from None
            version, status, reason, headers = _parse_response_head(head)
            if 100 <= status < 200 and status != 101:
                writer.write(head)  # 100 Continue and friends go straight to the browser
                await writer.drain()
                continue
            break
        record.status, record.reason, record.http_version, record.headers = (
            status,
            reason,
            version,
            headers,
        )
        self._log(channel, Exchange(method, record.url, status, record.peer_ip))
        if status == 101 and upgrade:
            writer.write(head)
            await writer.drain()
            await _pipe_both(reader, writer, up_reader, up_writer)
            return
        framing, length = _response_framing(method, status, headers)
        keep = is_main
        if is_main and hold_redirect and 300 <= status < 400 and _header(headers, "location"):
            record.redirect_held = True
            await self._copy_body(up_reader, None, framing, length, record)
            record.elapsed = time.monotonic() - t0
            channel._finish(record)
            stub_headers = [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Length", str(len(_REDIRECT_STUB))),
                ("Cache-Control", "no-store"),
                ("X-Shoal-Redirect-Held", str(status)),
                ("Connection", "close"),
            ]
            writer.write(_head_bytes("HTTP/1.1 200 OK", stub_headers) + _REDIRECT_STUB)
            await writer.drain()
            return
        out = [
            (k, v)
            for k, v in headers
            if k.lower() not in ("connection", "keep-alive", "proxy-connection")
        ]
        out.append(("Connection", "close"))
        writer.write(_head_bytes(f"{version} {status} {reason}".rstrip(), out))
        await self._copy_body(up_reader, writer, framing, length, record if keep else None)
        record.elapsed = time.monotonic() - t0
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()

    async def _copy_body(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter | None,
        framing: str,
        length: int,
        record: ProxyRecord | None,
    ) -> None:
        """Relay one message body from ``src`` to ``dst`` unchanged, keeping it (de-chunked) in ``record``.

        If ``dst`` goes away, reading goes on only while a record wants the body.
        """
        cap = self.max_body_bytes
        kept: list[bytes] = []
        size = 0
        live: list[asyncio.StreamWriter | None] = [dst]

        async def read(n: int) -> bytes:
            return await asyncio.wait_for(src.read(n), self.idle_timeout)

        async def readline() -> bytes:
            try:
                return await asyncio.wait_for(src.readuntil(b"\n"), self.idle_timeout)
            except asyncio.LimitOverrunError:
                raise _UpstreamError("malformed", "chunk line too long") from None

        async def emit(raw: bytes) -> None:
            out = live[0]
            if out is None:
                return
            try:
                out.write(raw)
                await out.drain()
            except (ConnectionError, OSError):
                live[0] = None

        def keep(data: bytes) -> None:
            nonlocal size
            if record is None or record.truncated:
                return
            room = cap - size
            if len(data) > room:
                kept.append(data[:room])
                size = cap
                record.truncated = "length"
                return
            kept.append(data)
            size += len(data)

        def wanted() -> bool:
            return live[0] is not None or (record is not None and record.truncated is None)

        try:
            if framing == "length":
                left = length
                while left > 0 and wanted():
                    data = await read(min(65536, left))
                    if not data:
                        if record is not None:
                            record.truncated = "disconnect"
                        break
                    left -= len(data)
                    keep(data)
                    await emit(data)
            elif framing == "chunked":
                while wanted():
                    line = await readline()
                    if not line:
                        if record is not None:
                            record.truncated = "disconnect"
                        break
                    await emit(line)
                    text = line.split(b";", 1)[0].strip()
                    try:
                        n = int(text, 16)
                    except ValueError:
                        raise _UpstreamError("malformed", f"bad chunk size {text[:20]!r}") from None
                    if n == 0:
                        while True:  # trailers, up to the empty line
                            trailer = await readline()
                            await emit(trailer)
                            if trailer in (b"\r\n", b"\n", b""):
                                break
                        break
                    left = n
                    while left > 0:
                        data = await read(min(65536, left))
                        if not data:
                            raise asyncio.IncompleteReadError(b"", left)
                        left -= len(data)
                        keep(data)
                        await emit(data)
                    await emit(await asyncio.wait_for(src.readexactly(2), self.idle_timeout))
            elif framing == "eof":
                while wanted():
                    data = await read(65536)
                    if not data:
                        break
                    keep(data)
                    await emit(data)
        finally:
            if record is not None:
                record.body = b"".join(kept)


class _BadRequest(Exception):
    pass


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _header(headers: Headers, name: str) -> str | None:
    lname = name.lower()
    for k, v in headers:
        if k.lower() == lname:
            return v
    return None


def _parse_headers(lines: list[str]) -> Headers:
    headers: Headers = []
    for line in lines:
        if not line:
            continue
        if line[0] in " \t" and headers:  # obsolete line folding
            k, v = headers[-1]
            headers[-1] = (k, f"{v} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise _BadRequest(f"bad header line {line[:60]!r}")
        headers.append((name.strip(), value.strip()))
    return headers


def _parse_request_head(head: bytes) -> tuple[str, str, str, Headers]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise _BadRequest(f"bad request line {lines[0][:80]!r}")
    return parts[0].upper(), parts[1], parts[2], _parse_headers(lines[1:])


def _parse_response_head(head: bytes) -> tuple[str, int, str, Headers]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not code.isdigit() or len(code) != 3:
        raise _UpstreamError("malformed", f"bad status line {lines[0][:80]!r}")
    try:
        headers = _parse_headers(lines[1:])
    except _BadRequest as exc:
        raise _UpstreamError("malformed", str(exc)) from None
    return version, int(code), reason.strip(), headers


def _strip_hop_by_hop(headers: Headers, *, keep_upgrade: bool) -> Headers:
    named = {
        token.strip().lower()
        for k, v in headers
        if k.lower() in ("connection", "proxy-connection")
        for token in v.split(",")
    }
    drop = (_HOP_BY_HOP | named) - ({"sec-websocket-key"} if keep_upgrade else set())
    return [(k, v) for k, v in headers if k.lower() not in drop]


def _is_websocket_upgrade(headers: Headers) -> bool:
    upgrade = (_header(headers, "upgrade") or "").lower()
    return "websocket" in upgrade


def _request_framing(headers: Headers) -> tuple[str, int]:
    te = (_header(headers, "transfer-encoding") or "").lower()
    if "chunked" in te:
        return "chunked", 0
    cl = _header(headers, "content-length")
    if cl is not None:
        if not cl.strip().isdigit():
            raise _BadRequest(f"bad Content-Length {cl!r}")
        return ("length", int(cl)) if int(cl) > 0 else ("none", 0)
    return "none", 0


def _response_framing(method: str, status: int, headers: Headers) -> tuple[str, int]:
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return "none", 0
    te = (_header(headers, "transfer-encoding") or "").lower()
    if "chunked" in te:
        return "chunked", 0
    cl = _header(headers, "content-length")
    if cl is not None and cl.strip().isdigit():
        return "length", int(cl)
    return "eof", 0


def _head_bytes(first_line: str, headers: Headers) -> bytes:
    lines = [first_line, *(f"{k}: {v}" for k, v in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1", "replace")


async def _reply(
    writer: asyncio.StreamWriter,
    status: int,
    reason: str,
    text: str,
    *,
    refused: bool = False,
    why: str = "address_policy",
    error: str | None = None,
) -> None:
    body = f"shoal proxy: {text}\n".encode()
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("Connection", "close"),
    ]
    if refused:
        headers.append((REFUSED_HEADER, why))
    if error:
        headers.append(("X-Shoal-Error", error))
    with contextlib.suppress(ConnectionError, OSError):
        writer.write(_head_bytes(f"HTTP/1.1 {status} {reason}", headers) + body)
        await writer.drain()


async def _pipe_both(
    a_reader: asyncio.StreamReader,
    a_writer: asyncio.StreamWriter,
    b_reader: asyncio.StreamReader,
    b_writer: asyncio.StreamWriter,
) -> None:
    """Copy bytes both ways until either side closes."""

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                if dst.can_write_eof():
                    dst.write_eof()

    tasks = [
        asyncio.ensure_future(pipe(a_reader, b_writer)),
        asyncio.ensure_future(pipe(b_reader, a_writer)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.ALL_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
