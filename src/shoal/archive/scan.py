"""Reading WARC files record by record: :func:`iter_records`, :func:`iter_archive_file`, :func:`scan`.

Accepts gzip-per-record files (ours, and what every mainstream crawler writes)
and uncompressed WARC files, and checks every record
(:mod:`shoal.archive.records`); a defect raises
:class:`~shoal.errors.ArchiveError` naming the file and the offset, after every
good record before it. Memory is bounded by one read chunk plus one record
(``max_record_bytes``). An archive in S3 is downloaded file by file.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from shoal.archive.names import FINAL_SUFFIX, OPEN_SUFFIX, WarcRef, final_name
from shoal.archive.reader import as_location
from shoal.archive.records import (
    GZIP_MAGIC,
    MAX_HEADER_LINE,
    MAX_RECORD_BYTES,
    ArchivedRecord,
    Defect,
    build_record,
    check_fields,
    parse_header_block,
    parse_record,
)
from shoal.archive.s3 import S3Location
from shoal.errors import ArchiveError

__all__ = ["archive_files", "iter_archive_file", "iter_records", "scan"]

_READ_CHUNK = 1024 * 1024
_INFLATE_STEP = 32 * 1024
_YIELDED = ("response", "revisit", "resource", "conversion")


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
                raise Defect(f"corrupt gzip data: {exc}") from None
            self._pos += len(piece) - len(d.unconsumed_tail) - len(d.unused_data)
            if out:
                parts.append(out)
                total += len(out)
                if total > self._max:
                    raise Defect(f"record larger than {self._max} bytes")
            elif not piece:
                raise Defect("gzip member cut short")
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
        if head == GZIP_MAGIC:
            scanner = _GzipScanner(f, max_record)
            while True:
                offset = scanner.offset
                try:
                    raw = scanner.next_member()
                    if raw is None:
                        return
                    record = parse_record(raw, strict=strict, verify=verify)
                except Defect as exc:
                    raise ArchiveError(f"{path} at offset {offset}: {exc}") from None
                yield offset, scanner.offset - offset, record
        else:
            while True:
                offset = f.tell()
                try:
                    item = _read_plain(f, strict=strict, verify=verify, max_record=max_record)
                except Defect as exc:
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
        line = f.readline(MAX_HEADER_LINE)
        if not line:
            if not lines:
                return None
            raise Defect("file ends inside a WARC header")
        if not lines and line[:5].upper() != b"WARC/":
            raise Defect(f"not a WARC record (starts {line[:40]!r})")
        if not line.endswith(b"\r\n"):
            raise Defect(f"WARC header line not ended by CRLF: {line[:60]!r}")
        if line == b"\r\n":
            break
        lines.append(line)
        size += len(line)
        if size > max_record:
            raise Defect("WARC header too large")
    _, field_list = parse_header_block(b"".join(lines)[:-2])
    fields = check_fields(field_list, strict=strict)
    length = int(fields["Content-Length"])
    if length > max_record:
        raise Defect(f"record larger than {max_record} bytes")
    block = f.read(length)
    if len(block) < length:
        raise Defect(f"record cut short: {len(block)} of {length} block bytes")
    if f.read(4) != b"\r\n\r\n":
        raise Defect("record block is not followed by CRLF CRLF")
    return build_record(fields, block, verify=verify)


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
