"""WARC 1.1 records built and encoded: what bytes an archived exchange is, nothing about files.

:class:`RecordEncoder` turns a fetched exchange (or a resource, a revisit,
a file's ``warcinfo``) into its records, each one a whole gzip member ready
to be appended to a file by :class:`~shoal.archive.writer.WarcWriter`. It
does no I/O and is thread-safe: records are serialised, digested and
compressed in the calling thread (zlib and hashlib release the GIL).

Records are serialised by warcio (``WARC/1.1``, sha1 base32 digests) with two
changes to its writer: each record is compressed as its own gzip member at
``compresslevel`` through one deflate stream per thread that is reused from
record to record (warcio starts a level-9 stream per record: setting one up
costs about 20 µs, and level 9 up to twice the time of 6 for about 5 % less
size), and HTTP header bytes are kept as received instead of being
percent-encoded: header strings are ``str`` as aiohttp produces them (UTF-8
decoded with ``surrogateescape``) and are encoded back the same way, so the
archived header bytes are the received ones. Every WARC header value is one
line of valid UTF-8; a record whose content cannot be a WARC record raises
:class:`~shoal.errors.ArchiveError`.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
import time
import uuid
import zlib
from datetime import UTC, datetime
from io import BytesIO
from typing import Any, Final, NamedTuple, TypedDict
from urllib.parse import quote, urlsplit

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import BaseWARCWriter

from shoal.errors import ArchiveError
from shoal.exchange import FetchResult

__all__ = ["Encoded", "RecordEncoder", "RevisitOf"]

_WARC_VERSION = "WARC/1.1"
_CONFORMS_TO = "http://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/"
_REVISIT_PROFILES: Final = {
    "identical-payload-digest": "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest",
    "server-not-modified": "http://netpreserve.org/warc/1.1/revisit/server-not-modified",
}


class _Headers(StatusAndHeaders):  # type: ignore[misc]
    """warcio's header block, built without re-checking headers that are already ``str`` pairs."""

    def __init__(self, statusline: str, headers: list[tuple[str, str]], protocol: str) -> None:
        self.statusline = statusline
        self.headers = headers
        self.protocol = protocol
        self.total_len = 0
        self.headers_buff: bytes | None = None


class _HttpHeaders(_Headers):
    """HTTP headers serialised byte for byte.

    warcio percent-encodes any non-ASCII header value (a raw UTF-8 ``Location``
    becomes ``https%3A//...``). Header strings here are encoded as UTF-8 with
    ``surrogateescape``: the inverse of how aiohttp decodes them, so the
    archived bytes are the received bytes. CR and LF inside a value (which
    would forge header lines) are replaced by spaces.
    """

    def compute_headers_buffer(self, header_filter: Any = None) -> None:
        if self.headers_buff is not None:  # computed once for the digest, reused by warcio
            return
        text = self.to_str(header_filter)
        if text.count("\n") != len(self.headers) + 1 or text.count("\r") != len(self.headers) + 1:
            self.statusline = _one_line(self.statusline)
            self.headers = [(_one_line(k), _one_line(v)) for k, v in self.headers]
            text = self.to_str(header_filter)
        self.headers_buff = text.encode("utf-8", "surrogateescape") + b"\r\n"


_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"
_FINAL_EMPTY_BLOCK = b"\x03\x00"
"""A final, empty, fixed-Huffman deflate block: ends a member after a full flush."""


class _GzipMember:
    """Sink for one record: a whole gzip member (RFC 1952) built around a reused deflate stream.

    warcio's ``GzippingWrapper`` starts a new ``zlib.compressobj`` per record,
    and setting up deflate's tables costs about 20 µs, more than compressing
    a small request record. Here each thread keeps one raw deflate stream;
    ``Z_FULL_FLUSH`` ends each record's data on a byte boundary with no
    back-reference to earlier records, and a final empty block, the CRC-32
    and the length close the member, which any gzip reader inflates alone.
    """

    __slots__ = ("_c", "_crc", "_size", "parts")

    def __init__(self, compressor: Any) -> None:
        self._c = compressor
        self._crc = 0
        self._size = 0
        self.parts: list[bytes] = [_GZIP_HEADER]

    def write(self, data: bytes) -> None:
        out = self._c.compress(data)
        if out:
            self.parts.append(out)
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)

    def flush(self) -> None:
        self.parts.append(self._c.flush(zlib.Z_FULL_FLUSH))
        self.parts.append(_FINAL_EMPTY_BLOCK)
        self.parts.append(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))


class _Serialiser(BaseWARCWriter):  # type: ignore[misc]
    """warcio's record serialiser writing one gzip member per record into memory.

    Shared by threads: the only state is a deflate stream per thread.
    """

    def __init__(self, level: int) -> None:
        super().__init__(gzip=False, warc_version="1.1")
        self.level = level
        self._local = threading.local()

    def encode(self, record: Any) -> bytes:
        compressor = getattr(self._local, "compressor", None)
        if compressor is None:
            compressor = self._local.compressor = zlib.compressobj(self.level, zlib.DEFLATED, -15)
        sink = _GzipMember(compressor)
        try:
            self._write_warc_record(sink, record)
        except BaseException:
            self._local.compressor = None  # it may hold half a record
            raise
        return b"".join(sink.parts)


def sha1_digest(*parts: bytes) -> str:
    """A WARC digest of the parts joined: ``sha1:`` and base32 (block and payload digests, revisits)."""
    h = hashlib.sha1()
    for part in parts:
        h.update(part)
    return "sha1:" + base64.b32encode(h.digest()).decode("ascii")


def _one_line(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


def _field(value: str) -> str:
    """A WARC header value: one line of valid UTF-8 (lone surrogates become U+FFFD)."""
    value = _one_line(value)
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def _record_id() -> str:
    return f"<urn:uuid:{uuid.uuid4()}>"


def _warc_date(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _target_uri(url: str) -> str:
    """``url`` as a WARC-Target-URI: printable ASCII, anything else percent-encoded."""
    if url.isascii() and url.isprintable() and " " not in url:
        return url
    return quote(url, safe="!#$%&'()*+,-./:;=?@[]_~", errors="surrogateescape")


def _http_version(version: str) -> str:
    version = version.strip()
    if not version:
        return "HTTP/1.1"
    if version[:5].upper() == "HTTP/":
        return "HTTP/" + version[5:]
    return "HTTP/" + version


def _request_target(url: str) -> str:
    parts = urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return target


def _exchange_head(
    result: FetchResult, fetched_at: float | None
) -> tuple[str, list[tuple[str, str]], _HttpHeaders]:
    """The ``WARC-Date``, the WARC fields every record of ``result`` shares, and its HTTP head.

    The head leaves out ``Transfer-Encoding``: the body is already de-chunked.
    """
    date = _warc_date(time.time() if fetched_at is None else fetched_at)
    common: list[tuple[str, str]] = [
        ("WARC-Date", date),
        ("WARC-Target-URI", _target_uri(result.url)),
    ]
    if result.peer_ip:
        common.append(("WARC-IP-Address", _field(result.peer_ip)))
    status = f"{result.status} {_one_line(result.reason)}" if result.reason else str(result.status)
    headers = [(k, v) for k, v in result.headers if k.lower() != "transfer-encoding"]
    return date, common, _HttpHeaders(status, headers, _http_version(result.http_version))


class Encoded(NamedTuple):
    """The gzip members of records written together, and the ``WARC-Record-ID`` of the first."""

    members: list[bytes]
    record_id: str


class RevisitOf(TypedDict):
    """The earlier capture a ``revisit`` record refers to, which holds the payload."""

    profile: str
    """``server-not-modified`` (a 304) or ``identical-payload-digest`` (a 200 whose payload
    equals the capture's)."""
    refers_to: str
    """The capture's ``WARC-Record-ID`` (``WARC-Refers-To``)."""
    refers_to_uri: str
    """Its ``WARC-Refers-To-Target-URI``."""
    refers_to_date: float
    """When it was made, in epoch seconds (``WARC-Refers-To-Date``)."""
    payload_digest: str
    """Its payload's digest (``WARC-Payload-Digest``)."""


class RecordEncoder:
    """Builds WARC 1.1 records and encodes each as one gzip member at ``compresslevel``.

    Thread-safe: the only state is a deflate stream per thread.
    """

    def __init__(self, compresslevel: int = 6) -> None:
        if not 0 <= compresslevel <= 9:
            raise ArchiveError(f"compresslevel must be 0..9, got {compresslevel}")
        self._serialiser = _Serialiser(compresslevel)

    def exchange(self, result: FetchResult, fetched_at: float | None = None) -> Encoded:
        """The records of one HTTP exchange and whatever the browser rendered from it.

        A ``response`` record (the status line, ``result.headers`` without
        ``Transfer-Encoding`` since the body is already de-chunked, and
        ``result.body``), a ``request`` record pointing at it with
        ``WARC-Concurrent-To``, then one ``conversion`` or ``resource`` record
        per ``result.rendered`` item with ``WARC-Refers-To`` the response.
        ``fetched_at`` (epoch seconds, default now) becomes ``WARC-Date``. The
        record id is the response's.
        """
        date, common, http = _exchange_head(result, fetched_at)
        response_id = _record_id()
        extra = [("WARC-Truncated", _field(result.truncated))] if result.truncated else []
        members = [self._http_record("response", response_id, common + extra, http, result.body)]
        members.append(self._request_record(result, common, response_id))
        for item in result.rendered:
            if item.kind not in ("conversion", "resource"):
                raise ArchiveError(f"rendered item {item.url!r} has unknown kind {item.kind!r}")
            links = [("WARC-Refers-To", response_id)]
            if item.kind == "resource":
                links.append(("WARC-Concurrent-To", response_id))
            members.append(
                self._block_record(
                    item.kind, _record_id(), item.url, date, links, item.content_type, item.data
                )
            )
        return Encoded(members, response_id)

    def resource(
        self, kind: str, url: str, content_type: str, data: bytes, refers_to: str | None
    ) -> Encoded:
        """One standalone ``kind`` record (``resource``, ``conversion`` or ``metadata``) dated now.

        ``refers_to`` (a ``WARC-Record-ID``) adds ``WARC-Refers-To``.
        """
        if kind not in ("resource", "conversion", "metadata"):
            raise ArchiveError(f"unsupported record kind {kind!r}")
        links = [("WARC-Refers-To", _field(refers_to))] if refers_to else []
        record_id = _record_id()
        member = self._block_record(
            kind, record_id, url, _warc_date(time.time()), links, content_type, data
        )
        return Encoded([member], record_id)

    def revisit(
        self, result: FetchResult, of: RevisitOf, fetched_at: float | None = None
    ) -> Encoded:
        """A ``revisit`` record for ``result`` referring to capture ``of``, then its ``request`` record.

        The record holds the HTTP status line and headers only.
        """
        profile = of["profile"]
        if profile not in _REVISIT_PROFILES:
            raise ArchiveError(f"unknown revisit profile {profile!r}")
        _date, common, http = _exchange_head(result, fetched_at)
        revisit_id = _record_id()
        http.compute_headers_buffer()
        assert http.headers_buff is not None
        fields = [
            ("WARC-Type", "revisit"),
            ("WARC-Record-ID", revisit_id),
            *common,
            ("WARC-Profile", _REVISIT_PROFILES[profile]),
            ("WARC-Refers-To", _field(of["refers_to"])),
            ("WARC-Refers-To-Target-URI", _target_uri(of["refers_to_uri"])),
            ("WARC-Refers-To-Date", _warc_date(of["refers_to_date"])),
            ("WARC-Payload-Digest", _field(of["payload_digest"])),
            ("WARC-Block-Digest", sha1_digest(http.headers_buff)),
        ]
        record = self._serialiser.create_warc_record(
            "",
            "revisit",
            payload=BytesIO(b""),
            length=0,
            warc_headers=_Headers("", fields, _WARC_VERSION),
            http_headers=http,
        )
        members = [
            self._serialiser.encode(record),
            self._request_record(result, common, revisit_id),
        ]
        return Encoded(members, revisit_id)

    def warcinfo(self, filename: str, software: str, operator_info: dict[str, str]) -> bytes:
        """The ``warcinfo`` record that starts file ``filename``; empty ``operator_info`` values are left out."""
        info: dict[str, str] = {
            "software": software,
            "format": "WARC File Format 1.1",
            "conformsTo": _CONFORMS_TO,
            "hostname": socket.gethostname(),
        }
        info.update(operator_info)
        lines = "".join(f"{_one_line(k)}: {_one_line(v)}\r\n" for k, v in info.items() if v)
        body = lines.encode("utf-8", "surrogateescape")
        headers = [
            ("WARC-Type", "warcinfo"),
            ("WARC-Record-ID", _record_id()),
            ("WARC-Filename", filename),
            ("WARC-Date", _warc_date(time.time())),
            ("WARC-Block-Digest", sha1_digest(body)),
        ]
        record = self._serialiser.create_warc_record(
            "",
            "warcinfo",
            payload=BytesIO(body),
            length=len(body),
            warc_headers=_Headers("", headers, _WARC_VERSION),
        )
        return self._serialiser.encode(record)

    def _request_record(
        self, result: FetchResult, common: list[tuple[str, str]], concurrent_to: str
    ) -> bytes:
        """The ``request`` record of ``result``, concurrent to record ``concurrent_to``."""
        version = _http_version(result.http_version)
        request_line = f"{_target_uri(_request_target(result.url))} {version}"
        request = _HttpHeaders(
            request_line, list(result.request_headers), _one_line(result.method or "GET")
        )
        fields = [*common, ("WARC-Concurrent-To", concurrent_to)]
        return self._http_record("request", _record_id(), fields, request, b"")

    def _http_record(
        self,
        rec_type: str,
        record_id: str,
        fields: list[tuple[str, str]],
        http: _HttpHeaders,
        payload: bytes,
    ) -> bytes:
        http.compute_headers_buffer()
        assert http.headers_buff is not None
        payload_digest = sha1_digest(payload)
        headers = [
            ("WARC-Type", rec_type),
            ("WARC-Record-ID", record_id),
            *fields,
            ("WARC-Payload-Digest", payload_digest),
            ("WARC-Block-Digest", sha1_digest(http.headers_buff, payload)),
        ]
        record = self._serialiser.create_warc_record(
            "",
            rec_type,
            payload=BytesIO(payload),
            length=len(payload),
            warc_headers=_Headers("", headers, _WARC_VERSION),
            http_headers=http,
        )
        return self._serialiser.encode(record)

    def _block_record(
        self,
        rec_type: str,
        record_id: str,
        url: str,
        date: str,
        links: list[tuple[str, str]],
        content_type: str,
        data: bytes,
    ) -> bytes:
        digest = sha1_digest(data)
        headers = [
            ("WARC-Type", rec_type),
            ("WARC-Record-ID", record_id),
            ("WARC-Date", date),
            ("WARC-Target-URI", _target_uri(url)),
            *links,
            ("WARC-Payload-Digest", digest),
            ("WARC-Block-Digest", digest),
        ]
        record = self._serialiser.create_warc_record(
            "",
            rec_type,
            payload=BytesIO(data),
            length=len(data),
            warc_content_type=_field(content_type) or "application/octet-stream",
            warc_headers=_Headers("", headers, _WARC_VERSION),
        )
        return self._serialiser.encode(record)
