"""Where a worker's WARC files end up: a local folder, or an S3 bucket (any S3-compatible endpoint).

A worker always writes locally (the archive folder, or ``[storage] staging``
for an ``s3://`` archive). :class:`ArchiveSink` wraps its
:class:`~shoal.archive.writer.WarcWriter` and records every file in the
frontier's ``warc_files`` table; with an S3 archive it uploads each file once
it closes (full, ``warc_max_seconds`` old, or at the end) from a background
thread.

Guarantees:

- **Recorded before referenced.** A file's row exists before any reference
  into it is handed to the worker (``on_open`` runs before the writer
  returns its first :class:`~shoal.archive.names.WarcRef`).
- **Verified before deleted.** A file is uploaded and verified by
  :meth:`~shoal.archive.s3.S3Location.upload` (per-part SHA-256 checked by
  S3, then size and checksum compared); only then is its row ``uploaded``
  and the local copy deleted (unless ``keep_local``).
- **Nothing only local for long.** Files close at ``warc_max_seconds``. On
  start, a worker closes the files a dead process left open on this machine
  and uploads every complete file in its folder before crawling. The files of
  a worker that died elsewhere are released by the frontier once its lease
  passes (their URLs are fetched again).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from shoal.archive.names import FINAL_SUFFIX
from shoal.archive.reader import archive_location
from shoal.archive.recover import recover
from shoal.archive.s3 import MULTIPART_CHUNKSIZE, MULTIPART_THRESHOLD, FileDigests, S3Location
from shoal.archive.writer import WarcWriter
from shoal.errors import ArchiveError, DatabaseFull, DatabaseUnavailable, FrontierError

if TYPE_CHECKING:
    from shoal.frontier.contract import Frontier
    from shoal.spec import Spec

__all__ = ["ArchiveSink", "local_folder"]

log = logging.getLogger(__name__)

_CLOSE_GRACE = 120.0
"""Seconds :meth:`ArchiveSink.close` keeps retrying uploads before it leaves them for a restart."""


def local_folder(spec: Spec) -> Path:
    """Where this worker writes its files: the archive folder, or the staging folder for S3."""
    if spec.archive_dir().startswith("s3://"):
        return Path(spec.resolve_path(spec.storage.staging))
    return Path(spec.archive_dir())


class ArchiveSink:
    """One worker's archive: its :class:`WarcWriter`, the ``warc_files`` rows and the S3 uploads.

    Call :meth:`start` before crawling (it closes orphans and uploads what a
    dead process on this machine left), hand :attr:`writer` to the worker, and
    call :meth:`close` after it stopped (it closes the current file and waits
    for the uploads, up to ``grace`` seconds). Upload failures are retried
    with backoff; a file still not uploaded at the end stays in the staging
    folder for the next worker started on this machine.
    """

    def __init__(
        self,
        spec: Spec,
        frontier: Frontier,
        crawl_id: int,
        worker_id: str,
        *,
        grace: float = _CLOSE_GRACE,
    ) -> None:
        self.spec = spec
        self.frontier = frontier
        self.crawl_id = crawl_id
        self.worker_id = worker_id
        self.location = archive_location(spec)
        self.folder = local_folder(spec)
        self.keep_local = spec.storage.keep_local
        self.grace = grace
        self.hostname = socket.gethostname()
        self.writer = WarcWriter(  # it creates the folder (ArchiveError when it cannot)
            self.folder,
            prefix=spec.name,
            max_bytes=spec.storage.warc_max_bytes,
            fsync=spec.storage.fsync,
            operator_info={"crawl": spec.name, "worker": worker_id},
            max_seconds=spec.storage.warc_max_seconds,
            on_open=self._on_open,
            on_close=self._on_close,
        )
        self._todo: queue.Queue[tuple[str, Path]] = queue.Queue()
        self._unrecorded: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_s3(self) -> bool:
        """True for an ``s3://`` archive."""
        return isinstance(self.location, S3Location)

    def _where(self, name: str) -> str:
        if isinstance(self.location, S3Location):
            return self.location.url(name)
        return str((self.folder / name).resolve())

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> list[str]:
        """Close orphans of dead processes, queue every complete local file, start the uploader.

        Returns the names of the files a dead process left that are now queued.
        With an S3 archive it also releases the files of workers dead past
        their lease elsewhere (their URLs go back to pending).
        """
        recovered = recover(self.folder)
        if recovered:
            log.info("closed %d WARC file(s) left open by a stopped process", len(recovered))
        left: list[str] = []
        if isinstance(self.location, S3Location) and not self.location.check():
            log.warning(
                "S3 endpoint for %s unreachable now; files are kept in %s until it answers",
                self.location.url(),
                self.folder,
            )
        if self.is_s3:
            for path in sorted(self.folder.glob(f"*{FINAL_SUFFIX}")):
                with contextlib.suppress(DatabaseUnavailable):
                    self.frontier.warc_file_opened(
                        self.crawl_id,
                        path.name,
                        self.worker_id,
                        self.hostname,
                        self._where(path.name),
                    )
                self._todo.put((path.name, path))
                left.append(path.name)
            if left:
                log.info(
                    "uploading %d WARC file(s) a stopped worker left on this machine", len(left)
                )
            lost = self.frontier.release_lost_files(
                self.crawl_id, int(self.spec.worker.lease_seconds * 1000)
            )
            if lost:
                log.warning("%d URL(s) whose WARC file was never uploaded are pending again", lost)
        else:
            for name in recovered:
                self._todo.put((name, self.folder / name))
        self._thread = threading.Thread(target=self._run, name="shoal-warc-upload", daemon=True)
        self._thread.start()
        return left

    def close(self) -> None:
        """Close the current file and wait for every queued upload (at most ``grace`` seconds).

        Never raises: a file that cannot be closed (the worker already reported
        why, and stopped on it if it was critical) stays ``.open`` for the next
        start on this machine to recover, so the worker's own exit status wins.
        """
        try:
            self.writer.close()
        except ArchiveError as exc:
            log.error("could not close the WARC file: %s", exc)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.grace + 5)
        left = self._todo.qsize()
        if left:
            log.error(
                "%d WARC file(s) are not uploaded yet; they stay in %s and the next worker "
                "started on this machine uploads them",
                left,
                self.folder,
            )

    # -- writer hooks (under the writer's lock: quick) ---------------------------------------------

    def _on_open(self, name: str) -> None:
        try:
            self.frontier.warc_file_opened(
                self.crawl_id, name, self.worker_id, self.hostname, self._where(name)
            )
        except (DatabaseUnavailable, FrontierError) as exc:
            log.warning("cannot record WARC file %s yet (%s); retrying", name, exc)
            with self._lock:
                self._unrecorded.append(name)

    def _on_close(self, name: str, path: Path) -> None:
        self._todo.put((name, path))

    # -- the uploader thread -----------------------------------------------------------------------

    def _run(self) -> None:
        delay = 1.0
        deadline: float | None = None
        while True:
            if self._stop.is_set() and deadline is None:
                deadline = time.monotonic() + self.grace
            try:
                self.writer.rotate_if_older()
            except ArchiveError as exc:
                log.error("cannot close the WARC file at warc_max_seconds: %s", exc)
            self._record_unrecorded()
            try:
                name, path = self._todo.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            try:
                self._ship(name, path)
                delay = 1.0
            except (ArchiveError, DatabaseUnavailable, FrontierError, OSError) as exc:
                log.warning(
                    "WARC file %s not shipped yet: %s (retrying in %.0fs)", name, exc, delay
                )
                self._todo.put((name, path))
                if deadline is not None and time.monotonic() > deadline:
                    return
                if self._stop.is_set() and isinstance(exc, DatabaseFull):
                    return  # a full database does not empty itself: the next worker ships it
                if self._stop.is_set():
                    time.sleep(min(delay, 2.0))
                else:
                    self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
            finally:
                self._todo.task_done()

    def _record_unrecorded(self) -> None:
        with self._lock:
            names, self._unrecorded = self._unrecorded, []
        for i, name in enumerate(names):
            try:
                self.frontier.warc_file_opened(
                    self.crawl_id, name, self.worker_id, self.hostname, self._where(name)
                )
            except (DatabaseUnavailable, FrontierError):
                with self._lock:
                    self._unrecorded.extend(names[i:])
                return

    def _ship(self, name: str, path: Path) -> None:
        """Record the closed file, upload and verify it (S3), then drop the local copy."""
        if not path.exists():
            return  # shipped by an earlier attempt whose record failed, then retried
        digests = FileDigests.of(path, MULTIPART_CHUNKSIZE, MULTIPART_THRESHOLD)
        self.frontier.warc_file_closed(self.crawl_id, name, digests.size, digests.sha256)
        if isinstance(self.location, S3Location):
            where = self.location.upload(path, name, digests=digests)
            self.frontier.warc_file_uploaded(self.crawl_id, name, where)
            if not self.keep_local:
                path.unlink(missing_ok=True)
