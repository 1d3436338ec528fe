"""Reading a WARC record back by reference: one seek, one read (or one ranged GET from S3).

:func:`read_record` checks that the bytes a :class:`~shoal.archive.names.WarcRef`
delimits are exactly one record (:mod:`shoal.archive.records`) and that it is the
record referenced; a defect raises :class:`~shoal.errors.ArchiveError` naming the
file and the offset. Reading record by record is :mod:`shoal.archive.scan`.

A location is a local folder or an ``s3://bucket/prefix`` URL
(:func:`as_location`, :func:`archive_location`).
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from shoal.archive.names import OPEN_SUFFIX, WarcRef
from shoal.archive.records import (
    GZIP_MAGIC,
    MAX_RECORD_BYTES,
    ArchivedRecord,
    Defect,
    parse_record,
)
from shoal.archive.s3 import S3Location
from shoal.errors import ArchiveError

if TYPE_CHECKING:
    from shoal.spec import Spec

__all__ = ["archive_location", "as_location", "read_record"]


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
        if data[:2] == GZIP_MAGIC:
            d = zlib.decompressobj(31)
            try:
                raw = d.decompress(data, max_record_bytes + 1)
            except zlib.error as exc:
                raise Defect(f"corrupt gzip data: {exc}") from None
            if len(raw) > max_record_bytes:
                raise Defect(f"record larger than {max_record_bytes} bytes")
            if not d.eof or d.unused_data:
                raise Defect(f"{ref.length} bytes are not exactly one gzip member")
        else:
            raw = data
        record = parse_record(raw, strict=False, verify=verify_digests)
    except Defect as exc:
        raise ArchiveError(f"{where}: {exc}") from None
    if record.record_id != ref.record_id:
        raise ArchiveError(f"{where}: found record {record.record_id}, expected {ref.record_id}")
    return record
