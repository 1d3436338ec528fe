"""Writing WARC 1.1 files: fetched exchanges appended to rotating, gzip-per-record files.

Files are named as :mod:`shoal.archive.names` describes, written as
``*.warc.gz.open`` and renamed when closed, so anything without ``.open`` is
complete and may be shipped. Each file is a series of gzip members holding
exactly one record each, starting with a ``warcinfo`` record. What the
records hold and how they are encoded is :mod:`shoal.archive.encode`; this
module is where they go: the files, their rotation, and their durability.

Durability: an exchange goes to the kernel in one ``writev`` call, so a killed
process leaves at most one partial exchange at the tail, which
:func:`shoal.archive.recover.recover` cuts off; :meth:`WarcWriter.sync` makes
everything written so far survive a power loss. Every failure to create,
write, sync, close or rename a file raises :class:`~shoal.errors.ArchiveError`
with the ``errno`` of the ``OSError`` behind it (``ENOSPC``, ``EROFS``,
``EACCES``, ...): the worker treats those as critical.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Final, Unpack

from shoal.archive.encode import Encoded, RecordEncoder, RevisitOf
from shoal.archive.names import FINAL_SUFFIX, OPEN_SUFFIX, WarcRef, host_tag, valid_prefix
from shoal.errors import ArchiveError
from shoal.exchange import FetchResult

__all__ = ["DEFAULT_MAX_BYTES", "WarcWriter", "fsync_dir"]

DEFAULT_MAX_BYTES: Final = 1024**3


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
    the archived header bytes are the received ones (see
    :mod:`shoal.archive.encode`).
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
        self._encoder = RecordEncoder(compresslevel)
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
        return self._append(self._encoder.exchange(result, fetched_at))

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
        return self._append(self._encoder.resource(kind, url, content_type, data, refers_to))

    def write_revisit(
        self, result: FetchResult, *, fetched_at: float | None = None, **of: Unpack[RevisitOf]
    ) -> WarcRef:
        """Archive a refetch that brought nothing new as a WARC 1.1 ``revisit`` record.

        ``of`` names the earlier capture holding the payload (its fields:
        :class:`~shoal.archive.encode.RevisitOf`); the record holds the HTTP
        status line and headers only. A ``request`` record follows, as for
        :meth:`write_exchange`. Returns the revisit record's reference; raises
        :class:`~shoal.errors.ArchiveError` as :meth:`write_exchange` does.
        """
        return self._append(self._encoder.revisit(result, of, fetched_at))

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

    # -- files -----------------------------------------------------------------------------------

    def _append(self, records: Encoded) -> WarcRef:
        """Append one exchange's records; returns the reference of the first."""
        members = records.members
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
        return WarcRef(name, offset, len(members[0]), records.record_id)

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
            info = self._encoder.warcinfo(name, self.software, self.operator_info)
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
