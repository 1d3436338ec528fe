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
- **Verified before deleted.** An upload sends a SHA-256 checksum with every
  part (S3 refuses a part whose bytes do not match); afterwards the object's
  size and the checksum S3 reports are compared with the local file's (a
  whole-file digest, or the digest of the part digests for a multipart
  upload; the MD5 ETag where an endpoint reports no checksum). Only then is
  the row ``uploaded`` and the local copy deleted (unless ``keep_local``).
- **Nothing only local for long.** Files close at ``warc_max_seconds``. On
  start, a worker closes the files a dead process left open on this machine
  and uploads every complete file in its folder before crawling. The files of
  a worker that died elsewhere are released by the frontier once its lease
  passes (their URLs are fetched again).
- Credentials come from the boto3 chain only (environment, profile, instance
  role); they are never written to the spec, the database or a log.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from shoal.archive.names import FINAL_SUFFIX
from shoal.archive.recover import recover
from shoal.archive.writer import WarcWriter
from shoal.errors import ArchiveError, DatabaseUnavailable, FrontierError

if TYPE_CHECKING:
    from shoal.frontier.contract import Frontier
    from shoal.spec import Spec

__all__ = [
    "ArchiveSink",
    "S3Location",
    "archive_location",
    "local_folder",
    "s3_client",
]

log = logging.getLogger(__name__)

MULTIPART_THRESHOLD: Final = 64 * 1024 * 1024
"""Files at least this large go up in parts (boto3 ``TransferConfig``)."""
MULTIPART_CHUNKSIZE: Final = 16 * 1024 * 1024
_CLOSE_GRACE = 120.0
"""Seconds :meth:`ArchiveSink.close` keeps retrying uploads before it leaves them for a restart."""


@dataclass(frozen=True, slots=True)
class S3Location:
    """An ``s3://bucket/prefix`` archive and the endpoint that serves it."""

    bucket: str
    prefix: str
    endpoint_url: str | None = None
    region: str | None = None

    @classmethod
    def parse(
        cls, url: str, *, endpoint_url: str | None = None, region: str | None = None
    ) -> S3Location:
        """``s3://bucket/prefix`` (the prefix may be empty); raises ArchiveError otherwise."""
        if not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
            raise ArchiveError(f"{url!r} is not an s3://bucket/prefix archive location")
        bucket, _, prefix = url[5:].partition("/")
        return cls(bucket, prefix.strip("/"), endpoint_url, region)

    def key(self, name: str) -> str:
        """The object key of file ``name``."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def url(self, name: str = "") -> str:
        """``s3://bucket/key`` of file ``name`` (of the prefix itself without a name)."""
        return (
            f"s3://{self.bucket}/{self.key(name)}" if name else f"s3://{self.bucket}/{self.prefix}"
        )

    def client(self) -> Any:
        """A boto3 S3 client for this endpoint (one per endpoint and region per process)."""
        return s3_client(self.endpoint_url, self.region)

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes of file ``name`` from ``offset``: one ranged GET."""
        if length <= 0:
            return b""
        try:
            res = self.client().get_object(
                Bucket=self.bucket,
                Key=self.key(name),
                Range=f"bytes={offset}-{offset + length - 1}",
            )
            data: bytes = res["Body"].read()
        except Exception as exc:
            raise _s3_error(f"cannot read {self.url(name)}", exc) from exc
        return data

    def download(self, name: str, dest: Path) -> None:
        """Copy file ``name`` to ``dest``."""
        try:
            self.client().download_file(self.bucket, self.key(name), str(dest))
        except Exception as exc:
            raise _s3_error(f"cannot download {self.url(name)}", exc) from exc

    def names(self) -> list[str]:
        """Names of the ``.warc.gz`` files under the prefix, sorted."""
        out: list[str] = []
        start = f"{self.prefix}/" if self.prefix else ""
        try:
            pages = self.client().get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=self.bucket, Prefix=start):
                for obj in page.get("Contents", []):
                    rest = obj["Key"][len(start) :]
                    if "/" not in rest and rest.endswith(FINAL_SUFFIX):
                        out.append(rest)
        except Exception as exc:
            raise _s3_error(f"cannot list {self.url()}", exc) from exc
        return sorted(out)

    def upload(self, path: Path, name: str) -> str:
        """Upload ``path`` as file ``name`` and verify it; returns its ``s3://`` URL.

        Raises :class:`~shoal.errors.ArchiveError` when the upload fails or
        the object S3 reports differs from the local file in size or checksum.
        """
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNKSIZE
        )
        digests = _Digests.of(path, config.multipart_chunksize, config.multipart_threshold)
        client = self.client()
        key = self.key(name)
        try:
            client.upload_file(
                str(path),
                self.bucket,
                key,
                ExtraArgs={"ChecksumAlgorithm": "SHA256", "ContentType": "application/warc"},
                Config=config,
            )
            head = client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except Exception as exc:
            raise _s3_error(f"cannot upload {path} to {self.url(name)}", exc) from exc
        digests.verify(head, self.url(name))
        return self.url(name)


@dataclass(frozen=True, slots=True)
class _Digests:
    """A local file's size and the checksums S3 reports for it after a (multipart) upload."""

    size: int
    sha256: str
    """Hex SHA-256 of the whole file (what ``warc_files.sha256`` holds)."""
    s3_sha256: str
    """Base64 ``ChecksumSHA256`` S3 reports: of the file, or of the part digests (multipart)."""
    etag: str
    """The MD5 ETag of a plain S3 upload (of the part MD5s, ``-N``, for multipart)."""

    @classmethod
    def of(cls, path: Path, chunk: int, threshold: int) -> _Digests:
        size = path.stat().st_size
        whole = hashlib.sha256()
        whole_md5 = hashlib.md5(usedforsecurity=False)
        parts: list[bytes] = []
        part_md5s: list[bytes] = []
        multipart = size >= threshold
        if multipart:
            from s3transfer.utils import ChunksizeAdjuster

            chunk = ChunksizeAdjuster().adjust_chunksize(chunk, size)
        with open(path, "rb") as f:
            while block := f.read(chunk):
                whole.update(block)
                if multipart:
                    parts.append(hashlib.sha256(block).digest())
                    part_md5s.append(hashlib.md5(block, usedforsecurity=False).digest())
                else:
                    whole_md5.update(block)
        if multipart:
            s3_sha = base64.b64encode(hashlib.sha256(b"".join(parts)).digest()).decode()
            etag = hashlib.md5(b"".join(part_md5s), usedforsecurity=False).hexdigest()
            etag += f"-{len(parts)}"
        else:
            s3_sha = base64.b64encode(whole.digest()).decode()
            etag = whole_md5.hexdigest()
        return cls(size, whole.hexdigest(), s3_sha, etag)

    def verify(self, head: dict[str, Any], where: str) -> None:
        """Raise ArchiveError unless ``head`` (a HeadObject answer) matches this file."""
        if int(head.get("ContentLength", -1)) != self.size:
            raise ArchiveError(
                f"upload to {where} not verified: S3 holds {head.get('ContentLength')} bytes, "
                f"the file has {self.size}"
            )
        reported = head.get("ChecksumSHA256")
        if reported:
            # A composite (multipart) checksum carries a "-N" part count on AWS.
            if reported.split("-", 1)[0] != self.s3_sha256:
                raise ArchiveError(
                    f"upload to {where} not verified: SHA-256 {reported} differs from the file's"
                )
            return
        etag = str(head.get("ETag", "")).strip('"')
        if etag != self.etag:
            raise ArchiveError(
                f"upload to {where} not verified: the endpoint reports no SHA-256 checksum and "
                f"its ETag {etag!r} is not the file's MD5"
            )


_CLIENTS: dict[tuple[str | None, str | None], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def s3_client(endpoint_url: str | None = None, region: str | None = None) -> Any:
    """A boto3 S3 client (cached per endpoint and region in this process); credentials from the boto3 chain."""
    with _CLIENTS_LOCK:
        client = _CLIENTS.get((endpoint_url, region))
        if client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError as exc:
                raise ArchiveError(
                    "an s3:// archive needs boto3: pip install 'shoal[aws]'"
                ) from exc
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                config=Config(retries={"max_attempts": 5, "mode": "standard"}),
            )
            _CLIENTS[(endpoint_url, region)] = client
        return client


def _s3_error(what: str, exc: Exception) -> ArchiveError:
    """One line naming the problem and the fix, never a traceback."""
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(exc, ArchiveError):
        return exc
    if isinstance(exc, NoCredentialsError):
        return ArchiveError(
            f"{what}: no AWS credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or run with an instance role)"
        )
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket",):
            return ArchiveError(
                f"{what}: the bucket does not exist (create it or fix [storage] archive)"
            )
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return ArchiveError(
                f"{what}: access denied ({code}); allow s3:PutObject/GetObject/ListBucket on the prefix"
            )
        return ArchiveError(f"{what}: {code or exc}")
    return ArchiveError(f"{what}: {exc}")


def archive_location(spec: Spec) -> Path | S3Location:
    """The crawl's archive: a local folder, or an S3 location with the spec's endpoint and region."""
    where = spec.archive_dir()
    if where.startswith("s3://"):
        return S3Location.parse(
            where, endpoint_url=spec.storage.endpoint_url, region=spec.storage.region
        )
    return Path(where)


def local_folder(spec: Spec) -> Path:
    """Where this worker writes its files: the archive folder, or the staging folder for S3."""
    if spec.archive_dir().startswith("s3://"):
        return Path(spec.storage.staging.replace("{name}", spec.name))
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
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArchiveError(
                f"cannot create archive folder {self.folder}: {exc}", errno=exc.errno
            ) from exc
        self.writer = WarcWriter(
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
        self.uploaded: list[str] = []
        """Names of the files this sink uploaded (or recorded, for a local archive)."""
        self.failures = 0

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
        """Close the current file and wait for every queued upload (at most ``grace`` seconds)."""
        try:
            self.writer.close()
        finally:
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

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued file is done; True when the queue emptied in time (for tests)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._todo.unfinished_tasks == 0:
                return True
            time.sleep(0.05)
        return False

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
                self.failures += 1
                log.warning(
                    "WARC file %s not shipped yet: %s (retrying in %.0fs)", name, exc, delay
                )
                self._todo.put((name, path))
                if deadline is not None and time.monotonic() > deadline:
                    return
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
        digests = _Digests.of(path, MULTIPART_CHUNKSIZE, MULTIPART_THRESHOLD)
        self.frontier.warc_file_closed(self.crawl_id, name, digests.size, digests.sha256)
        if isinstance(self.location, S3Location):
            where = self.location.upload(path, name)
            self.frontier.warc_file_uploaded(self.crawl_id, name, where)
            if not self.keep_local:
                path.unlink(missing_ok=True)
        self.uploaded.append(name)
