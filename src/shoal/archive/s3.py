"""S3 as an archive location: verified uploads, ranged reads, listing (any S3-compatible endpoint).

:class:`S3Location` names ``s3://bucket/prefix`` and the endpoint serving it.
Guarantees:

- **Verified uploads.** :meth:`S3Location.upload` sends a SHA-256 checksum
  with every part (S3 refuses a part whose bytes do not match), then compares
  the object's size and the checksum S3 reports with the local file's (the
  whole-file digest, or the digest of the part digests for a multipart
  upload; the MD5 ETag where an endpoint reports no checksum). Any mismatch
  raises :class:`~shoal.errors.ArchiveError`.
- **One ranged GET per record.** :meth:`S3Location.read_range` fetches
  exactly the bytes of one record.
- **Credentials from the boto3 chain only** (environment, profile, instance
  role); nothing here stores or logs them. Errors are one line naming the fix.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from shoal.archive.names import FINAL_SUFFIX
from shoal.errors import ArchiveError

__all__ = [
    "MULTIPART_CHUNKSIZE",
    "MULTIPART_THRESHOLD",
    "FileDigests",
    "S3Location",
    "s3_client",
]

MULTIPART_THRESHOLD: Final = 64 * 1024 * 1024
"""Files at least this large go up in parts (boto3 ``TransferConfig``)."""
MULTIPART_CHUNKSIZE: Final = 16 * 1024 * 1024


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
                    if "/" not in rest and rest.endswith((FINAL_SUFFIX, ".warc")):
                        out.append(rest)
        except Exception as exc:
            raise _s3_error(f"cannot list {self.url()}", exc) from exc
        return sorted(out)

    def check(self) -> bool:
        """Whether the bucket answers; raises ArchiveError when it never will as configured.

        A missing bucket, refused access or missing credentials raise (one line
        naming the fix); an endpoint that cannot be reached right now returns
        False (uploads are retried until it answers).
        """
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            self.client().head_bucket(Bucket=self.bucket)
        except (ClientError, NoCredentialsError) as exc:
            raise _s3_error(f"cannot use {self.url()}", exc) from None
        except BotoCoreError:
            return False
        return True

    def upload(
        self,
        path: Path,
        name: str,
        *,
        threshold: int = MULTIPART_THRESHOLD,
        chunksize: int = MULTIPART_CHUNKSIZE,
        digests: FileDigests | None = None,
    ) -> str:
        """Upload ``path`` as file ``name`` and verify it; returns its ``s3://`` URL.

        Files of ``threshold`` bytes or more go up in parts of ``chunksize``;
        ``digests`` (from :meth:`FileDigests.of` with the same sizes) saves
        reading the file twice.
        Raises :class:`~shoal.errors.ArchiveError` when the upload fails or
        the object S3 reports differs from the local file in size or checksum.
        """
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(multipart_threshold=threshold, multipart_chunksize=chunksize)
        if digests is None:
            digests = FileDigests.of(path, chunksize, threshold)
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
class FileDigests:
    """A local file's size and the checksums S3 reports for it after a (multipart) upload.

    The MD5 ETag (only needed for endpoints that report no SHA-256) is
    computed by :meth:`etag`, on demand, with a second read of the file.
    """

    path: Path
    size: int
    sha256: str
    """Hex SHA-256 of the whole file (what ``warc_files.sha256`` holds)."""
    s3_sha256: str
    """Base64 ``ChecksumSHA256`` S3 reports: of the file, or of the part digests (multipart)."""
    chunk: int
    """The part size of a multipart upload (0: one part)."""

    @classmethod
    def of(cls, path: Path, chunk: int, threshold: int) -> FileDigests:
        """Read ``path`` once: its size, SHA-256, and the checksum S3 computes for this part layout."""
        size = path.stat().st_size
        whole = hashlib.sha256()
        parts: list[bytes] = []
        if size >= threshold:
            from s3transfer.utils import ChunksizeAdjuster

            chunk = ChunksizeAdjuster().adjust_chunksize(chunk, size)
        else:
            chunk = 0
        with open(path, "rb") as f:
            while block := f.read(chunk or _READ):
                whole.update(block)
                if chunk:
                    parts.append(hashlib.sha256(block).digest())
        digest = hashlib.sha256(b"".join(parts)).digest() if chunk else whole.digest()
        s3_sha = base64.b64encode(digest).decode()
        return cls(path, size, whole.hexdigest(), s3_sha, chunk)

    def etag(self) -> str:
        """The MD5 ETag of a plain S3 upload of this file (of the part MD5s, ``-N``, for multipart)."""
        md5s: list[bytes] = []
        whole = hashlib.md5(usedforsecurity=False)
        with open(self.path, "rb") as f:
            while block := f.read(self.chunk or _READ):
                if self.chunk:
                    md5s.append(hashlib.md5(block, usedforsecurity=False).digest())
                else:
                    whole.update(block)
        if not self.chunk:
            return whole.hexdigest()
        return hashlib.md5(b"".join(md5s), usedforsecurity=False).hexdigest() + f"-{len(md5s)}"

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
        if etag != self.etag():
            raise ArchiveError(
                f"upload to {where} not verified: the endpoint reports no SHA-256 checksum and "
                f"its ETag {etag!r} is not the file's MD5"
            )


_READ = 8 * 1024 * 1024


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
        if code in ("NoSuchBucket", "404"):
            return ArchiveError(
                f"{what}: the bucket does not exist (create it or fix [storage] archive)"
            )
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return ArchiveError(
                f"{what}: access denied ({code}); allow s3:PutObject/GetObject/ListBucket on the prefix"
            )
        return ArchiveError(f"{what}: {code or exc}")
    return ArchiveError(f"{what}: {exc}")
