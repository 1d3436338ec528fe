"""The archive stage: WARC files written during a crawl, read back later by reference.

:class:`WarcWriter` appends fetched exchanges to rotating WARC 1.1 files and
returns a :class:`WarcRef` per response; :func:`read_record` and
:func:`iter_records` read them back for the parse stage; :func:`recover`
closes the files a killed worker left open; :func:`content_decode` undoes
HTTP content codings with a size cap.
"""

from __future__ import annotations

from shoal.archive.decode import content_decode
from shoal.archive.warc import (
    ArchivedRecord,
    WarcRef,
    WarcWriter,
    iter_records,
    orphaned_files,
    read_record,
    recover,
)

__all__ = [
    "ArchivedRecord",
    "WarcRef",
    "WarcWriter",
    "content_decode",
    "iter_records",
    "orphaned_files",
    "read_record",
    "recover",
]
