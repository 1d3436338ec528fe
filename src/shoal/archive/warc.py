"""WARC 1.1 files: writing exchanges, reading records back by reference, recovering orphans.

Layout on disk: one folder of files named
``{prefix}-{pid}-{host}-{UTC timestamp}-{serial:05d}-{random}.warc.gz``, each a
series of gzip members holding exactly one record each, starting with a
``warcinfo`` record. A file is written as ``*.warc.gz.open`` and renamed when
closed, so anything without ``.open`` is complete and may be shipped. A
:class:`WarcRef` (file, offset, length of the gzip member, record id) finds a
record again without scanning: it is what the frontier stores next to a URL.

Records are serialised by warcio (``WARC/1.1``, sha1 base32 digests) with two
changes to its writer: each record is compressed as its own gzip member at
``compresslevel`` through one deflate stream per thread that is reused from
record to record (warcio starts a level-9 stream per record: setting one up
costs about 20 µs, and level 9 up to twice the time of 6 for about 5 % less
size), and HTTP header bytes are kept as received instead of being
percent-encoded (see :class:`WarcWriter`).

Durability: an exchange goes to the kernel in one ``writev`` call, so a killed
process leaves at most one partial exchange at the tail, which :func:`recover`
cuts off; :meth:`WarcWriter.sync` makes everything written so far survive a
power loss. A process that dies leaves its ``.open`` files behind;
:func:`orphaned_files` recognises them by the pid and host in their names.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import os
import re
import secrets
import socket
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Final
from urllib.parse import quote, urlsplit

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import BaseWARCWriter

from shoal.errors import ArchiveError
from shoal.exchange import FetchResult

__all__ = [
    "ArchivedRecord",
    "WarcRef",
    "WarcWriter",
    "iter_records",
    "orphaned_files",
    "read_record",
    "recover",
]

FINAL_SUFFIX: Final = ".warc.gz"
OPEN_SUFFIX: Final = ".open"
DEFAULT_MAX_BYTES: Final = 1024**3
MAX_RECORD_BYTES: Final = 1024**3
"""The largest record (uncompressed) the readers accept before refusing the file."""

_WARC_VERSION = "WARC/1.1"
_GZIP_MAGIC = b"\x1f\x8b"
_READ_CHUNK = 1024 * 1024
_INFLATE_STEP = 32 * 1024
_MAX_HEADER_LINE = 64 * 1024
_CONFORMS_TO = "http://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/"

_PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_NAME_RE = re.compile(
    r"(?P<prefix>.+)-(?P<pid>\d+)-(?P<host>[A-Za-z0-9._]+)-(?P<ts>\d{17})-(?P<serial>\d{5,})"
    r"-(?P<rand>[0-9a-f]+)\.warc\.gz(?:\.open)?"
)


# --------------------------------------------------------------------------- refs and records


@dataclass(frozen=True, slots=True)
class WarcRef:
    """Where one record lives: enough to read it back with a single seek.

    ``file`` is the name relative to the archive folder, always the final
    ``.warc.gz`` name (even while the file is still ``.open``); ``offset`` and
    ``length`` delimit the record's gzip member (or the raw record in an
    uncompressed file); ``record_id`` is its ``WARC-Record-ID``, checked on read.
    """

    file: str
    offset: int
    length: int
    record_id: str


@dataclass(slots=True)
class ArchivedRecord:
    """One record read back from a WARC file.

    ``warc_headers`` maps field names (standard ones in their canonical case)
    to values; a repeated field (``WARC-Concurrent-To``) has its values joined
    with ``", "``. ``http_status`` and ``http_headers`` are set for HTTP
    request/response records (status None for requests); ``body`` is the
    payload as archived: after the HTTP headers, de-chunked if the archive kept
    a chunked transfer coding, still content-encoded (see
    :func:`shoal.archive.decode.content_decode`). ``date`` is ``WARC-Date``
    (UTC); ``truncated`` the ``WARC-Truncated`` reason, if any.
    """

    url: str
    warc_headers: dict[str, str]
    http_status: int | None
    http_headers: list[tuple[str, str]]
    body: bytes
    record_type: str
    date: datetime
    record_id: str
    truncated: str | None = None

    def header(self, name: str) -> str | None:
        """The first HTTP header called ``name`` (case-insensitive), else None."""
        lname = name.lower()
        for k, v in self.http_headers:
            if k.lower() == lname:
                return v
        return None

    @property
    def content_type(self) -> str:
        """The payload's media type in lower case without parameters ('' when unknown).

        From the HTTP ``Content-Type`` for HTTP records, else from the record's
        own ``Content-Type``.
        """
        if self.http_status is not None or self.http_headers:
            value = self.header("content-type") or ""
        else:
            value = self.warc_headers.get("Content-Type", "")
        return value.split(";", 1)[0].strip().lower()


# --------------------------------------------------------------------------- writing


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


class _RecordEncoder(BaseWARCWriter):  # type: ignore[misc]
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


_EMPTY_SHA1 = "sha1:" + base64.b32encode(hashlib.sha1(b"").digest()).decode("ascii")


def _sha1(*parts: bytes) -> str:
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


def _host_tag() -> str:
    """This host's name as it appears in file names (no ``-``, so names parse from the end)."""
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:63] or "host"


class WarcWriter:
    """Writes fetched exchanges into rotating, gzip-per-record WARC 1.1 files.

    Files go to ``directory`` as
    ``{prefix}-{pid}-{host}-{UTC timestamp}-{serial:05d}-{random}.warc.gz.open``
    and lose ``.open`` when closed: on :meth:`close`, or when a write takes the
    file past ``max_bytes`` (files are cut between exchanges, never inside
    one). A file is created on the first write after the previous one closed,
    so no file is ever empty. ``fsync=False`` skips every ``fsync`` (tests,
    throw-away crawls). ``operator_info`` fields (``operator``, ``isPartOf``,
    ``description``, ...) go into each file's ``warcinfo`` record.

    Methods are thread-safe: records are serialised, digested and compressed
    in the calling thread (zlib and hashlib release the GIL) and only the
    append to the file runs under a lock.

    HTTP header names and values are ``str`` as aiohttp produces them (UTF-8
    decoded with ``surrogateescape``); they are encoded back the same way, so
    the archived header bytes are the received ones.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        prefix: str,
        max_bytes: int = DEFAULT_MAX_BYTES,
        fsync: bool = True,
        software: str = "shoal/0.1",
        operator_info: dict[str, str] | None = None,
        compresslevel: int = 6,
    ) -> None:
        if not _PREFIX_RE.fullmatch(prefix):
            raise ArchiveError(
                f"invalid WARC file prefix {prefix!r}: use letters, digits, '.', '_' and '-'"
            )
        if max_bytes <= 0:
            raise ArchiveError(f"max_bytes must be positive, got {max_bytes}")
        if not 0 <= compresslevel <= 9:
            raise ArchiveError(f"compresslevel must be 0..9, got {compresslevel}")
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArchiveError(f"cannot create archive folder {self.directory}: {exc}") from exc
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.software = software
        self.operator_info = dict(operator_info or {})
        self._encoder = _RecordEncoder(compresslevel)
        self._host = _host_tag()
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._name: str | None = None
        self._size = 0
        self._serial = 0
        self._written = 0
        """Exchanges appended so far (a generation counter for :meth:`sync`)."""
        self._synced = 0
        self._dir_dirty = False
        self._closed = False

    # -- public API ----------------------------------------------------------------------------

    @property
    def current_file(self) -> str | None:
        """The final name of the file being written (it still ends ``.open`` on disk), else None."""
        return self._name

    def write_exchange(self, result: FetchResult, *, fetched_at: float | None = None) -> WarcRef:
        """Archive one HTTP exchange and whatever the browser rendered from it.

        Writes a ``response`` record (the status line, ``result.headers``
        without ``Transfer-Encoding`` since the body is already de-chunked, and
        ``result.body``), a ``request`` record pointing at it with
        ``WARC-Concurrent-To``, then one ``conversion`` or ``resource`` record
        per ``result.rendered`` item with ``WARC-Refers-To`` the response.
        ``fetched_at`` (epoch seconds, default now) becomes ``WARC-Date``.

        Returns the reference of the response record. The records are in the
        kernel when this returns (a crashed process does not lose them) but
        survive power loss only after :meth:`sync`. Raises
        :class:`~shoal.errors.ArchiveError` when the file cannot be written
        (its ``__cause__`` is the ``OSError``; ``errno.ENOSPC`` means disk full).
        """
        date = _warc_date(time.time() if fetched_at is None else fetched_at)
        uri = _target_uri(result.url)
        response_id = _record_id()
        request_id = _record_id()
        version = _http_version(result.http_version)
        common: list[tuple[str, str]] = [("WARC-Date", date), ("WARC-Target-URI", uri)]
        if result.peer_ip:
            common.append(("WARC-IP-Address", _field(result.peer_ip)))

        status = (
            f"{result.status} {_one_line(result.reason)}" if result.reason else str(result.status)
        )
        headers = [(k, v) for k, v in result.headers if k.lower() != "transfer-encoding"]
        extra = [("WARC-Truncated", _field(result.truncated))] if result.truncated else []
        members = [
            self._http_record(
                "response",
                response_id,
                common + extra,
                _HttpHeaders(status, headers, version),
                result.body,
            )
        ]
        request_line = f"{_target_uri(_request_target(result.url))} {version}"
        request = _HttpHeaders(
            request_line, list(result.request_headers), _one_line(result.method or "GET")
        )
        members.append(
            self._http_record(
                "request", request_id, [*common, ("WARC-Concurrent-To", response_id)], request, b""
            )
        )
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
        name, offset = self._append(members)
        return WarcRef(name, offset, len(members[0]), response_id)

    def write_resource(
        self,
        url: str,
        content_type: str,
        data: bytes,
        *,
        kind: str = "resource",
        refers_to: str | None = None,
    ) -> WarcRef:
        """Archive one standalone ``resource``, ``conversion`` or ``metadata`` record.

        ``refers_to`` (a ``WARC-Record-ID``) adds ``WARC-Refers-To``. Returns
        the record's reference; raises :class:`~shoal.errors.ArchiveError` as
        :meth:`write_exchange` does.
        """
        if kind not in ("resource", "conversion", "metadata"):
            raise ArchiveError(f"unsupported record kind {kind!r}")
        links = [("WARC-Refers-To", _field(refers_to))] if refers_to else []
        record_id = _record_id()
        member = self._block_record(
            kind, record_id, url, _warc_date(time.time()), links, content_type, data
        )
        name, offset = self._append([member])
        return WarcRef(name, offset, len(member), record_id)

    def sync(self) -> None:
        """Make every record written so far durable (``fsync`` of the file and, once, its folder).

        Costs one lock round when nothing was written since the last call.
        Concurrent callers are safe: each returns only after an ``fsync`` that
        began after its own writes. With ``fsync=False`` this does nothing.
        """
        with self._lock:
            target = self._written
            if not self.fsync or self._synced >= target or self._fd is None:
                self._synced = max(self._synced, target)
                return
            fd = os.dup(self._fd)  # a rotation may close the file while we fsync outside the lock
            sync_dir = self._dir_dirty
            self._dir_dirty = False
        try:
            os.fsync(fd)
            if sync_dir:
                _fsync_dir(self.directory)
        except OSError as exc:
            with self._lock:
                self._dir_dirty = self._dir_dirty or sync_dir
            raise ArchiveError(f"cannot fsync {self.directory}: {exc}") from exc
        finally:
            os.close(fd)
        with self._lock:
            self._synced = max(self._synced, target)

    def close(self) -> None:
        """Sync and close the current file, renaming it to its final ``.warc.gz`` name. Idempotent."""
        with self._lock:
            self._closed = True
            self._close_file()

    def __enter__(self) -> WarcWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- records ---------------------------------------------------------------------------------

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
        payload_digest = _sha1(payload) if payload else _EMPTY_SHA1
        headers = [
            ("WARC-Type", rec_type),
            ("WARC-Record-ID", record_id),
            *fields,
            ("WARC-Payload-Digest", payload_digest),
            ("WARC-Block-Digest", _sha1(http.headers_buff, payload)),
        ]
        record = self._encoder.create_warc_record(
            "",
            rec_type,
            payload=BytesIO(payload),
            length=len(payload),
            warc_headers=_Headers("", headers, _WARC_VERSION),
            http_headers=http,
        )
        return self._encoder.encode(record)

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
        digest = _sha1(data)
        headers = [
            ("WARC-Type", rec_type),
            ("WARC-Record-ID", record_id),
            ("WARC-Date", date),
            ("WARC-Target-URI", _target_uri(url)),
            *links,
            ("WARC-Payload-Digest", digest),
            ("WARC-Block-Digest", digest),
        ]
        record = self._encoder.create_warc_record(
            "",
            rec_type,
            payload=BytesIO(data),
            length=len(data),
            warc_content_type=_field(content_type) or "application/octet-stream",
            warc_headers=_Headers("", headers, _WARC_VERSION),
        )
        return self._encoder.encode(record)

    def _warcinfo(self, filename: str) -> bytes:
        info: dict[str, str] = {
            "software": self.software,
            "format": "WARC File Format 1.1",
            "conformsTo": _CONFORMS_TO,
            "hostname": socket.gethostname(),
        }
        info.update(self.operator_info)
        lines = "".join(f"{_one_line(k)}: {_one_line(v)}\r\n" for k, v in info.items() if v)
        body = lines.encode("utf-8", "surrogateescape")
        headers = [
            ("WARC-Type", "warcinfo"),
            ("WARC-Record-ID", _record_id()),
            ("WARC-Filename", filename),
            ("WARC-Date", _warc_date(time.time())),
            ("WARC-Block-Digest", _sha1(body)),
        ]
        record = self._encoder.create_warc_record(
            "",
            "warcinfo",
            payload=BytesIO(body),
            length=len(body),
            warc_headers=_Headers("", headers, _WARC_VERSION),
        )
        return self._encoder.encode(record)

    # -- files -----------------------------------------------------------------------------------

    def _append(self, members: list[bytes]) -> tuple[str, int]:
        """Append one exchange; returns the file's final name and the offset of the first member."""
        with self._lock:
            if self._closed:
                raise ArchiveError(f"WARC writer for {self.directory} is closed")
            if self._fd is None:
                self._open_file()
            assert self._fd is not None and self._name is not None
            name, offset = self._name, self._size
            self._write_all(members, offset)
            self._size += sum(len(m) for m in members)
            self._written += 1
            if self._size >= self.max_bytes:
                self._close_file()
            return name, offset

    def _write_all(self, members: list[bytes], offset: int) -> None:
        assert self._fd is not None
        path = self.directory / f"{self._name}{OPEN_SUFFIX}"
        try:
            total = sum(len(m) for m in members)
            done = os.writev(self._fd, members)
            if done < total:  # short write (signal, quota): finish piece by piece
                rest = memoryview(b"".join(members))[done:]
                while rest:
                    rest = rest[os.write(self._fd, rest) :]
        except OSError as exc:
            # Leave no partial exchange behind: later appends would follow garbage.
            try:
                os.ftruncate(self._fd, offset)
                os.lseek(self._fd, offset, os.SEEK_SET)
            except OSError:
                # The tail cannot be cut: abandon the file (recover() trims it once this
                # process is gone) and start a new one on the next write.
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd, self._name, self._size = None, None, 0
            raise ArchiveError(f"cannot write {path}: {exc}") from exc

    def _open_file(self) -> None:
        now = time.time()
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}"
        name = f"{self.prefix}-{os.getpid()}-{self._host}-{stamp}-{self._serial:05d}-{secrets.token_hex(4)}{FINAL_SUFFIX}"
        path = self.directory / (name + OPEN_SUFFIX)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ArchiveError(f"cannot create {path}: {exc}") from exc
        self._fd, self._name, self._size = fd, name, 0
        self._serial += 1
        self._dir_dirty = True
        try:
            info = self._warcinfo(name)
            self._write_all([info], 0)
        except BaseException:
            self._fd, self._name = None, None
            with contextlib.suppress(OSError):
                os.close(fd)  # may already be closed by _write_all
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            raise
        self._size = len(info)

    def _close_file(self) -> None:
        """Under the lock: fsync, close and rename the current file, if any."""
        if self._fd is None or self._name is None:
            return
        fd, name = self._fd, self._name
        self._fd, self._name, self._size = None, None, 0
        path = self.directory / (name + OPEN_SUFFIX)
        try:
            try:
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(path, self.directory / name)
            if self.fsync:
                _fsync_dir(self.directory)
        except OSError as exc:
            raise ArchiveError(f"cannot close {path}: {exc}") from exc
        self._dir_dirty = False
        self._synced = self._written


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- reading

_CANONICAL = {
    name.lower(): name
    for name in (
        "WARC-Type",
        "WARC-Record-ID",
        "WARC-Date",
        "Content-Length",
        "Content-Type",
        "WARC-Concurrent-To",
        "WARC-Block-Digest",
        "WARC-Payload-Digest",
        "WARC-IP-Address",
        "WARC-Refers-To",
        "WARC-Refers-To-Target-URI",
        "WARC-Refers-To-Date",
        "WARC-Target-URI",
        "WARC-Truncated",
        "WARC-Warcinfo-ID",
        "WARC-Filename",
        "WARC-Profile",
        "WARC-Identified-Payload-Type",
        "WARC-Segment-Number",
        "WARC-Segment-Origin-ID",
        "WARC-Segment-Total-Length",
    )
}
_REPEATABLE = {"warc-concurrent-to", "warc-protocol"}
_RECORD_TYPES = {
    "warcinfo",
    "response",
    "resource",
    "request",
    "metadata",
    "revisit",
    "conversion",
    "continuation",
}
_NEEDS_TARGET = {"response", "resource", "request", "revisit", "conversion", "continuation"}
_YIELDED = ("response", "resource", "conversion")

_VERSION_RE = re.compile(r"WARC/\d+\.\d+", re.IGNORECASE)
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ID_RE = re.compile(r"<[A-Za-z][A-Za-z0-9+.-]*:[^<>\s]+>")
_URI_RE = re.compile(r"<?[A-Za-z][A-Za-z0-9+.-]*:.*")
_DATE_RE = re.compile(
    r"(\d{4})(?:-(\d\d)(?:-(\d\d)(?:T(\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,9}))?)?Z)?)?)?",
    re.IGNORECASE,
)
_DIGEST_RE = re.compile(r"[A-Za-z0-9-]+:[^\s:]+")
_STATUS_RE = re.compile(r"HTTP/\d+(?:\.\d+)?[ \t]+(\d{3})(?:[ \t].*)?", re.IGNORECASE)


class _Defect(Exception):
    """A record-level defect; the scanner adds file and offset and raises ArchiveError."""


def _parse_header_block(block: bytes) -> tuple[str, list[tuple[str, str]]]:
    """The version line and the fields of a WARC header block (without its blank line)."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Defect(f"WARC header is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    lines = text.split("\r\n")
    version = lines[0]
    if not _VERSION_RE.fullmatch(version):
        raise _Defect(f"not a WARC record (first line {version[:60]!r})")
    fields: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if not fields:
                raise _Defect("WARC header starts with a continuation line")
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN_RE.fullmatch(name):
            raise _Defect(f"malformed WARC header line {line[:60]!r}")
        fields.append((name, value.strip()))
    return version, fields


def _check_fields(fields: list[tuple[str, str]], *, strict: bool) -> dict[str, str]:
    """Validate the WARC 1.1 rules a reader relies on; returns the fields by canonical name."""
    out: dict[str, str] = {}
    for name, value in fields:
        key = name.lower()
        canon = _CANONICAL.get(key, name)
        if canon in out:
            if key in _CANONICAL and key not in _REPEATABLE:
                raise _Defect(f"duplicate WARC field {canon}")
            out[canon] = f"{out[canon]}, {value}"
        else:
            out[canon] = value
    for name in ("WARC-Type", "WARC-Record-ID", "WARC-Date", "Content-Length"):
        if not out.get(name):
            raise _Defect(f"missing mandatory field {name}")
    rtype = out["WARC-Type"].lower()
    if not _ID_RE.fullmatch(out["WARC-Record-ID"]):
        raise _Defect(f"malformed WARC-Record-ID {out['WARC-Record-ID'][:80]!r}")
    if not _DATE_RE.fullmatch(out["WARC-Date"]):
        raise _Defect(f"malformed WARC-Date {out['WARC-Date'][:40]!r}")
    if not out["Content-Length"].isdigit():
        raise _Defect(f"malformed Content-Length {out['Content-Length'][:40]!r}")
    target = out.get("WARC-Target-URI")
    if rtype in _NEEDS_TARGET and not target:
        raise _Defect(f"{rtype} record without WARC-Target-URI")
    if target is not None and not _URI_RE.fullmatch(target):
        raise _Defect(f"malformed WARC-Target-URI {target[:80]!r}")
    for name in (
        "WARC-Concurrent-To",
        "WARC-Refers-To",
        "WARC-Warcinfo-ID",
        "WARC-Segment-Origin-ID",
    ):
        ids = out.get(name)
        if ids is not None and not all(_ID_RE.fullmatch(v.strip()) for v in ids.split(",")):
            raise _Defect(f"malformed {name} {ids[:80]!r}")
    for name in ("WARC-Block-Digest", "WARC-Payload-Digest"):
        digest = out.get(name)
        if digest is not None and not _DIGEST_RE.fullmatch(digest):
            raise _Defect(f"malformed {name} {digest[:80]!r}")
    ip = out.get("WARC-IP-Address")
    if ip is not None:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise _Defect(f"malformed WARC-IP-Address {ip[:60]!r}") from None
    segment = out.get("WARC-Segment-Number")
    if segment is not None and not (segment.isdigit() and int(segment) >= 1):
        raise _Defect(f"malformed WARC-Segment-Number {segment[:20]!r}")
    if rtype == "continuation":
        if segment is None or int(segment) < 2 or "WARC-Segment-Origin-ID" not in out:
            raise _Defect(
                "continuation record needs WARC-Segment-Number >= 2 and WARC-Segment-Origin-ID"
            )
    elif segment is not None and int(segment) != 1:
        raise _Defect(
            f"{rtype} record with WARC-Segment-Number {segment} (only continuations go past 1)"
        )
    total = out.get("WARC-Segment-Total-Length")
    if total is not None and not total.isdigit():
        raise _Defect(f"malformed WARC-Segment-Total-Length {total[:20]!r}")
    if rtype == "revisit" and not out.get("WARC-Profile"):
        raise _Defect("revisit record without WARC-Profile")
    if strict:
        if rtype not in _RECORD_TYPES:
            raise _Defect(f"unknown record type {out['WARC-Type']!r}")
        ctype = out.get("Content-Type", "")
        if not ctype and int(out["Content-Length"]) > 0 and rtype != "continuation":
            raise _Defect(f"{rtype} record with a block but no Content-Type")
        if (
            rtype == "warcinfo"
            and ctype
            and ctype.split(";")[0].strip().lower() != "application/warc-fields"
        ):
            raise _Defect(
                f"warcinfo record with Content-Type {ctype!r}, not application/warc-fields"
            )
    return out


def _parse_date(value: str) -> datetime:
    m = _DATE_RE.fullmatch(value)
    assert m is not None
    year, month, day, hour, minute, second, frac = m.groups()
    try:
        return datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((frac or "0")[:6].ljust(6, "0")),
            tzinfo=UTC,
        )
    except ValueError:
        raise _Defect(f"impossible WARC-Date {value!r}") from None


def _split_http(block: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    """Status/request line, headers and the rest of an ``application/http`` block."""
    end = block.find(b"\r\n\r\n")
    skip = 4
    if end < 0:
        end = block.find(b"\n\n")  # some servers end header lines with a bare LF
        skip = 2
    if end < 0:
        end, skip = len(block), 0
    text = block[:end].decode("utf-8", "surrogateescape")
    lines = [line.rstrip("\r") for line in text.split("\n")]
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip(), value.strip()))
    return lines[0], headers, block[end + skip :]


def _dechunk(data: bytes) -> bytes | None:
    """The payload of a chunked transfer coding, or None when it is not well-formed."""
    out: list[bytes] = []
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_text = data[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return None
        if size == 0:
            return b"".join(out)
        start = eol + 2
        if start + size > len(data):
            return None
        out.append(data[start : start + size])
        pos = start + size
        if data[pos : pos + 2] == b"\r\n":
            pos += 2


def _digest_matches(spec: str, *candidates: bytes) -> bool:
    algorithm, _, value = spec.partition(":")
    name = algorithm.lower().replace("-", "")
    try:
        expected_len = hashlib.new(name).digest_size
    except ValueError:
        raise _Defect(f"unknown digest algorithm {algorithm!r}") from None
    expected: bytes | None = None
    for decode in (bytes.fromhex, _b32decode, base64.b64decode):
        try:
            raw = decode(value)
        except ValueError:
            continue
        if len(raw) == expected_len:
            expected = raw
            break
    if expected is None:
        raise _Defect(f"undecodable digest {spec!r}")
    return any(hashlib.new(name, c).digest() == expected for c in candidates)


def _b32decode(value: str) -> bytes:
    value = value.upper()
    return base64.b32decode(value + "=" * (-len(value) % 8))


def _build_record(fields: dict[str, str], block: bytes, *, verify: bool) -> ArchivedRecord:
    rtype = fields["WARC-Type"].lower()
    ctype = fields.get("Content-Type", "").lower()
    status: int | None = None
    headers: list[tuple[str, str]] = []
    body = block
    raw_payload = block
    is_http = ctype.startswith("application/http") or (
        not ctype and rtype in ("response", "request") and block[:5].upper() == b"HTTP/"
    )
    if is_http and rtype in ("response", "request", "revisit"):
        first, headers, raw_payload = _split_http(block)
        body = raw_payload
        if rtype != "request":
            m = _STATUS_RE.fullmatch(first)
            if m is None:
                raise _Defect(f"malformed HTTP status line {first[:60]!r}")
            status = int(m.group(1))
        chunked = any(
            k.lower() == "transfer-encoding" and "chunked" in v.lower() for k, v in headers
        )
        if chunked:
            body = _dechunk(raw_payload) or raw_payload
    if verify:
        block_digest = fields.get("WARC-Block-Digest")
        if block_digest and not _digest_matches(block_digest, block):
            raise _Defect(f"block digest mismatch ({block_digest})")
        payload_digest = fields.get("WARC-Payload-Digest")
        if (
            payload_digest
            and rtype != "revisit"
            and "WARC-Segment-Number" not in fields
            and not _digest_matches(payload_digest, raw_payload, body)
        ):
            raise _Defect(f"payload digest mismatch ({payload_digest})")
    target = fields.get("WARC-Target-URI", "")
    if target.startswith("<") and target.endswith(">"):  # wget 1.x wrote <uri>
        target = target[1:-1]
    return ArchivedRecord(
        url=target,
        warc_headers=fields,
        http_status=status,
        http_headers=headers,
        body=body,
        record_type=rtype,
        date=_parse_date(fields["WARC-Date"]),
        record_id=fields["WARC-Record-ID"],
        truncated=fields.get("WARC-Truncated"),
    )


def _parse_record(raw: bytes, *, strict: bool, verify: bool) -> ArchivedRecord:
    """One whole record (headers, block, CRLF CRLF) as found in a gzip member."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        if raw[:5].upper() != b"WARC/":
            raise _Defect(f"not a WARC record (starts {raw[:40]!r})")
        raise _Defect("WARC header block is not terminated")
    _, field_list = _parse_header_block(raw[:end])
    fields = _check_fields(field_list, strict=strict)
    start = end + 4
    length = int(fields["Content-Length"])
    block = raw[start : start + length]
    if len(block) < length:
        raise _Defect(f"record cut short: {len(block)} of {length} block bytes")
    trailer = raw[start + length :]
    if trailer[:4] != b"\r\n\r\n":
        raise _Defect("record block is not followed by CRLF CRLF")
    if trailer[4:].strip(b"\r\n"):
        raise _Defect("more than one record in one gzip member (compress each record on its own)")
    return _build_record(fields, block, verify=verify)


class _GzipScanner:
    """Walks a file member by member, keeping at most one read chunk plus one record in memory."""

    def __init__(self, f: BinaryIO, max_record: int) -> None:
        self._f = f
        self._buf = b""
        self._view = memoryview(self._buf)
        self._pos = 0
        self._base = 0
        self._max = max_record

    @property
    def offset(self) -> int:
        return self._base + self._pos

    def _fill(self) -> bool:
        if self._pos < len(self._buf):
            return True
        self._base += len(self._buf)
        self._buf = self._f.read(_READ_CHUNK)
        self._view = memoryview(self._buf)
        self._pos = 0
        return bool(self._buf)

    def next_member(self) -> bytes | None:
        """The next member's decompressed bytes (None at a clean end of file)."""
        if not self._fill():
            return None
        d = zlib.decompressobj(31)
        parts: list[bytes] = []
        total = 0
        while not d.eof:
            if self._fill():
                piece = self._view[self._pos : self._pos + _INFLATE_STEP]
            else:
                piece = memoryview(b"")
            try:
                out = d.decompress(piece, self._max + 1 - total)
            except zlib.error as exc:
                raise _Defect(f"corrupt gzip data: {exc}") from None
            self._pos += len(piece) - len(d.unconsumed_tail) - len(d.unused_data)
            if out:
                parts.append(out)
                total += len(out)
                if total > self._max:
                    raise _Defect(f"record larger than {self._max} bytes")
            elif not piece:
                raise _Defect("gzip member cut short")
        return b"".join(parts)


def _scan(
    path: Path, *, strict: bool, verify: bool, max_record: int
) -> Iterator[tuple[int, int, ArchivedRecord]]:
    """Every record of a file as (offset, length, record); ArchiveError at the first defect."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the with below, generator-friendly
    except OSError as exc:
        raise ArchiveError(f"{path}: cannot open: {exc}") from exc
    with f:
        head = f.read(2)
        f.seek(0)
        if head == _GZIP_MAGIC:
            scanner = _GzipScanner(f, max_record)
            while True:
                offset = scanner.offset
                try:
                    raw = scanner.next_member()
                    if raw is None:
                        return
                    record = _parse_record(raw, strict=strict, verify=verify)
                except _Defect as exc:
                    raise ArchiveError(f"{path} at offset {offset}: {exc}") from None
                yield offset, scanner.offset - offset, record
        else:
            while True:
                offset = f.tell()
                try:
                    item = _read_plain(f, strict=strict, verify=verify, max_record=max_record)
                except _Defect as exc:
                    raise ArchiveError(f"{path} at offset {offset}: {exc}") from None
                if item is None:
                    return
                yield offset, f.tell() - offset, item


def _read_plain(
    f: BinaryIO, *, strict: bool, verify: bool, max_record: int
) -> ArchivedRecord | None:
    """The next record of an uncompressed WARC file (None at a clean end of file)."""
    lines: list[bytes] = []
    size = 0
    while True:
        line = f.readline(_MAX_HEADER_LINE)
        if not line:
            if not lines:
                return None
            raise _Defect("file ends inside a WARC header")
        if not lines and line[:5].upper() != b"WARC/":
            raise _Defect(f"not a WARC record (starts {line[:40]!r})")
        if not line.endswith(b"\r\n"):
            raise _Defect(f"WARC header line not ended by CRLF: {line[:60]!r}")
        if line == b"\r\n":
            break
        lines.append(line)
        size += len(line)
        if size > max_record:
            raise _Defect("WARC header too large")
    _, field_list = _parse_header_block(b"".join(lines)[:-2])
    fields = _check_fields(field_list, strict=strict)
    length = int(fields["Content-Length"])
    if length > max_record:
        raise _Defect(f"record larger than {max_record} bytes")
    block = f.read(length)
    if len(block) < length:
        raise _Defect(f"record cut short: {len(block)} of {length} block bytes")
    if f.read(4) != b"\r\n\r\n":
        raise _Defect("record block is not followed by CRLF CRLF")
    return _build_record(fields, block, verify=verify)


def _final_name(name: str) -> str:
    return name[: -len(OPEN_SUFFIX)] if name.endswith(OPEN_SUFFIX) else name


def iter_records(
    path: str | os.PathLike[str],
    *,
    strict: bool = False,
    verify_digests: bool = False,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> Iterator[tuple[WarcRef, ArchivedRecord]]:
    """Yield ``(ref, record)`` for every response, resource and conversion record of one file.

    Reads gzip-per-record files (ours, and what every mainstream crawler
    writes) and uncompressed WARC files. Every record, yielded or not, is
    checked against the WARC 1.1 rules a reader relies on: a version line,
    the mandatory fields well-formed and not duplicated, segment numbers, the
    block length and its CRLF CRLF trailer. ``strict`` also enforces the
    "should" rules (a ``Content-Type`` on every record with a block, warcinfo
    as ``application/warc-fields``); ``verify_digests`` checks block and
    payload digests. Refs of a ``.open`` file carry the final name.

    Raises :class:`~shoal.errors.ArchiveError` naming the file and the offset
    at the first defect, after yielding every good record before it, so a file
    with a broken tail gives up its good part first. Records that are several
    to a gzip member, or spread over several members, are refused: they cannot
    be addressed by a :class:`WarcRef`.
    """
    path = Path(path)
    name = _final_name(path.name)
    for offset, length, record in _scan(
        path, strict=strict, verify=verify_digests, max_record=max_record_bytes
    ):
        if record.record_type in _YIELDED:
            yield WarcRef(name, offset, length, record.record_id), record


def read_record(
    directory: str | os.PathLike[str],
    ref: WarcRef,
    *,
    verify_digests: bool = False,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> ArchivedRecord:
    """Read the record ``ref`` points at: one seek, one read of ``ref.length`` bytes.

    Opens ``ref.file`` in ``directory``, or ``ref.file + ".open"`` while the
    writer has not closed it. Raises :class:`~shoal.errors.ArchiveError` when
    the file is missing, the bytes there are not one whole record, or the
    record there is not ``ref.record_id``.
    """
    directory = Path(directory)
    path = directory / ref.file
    try:
        f = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        try:
            f = open(directory / (ref.file + OPEN_SUFFIX), "rb")  # noqa: SIM115
        except FileNotFoundError:
            try:  # renamed between the two attempts
                f = open(path, "rb")  # noqa: SIM115
            except OSError as exc:
                raise ArchiveError(
                    f"{path}: no such WARC file (nor {ref.file}{OPEN_SUFFIX})"
                ) from exc
        except OSError as exc:
            raise ArchiveError(f"{path}{OPEN_SUFFIX}: cannot open: {exc}") from exc
    except OSError as exc:
        raise ArchiveError(f"{path}: cannot open: {exc}") from exc
    where = f"{path} at offset {ref.offset}"
    with f:
        try:
            f.seek(ref.offset)
            data = f.read(ref.length)
        except OSError as exc:
            raise ArchiveError(f"{where}: cannot read: {exc}") from exc
    if len(data) < ref.length:
        raise ArchiveError(
            f"{where}: file ends {ref.length - len(data)} bytes before the record does"
        )
    try:
        if data[:2] == _GZIP_MAGIC:
            d = zlib.decompressobj(31)
            try:
                raw = d.decompress(data, max_record_bytes + 1)
            except zlib.error as exc:
                raise _Defect(f"corrupt gzip data: {exc}") from None
            if len(raw) > max_record_bytes:
                raise _Defect(f"record larger than {max_record_bytes} bytes")
            if not d.eof or d.unused_data:
                raise _Defect(f"{ref.length} bytes are not exactly one gzip member")
        else:
            raw = data
        record = _parse_record(raw, strict=False, verify=verify_digests)
    except _Defect as exc:
        raise ArchiveError(f"{where}: {exc}") from None
    if record.record_id != ref.record_id:
        raise ArchiveError(f"{where}: found record {record.record_id}, expected {ref.record_id}")
    return record


# --------------------------------------------------------------------------- recovery


def _pid_alive(pid: int, file_started: float) -> bool:
    """Whether process ``pid`` on this host may still be the writer of a file opened at ``file_started``."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        # A process younger than the file reuses the pid of the dead writer.
        return bool(proc.create_time() <= file_started + 1.0)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # cannot tell (access denied): leave the file alone


def orphaned_files(directory: str | os.PathLike[str]) -> list[str]:
    """Names of ``*.warc.gz.open`` files in ``directory`` whose writer is dead.

    A file is an orphan when its name carries this host and a pid that is not
    running (or was reused by a process younger than the file). Files of other
    hosts and names in another format are never reported: only their own host
    can tell whether their writer lives. Returns ``.open`` names, sorted.
    """
    directory = Path(directory)
    host = _host_tag()
    found: list[str] = []
    for path in directory.glob(f"*{FINAL_SUFFIX}{OPEN_SUFFIX}"):
        m = _NAME_RE.fullmatch(path.name)
        if m is None or m["host"] != host:
            continue
        ts = m["ts"]
        started = (
            datetime.strptime(ts[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC).timestamp()
            + int(ts[14:]) / 1000
        )
        if not _pid_alive(int(m["pid"]), started):
            found.append(path.name)
    return sorted(found)


def _good_prefix(path: Path) -> int:
    """Bytes at the start of ``path`` that hold whole, well-formed records."""
    good = 0
    try:
        for offset, length, _ in _scan(
            path, strict=False, verify=False, max_record=MAX_RECORD_BYTES
        ):
            good = offset + length
    except ArchiveError:
        pass
    return good


def recover(directory: str | os.PathLike[str], only: Iterable[str] | None = None) -> list[str]:
    """Close ``.open`` files left by killed writers: cut the broken tail, rename to the final name.

    ``only`` names the files to recover (``.open`` or final names, relative to
    ``directory``); the caller must know that no live writer holds them. By
    default the files :func:`orphaned_files` reports are recovered. Each file
    keeps its longest prefix of whole records, so every ref into that part
    stays valid; a file without a single whole record is deleted. Returns the
    final names of the recovered files. Raises
    :class:`~shoal.errors.ArchiveError` when a file cannot be cut or renamed,
    or its final name is already taken.
    """
    directory = Path(directory)
    names = orphaned_files(directory) if only is None else [Path(n).name for n in only]
    recovered: list[str] = []
    for name in sorted({_final_name(n) for n in names}):
        path = directory / (name + OPEN_SUFFIX)
        final = directory / name
        if not path.exists():
            continue
        if final.exists():
            raise ArchiveError(f"cannot recover {path}: {final} already exists")
        good = _good_prefix(path)
        try:
            if good == 0:
                path.unlink()
                continue
            with open(path, "r+b") as f:
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())
            os.rename(path, final)
            _fsync_dir(directory)
        except OSError as exc:
            raise ArchiveError(f"cannot recover {path}: {exc}") from exc
        recovered.append(name)
    return recovered
