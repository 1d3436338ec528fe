"""Reading WARC files back: by reference (one seek, one read) or record by record.

Readers accept gzip-per-record files (ours, and what every mainstream crawler
writes) and uncompressed WARC files, and check every record against the WARC
1.1 rules a reader relies on; a defect raises
:class:`~shoal.errors.ArchiveError` naming the file and the offset. Memory is
bounded by one read chunk plus one record (``max_record_bytes``).

A location is a local folder or an ``s3://bucket/prefix`` URL
(:func:`read_record`, :func:`iter_records` and :func:`open_archive` accept
both): from S3 a record is one ranged GET of exactly its bytes.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import re
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final

from shoal.archive.names import FINAL_SUFFIX, OPEN_SUFFIX, WarcRef, final_name
from shoal.archive.s3 import S3Location
from shoal.errors import ArchiveError

if TYPE_CHECKING:
    from shoal.spec import Spec

__all__ = [
    "MAX_RECORD_BYTES",
    "ArchivedRecord",
    "archive_files",
    "archive_location",
    "as_location",
    "iter_archive_file",
    "iter_records",
    "read_record",
    "scan",
]

MAX_RECORD_BYTES: Final = 1024**3
"""The largest record (uncompressed) the readers accept before refusing the file."""

_GZIP_MAGIC = b"\x1f\x8b"
_READ_CHUNK = 1024 * 1024
_INFLATE_STEP = 32 * 1024
_MAX_HEADER_LINE = 64 * 1024


@dataclass(slots=True)
class ArchivedRecord:
    """One record read back from a WARC file.

    ``warc_headers`` maps field names (standard ones in their canonical case)
    to values; a repeated field (``WARC-Concurrent-To``) has its values joined
    with ``", "``. ``http_status`` and ``http_headers`` are set for HTTP
    request/response records (status None for requests); ``body`` is the
    payload as archived: after the HTTP headers, de-chunked if the archive kept
    a chunked transfer coding, still content-encoded (see
    :func:`shoal.content.codings.content_decode`). ``date`` is ``WARC-Date``
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
_YIELDED = ("response", "revisit", "resource", "conversion")

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


def scan(
    path: Path, *, strict: bool, verify: bool, max_record: int
) -> Iterator[tuple[int, int, ArchivedRecord]]:
    """Every record of a file as (offset, length, record); ArchiveError at the first defect."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the with below, generator-friendly
    except OSError as exc:
        raise ArchiveError(f"{path}: cannot open: {exc}", errno=exc.errno) from exc
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


def iter_records(
    path: str | os.PathLike[str],
    *,
    strict: bool = False,
    verify_digests: bool = False,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> Iterator[tuple[WarcRef, ArchivedRecord]]:
    """Yield ``(ref, record)`` for every response, revisit, resource and conversion record of one file.

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
    name = final_name(path.name)
    for offset, length, record in scan(
        path, strict=strict, verify=verify_digests, max_record=max_record_bytes
    ):
        if record.record_type in _YIELDED:
            yield WarcRef(name, offset, length, record.record_id), record


def archive_location(spec: Spec) -> Path | S3Location:
    """The crawl's archive: a local folder, or an S3 location with the spec's endpoint and region.

    Pass it to :func:`read_record`, :func:`archive_files` and
    :func:`iter_archive_file` (it pickles, for worker processes).
    """
    where = spec.archive_dir()
    if where.startswith("s3://"):
        return S3Location.parse(
            where, endpoint_url=spec.storage.endpoint_url, region=spec.storage.region
        )
    return Path(where)


def as_location(location: str | os.PathLike[str] | S3Location) -> Path | S3Location:
    """A folder as a Path, ``s3://`` strings as an :class:`~shoal.archive.s3.S3Location`."""
    if isinstance(location, S3Location):
        return location
    if isinstance(location, str) and location.startswith("s3://"):
        return S3Location.parse(location)
    return Path(location)


def read_record(
    directory: str | os.PathLike[str] | S3Location,
    ref: WarcRef,
    *,
    verify_digests: bool = False,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> ArchivedRecord:
    """Read the record ``ref`` points at: one seek, one read of ``ref.length`` bytes.

    Opens ``ref.file`` in ``directory``, or ``ref.file + ".open"`` while the
    writer has not closed it; from S3 (an :class:`~shoal.archive.s3.S3Location`
    or an ``s3://bucket/prefix`` string) it is one ranged GET of exactly
    those bytes. Raises :class:`~shoal.errors.ArchiveError` when the file is
    missing, the bytes there are not one whole record, or the record there is
    not ``ref.record_id``.
    """
    where_from = as_location(directory)
    if isinstance(where_from, S3Location):
        data = where_from.read_range(ref.file, ref.offset, ref.length)
        where = f"{where_from.url(ref.file)} at offset {ref.offset}"
        if len(data) < ref.length:
            raise ArchiveError(f"{where}: object ends {ref.length - len(data)} bytes early")
        return _record_at(data, ref, where, verify_digests, max_record_bytes)
    directory = where_from
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
            raise ArchiveError(f"{path}{OPEN_SUFFIX}: cannot open: {exc}", errno=exc.errno) from exc
    except OSError as exc:
        raise ArchiveError(f"{path}: cannot open: {exc}", errno=exc.errno) from exc
    where = f"{path} at offset {ref.offset}"
    with f:
        try:
            f.seek(ref.offset)
            data = f.read(ref.length)
        except OSError as exc:
            raise ArchiveError(f"{where}: cannot read: {exc}", errno=exc.errno) from exc
    if len(data) < ref.length:
        raise ArchiveError(
            f"{where}: file ends {ref.length - len(data)} bytes before the record does"
        )
    return _record_at(data, ref, where, verify_digests, max_record_bytes)


def _record_at(
    data: bytes, ref: WarcRef, where: str, verify_digests: bool, max_record_bytes: int
) -> ArchivedRecord:
    """The record in ``data`` (the bytes ``ref`` delimits), checked to be ``ref``."""
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


def archive_files(location: str | os.PathLike[str] | S3Location) -> list[str]:
    """Names of the complete WARC files (``.warc.gz``, ``.warc``) of an archive (a folder or S3), sorted."""
    where = as_location(location)
    if isinstance(where, S3Location):
        return where.names()
    if not where.is_dir():
        return []
    return sorted(p.name for p in where.iterdir() if p.name.endswith((FINAL_SUFFIX, ".warc")))


def iter_archive_file(
    location: str | os.PathLike[str] | S3Location,
    name: str,
    *,
    strict: bool = False,
    verify_digests: bool = False,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> Iterator[tuple[WarcRef, ArchivedRecord]]:
    """:func:`iter_records` over file ``name`` of an archive, local (or ``.open``) or in S3.

    An S3 file is downloaded once to a temporary file, read, and removed.
    """
    where = as_location(location)
    if isinstance(where, S3Location):
        with tempfile.TemporaryDirectory(prefix="shoal-warc-") as tmp:
            local = Path(tmp) / name
            where.download(name, local)
            yield from iter_records(
                local,
                strict=strict,
                verify_digests=verify_digests,
                max_record_bytes=max_record_bytes,
            )
        return
    path = where / name
    if not path.exists() and (where / (name + OPEN_SUFFIX)).exists():
        path = where / (name + OPEN_SUFFIX)
    yield from iter_records(
        path, strict=strict, verify_digests=verify_digests, max_record_bytes=max_record_bytes
    )
