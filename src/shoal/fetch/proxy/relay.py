"""One plain-HTTP exchange relayed through the proxy: the request body up, the response down.

The page's response is kept in its :class:`~shoal.fetch.proxy.records.ProxyRecord`
(status line, headers, the body de-chunked and capped, still content-encoded)
while it is relayed to the browser; a redirect of the page is held (the browser
gets a stub page), a 101 becomes a byte pipe. h11 reads and frames both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import h11

from shoal.fetch.proxy.records import Exchange, ProxyRecord
from shoal.fetch.proxy.wire import (
    REDIRECT_STUB,
    Peer,
    UpstreamError,
    head_bytes,
    header,
    pipe_both,
    raw_headers,
    to_wire,
)

__all__ = ["relay_body", "relay_response", "send_request_body"]

log = logging.getLogger(__name__)


async def send_request_body(browser: Peer, server: Peer, up_writer: asyncio.StreamWriter) -> None:
    """Relay the browser's request body (h11 reads and re-frames it) up to its end."""
    while True:
        event = await browser.next_event()
        if isinstance(event, h11.Data):
            up_writer.write(server.conn.send(h11.Data(data=event.data)))
            await up_writer.drain()
        elif isinstance(event, h11.EndOfMessage):
            up_writer.write(server.conn.send(h11.EndOfMessage()))
            await up_writer.drain()
            return
        else:  # the browser went away mid-body
            raise ConnectionError("the browser closed the connection during its request")


async def relay_response(
    record: ProxyRecord,
    method: str,
    server: Peer,
    browser: Peer,
    writer: asyncio.StreamWriter,
    up_writer: asyncio.StreamWriter,
    is_main: bool,
    hold_redirect: bool,
    *,
    note: Callable[[Exchange], None],
    finish: Callable[[ProxyRecord], None],
    max_body: int,
) -> None:
    """Read the server's response and relay it to the browser, keeping the page's in ``record``.

    ``note`` logs each exchange, ``finish`` hands the page's record over when a
    redirect is held (the browser then gets :data:`REDIRECT_STUB`); a 101 switches
    both sides to a byte pipe. Bodies are kept up to ``max_body`` bytes.
    """
    t0 = time.monotonic()
    while True:
        try:
            event = await server.next_event()
        except h11.RemoteProtocolError as exc:
            if server.received == 0:
                raise UpstreamError(
                    "disconnect", "the server closed the connection without a response"
                ) from None
            raise UpstreamError("malformed", f"unreadable response: {exc}") from None
        if isinstance(event, h11.InformationalResponse):
            if event.status_code == 101 and server.conn.our_state is h11.SWITCHED_PROTOCOL:
                await _switch(record, method, event, server, writer, note)
                await pipe_both(browser.reader, writer, server.reader, up_writer)
                return
            continue  # 100 Continue and friends: the browser sent its body already
        if isinstance(event, h11.Response):
            break
        raise UpstreamError("disconnect", "the server closed the connection without a response")
    headers = raw_headers(event.headers)
    reason = event.reason.decode("latin-1")
    record.status, record.reason = event.status_code, reason
    record.http_version = "HTTP/" + event.http_version.decode("ascii")
    record.headers = headers
    note(Exchange(method, record.url, record.status, record.peer_ip))
    if is_main and hold_redirect and 300 <= record.status < 400 and header(headers, "location"):
        record.redirect_held = True
        await relay_body(server, browser, None, record, max_body)
        record.elapsed = time.monotonic() - t0
        finish(record)
        stub_headers = [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(REDIRECT_STUB))),
            ("Cache-Control", "no-store"),
            ("X-Shoal-Redirect-Held", str(record.status)),
            ("Connection", "close"),
        ]
        conn = browser.conn
        writer.write(
            conn.send(h11.Response(status_code=200, headers=stub_headers, reason=b"OK"))
            + conn.send(h11.Data(data=REDIRECT_STUB))
            + conn.send(h11.EndOfMessage())
        )
        await writer.drain()
        return
    out = [
        (k, v)
        for k, v in headers
        if k.lower() not in ("connection", "keep-alive", "proxy-connection")
    ]
    out.append(("Connection", "close"))
    writer.write(
        browser.conn.send(
            h11.Response(status_code=record.status, headers=to_wire(out), reason=event.reason)
        )
    )
    await relay_body(server, browser, writer, record if is_main else None, max_body)
    record.elapsed = time.monotonic() - t0
    with contextlib.suppress(ConnectionError, OSError):
        await writer.drain()


async def _switch(
    record: ProxyRecord,
    method: str,
    event: h11.InformationalResponse,
    server: Peer,
    writer: asyncio.StreamWriter,
    note: Callable[[Exchange], None],
) -> None:
    """Hand a 101 (WebSocket) to the browser with the bytes both sides sent past their heads."""
    headers = raw_headers(event.headers)
    note(Exchange(method, record.url, 101, record.peer_ip))
    writer.write(head_bytes(f"HTTP/1.1 101 {event.reason.decode('latin-1')}", headers))
    early, _ = server.conn.trailing_data
    if early:
        writer.write(bytes(early))
    await writer.drain()


async def relay_body(
    server: Peer,
    browser: Peer,
    dst: asyncio.StreamWriter | None,
    record: ProxyRecord | None,
    cap: int,
) -> None:
    """Relay one response body to ``dst``, keeping it (de-chunked, at most ``cap`` bytes) in ``record``.

    If ``dst`` goes away, reading goes on only while a record wants the body.
    A body cut short by the server leaves ``record.truncated = "disconnect"``
    and the browser's connection closed without the end of the message.
    """
    kept: list[bytes] = []
    size = 0
    live = dst is not None
    try:
        while live or (record is not None and record.truncated is None):
            try:
                event = await server.next_event()
            except h11.RemoteProtocolError as exc:
                if record is not None:
                    record.truncated = record.truncated or "disconnect"
                log.debug("%s: body cut short: %s", record.url if record else "-", exc)
                return
            if isinstance(event, h11.EndOfMessage):
                if live and dst is not None:
                    with contextlib.suppress(ConnectionError, OSError, h11.LocalProtocolError):
                        dst.write(browser.conn.send(h11.EndOfMessage()))
                return
            if not isinstance(event, h11.Data):
                return
            data = bytes(event.data)
            if record is not None and record.truncated is None:
                room = cap - size
                if len(data) > room:
                    kept.append(data[:room])
                    size = cap
                    record.truncated = "length"
                else:
                    kept.append(data)
                    size += len(data)
            if live and dst is not None:
                try:
                    dst.write(browser.conn.send(h11.Data(data=data)))
                    await dst.drain()
                except (ConnectionError, OSError, h11.LocalProtocolError):
                    live = False
    finally:
        if record is not None:
            record.body = b"".join(kept)
