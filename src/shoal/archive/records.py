"""One WARC record read back: :class:`ArchivedRecord`, and the WARC 1.1 checks a reader relies on.

:func:`parse_record` turns the bytes of one whole record into an
:class:`ArchivedRecord`, or raises :class:`Defect` (the callers add the file
and offset and raise :class:`~shoal.errors.ArchiveError`): a version line, the
mandatory fields well-formed and not duplicated, segment numbers, the block
length and its CRLF CRLF trailer; with ``strict`` also the "should" rules;
with ``verify`` the block and payload digests. Used by
:mod:`shoal.archive.reader` (by reference) and :mod:`shoal.archive.scan`
(record by record).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

__all__ = [
    "GZIP_MAGIC",
    "MAX_HEADER_LINE",
    "MAX_RECORD_BYTES",
    "ArchivedRecord",
    "Defect",
    "build_record",
    "check_fields",
    "parse_header_block",
    "parse_record",
]

MAX_RECORD_BYTES: Final = 1024**3
"""The largest record (uncompressed) the readers accept before refusing the file."""

GZIP_MAGIC = b"\x1f\x8b"
MAX_HEADER_LINE = 64 * 1024


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


class Defect(Exception):
    """A record-level defect; the scanner adds file and offset and raises ArchiveError."""


def parse_header_block(block: bytes) -> tuple[str, list[tuple[str, str]]]:
    """The version line and the fields of a WARC header block (without its blank line)."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Defect(f"WARC header is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    lines = text.split("\r\n")
    version = lines[0]
    if not _VERSION_RE.fullmatch(version):
        raise Defect(f"not a WARC record (first line {version[:60]!r})")
    fields: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if not fields:
                raise Defect("WARC header starts with a continuation line")
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN_RE.fullmatch(name):
            raise Defect(f"malformed WARC header line {line[:60]!r}")
        fields.append((name, value.strip()))
    return version, fields


def check_fields(fields: list[tuple[str, str]], *, strict: bool) -> dict[str, str]:
    """Validate the WARC 1.1 rules a reader relies on; returns the fields by canonical name."""
    out: dict[str, str] = {}
    for name, value in fields:
        key = name.lower()
        canon = _CANONICAL.get(key, name)
        if canon in out:
            if key in _CANONICAL and key not in _REPEATABLE:
                raise Defect(f"duplicate WARC field {canon}")
            out[canon] = f"{out[canon]}, {value}"
        else:
            out[canon] = value
    for name in ("WARC-Type", "WARC-Record-ID", "WARC-Date", "Content-Length"):
        if not out.get(name):
            raise Defect(f"missing mandatory field {name}")
    rtype = out["WARC-Type"].lower()
    if not _ID_RE.fullmatch(out["WARC-Record-ID"]):
        raise Defect(f"malformed WARC-Record-ID {out['WARC-Record-ID'][:80]!r}")
    if not _DATE_RE.fullmatch(out["WARC-Date"]):
        raise Defect(f"malformed WARC-Date {out['WARC-Date'][:40]!r}")
    if not out["Content-Length"].isdigit():
        raise Defect(f"malformed Content-Length {out['Content-Length'][:40]!r}")
    target = out.get("WARC-Target-URI")
    if rtype in _NEEDS_TARGET and not target:
        raise Defect(f"{rtype} record without WARC-Target-URI")
    if target is not None and not _URI_RE.fullmatch(target):
        raise Defect(f"malformed WARC-Target-URI {target[:80]!r}")
    for name in (
        "WARC-Concurrent-To",
        "WARC-Refers-To",
        "WARC-Warcinfo-ID",
        "WARC-Segment-Origin-ID",
    ):
        ids = out.get(name)
        if ids is not None and not all(_ID_RE.fullmatch(v.strip()) for v in ids.split(",")):
            raise Defect(f"malformed {name} {ids[:80]!r}")
    for name in ("WARC-Block-Digest", "WARC-Payload-Digest"):
        digest = out.get(name)
        if digest is not None and not _DIGEST_RE.fullmatch(digest):
            raise Defect(f"malformed {name} {digest[:80]!r}")
    ip = out.get("WARC-IP-Address")
    if ip is not None:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise Defect(f"malformed WARC-IP-Address {ip[:60]!r}") from None
    segment = out.get("WARC-Segment-Number")
    if segment is not None and not (segment.isdigit() and int(segment) >= 1):
        raise Defect(f"malformed WARC-Segment-Number {segment[:20]!r}")
    if rtype == "continuation":
        if segment is None or int(segment) < 2 or "WARC-Segment-Origin-ID" not in out:
            raise Defect(
                "continuation record needs WARC-Segment-Number >= 2 and WARC-Segment-Origin-ID"
            )
    elif segment is not None and int(segment) != 1:
        raise Defect(
            f"{rtype} record with WARC-Segment-Number {segment} (only continuations go past 1)"
        )
    total = out.get("WARC-Segment-Total-Length")
    if total is not None and not total.isdigit():
        raise Defect(f"malformed WARC-Segment-Total-Length {total[:20]!r}")
    if rtype == "revisit" and not out.get("WARC-Profile"):
        raise Defect("revisit record without WARC-Profile")
    if strict:
        if rtype not in _RECORD_TYPES:
            raise Defect(f"unknown record type {out['WARC-Type']!r}")
        ctype = out.get("Content-Type", "")
        if not ctype and int(out["Content-Length"]) > 0 and rtype != "continuation":
            raise Defect(f"{rtype} record with a block but no Content-Type")
        if (
            rtype == "warcinfo"
            and ctype
            and ctype.split(";")[0].strip().lower() != "application/warc-fields"
        ):
            raise Defect(
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
        raise Defect(f"impossible WARC-Date {value!r}") from None


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
        raise Defect(f"unknown digest algorithm {algorithm!r}") from None
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
        raise Defect(f"undecodable digest {spec!r}")
    return any(hashlib.new(name, c).digest() == expected for c in candidates)


def _b32decode(value: str) -> bytes:
    value = value.upper()
    return base64.b32decode(value + "=" * (-len(value) % 8))


def build_record(fields: dict[str, str], block: bytes, *, verify: bool) -> ArchivedRecord:
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
                raise Defect(f"malformed HTTP status line {first[:60]!r}")
            status = int(m.group(1))
        chunked = any(
            k.lower() == "transfer-encoding" and "chunked" in v.lower() for k, v in headers
        )
        if chunked:
            body = _dechunk(raw_payload) or raw_payload
    if verify:
        block_digest = fields.get("WARC-Block-Digest")
        if block_digest and not _digest_matches(block_digest, block):
            raise Defect(f"block digest mismatch ({block_digest})")
        payload_digest = fields.get("WARC-Payload-Digest")
        if (
            payload_digest
            and rtype != "revisit"
            and "WARC-Segment-Number" not in fields
            and not _digest_matches(payload_digest, raw_payload, body)
        ):
            raise Defect(f"payload digest mismatch ({payload_digest})")
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


def parse_record(raw: bytes, *, strict: bool, verify: bool) -> ArchivedRecord:
    """One whole record (headers, block, CRLF CRLF) as found in a gzip member."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        if raw[:5].upper() != b"WARC/":
            raise Defect(f"not a WARC record (starts {raw[:40]!r})")
        raise Defect("WARC header block is not terminated")
    _, field_list = parse_header_block(raw[:end])
    fields = check_fields(field_list, strict=strict)
    start = end + 4
    length = int(fields["Content-Length"])
    block = raw[start : start + length]
    if len(block) < length:
        raise Defect(f"record cut short: {len(block)} of {length} block bytes")
    trailer = raw[start + length :]
    if trailer[:4] != b"\r\n\r\n":
        raise Defect("record block is not followed by CRLF CRLF")
    if trailer[4:].strip(b"\r\n"):
        raise Defect("more than one record in one gzip member (compress each record on its own)")
    return build_record(fields, block, verify=verify)
