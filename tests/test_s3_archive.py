"""The archive sink: warc_files rows, and S3 against moto's server on 127.0.0.1 (uploads, verification, ranged reads, durability)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from shoal.archive import (
    S3Location,
    WarcRef,
    WarcWriter,
    archive_files,
    archive_location,
    iter_archive_file,
    read_record,
)
from shoal.archive.s3 import FileDigests, s3_client
from shoal.crawl import run_async, run_loop, start_crawl
from shoal.demo.expected import expected
from shoal.errors import ArchiveError
from shoal.exchange import FetchResult
from shoal.frontier import SqlFrontier
from shoal.frontier.tables import warc_files
from shoal.spec import Spec, parse_spec
from shoal.testing import free_port
from tests.conftest import missing
from tests.test_crawl import _shoal, demo_spec, final_rows, outcome_sets, wait_for_done

REGION = "us-east-1"


@dataclass
class MotoS3:
    """A moto S3 server on loopback (started and stopped by the test)."""

    port: int
    server: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError:
            missing("moto[server]", "pip install -c constraints.txt 'moto[server]'")
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def client(self) -> Any:
        return s3_client(self.url, REGION)

    def bucket(self) -> str:
        name = f"shoal-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str, prefix: str = "") -> dict[str, int]:
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return {o["Key"]: o["Size"] for p in pages for o in p.get("Contents", [])}


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials through the boto3 chain (environment), for this process and its children."""
    from shoal.archive import s3

    s3._CLIENTS.clear()  # clients made before this environment would keep the old endpoint
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    # A client built without the spec's endpoint fails on loopback instead of leaving the machine.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")


@pytest.fixture
def moto(aws_env: None) -> Iterator[MotoS3]:
    """A moto S3 server running on a free loopback port."""
    server = MotoS3(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def moto_later(aws_env: None) -> Iterator[MotoS3]:
    """A moto S3 server on a reserved loopback port, not started yet (S3 "down" until the test starts it)."""
    server = MotoS3(free_port())
    yield server
    server.stop()


def s3_spec(
    base_url: str, data: Path, endpoint: str, bucket: str, staging: Path, **overrides: str
) -> tuple[Spec, str]:
    """The demo spec with an s3:// archive on ``endpoint`` and its staging folder at ``staging``."""
    return demo_spec(
        base_url,
        data,
        storage__archive=f'"s3://{bucket}/crawls/demo"',
        storage__endpoint_url=f'"{endpoint}"',
        storage__region=f'"{REGION}"',
        storage__staging=f'"{staging.as_posix()}"',
        **overrides,
    )


def file_rows(db: str) -> dict[str, Any]:
    f = SqlFrontier(db, create=False)
    try:
        return {r.name: r for r in f.query(select(warc_files))}
    finally:
        f.close()


def result(url: str = "http://example.com/", body: bytes = b"<html>hello</html>") -> FetchResult:
    return FetchResult(
        url=url,
        status=200,
        reason="OK",
        http_version="1.1",
        headers=[("Content-Type", "text/html")],
        body=body,
        request_headers=[("User-Agent", "shoal-test")],
        peer_ip="127.0.0.1",
        started_at=time.time(),
        elapsed=0.01,
    )


def warcio_check(path: Path) -> None:
    warcio = Path(sys.executable).with_name("warcio")
    check = subprocess.run([str(warcio), "check", "-v", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


# --------------------------------------------------------------------------- uploads


def test_multipart_upload_is_verified_and_read_back_by_range(moto: MotoS3, tmp_path: Path) -> None:
    """A file uploaded in 5 MiB parts is verified by size and SHA-256, and each record reads back by one ranged GET."""
    bucket = moto.bucket()
    with WarcWriter(tmp_path, prefix="big", fsync=False) as writer:
        refs = [
            writer.write_exchange(result(f"http://example.com/{i}", os.urandom(600_000)))
            for i in range(20)
        ]
    path = tmp_path / refs[0].file
    assert path.stat().st_size > 11 * 1024 * 1024
    loc = S3Location.parse(f"s3://{bucket}/a/b", endpoint_url=moto.url, region=REGION)
    where = loc.upload(path, refs[0].file, threshold=5 * 1024 * 1024, chunksize=5 * 1024 * 1024)
    assert where == f"s3://{bucket}/a/b/{refs[0].file}"
    assert moto.objects(bucket) == {f"a/b/{refs[0].file}": path.stat().st_size}
    for ref in (refs[0], refs[7], refs[-1]):
        rec = read_record(loc, ref, verify_digests=True)
        assert rec.url == f"http://example.com/{refs.index(ref)}"
    assert [r for r, _ in iter_archive_file(loc, refs[0].file)] == refs
    assert loc.names() == [refs[0].file]


def test_verification_refuses_a_size_or_checksum_mismatch(tmp_path: Path) -> None:
    """What S3 reports is compared with the file: another size, SHA-256 or ETag is an ArchiveError."""
    path = tmp_path / "x.warc.gz"
    path.write_bytes(b"abc" * 1000)
    d = FileDigests.of(path, 5 * 1024 * 1024, 64 * 1024 * 1024)
    assert d.sha256 == hashlib.sha256(b"abc" * 1000).hexdigest()
    d.verify({"ContentLength": 3000, "ChecksumSHA256": d.s3_sha256}, "s3://b/x")
    assert d.etag() == hashlib.md5(b"abc" * 1000, usedforsecurity=False).hexdigest()
    d.verify({"ContentLength": 3000, "ETag": f'"{d.etag()}"'}, "s3://b/x")
    with pytest.raises(ArchiveError, match="3001"):
        d.verify({"ContentLength": 3001, "ChecksumSHA256": d.s3_sha256}, "s3://b/x")
    with pytest.raises(ArchiveError, match="SHA-256"):
        d.verify({"ContentLength": 3000, "ChecksumSHA256": "AAAA"}, "s3://b/x")
    with pytest.raises(ArchiveError, match="ETag"):
        d.verify({"ContentLength": 3000, "ETag": '"0123"'}, "s3://b/x")


def test_upload_to_a_missing_bucket_names_the_fix(moto: MotoS3, tmp_path: Path) -> None:
    """Uploading into a bucket that does not exist raises one line naming the bucket problem."""
    path = tmp_path / "x.warc.gz"
    path.write_bytes(b"abc")
    loc = S3Location.parse("s3://no-such-bucket-here/p", endpoint_url=moto.url, region=REGION)
    with pytest.raises(ArchiveError, match="bucket does not exist"):
        loc.upload(path, "x.warc.gz")


# --------------------------------------------------------------------------- crawls


def test_crawl_with_s3_archive_ends_with_every_capture_in_s3(
    demo_server: Any, moto: MotoS3, tmp_path: Path
) -> None:
    """A demo crawl into s3:// leaves every capture in verified S3 objects that warcio accepts, and no local file."""
    bucket = moto.bucket()
    staging = tmp_path / "staging"
    spec, text = s3_spec(
        demo_server.base_url, tmp_path, moto.url, bucket, staging, storage__warc_max_seconds="0.5"
    )
    frontier = SqlFrontier(spec.frontier_url())
    try:
        crawl = start_crawl(frontier, spec, text)
        _, finished = run_loop(
            run_async(spec, frontier, crawl, progress=False, install_signals=False)
        )
    finally:
        frontier.close()
    assert finished
    rows = final_rows(spec.frontier_url())
    got, want = outcome_sets(rows), expected(demo_server.base_url)
    assert got["done"] == want["done"] and got["failed"] == want["failed"] and got["other"] == {}
    assert list(staging.iterdir()) == []
    objects = moto.objects(bucket, "crawls/demo/")
    files = file_rows(spec.frontier_url())
    assert files and {r.state for r in files.values()} == {"uploaded"}
    assert {f"crawls/demo/{n}" for n in files} == set(objects)
    loc = archive_location(spec)
    assert loc == S3Location(bucket, "crawls/demo", moto.url, REGION)
    assert archive_files(loc) == sorted(files)
    refs = [r for r in rows.values() if r.warc_file]
    assert len(refs) >= len(got["done"])
    for r in refs:
        assert files[r.warc_file].location == f"s3://{bucket}/crawls/demo/{r.warc_file}"
        rec = read_record(loc, WarcRef(r.warc_file, r.warc_offset, r.warc_length, r.warc_record_id))
        assert rec.url == r.url and rec.http_status == r.http_status
    for name, row in files.items():
        local = tmp_path / "downloaded" / name
        local.parent.mkdir(exist_ok=True)
        loc.download(name, local)
        assert hashlib.sha256(local.read_bytes()).hexdigest() == row.sha256
        assert local.stat().st_size == row.size
        warcio_check(local)


def test_local_archive_records_every_file_closed_with_its_digest(
    demo_server: Any, tmp_path: Path
) -> None:
    """With a local archive every WARC file is recorded closed, with its path, size and SHA-256."""
    spec, text = demo_spec(demo_server.base_url, tmp_path)
    frontier = SqlFrontier(spec.frontier_url())
    try:
        crawl = start_crawl(frontier, spec, text)
        run_loop(run_async(spec, frontier, crawl, progress=False, install_signals=False))
    finally:
        frontier.close()
    files = file_rows(spec.frontier_url())
    on_disk = sorted(Path(spec.archive_dir()).glob("*.warc.gz"))
    assert sorted(files) == [p.name for p in on_disk]
    for path in on_disk:
        row = files[path.name]
        assert row.state == "closed" and row.location == str(path.resolve())
        assert row.size == path.stat().st_size
        assert row.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    refs = {r.warc_file for r in final_rows(spec.frontier_url()).values() if r.warc_file}
    assert refs <= set(files)


def _crawl_in_process(spec: Spec, text: str) -> None:
    frontier = SqlFrontier(spec.frontier_url())
    try:
        crawl = start_crawl(frontier, spec, text)
        _, finished = run_loop(
            run_async(spec, frontier, crawl, progress=False, install_signals=False)
        )
    finally:
        frontier.close()
    assert finished


def _tables(folder: Path) -> dict[str, list[tuple[str, ...]]]:
    """Each CSV table's rows (without the capture time, which differs between two crawls), sorted."""
    import csv

    out = {}
    for path in sorted(folder.glob("*.csv")):
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        out[path.stem] = sorted(
            tuple(v for k, v in row.items() if k != "fetched_at") for row in rows
        )
    return out


def test_parse_reads_an_s3_archive_into_the_same_tables_as_a_local_one(
    demo_server: Any, moto: MotoS3, tmp_path: Path
) -> None:
    """shoal parse of an s3:// archive (ranged GETs on the spec's endpoint; files scanned for --all-captures) gives the local archive's tables."""
    from shoal.parse import run_parse

    bucket = moto.bucket()
    spec_s3, text_s3 = s3_spec(
        demo_server.base_url, tmp_path / "s3", moto.url, bucket, tmp_path / "s3" / "staging"
    )
    spec_local, text_local = demo_spec(demo_server.base_url, tmp_path / "local")
    # The two crawls (seconds of retries and timeouts each) side by side: the local one as `shoal crawl`.
    (tmp_path / "local.toml").write_text(text_local)
    local_crawl = _shoal("crawl", str(tmp_path / "local.toml"), "--no-progress", cwd=tmp_path)
    try:
        _crawl_in_process(spec_s3, text_s3)
    finally:
        output, _ = local_crawl.communicate(timeout=180)
    assert local_crawl.returncode == 0, output
    assert list((tmp_path / "s3" / "staging").iterdir()) == []
    for every in (False, True):  # by reference (ranged GETs), and every capture (files scanned)
        outs = {}
        for spec, where in ((spec_s3, "s3"), (spec_local, "local")):
            outs[where] = tmp_path / f"out-{where}-{every}"
            result = run_parse(
                spec, to="csv", out=outs[where], all_captures=every, processes=2, progress=False
            )
            assert result.exit_code == 0, result.summary_lines()
        from_s3, local = _tables(outs["s3"]), _tables(outs["local"])
        assert set(local) == {"board", "euckr_board", "posts"}
        assert all(local.values())
        assert from_s3 == local


def wait_for_closed_file(staging: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Wait until a complete (closed, not uploaded) WARC file sits in ``staging``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        if list(staging.glob("*.warc.gz")):
            return
        time.sleep(0.1)
    raise AssertionError(f"no closed WARC file in {staging} after {timeout:.0f}s")


def test_restarted_worker_uploads_what_a_killed_one_closed(
    demo_server: Any, moto_later: MotoS3, tmp_path: Path
) -> None:
    """SIGKILL after a file closed but before its upload (S3 down): the worker restarted on that machine uploads it."""
    staging = tmp_path / "staging"
    bucket = f"shoal-{uuid.uuid4().hex[:12]}"
    spec, text = s3_spec(
        demo_server.base_url,
        tmp_path,
        moto_later.url,
        bucket,
        staging,
        storage__warc_max_seconds="0.3",
        politeness__delay="0.12",
        worker__concurrency="4",
    )
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(text)
    proc = _shoal("crawl", str(spec_path), "--no-progress", cwd=tmp_path)
    db = spec.frontier_url()
    wait_for_done(db, 15, proc)
    wait_for_closed_file(staging, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    left = sorted(p.name for p in staging.glob("*.warc.gz"))
    assert left
    before = final_rows(db)
    # Captures of URLs that had ended (done, or failed for good) in the files left behind;
    # a URL still pending or leased for a retry (the demo's /error500) is fetched again anyway.
    in_left = {
        u: r.warc_file
        for u, r in before.items()
        if r.warc_file in left and r.status in ("done", "failed")
    }
    assert in_left
    assert {file_rows(db)[n].state for n in left} <= {"open", "closed"}

    moto_later.start()
    moto_later.client().create_bucket(Bucket=bucket)
    # The slow pace only kept the first run going until the kill; the restart goes at the demo's own.
    _, text = s3_spec(
        demo_server.base_url, tmp_path, moto_later.url, bucket, staging,
        storage__warc_max_seconds="0.3", worker__concurrency="4",
    )  # fmt: skip
    spec_path.write_text(text)
    again = _shoal("crawl", str(spec_path), "--no-progress", cwd=tmp_path)
    output, _ = again.communicate(timeout=180)
    assert again.returncode == 0, output
    after = final_rows(db)
    got, want = outcome_sets(after), expected(demo_server.base_url)
    assert got["done"] == want["done"] and got["failed"] == want["failed"] and got["other"] == {}
    objects = moto_later.objects(bucket, "crawls/demo/")
    assert {f"crawls/demo/{n}" for n in left} <= set(objects)
    files = file_rows(db)
    assert {r.state for r in files.values()} == {"uploaded"}
    assert list(staging.iterdir()) == []
    # The captures in the uploaded files still count: those URLs were not fetched again.
    changed = {
        u: (before[u].status, before[u].attempts, after[u].status, after[u].attempts)
        for u in in_left
        if after[u].warc_file != in_left[u]
    }
    assert changed == {}


def test_urls_of_a_file_never_uploaded_are_fetched_again_by_another_worker(
    demo_server: Any, moto_later: MotoS3, tmp_path: Path
) -> None:
    """A worker killed for good with files never uploaded: once its lease passes, another worker fetches those URLs again."""
    bucket = f"shoal-{uuid.uuid4().hex[:12]}"
    common = {
        "storage__warc_max_seconds": "0.3",
        "politeness__delay": "0.12",
        "worker__concurrency": "4",
        "worker__lease_seconds": "2",
    }
    staging_a = tmp_path / "machine-a"
    spec_a, text_a = s3_spec(
        demo_server.base_url, tmp_path, moto_later.url, bucket, staging_a, **common
    )
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(text_a)
    proc = _shoal("crawl", str(spec_path), "--no-progress", cwd=tmp_path)
    db = spec_a.frontier_url()
    wait_for_done(db, 15, proc)
    wait_for_closed_file(staging_a, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    lost = {p.name.removesuffix(".open") for p in staging_a.iterdir()}
    before = final_rows(db)
    lost_urls = {u for u, r in before.items() if r.warc_file in lost and r.status == "done"}
    assert lost_urls
    hits_before = Counter(h.path_qs for h in demo_server.log)

    # Machine A is gone: another worker, with its own disk, finishes the crawl.
    moto_later.start()
    moto_later.client().create_bucket(Bucket=bucket)
    pace_b = {k: v for k, v in common.items() if k != "politeness__delay"}  # the demo's own pace
    spec_b, text_b = s3_spec(
        demo_server.base_url, tmp_path, moto_later.url, bucket, tmp_path / "machine-b", **pace_b
    )
    frontier = SqlFrontier(db)
    try:
        crawl = start_crawl(frontier, spec_b, text_b)
        _, finished = run_loop(
            run_async(spec_b, frontier, crawl, progress=False, install_signals=False)
        )
    finally:
        frontier.close()
    assert finished
    after = final_rows(db)
    got, want = outcome_sets(after), expected(demo_server.base_url)
    assert got["done"] == want["done"] and got["failed"] == want["failed"] and got["other"] == {}
    files = file_rows(db)
    assert {files[n].state for n in lost if n in files} == {"lost"}
    safe = {n for n, r in files.items() if r.state == "uploaded"}
    objects = moto_later.objects(bucket, "crawls/demo/")
    assert {f"crawls/demo/{n}" for n in safe} == set(objects)
    for u in lost_urls:
        assert after[u].warc_file in safe, u
    hits_after = Counter(h.path_qs for h in demo_server.log)
    refetched = [u for u in lost_urls if hits_after[_path_qs(u)] > hits_before[_path_qs(u)]]
    assert sorted(refetched) == sorted(lost_urls)
    # The tables are complete: one row per done page of each table's rule, read from S3.
    from shoal.parse import run_parse

    result = run_parse(spec_b, to="csv", out=tmp_path / "tables", processes=1, progress=False)
    assert result.exit_code == 0, result.summary_lines()
    rule_of = {i: r.name for i, r in enumerate(spec_b.rules)}
    for table, rule in (
        ("posts", "blog-post"),
        ("board", "board-post"),
        ("euckr_board", "euckr-post"),
    ):
        pages = [
            r
            for r in after.values()
            if r.status == "done" and r.kind != "asset" and rule_of.get(r.rule) == rule
        ]
        q = result.report.tables[table]
        seen = (
            table,
            len(pages),
            q.pages,
            q.errors,
            result.rows[table],
            q.dedup_url,
            q.dedup_content,
        )
        assert pages and q.pages == len(pages) and q.errors == 0, seen
        assert result.rows[table] == len(pages) - q.dedup_url - q.dedup_content > 0, seen


def test_crawl_into_a_missing_bucket_stops_before_fetching(
    demo_server: Any, moto: MotoS3, tmp_path: Path
) -> None:
    """A crawl whose s3:// bucket does not exist ends at once with one line naming the fix, nothing fetched."""
    _, text = s3_spec(
        demo_server.base_url, tmp_path, moto.url, "no-such-bucket-here", tmp_path / "staging"
    )
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(text)
    proc = _shoal("crawl", str(spec_path), "--no-progress", cwd=tmp_path)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, output
    one_line = " ".join(output.split())  # the terminal width wraps the message
    assert "the bucket does not exist" in one_line and "Traceback" not in output
    assert demo_server.log == []


def _path_qs(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def test_spec_refuses_a_bad_s3_archive_url() -> None:
    """An s3:// archive without a valid bucket, or another scheme, is refused naming the key."""
    from shoal.errors import SpecError

    base = '[crawl]\nname = "x"\nseeds = ["http://127.0.0.1:1/"]\n[storage]\narchive = '
    parse_spec(base + '"s3://my-bucket/some/prefix"\n')
    for bad in ('"s3://Bad_Bucket/p"', '"s3:///p"', '"gs://bucket/p"'):
        with pytest.raises(SpecError, match="archive"):
            parse_spec(base + bad + "\n")
