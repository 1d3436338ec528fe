"""Writing WARC 1.1 files: fetched exchanges appended to rotating, gzip-per-record files.

Files are named as :mod:`shoal.archive.names` describes, written as
``*.warc.gz.open`` and renamed when closed, so anything without ``.open`` is
complete and may be shipped. Each file is a series of gzip members holding
exactly one record each, starting with a ``warcinfo`` record.

Records are serialised by warcio (``WARC/1.1``, sha1 base32 digests) with two
changes to its writer: each record is compressed as its own gzip member at
``compresslevel`` through one deflate stream per thread that is reused from
record to record (warcio starts a level-9 stream per record: setting one up
costs about 20 µs, and level 9 up to twice the time of 6 for about 5 % less
size), and HTTP header bytes are kept as received instead of being
percent-encoded (see :class:`WarcWriter`).

Durability: an exchange goes to the kernel in one ``writev`` call, so a killed
process leaves at most one partial exchange at the tail, which
:func:`shoal.archive.recover.recover` cuts off; :meth:`WarcWriter.sync` makes
everything written so far survive a power loss. Every failure to create,
write, sync, close or rename a file raises :class:`~shoal.errors.ArchiveError`
with the ``errno`` of the ``OSError`` behind it (``ENOSPC``, ``EROFS``,
``EACCES``, ...): the worker treats those as critical.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import socket
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote, urlsplit

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import BaseWARCWriter

from shoal.archive.names import FINAL_SUFFIX, OPEN_SUFFIX, WarcRef, host_tag, valid_prefix
from shoal.errors import ArchiveError
from shoal.exchange import FetchResult

__all__ = ["DEFAULT_MAX_BYTES", "WarcWriter", "fsync_dir"]

DEFAULT_MAX_BYTES: Final = 1024**3

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


class WarcWriter:
    """Writes fetched exchanges into rotating, gzip-per-record WARC 1.1 files.

    Files go to ``directory`` as
    ``{prefix}-{pid}-{host}-{UTC timestamp}-{serial:05d}-{random}.warc.gz.open``
    and lose ``.open`` when closed: on :meth:`close`, or when a write takes the
    file past ``max_bytes`` (files are cut between exchanges, never inside
    one). A file is created on the first write after the previous one closed,
    so no file is ever empty. :meth:`rotate_if_older` closes a file once it
    is ``max_seconds`` old (a timer calls it; a write past that age closes it
    too), so little is ever only in an open file. ``fsync=False`` skips every
    ``fsync`` (tests, throw-away crawls). ``operator_info`` fields
    (``operator``, ``isPartOf``, ``description``, ...) go into each file's
    ``warcinfo`` record.

    ``on_open(name)`` is called when a file is created, before any reference
    into it is returned; ``on_close(name, path)`` once it is complete under its
    final name. Both run under the writer's lock: they must be quick (the
    archive sink records the file and queues its upload).

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
        max_seconds: float | None = None,
        on_open: Callable[[str], None] | None = None,
        on_close: Callable[[str, Path], None] | None = None,
    ) -> None:
        if not valid_prefix(prefix):
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
            raise ArchiveError(
                f"cannot create archive folder {self.directory}: {exc}", errno=exc.errno
            ) from exc
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.software = software
        self.operator_info = dict(operator_info or {})
        self._encoder = _RecordEncoder(compresslevel)
        self._host = host_tag()
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
        self.max_seconds = max_seconds
        self._opened_at = 0.0
        self._on_open = on_open
        self._on_close = on_close

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

    def write_revisit(
        self,
        result: FetchResult,
        *,
        profile: str,
        refers_to: str,
        refers_to_uri: str,
        refers_to_date: float,
        payload_digest: str,
        fetched_at: float | None = None,
    ) -> WarcRef:
        """Archive a refetch that brought nothing new as a WARC 1.1 ``revisit`` record.

        ``profile`` is ``server-not-modified`` (a 304) or
        ``identical-payload-digest`` (a 200 whose payload equals an earlier
        capture's). The record holds the HTTP status line and headers only;
        ``WARC-Refers-To`` (record id), ``WARC-Refers-To-Target-URI`` and
        ``WARC-Refers-To-Date`` (epoch seconds) name the capture holding the
        payload, and ``WARC-Payload-Digest`` is that payload's digest. A
        ``request`` record follows, as for :meth:`write_exchange`. Returns the
        revisit record's reference; raises :class:`~shoal.errors.ArchiveError`
        as :meth:`write_exchange` does.
        """
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
            ("WARC-Refers-To", _field(refers_to)),
            ("WARC-Refers-To-Target-URI", _target_uri(refers_to_uri)),
            ("WARC-Refers-To-Date", _warc_date(refers_to_date)),
            ("WARC-Payload-Digest", _field(payload_digest)),
            ("WARC-Block-Digest", _sha1(http.headers_buff)),
        ]
        record = self._encoder.create_warc_record(
            "",
            "revisit",
            payload=BytesIO(b""),
            length=0,
            warc_headers=_Headers("", fields, _WARC_VERSION),
            http_headers=http,
        )
        members = [self._encoder.encode(record), self._request_record(result, common, revisit_id)]
        name, offset = self._append(members)
        return WarcRef(name, offset, len(members[0]), revisit_id)

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
                fsync_dir(self.directory)
        except OSError as exc:
            with self._lock:
                self._dir_dirty = self._dir_dirty or sync_dir
            raise ArchiveError(f"cannot fsync {self.directory}: {exc}", errno=exc.errno) from exc
        finally:
            os.close(fd)
        with self._lock:
            self._synced = max(self._synced, target)

    def close(self) -> None:
        """Sync and close the current file, renaming it to its final ``.warc.gz`` name. Idempotent."""
        with self._lock:
            self._closed = True
            self._close_file()

    def rotate_if_older(self, seconds: float | None = None) -> bool:
        """Close the current file if it is older than ``seconds`` (default ``max_seconds``).

        Returns True when a file was closed. The next write opens a new one.
        """
        with self._lock:
            if self._fd is None or not self._too_old(seconds):
                return False
            self._close_file()
            return True

    def _too_old(self, seconds: float | None = None) -> bool:
        limit = self.max_seconds if seconds is None else seconds
        return limit is not None and time.monotonic() - self._opened_at >= limit

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
            if self._size >= self.max_bytes or self._too_old():
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
            raise ArchiveError(f"cannot write {path}: {exc}", errno=exc.errno) from exc

    def _open_file(self) -> None:
        now = time.time()
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}"
        name = f"{self.prefix}-{os.getpid()}-{self._host}-{stamp}-{self._serial:05d}-{secrets.token_hex(4)}{FINAL_SUFFIX}"
        path = self.directory / (name + OPEN_SUFFIX)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ArchiveError(f"cannot create {path}: {exc}", errno=exc.errno) from exc
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
        self._opened_at = time.monotonic()
        if self._on_open is not None:
            self._on_open(name)

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
                fsync_dir(self.directory)
        except OSError as exc:
            raise ArchiveError(f"cannot close {path}: {exc}", errno=exc.errno) from exc
        self._dir_dirty = False
        self._synced = self._written
        if self._on_close is not None:
            self._on_close(name, self.directory / name)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
