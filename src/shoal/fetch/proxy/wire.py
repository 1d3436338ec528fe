"""HTTP/1.1 on the wire for the browser proxy, parsed and framed by h11.

Both sides of every forwarded exchange go through an :class:`h11.Connection`
(the browser's as ``SERVER``, the site's as ``CLIENT``): request and response
heads, chunked and length-delimited bodies, trailers and protocol switches
(``CONNECT``, WebSocket ``101``) are read by h11, which refuses what RFC 9112
refuses (bare LF in heads, spaces before a header colon, both
``Content-Length`` and ``Transfer-Encoding`` on a request, conflicting
lengths, oversized heads). Nothing here parses HTTP by hand.
"""

from __future__ import annotations

import asyncio
import contextlib

import h11

from shoal.fetch.proxy.records import REFUSED_HEADER, Headers

__all__ = [
    "HOP_BY_HOP",
    "MAX_HEAD",
    "REDIRECT_STUB",
    "BadRequest",
    "Peer",
    "UpstreamError",
    "bracket",
    "head_bytes",
    "header",
    "is_websocket_upgrade",
    "pipe_both",
    "raw_headers",
    "reply",
    "strip_hop_by_hop",
    "to_wire",
]

MAX_HEAD = 64 * 1024
HOP_BY_HOP = frozenset(
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
REDIRECT_STUB = (
    b"<!doctype html><html><head><title>redirect held by shoal</title></head><body></body></html>"
)


class UpstreamError(Exception):
    """No usable response from the site: ``kind`` is dns, connect, timeout, disconnect or malformed."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class BadRequest(Exception):
    """The browser's request cannot be forwarded (answered 400)."""


class Peer:
    """One side of a proxied exchange: an h11 connection fed from a stream reader.

    Every read waits ``idle_timeout`` seconds at most (``TimeoutError``);
    ``received`` counts the bytes read so far.
    """

    def __init__(
        self,
        role: type[h11.CLIENT] | type[h11.SERVER],
        reader: asyncio.StreamReader,
        idle_timeout: float,
    ) -> None:
        self.conn = h11.Connection(role, max_incomplete_event_size=MAX_HEAD)
        self.reader = reader
        self.idle_timeout = idle_timeout
        self.received = 0

    async def next_event(self) -> object:
        """The next h11 event, reading as needed; raises ``h11.RemoteProtocolError`` on bad HTTP."""
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                if isinstance(event, (h11.Request, h11.Response, h11.InformationalResponse)):
                    size = sum(len(k) + len(v) + 4 for k, v in event.headers.raw_items())
                    if size > MAX_HEAD:
                        raise h11.RemoteProtocolError(f"message head over {MAX_HEAD} bytes")
                return event
            # Small reads: h11 refuses a head still incomplete past MAX_HEAD bytes.
            data = await asyncio.wait_for(self.reader.read(16384), self.idle_timeout)
            self.received += len(data)
            self.conn.receive_data(data)

    async def switched(self) -> bytes:
        """After a ``CONNECT`` head: read to the switch, return the bytes sent past the head."""
        while True:
            event = await self.next_event()
            if event is h11.PAUSED:
                return bytes(self.conn.trailing_data[0])
            if not isinstance(event, h11.EndOfMessage):
                raise BadRequest("a CONNECT request may not carry a body")


def raw_headers(headers: h11._headers.Headers) -> Headers:
    """h11's headers as (name, value) text pairs with the names' case as sent."""
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers.raw_items()]


def to_wire(headers: Headers) -> list[tuple[bytes, bytes]]:
    """Headers as bytes for h11: latin-1 gives back exactly the bytes read off the wire,
    UTF-8 carries any other text (h11 alone would encode text as ASCII and fail)."""
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        try:
            raw = value.encode("latin-1")
        except UnicodeEncodeError:
            raw = value.encode("utf-8")
        out.append((name.encode("ascii"), raw))
    return out


def bracket(host: str) -> str:
    """An IPv6 literal in brackets, anything else unchanged."""
    return f"[{host}]" if ":" in host else host


def header(headers: Headers, name: str) -> str | None:
    """The first header called ``name`` (case-insensitive), else None."""
    lname = name.lower()
    for k, v in headers:
        if k.lower() == lname:
            return v
    return None


def strip_hop_by_hop(headers: Headers, *, keep_upgrade: bool) -> Headers:
    """The headers without hop-by-hop ones and those ``Connection`` names."""
    named = {
        token.strip().lower()
        for k, v in headers
        if k.lower() in ("connection", "proxy-connection")
        for token in v.split(",")
    }
    drop = (HOP_BY_HOP | named) - ({"sec-websocket-key"} if keep_upgrade else set())
    return [(k, v) for k, v in headers if k.lower() not in drop]


def is_websocket_upgrade(headers: Headers) -> bool:
    """Whether the request asks for a WebSocket upgrade."""
    upgrade = (header(headers, "upgrade") or "").lower()
    return "websocket" in upgrade


def head_bytes(first_line: str, headers: Headers) -> bytes:
    """A message head: the first line, the headers, the empty line (latin-1)."""
    lines = [first_line, *(f"{k}: {v}" for k, v in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1", "replace")


async def reply(
    writer: asyncio.StreamWriter,
    status: int,
    reason: str,
    text: str,
    *,
    refused: bool = False,
    why: str = "address_policy",
    error: str | None = None,
) -> None:
    """Answer the browser with the proxy's own short text response."""
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
        writer.write(head_bytes(f"HTTP/1.1 {status} {reason}", headers) + body)
        await writer.drain()


async def pipe_both(
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
