"""The filtering forward proxy: one thread and loop serving every browser's channel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from urllib.parse import urlsplit

from shoal.fetch.proxy.channel import ProxyChannel
from shoal.fetch.proxy.reach import Reach
from shoal.fetch.proxy.records import Exchange, Headers, ProxyRecord, Refusal
from shoal.fetch.proxy.wire import (
    MAX_HEAD,
    REDIRECT_STUB,
    BadRequest,
    UpstreamError,
    bracket,
    head_bytes,
    header,
    is_websocket_upgrade,
    parse_request_head,
    parse_response_head,
    pipe_both,
    reply,
    request_framing,
    response_framing,
    strip_hop_by_hop,
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
            method, target, _version, headers = parse_request_head(head)
            if method == "CONNECT":
                await self._tunnel(channel, target, reader, writer)
            else:
                await self._forward(channel, method, target, headers, reader, writer)
        except (BadRequest, UnicodeDecodeError, ValueError) as exc:
            await reply(writer, 400, "Bad Request", str(exc))
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
            raise BadRequest("incomplete request head") from None
        except asyncio.LimitOverrunError:
            raise BadRequest("request head too large") from None
        return head

    async def _resolve(self, host: str, port: int) -> list[str]:
        """Resolve once and check every address; raise _Refused or UpstreamError."""
        bare = host.strip("[]")
        if bare.lower().rstrip(".") in self.deny_hosts:
            raise _Denied()
        if self.reach.policy.is_ip_literal(bare):
            addresses = [bare]
        else:
            loop = asyncio.get_running_loop()
            try:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(bare, port, type=socket.SOCK_STREAM), self.connect_timeout
                )
            except (socket.gaierror, UnicodeError) as exc:
                raise UpstreamError("dns", f"cannot resolve {bare}: {exc}") from None
            except TimeoutError:
                raise UpstreamError("dns", f"resolving {bare} timed out") from None
            addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
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

    async def _tunnel(
        self,
        channel: ProxyChannel,
        target: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        host, _, port_text = target.rpartition(":")
        if not host or not port_text.isdigit():
            raise BadRequest(f"bad CONNECT target {target!r}")
        port = int(port_text)
        host = host.strip("[]").lower()
        shown = f"https://{host}/" if port == 443 else f"https://{bracket(host)}:{port}/"
        try:
            addresses = await self._resolve(host, port)
            up_reader, up_writer, peer = await self._connect(addresses, port)
        except _Denied:
            channel._note_tunnel(host, port, None, ("browser_service", "a browser service host"))
            self._log(channel, Exchange("CONNECT", shown, 403, None, "browser_service"))
            await reply(
                writer,
                403,
                "Forbidden",
                "browser service host",
                refused=True,
                why="browser_service",
            )
            return
        except _Refused as exc:
            self._note_refusal(shown, host, port, exc)
            channel._note_tunnel(host, port, None, ("address_policy", _REFUSED_TEXT[exc.why]))
            self._log(channel, Exchange("CONNECT", shown, 403, None, "address_policy"))
            await reply(writer, 403, "Forbidden", _REFUSED_TEXT[exc.why], refused=True, why=exc.why)
            return
        except UpstreamError as exc:
            channel._note_tunnel(host, port, None, (exc.kind, exc.detail))
            self._log(channel, Exchange("CONNECT", shown, 502, None, exc.kind))
            await reply(writer, 502, "Bad Gateway", exc.detail, error=exc.kind)
            return
        channel._note_tunnel(host, port, peer, None)
        self._log(channel, Exchange("CONNECT", shown, 200, peer))
        try:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await pipe_both(reader, writer, up_reader, up_writer)
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
            raise BadRequest(f"not an absolute http:// request target: {target!r}")
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
            await reply(
                writer,
                403,
                "Forbidden",
                "browser service host",
                refused=True,
                why="browser_service",
            )
            return
        except _Refused as exc:
            self._note_refusal(target, host, port, exc)
            fail("address_policy", _REFUSED_TEXT[exc.why])
            await reply(writer, 403, "Forbidden", _REFUSED_TEXT[exc.why], refused=True, why=exc.why)
            return
        except UpstreamError as exc:
            fail(exc.kind, exc.detail)
            await reply(writer, 502, "Bad Gateway", exc.detail, error=exc.kind)
            return
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
        framing, length = request_framing(headers)
        if framing == "chunked":  # relayed as is, so the framing header goes along
            out_headers.append(("Transfer-Encoding", "chunked"))
        record.request_headers = redact_headers(out_headers)
        try:
            up_writer.write(head_bytes(f"{method} {origin_form} HTTP/1.1", out_headers))
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
        except UpstreamError as exc:
            fail(exc.kind, exc.detail)
            with contextlib.suppress(Exception):
                await reply(writer, 502, "Bad Gateway", exc.detail, error=exc.kind)
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
                raise UpstreamError(
                    "disconnect", "the server closed the connection without a response"
                ) from exc
            except asyncio.LimitOverrunError:
                raise UpstreamError("malformed", "response head too large") from None
            version, status, reason, headers = parse_response_head(head)
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
            await pipe_both(reader, writer, up_reader, up_writer)
            return
        framing, length = response_framing(method, status, headers)
        keep = is_main
        if is_main and hold_redirect and 300 <= status < 400 and header(headers, "location"):
            record.redirect_held = True
            await self._copy_body(up_reader, None, framing, length, record)
            record.elapsed = time.monotonic() - t0
            channel._finish(record)
            stub_headers = [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Length", str(len(REDIRECT_STUB))),
                ("Cache-Control", "no-store"),
                ("X-Shoal-Redirect-Held", str(status)),
                ("Connection", "close"),
            ]
            writer.write(head_bytes("HTTP/1.1 200 OK", stub_headers) + REDIRECT_STUB)
            await writer.drain()
            return
        out = [
            (k, v)
            for k, v in headers
            if k.lower() not in ("connection", "keep-alive", "proxy-connection")
        ]
        out.append(("Connection", "close"))
        writer.write(head_bytes(f"{version} {status} {reason}".rstrip(), out))
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
                raise UpstreamError("malformed", "chunk line too long") from None

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
                        raise UpstreamError("malformed", f"bad chunk size {text[:20]!r}") from None
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
