"""Benchmark shipping WARC files to S3: verified uploads and ranged reads against moto on loopback.

Steps: write one WARC file of about ``--mb`` MB of 20 KB pages with
:class:`shoal.archive.WarcWriter`, then time, against a moto S3 server started
here on 127.0.0.1 (boto3 through ``endpoint_url``):

- the digests the verification needs (one read: size, SHA-256, the part
  checksum), single-part and multipart layouts;
- :meth:`shoal.archive.S3Location.upload` (upload with per-part SHA-256, then
  HeadObject and comparison), single part and in 16 MiB parts;
- :func:`shoal.archive.read_record` of 300 records by ranged GET, from the big
  object and from a 4 MB one (moto reads the whole object for each range, so
  the big object's figure is moto's, not S3's).

moto keeps objects in memory in this process, so upload figures measure
shoal + boto3 + moto on one machine, not a network: they bound the per-file
overhead, not what AWS gives. CPU seconds are printed beside wall seconds.

Usage (from the repository root)::

    .venv/bin/python bench/bench_archive_s3.py [--mb 200]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import tempfile
import time
from pathlib import Path

from shoal.archive import S3Location, WarcRef, WarcWriter, read_record
from shoal.archive.s3 import MULTIPART_CHUNKSIZE, FileDigests, s3_client
from shoal.exchange import FetchResult


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _timed(label: str, mb: float, fn: object) -> object:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()  # type: ignore[operator]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"{label:<44} {wall:7.2f} s wall {cpu:7.2f} s CPU {mb / wall:8.0f} MB/s")
    return out


def _write(folder: Path, mb: int, rng: random.Random) -> list[WarcRef]:
    """One WARC file of about ``mb`` MB of ~20 KB pages in ``folder``; returns its refs."""
    refs: list[WarcRef] = []
    with WarcWriter(folder, prefix="bench", fsync=False, max_bytes=2**40) as writer:
        while not refs or (folder / f"{refs[0].file}.open").stat().st_size < mb * 1024 * 1024:
            body = rng.randbytes(10_000) + b"<p>page</p>" * 900
            result = FetchResult(
                url=f"http://127.0.0.1/p/{len(refs)}",
                status=200,
                reason="OK",
                http_version="1.1",
                headers=[("Content-Type", "text/html")],
                body=body,
                request_headers=[],
            )
            refs.append(writer.write_exchange(result))
    return refs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--mb", type=int, default=200, help="size of the WARC file (MB)")
    args = ap.parse_args()
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        s3_client(endpoint, "us-east-1").create_bucket(Bucket="shoal-bench")
        loc = S3Location("shoal-bench", "bench", endpoint, "us-east-1")
        with tempfile.TemporaryDirectory() as tmp:
            rng = random.Random(1)
            refs = _write(Path(tmp) / "big", args.mb, rng)
            path = Path(tmp) / "big" / refs[0].file
            mb = path.stat().st_size / 1e6
            print(f"WARC file: {mb:.0f} MB, {len(refs)} pages")
            _timed("digests, single part", mb, lambda: FileDigests.of(path, 0, 2**62))
            _timed(
                "digests, 16 MiB parts",
                mb,
                lambda: FileDigests.of(path, MULTIPART_CHUNKSIZE, 0),
            )
            _timed(
                "upload + verify, single part",
                mb,
                lambda: loc.upload(path, "single.warc.gz", threshold=2**62),
            )
            _timed("upload + verify, 16 MiB parts", mb, lambda: loc.upload(path, refs[0].file))
            small = _write(Path(tmp) / "small", 4, rng)
            loc.upload(Path(tmp) / "small" / small[0].file, small[0].file)
            for label, pool in ((f"{mb:.0f} MB", refs), ("4 MB", small)):
                sample = rng.sample(pool, min(300, len(pool)))
                t0 = time.perf_counter()
                for ref in sample:
                    read_record(loc, ref)
                per = (time.perf_counter() - t0) / len(sample) * 1000
                print(
                    f"{'read_record by ranged GET, ' + label + ' object':<44} {per:7.2f} ms per record"
                )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
