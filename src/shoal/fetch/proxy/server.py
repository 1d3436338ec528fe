"""The filtering forward proxy: one thread and loop serving every browser's channel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import h11

from shoal.errors import AddressRefused
from shoal.fetch.address import PolicyResolver
from shoal.fetch.proxy.channel import ProxyChannel
from shoal.fetch.proxy.reach import Reach
from shoal.fetch.proxy.records import Exchange, Headers, ProxyRecord, Refusal
from shoal.fetch.proxy.relay import relay_response, send_request_body
from shoal.fetch.proxy.wire import (
    MAX_HEAD,
    BadRequest,
    Peer,
    UpstreamError,
    bracket,
    header,
    is_websocket_upgrade,
    pipe_both,
    raw_headers,
    reply,
    strip_hop_by_hop,
    to_wire,
)
from shoal.secrets import redact_headers

__all__ = ["FilteringProxy"]

log = logging.getLogger(__name__)


class _Refused(Exception):
    def __init__(self, addresses: tuple[str, ...], why: str) -> None:
        super().__init__(f"refused ({why})")
        self.addresses = addresses
        self.why = why


_REFUSED_TEXT = {
    "address_policy": "refused by the address policy",
    "own_socket": "refused: one of shoal's own sockets",
    "out_of_scope": "refused: a private address at a host:port the crawl's scope does not name",
}


class _Denied(Exception):
    """A browser-service host: refused without a DNS lookup, not an address-policy refusal."""


class FilteringProxy:
    """A forward proxy enforcing a :class:`~shoal.fetch.proxy.reach.Reach`, run on its own thread and loop.

    Its own channels' ports are added to the reach's own ports, so nothing is
    ever forwarded back into the proxy.

    ``max_body_bytes`` caps what is kept of the expected page (the browser still
    gets all of it); ``connect_timeout`` and ``idle_timeout`` bound each upstream
    connection and each read.
    """

    def __init__(
        self,
        reach: Reach,
        *,
        host: str = "127.0.0.1",
        max_body_bytes: int = 20 * 1024 * 1024,
        connect_timeout: float = 10.0,
        idle_timeout: float = 60.0,
        max_refusals: int = 1000,
        deny_hosts: frozenset[str] = frozenset(),
    ) -> None:
        self.reach = reach
        self._resolver = PolicyResolver(reach.policy)
        reach.add_own_ports_source(lambda: self.ports)
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

        server = await asyncio.start_server(handle, self.host, 0, limit=MAX_HEAD)
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
            if loop.is_running():
                closing = asyncio.run_coroutine_threadsafe(self._resolver.close(), loop)
                with contextlib.suppress(Exception):
                    closing.result(timeout=10)
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
        browser = Peer(h11.SERVER, reader, self.idle_timeout)
        try:
            event = await browser.next_event()
            if not isinstance(event, h11.Request):
                return
            method = event.method.decode("ascii")
            target = event.target.decode("ascii")
            names = {name for name, _ in event.headers}
            if b"transfer-encoding" in names and b"content-length" in names:
                # RFC 9112 6.1 lets a server refuse this shape of request smuggling; we do.
                raise BadRequest("both Content-Length and Transfer-Encoding")
            if method == "CONNECT":
                await self._tunnel(channel, target, browser, writer)
            else:
                await self._forward(
                    channel, method, target, raw_headers(event.headers), browser, writer
                )
        except (BadRequest, h11.ProtocolError, UnicodeDecodeError, ValueError) as exc:
            await reply(writer, 400, "Bad Request", str(exc))
        except (ConnectionError, TimeoutError, OSError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            with self._lock:
                self._tasks.get(channel.port, set()).discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _resolve(self, host: str, port: int) -> list[str]:
        """Resolve once and check every address; raise _Refused or UpstreamError."""
        bare = host.strip("[]")
        if bare.lower().rstrip(".") in self.deny_hosts:
            raise _Denied()
        try:
            # The same resolve-and-filter path as the HTTP fetcher's (shoal.fetch.address).
            infos = await asyncio.wait_for(
                self._resolver.resolve(bare, port, socket.AF_UNSPEC), self.connect_timeout
            )
        except AddressRefused as exc:
            raise _Refused(tuple(exc.addresses), "address_policy") from None
        except TimeoutError:
            raise UpstreamError("dns", f"resolving {bare} timed out") from None
        except (OSError, UnicodeError) as exc:
            raise UpstreamError("dns", f"cannot resolve {bare}: {exc}") from None
        addresses = list(dict.fromkeys(str(info["host"]) for info in infos))
        allowed: list[str] = []
        why = "address_policy"
        for address in addresses:
            reason = self.reach.why_not(bare, port, address)
            if reason is None:
                allowed.append(address)
            elif why == "address_policy":
                why = reason
        if not allowed:
            raise _Refused(tuple(addresses), why)
        return allowed

    async def _connect(
        self, addresses: Iterable[str], port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
        last: Exception | None = None
        for address in addresses:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(address, port, limit=MAX_HEAD), self.connect_timeout
                )
            except (OSError, TimeoutError) as exc:
                last = exc
                continue
            return reader, writer, address
        kind = "timeout" if isinstance(last, TimeoutError) else "connect"
        raise UpstreamError(kind, f"cannot connect to port {port}: {last!r}")

    def _log(self, channel: ProxyChannel, exchange: Exchange) -> None:
        channel.exchanges.append(exchange)
        with self._lock:
            self._exchanges.append(exchange)

    def _note_refusal(self, url: str, host: str, port: int, exc: _Refused) -> None:
        with self._lock:
            self._refused.append(Refusal(url, host, exc.addresses, time.time(), port, exc.why))
        log.info("refused %s (%s: %s)", url, exc.why, ", ".join(exc.addresses) or "no address")

    async def _open_upstream(
        self,
        host: str,
        port: int,
        shown: str,
        writer: asyncio.StreamWriter,
        fail: Callable[[str, str, int], None],
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str] | None:
        """Resolve and connect ``host:port`` under the address policy, for CONNECT and plain requests alike.

        On a refusal or an upstream failure ``fail(kind, detail, status)`` is
        told first (``shown`` is the URL a refusal is logged under), the browser
        gets its 403 or 502, and None comes back.
        """
        try:
            addresses = await self._resolve(host, port)
            return await self._connect(addresses, port)
        except _Denied:
            fail("browser_service", "a browser service host", 403)
            await reply(
                writer,
                403,
                "Forbidden",
                "browser service host",
                refused=True,
                why="browser_service",
            )
        except _Refused as exc:
            self._note_refusal(shown, host, port, exc)
            fail("address_policy", _REFUSED_TEXT[exc.why], 403)
            await reply(writer, 403, "Forbidden", _REFUSED_TEXT[exc.why], refused=True, why=exc.why)
        except UpstreamError as exc:
            fail(exc.kind, exc.detail, 502)
            await reply(writer, 502, "Bad Gateway", exc.detail, error=exc.kind)
        return None

    async def _tunnel(
        self,
        channel: ProxyChannel,
        target: str,
        browser: Peer,
        writer: asyncio.StreamWriter,
    ) -> None:
        host, _, port_text = target.rpartition(":")
        if not host or not port_text.isdigit():
            raise BadRequest(f"bad CONNECT target {target!r}")
        port = int(port_text)
        host = host.strip("[]").lower()
        shown = f"https://{host}/" if port == 443 else f"https://{bracket(host)}:{port}/"

        def fail(kind: str, detail: str, status: int) -> None:
            channel._note_tunnel(host, port, None, (kind, detail))
            self._log(channel, Exchange("CONNECT", shown, status, None, kind))

        upstream = await self._open_upstream(host, port, shown, writer, fail)
        if upstream is None:
            return
        up_reader, up_writer, peer = upstream
        channel._note_tunnel(host, port, peer, None)
        self._log(channel, Exchange("CONNECT", shown, 200, peer))
        try:
            early = await browser.switched()
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            if early:
                up_writer.write(early)
            await pipe_both(browser.reader, writer, up_reader, up_writer)
        finally:
            up_writer.close()

    async def _forward(
        self,
        channel: ProxyChannel,
        method: str,
        target: str,
        headers: Headers,
        browser: Peer,
        writer: asyncio.StreamWriter,
    ) -> None:
        parts = urlsplit(target)
        if parts.scheme.lower() != "http" or not parts.hostname:
            raise BadRequest(f"not an absolute http:// request target: {target!r}")
        host = parts.hostname
        port = parts.port or 80
        origin_form = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        is_main, hold_redirect = channel._claim(target)
        record = ProxyRecord(url=target, method=method, started_at=time.time())
        t0 = time.monotonic()

        def fail(kind: str, detail: str, _status: int = 0) -> None:
            self._log(channel, Exchange(method, target, 0, None, kind))
            if is_main:
                record.error, record.detail = kind, detail
                record.elapsed = time.monotonic() - t0
                channel._finish(record)

        upstream = await self._open_upstream(host, port, target, writer, fail)
        if upstream is None:
            return
        up_reader, up_writer, peer = upstream
        record.peer_ip = peer
        upgrade = is_websocket_upgrade(headers)
        out_headers = strip_hop_by_hop(headers, keep_upgrade=upgrade)
        if upgrade:
            out_headers += [
                ("Connection", "Upgrade"),
                ("Upgrade", header(headers, "upgrade") or "websocket"),
            ]
        else:
            out_headers.append(("Connection", "close"))
        extra = channel.headers_for(host, port)
        if extra:  # the spec's headers for the page's own host:port, never another
            names = {k.lower() for k, _ in extra}
            out_headers = [(k, v) for k, v in out_headers if k.lower() not in names] + extra
        if "chunked" in (header(headers, "transfer-encoding") or "").lower():
            out_headers.append(("Transfer-Encoding", "chunked"))  # h11 re-chunks the body
        record.request_headers = redact_headers(out_headers)
        server = Peer(h11.CLIENT, up_reader, self.idle_timeout)
        try:
            try:
                up_writer.write(
                    server.conn.send(
                        h11.Request(method=method, target=origin_form, headers=to_wire(out_headers))
                    )
                )
            except h11.LocalProtocolError as exc:
                fail("malformed", f"unusable request: {exc}")
                await reply(writer, 400, "Bad Request", str(exc))
                return
            await send_request_body(browser, server, up_writer)
            await relay_response(
                record,
                method,
                server,
                browser,
                writer,
                up_writer,
                is_main,
                hold_redirect,
                note=lambda exchange: self._log(channel, exchange),
                finish=channel._finish,
                max_body=self.max_body_bytes,
            )
        except UpstreamError as exc:
            fail(exc.kind, exc.detail)
            with contextlib.suppress(Exception):
                await reply(writer, 502, "Bad Gateway", exc.detail, error=exc.kind)
        except (TimeoutError, ConnectionError, OSError) as exc:
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
