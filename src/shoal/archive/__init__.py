"""The archive stage: WARC files written during a crawl, read back later by reference.

- :mod:`~shoal.archive.writer`: :class:`WarcWriter` appends fetched exchanges
  to rotating WARC 1.1 files and returns a :class:`WarcRef` per response;
  :mod:`~shoal.archive.encode` builds and compresses the records it appends.
- :mod:`~shoal.archive.reader`: :func:`read_record` reads one back by
  reference, from a folder or from S3 (one ranged GET per record);
  :mod:`~shoal.archive.scan`: :func:`archive_files` and
  :func:`iter_archive_file` read them record by record for the parse stage.
- :mod:`~shoal.archive.sink`: the worker's writer, its ``warc_files`` rows
  and the verified uploads of an ``s3://`` archive (:mod:`~shoal.archive.s3`).
- :mod:`~shoal.archive.recover`: :func:`recover` closes the files a killed
  worker left open, safely when several processes start at once.
- :mod:`~shoal.archive.names`: file names and :class:`WarcRef`.
"""

from __future__ import annotations

from shoal.archive.names import WarcRef
from shoal.archive.reader import archive_location, read_record
from shoal.archive.records import ArchivedRecord
from shoal.archive.recover import orphaned_files, recover
from shoal.archive.s3 import S3Location
from shoal.archive.scan import archive_files, iter_archive_file, iter_records
from shoal.archive.writer import WarcWriter

__all__ = [
    "ArchivedRecord",
    "S3Location",
    "WarcRef",
    "WarcWriter",
    "archive_files",
    "archive_location",
    "iter_archive_file",
    "iter_records",
    "orphaned_files",
    "read_record",
    "recover",
]
