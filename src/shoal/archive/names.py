"""WARC file names and record references: what a file is called and how a record is found again.

A file is named
``{prefix}-{pid}-{host}-{UTC timestamp}-{serial:05d}-{random}.warc.gz`` and
carries ``.open`` until its writer closes it, so anything without ``.open`` is
complete and may be shipped. The pid and host in the name let the host that
wrote a file tell whether its writer still lives (see
:mod:`shoal.archive.recover`). A :class:`WarcRef` (file, offset, length of the
gzip member, record id) finds a record again without scanning: it is what the
frontier stores next to a URL.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

__all__ = [
    "FINAL_SUFFIX",
    "OPEN_SUFFIX",
    "FileName",
    "WarcRef",
    "final_name",
    "host_tag",
    "parse_name",
    "valid_prefix",
]

FINAL_SUFFIX: Final = ".warc.gz"
OPEN_SUFFIX: Final = ".open"

_PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_NAME_RE = re.compile(
    r"(?P<prefix>.+)-(?P<pid>\d+)-(?P<host>[A-Za-z0-9._]+)-(?P<ts>\d{17})-(?P<serial>\d{5,})"
    r"-(?P<rand>[0-9a-f]+)\.warc\.gz(?:\.open)?"
)


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


@dataclass(frozen=True, slots=True)
class FileName:
    """The parts of a file name this package wrote: who wrote it, where and when it started."""

    prefix: str
    pid: int
    host: str
    started: float
    """Epoch seconds, to the millisecond."""
    serial: int


def valid_prefix(prefix: str) -> bool:
    """Whether ``prefix`` may start a file name (letters, digits, ``.``, ``_``, ``-``)."""
    return _PREFIX_RE.fullmatch(prefix) is not None


def host_tag() -> str:
    """This host's name as it appears in file names (no ``-``, so names parse from the end)."""
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:63] or "host"


def final_name(name: str) -> str:
    """``name`` without a trailing ``.open``."""
    return name[: -len(OPEN_SUFFIX)] if name.endswith(OPEN_SUFFIX) else name


def parse_name(name: str) -> FileName | None:
    """The parts of a file name in this package's format (``.open`` or not), else None."""
    m = _NAME_RE.fullmatch(name)
    if m is None:
        return None
    ts = m["ts"]
    started = (
        datetime.strptime(ts[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC).timestamp()
        + int(ts[14:]) / 1000
    )
    return FileName(m["prefix"], int(m["pid"]), m["host"], started, int(m["serial"]))
