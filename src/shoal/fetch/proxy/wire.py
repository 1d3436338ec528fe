"""HTTP/1.1 on the wire for the browser proxy: reading heads, framing bodies, writing replies."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress

from shoal.fetch.proxy.records import REFUSED_HEADER, Headers

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
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class BadRequest(Exception):
    pass


def bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def header(headers: Headers, name: str) -> str | None:
    lname = name.lower()
    for k, v in headers:
        if k.lower() == lname:
            return v
    return None


def parse_headers(lines: list[str]) -> Headers:
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
            raise BadRequest(f"bad header line {line[:60]!r}")
        headers.append((name.strip(), value.strip()))
    return headers


def parse_request_head(head: bytes) -> tuple[str, str, str, Headers]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise BadRequest(f"bad request line {lines[0][:80]!r}")
    return parts[0].upper(), parts[1], parts[2], parse_headers(lines[1:])


def parse_response_head(head: bytes) -> tuple[str, int, str, Headers]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not code.isdigit() or len(code) != 3:
        raise UpstreamError("malformed", f"bad status line {lines[0][:80]!r}")
    try:
        headers = parse_headers(lines[1:])
    except BadRequest as exc:
        raise UpstreamError("malformed", str(exc)) from None
    return version, int(code), reason.strip(), headers


def strip_hop_by_hop(headers: Headers, *, keep_upgrade: bool) -> Headers:
    named = {
        token.strip().lower()
        for k, v in headers
        if k.lower() in ("connection", "proxy-connection")
        for token in v.split(",")
    }
    drop = (HOP_BY_HOP | named) - ({"sec-websocket-key"} if keep_upgrade else set())
    return [(k, v) for k, v in headers if k.lower() not in drop]


def is_websocket_upgrade(headers: Headers) -> bool:
    upgrade = (header(headers, "upgrade") or "").lower()
    return "websocket" in upgrade


def request_framing(headers: Headers) -> tuple[str, int]:
    te = (header(headers, "transfer-encoding") or "").lower()
    if "chunked" in te:
        return "chunked", 0
    cl = header(headers, "content-length")
    if cl is not None:
        if not cl.strip().isdigit():
            raise BadRequest(f"bad Content-Length {cl!r}")
        return ("length", int(cl)) if int(cl) > 0 else ("none", 0)
    return "none", 0


def response_framing(method: str, status: int, headers: Headers) -> tuple[str, int]:
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return "none", 0
    te = (header(headers, "transfer-encoding") or "").lower()
    if "chunked" in te:
        return "chunked", 0
    cl = header(headers, "content-length")
    if cl is not None and cl.strip().isdigit():
        return "length", int(cl)
    return "eof", 0


def head_bytes(first_line: str, headers: Headers) -> bytes:
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
