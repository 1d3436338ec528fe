"""The archive stage: WARC writing, reading back by reference, recovery, content decoding.

Every WARC file a test writes through the ``archive`` fixture is checked at
teardown with ``warcio check`` (digests included), so the writer can never
produce a file the reference tool rejects.
"""

from __future__ import annotations

import asyncio
import errno
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import brotli
import pytest
from aiohttp import ClientSession, web
from warcio.archiveiterator import ArchiveIterator

from shoal.archive import (
    ArchivedRecord,
    WarcRef,
    WarcWriter,
    iter_records,
    orphaned_files,
    read_record,
    recover,
)
from shoal.archive.names import host_tag
from shoal.content.codings import content_decode
from shoal.errors import ArchiveError, ContentCodingError
from shoal.exchange import FetchResult, Rendered
from tests.conftest import missing
from tests.test_worker_disk import tmpfs
from tests.vectors import TESTDATA

WARC_SAMPLES = TESTDATA / "warc-samples"
COMPRESSION = TESTDATA / "compression-samples"
BOMB_SIZE = 11_511_612
NAME_RE = re.compile(
    r"(?P<prefix>.+)-(?P<pid>\d+)-(?P<host>[A-Za-z0-9._]+)-(?P<ts>\d{17})-(?P<serial>\d{5})-[0-9a-f]{8}\.warc\.gz"
)


# --------------------------------------------------------------------------- helpers


def warcio_check(files: list[Path]) -> str:
    """Run ``warcio check -v`` on ``files``; fail the test unless every record passes."""
    proc = subprocess.run(
        [sys.executable, "-m", "warcio.cli", "check", "-v", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "digest failed" not in proc.stdout and "unknown hash" not in proc.stdout, proc.stdout
    assert proc.stdout.count("digest pass") == proc.stdout.count(" offset "), proc.stdout
    return proc.stdout


def warcio_records(path: Path) -> list[tuple[str, dict[str, str], bytes]]:
    """(type, WARC headers, payload) of every record, read by warcio with digest checks.

    For HTTP records the payload is prefixed with warcio's parse of the first line.
    """
    out = []
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f, check_digests=True):
            payload = rec.raw_stream.read()
            assert rec.digest_checker.passed is not False, rec.digest_checker.problems
            if rec.http_headers:
                first = f"{rec.http_headers.protocol} {rec.http_headers.statusline}\n"
                payload = first.encode() + payload
            out.append((rec.rec_type, dict(rec.rec_headers.headers), payload))
    return out


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Path]:
    """An archive folder whose WARC files must all pass ``warcio check`` when the test ends."""
    folder = tmp_path / "warc"
    folder.mkdir()
    yield folder
    files = sorted(folder.glob("*.warc.gz*"))
    if files:
        warcio_check(files)


def page(n: int = 0, size: int = 20_000) -> bytes:
    """A deterministic HTML page of about ``size`` bytes."""
    row = f"<li><a href='/posts/{n}/{{i}}.html'>게시물 {{i}} post title</a></li>\n"
    body = "".join(row.format(i=i) for i in range(size // len(row) + 1))
    return f"<!doctype html><html><body><ul>{body}</ul></body></html>".encode()[:size]


def result(
    url: str = "http://127.0.0.1:8080/posts/1.html",
    body: bytes | None = None,
    *,
    status: int = 200,
    headers: list[tuple[str, str]] | None = None,
    **kwargs: object,
) -> FetchResult:
    """A FetchResult as the HTTP fetcher builds it."""
    body = page() if body is None else body
    return FetchResult(
        url=url,
        status=status,
        reason="OK" if status == 200 else "Not Found",
        http_version="1.1",
        headers=headers
        if headers is not None
        else [
            ("Server", "nginx/1.22.1"),
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
        ],
        body=body,
        request_headers=[
            ("Host", "127.0.0.1:8080"),
            ("User-Agent", "shoal/0.1"),
            ("Accept-Encoding", "gzip, deflate, br"),
        ],
        peer_ip="127.0.0.1",
        **kwargs,  # type: ignore[arg-type]
    )


def assert_same_exchange(rec: ArchivedRecord, res: FetchResult) -> None:
    """The record read back carries exactly the response that was written."""
    assert rec.record_type == "response"
    assert rec.url == res.url
    assert rec.http_status == res.status
    assert rec.http_headers == [(k, v) for k, v in res.headers if k.lower() != "transfer-encoding"]
    assert rec.body == res.body
    assert rec.truncated == res.truncated


# --------------------------------------------------------------------------- writing


def test_exchange_from_real_server_round_trips(archive: Path) -> None:
    """A real gzip+chunked aiohttp exchange is archived with raw bytes, no Transfer-Encoding, and reads back equal."""
    html = page(7)
    compressed = gzip.compress(html)

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/html; charset=utf-8", "Content-Encoding": "gzip"}
        )
        resp.headers["X-Title"] = "게시판 목록"  # raw UTF-8 on the wire
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(compressed), 1000):
            await resp.write(compressed[i : i + 1000])
        await resp.write_eof()
        return resp

    async def fetch() -> FetchResult:
        app = web.Application()
        app.router.add_get("/board/list.html", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}/board/list.html?page=2"
        try:
            async with ClientSession(auto_decompress=False) as session, session.get(url) as resp:
                body = await resp.read()
                return FetchResult(
                    url=url,
                    status=resp.status,
                    reason=resp.reason or "",
                    http_version=f"{resp.version.major}.{resp.version.minor}"
                    if resp.version
                    else "1.1",
                    headers=[
                        (k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
                        for k, v in resp.raw_headers
                    ],
                    body=body,
                    request_headers=list(resp.request_info.headers.items()),
                    peer_ip="127.0.0.1",
                )
        finally:
            await runner.cleanup()

    res = asyncio.run(fetch())
    assert res.header("transfer-encoding") == "chunked"
    with WarcWriter(archive, prefix="real", fsync=False) as writer:
        ref = writer.write_exchange(res)
    rec = read_record(archive, ref)
    assert_same_exchange(rec, res)
    assert rec.header("X-Title") == "게시판 목록"
    assert rec.body == compressed  # archived still content-encoded
    assert content_decode(rec.body, rec.header("content-encoding"), 10**6) == (html, False)
    records = warcio_records(archive / ref.file)
    assert [t for t, _, _ in records] == ["warcinfo", "response", "request"]
    _, response_headers, _ = records[1]
    _, request_headers, request_block = records[2]
    assert response_headers["WARC-Record-ID"] == ref.record_id
    assert request_headers["WARC-Concurrent-To"] == ref.record_id
    assert request_block == b"GET /board/list.html?page=2 HTTP/1.1\n"
    raw_file = gzip.decompress((archive / ref.file).read_bytes())
    assert b"Transfer-Encoding" not in raw_file and "게시판 목록".encode() in raw_file


def test_records_carry_the_warc_1_1_fields(archive: Path) -> None:
    """Response and request records are WARC/1.1 with microsecond dates, IP, digests and the right types."""
    res = result()
    with WarcWriter(archive, prefix="fields", fsync=False) as writer:
        ref = writer.write_exchange(res, fetched_at=1_700_000_000.123456)
    raw = gzip.decompress((archive / ref.file).read_bytes())
    assert raw.count(b"WARC/1.1\r\n") == 3
    records = warcio_records(archive / ref.file)
    info, response, request = (h for _, h, _ in records)
    assert info["WARC-Filename"] == ref.file
    assert response["WARC-Date"] == "2023-11-14T22:13:20.123456Z"
    assert response["WARC-IP-Address"] == "127.0.0.1"
    assert response["Content-Type"] == "application/http; msgtype=response"
    assert request["Content-Type"] == "application/http; msgtype=request"
    assert response["WARC-Payload-Digest"].startswith("sha1:")
    assert response["WARC-Block-Digest"].startswith("sha1:")
    assert "WARC-Truncated" not in response
    rec = read_record(archive, ref, verify_digests=True)
    assert rec.date.isoformat() == "2023-11-14T22:13:20.123456+00:00"
    assert rec.content_type == "text/html"


def test_every_record_reads_back_by_its_ref(archive: Path) -> None:
    """Each ref returned by write_exchange reads back the same status, headers, body and URL."""
    results = [
        result(
            f"http://127.0.0.1:8080/posts/{i}.html",
            page(i, 5_000 + 997 * i),
            status=200 if i % 3 else 404,
        )
        for i in range(30)
    ]
    with WarcWriter(archive, prefix="many", fsync=False) as writer:
        refs = [writer.write_exchange(r) for r in results]
        for ref, res in zip(refs, results, strict=True):  # readable while the file is still .open
            assert_same_exchange(read_record(archive, ref), res)
    for ref, res in zip(refs, results, strict=True):
        assert_same_exchange(read_record(archive, ref), res)
    by_iteration = list(iter_records(archive / refs[0].file, strict=True, verify_digests=True))
    assert [r for r, _ in by_iteration] == refs


def test_raw_header_bytes_survive(archive: Path) -> None:
    """Non-ASCII and non-UTF-8 header bytes are archived as received, not percent-encoded."""
    location = "https://example.kr/게시판/목록?page=1"
    latin = b"caf\xe9".decode("utf-8", "surrogateescape")  # how aiohttp hands over invalid UTF-8
    res = result(
        headers=[("Location", location), ("X-Legacy", latin), ("Content-Type", "text/html")],
        status=302,
    )
    with WarcWriter(archive, prefix="bytes", fsync=False) as writer:
        ref = writer.write_exchange(res)
    raw = gzip.decompress((archive / ref.file).read_bytes())
    assert f"Location: {location}\r\n".encode() in raw
    assert b"X-Legacy: caf\xe9\r\n" in raw
    assert read_record(archive, ref).http_headers == res.headers


def test_header_injection_is_neutralised(archive: Path) -> None:
    """CR/LF inside a header value cannot forge header lines or WARC fields."""
    res = result(
        headers=[("X-Evil", "a\r\nSet-Cookie: x=1"), ("Content-Type", "text/html")],
        truncated="length\r\nWARC-Type: x",
    )
    with WarcWriter(archive, prefix="inject", fsync=False) as writer:
        ref = writer.write_exchange(res)
    rec = read_record(archive, ref)
    assert rec.header("set-cookie") is None
    assert rec.header("x-evil") == "a  Set-Cookie: x=1"
    assert rec.warc_headers["WARC-Type"] == "response"


def test_truncated_body_is_marked(archive: Path) -> None:
    """A body cut by the fetcher carries WARC-Truncated with the reason, and the record is still valid."""
    res = result(body=page(size=1000), truncated="length")
    res.headers = [("Content-Type", "text/html"), ("Content-Length", "50000")]
    with WarcWriter(archive, prefix="trunc", fsync=False) as writer:
        ref = writer.write_exchange(res)
    rec = read_record(archive, ref)
    assert rec.truncated == "length"
    assert rec.warc_headers["WARC-Truncated"] == "length"
    assert rec.body == res.body


def test_rendered_records_refer_to_the_response(archive: Path) -> None:
    """Rendered DOMs become conversion records and screenshots resource records, both linked to the response."""
    res = result(
        rendered=[
            Rendered(
                "http://127.0.0.1:8080/posts/1.html",
                "text/html; charset=utf-8",
                b"<html>dom</html>",
            ),
            Rendered(
                "http://127.0.0.1:8080/posts/1.html#screenshot",
                "image/png",
                b"\x89PNG fake",
                kind="resource",
            ),
            Rendered(
                "http://127.0.0.1:8080/frame.html", "text/html", b"<p>iframe</p>", kind="conversion"
            ),
        ]
    )
    with WarcWriter(archive, prefix="render", fsync=False) as writer:
        ref = writer.write_exchange(res)
    got = list(iter_records(archive / ref.file, strict=True, verify_digests=True))
    assert [rec.record_type for _, rec in got] == [
        "response",
        "conversion",
        "resource",
        "conversion",
    ]
    for (_, rec), item in zip(got[1:], res.rendered, strict=True):
        assert rec.warc_headers["WARC-Refers-To"] == ref.record_id
        assert rec.url == item.url
        assert rec.body == item.data
        assert rec.warc_headers["Content-Type"] == item.content_type
        assert rec.http_status is None
        assert ("WARC-Concurrent-To" in rec.warc_headers) == (item.kind == "resource")
    assert got[2][1].content_type == "image/png"


def test_write_resource_standalone(archive: Path) -> None:
    """write_resource stores one resource/conversion/metadata record and returns its ref."""
    with WarcWriter(archive, prefix="res", fsync=False) as writer:
        ref = writer.write_exchange(result())
        shot = writer.write_resource(
            "http://x.test/a.png", "image/png", b"\x89PNG", refers_to=ref.record_id
        )
        meta = writer.write_resource("http://x.test/a", "application/json", b"{}", kind="metadata")
        with pytest.raises(ArchiveError):
            writer.write_resource("http://x.test/a", "text/plain", b"", kind="response")
    rec = read_record(archive, shot)
    assert (rec.record_type, rec.body, rec.warc_headers["WARC-Refers-To"]) == (
        "resource",
        b"\x89PNG",
        ref.record_id,
    )
    assert read_record(archive, meta).record_type == "metadata"


def test_file_is_open_until_closed(archive: Path) -> None:
    """A file is named .open while written, refs use the final name, and close renames it."""
    writer = WarcWriter(archive, prefix="crawl-a", fsync=False)
    assert list(archive.iterdir()) == []  # no file before the first write
    ref = writer.write_exchange(result())
    assert [p.name for p in archive.iterdir()] == [ref.file + ".open"]
    assert writer.current_file == ref.file
    m = NAME_RE.fullmatch(ref.file)
    assert m is not None and m["prefix"] == "crawl-a" and int(m["pid"]) == os.getpid()
    assert m["host"] == host_tag() and m["serial"] == "00000"
    writer.close()
    writer.close()
    assert [p.name for p in archive.iterdir()] == [ref.file]
    assert_same_exchange(read_record(archive, ref), result())
    with pytest.raises(ArchiveError, match="closed"):
        writer.write_exchange(result())


def test_rotation_by_size(archive: Path) -> None:
    """Past max_bytes a file is closed between exchanges; every file starts with warcinfo and holds whole exchanges."""
    results = [result(f"http://127.0.0.1:8080/p/{i}", os.urandom(3000)) for i in range(40)]
    with WarcWriter(
        archive, prefix="rot", max_bytes=20_000, fsync=False, operator_info={"operator": "tests"}
    ) as writer:
        refs = [writer.write_exchange(r) for r in results]
        closed = [p for p in archive.iterdir() if p.name.endswith(".warc.gz")]
        assert closed and all(p.stat().st_size >= 20_000 for p in closed)
    files = sorted(archive.iterdir())
    assert len(files) >= 5 and not any(p.name.endswith(".open") for p in files)
    serials = sorted(int(m["serial"]) for p in files if (m := NAME_RE.fullmatch(p.name)))
    assert serials == list(range(len(files)))
    assert {r.file for r in refs} == {p.name for p in files}
    for path in files:
        records = warcio_records(path)
        kinds = [t for t, _, _ in records]
        assert kinds[0] == "warcinfo" and kinds.count("warcinfo") == 1
        assert records[0][1]["WARC-Filename"] == path.name
        assert b"operator: tests\r\n" in records[0][2]
        assert kinds[1:] == ["response", "request"] * ((len(kinds) - 1) // 2)
        ids = {h["WARC-Record-ID"] for t, h, _ in records if t == "response"}
        assert {h["WARC-Concurrent-To"] for t, h, _ in records if t == "request"} == ids
        assert path.stat().st_size < 20_000 + 2 * 4_000  # cut at the first exchange past the limit
    for ref, res in zip(refs, results, strict=True):
        assert_same_exchange(read_record(archive, ref), res)


def test_concurrent_writers_threads(archive: Path) -> None:
    """write_exchange from many threads keeps every exchange whole and every ref readable."""
    results = [result(f"http://127.0.0.1:8080/t/{i}", page(i, 2_000 + i * 37)) for i in range(200)]
    with (
        WarcWriter(archive, prefix="threads", max_bytes=150_000, fsync=False) as writer,
        ThreadPoolExecutor(8) as pool,
    ):
        refs = list(pool.map(writer.write_exchange, results))
    assert len({(r.file, r.offset) for r in refs}) == len(refs)
    for ref, res in zip(refs, results, strict=True):
        assert_same_exchange(read_record(archive, ref), res)
    total = sum(
        sum(1 for _ in iter_records(p, strict=True, verify_digests=True)) for p in archive.iterdir()
    )
    assert total == len(results)


def test_sync_fsyncs_once_and_is_cheap_when_idle(
    archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sync fsyncs the file (and the folder once) after writes, and nothing when nothing was written."""
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    writer = WarcWriter(archive, prefix="sync")
    writer.write_exchange(result())
    writer.sync()
    assert len(calls) == 2  # the file and, for the new name, the folder
    writer.write_exchange(result())
    writer.write_exchange(result())
    writer.sync()
    assert len(calls) == 3
    for _ in range(10_000):
        writer.sync()
    assert len(calls) == 3  # nothing new written: a lock round, no system call
    writer.close()
    assert len(calls) == 5  # close: file and folder
    unsynced = WarcWriter(archive, prefix="nosync", fsync=False)
    unsynced.write_exchange(result())
    unsynced.sync()
    unsynced.close()
    assert len(calls) == 5


def test_writer_refuses_bad_settings(tmp_path: Path) -> None:
    """A bad prefix, size or level is refused before any file is made."""
    for kwargs in (
        {"prefix": "a/b"},
        {"prefix": ""},
        {"prefix": "ok", "max_bytes": 0},
        {"prefix": "ok", "compresslevel": 11},
    ):
        with pytest.raises(ArchiveError):
            WarcWriter(tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_write_failure_leaves_no_partial_exchange(
    archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed write raises ArchiveError and the file stays a clean series of whole records."""
    writer = WarcWriter(archive, prefix="enospc", fsync=False)
    good = writer.write_exchange(result())
    real_writev = os.writev

    def half_then_fail(fd: int, buffers: list[bytes]) -> int:
        os.write(fd, buffers[0][: len(buffers[0]) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "writev", half_then_fail)
    with pytest.raises(ArchiveError, match="No space left") as info:
        writer.write_exchange(result())
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == 28
    monkeypatch.setattr(os, "writev", real_writev)
    after = writer.write_exchange(result())
    writer.close()
    assert [r for r, _ in iter_records(archive / good.file, strict=True)] == [good, after]


# --------------------------------------------------------------------------- reading


def test_read_record_rejects_wrong_refs(archive: Path) -> None:
    """A ref with a wrong offset, length, id or file raises ArchiveError, never another exception."""
    with WarcWriter(archive, prefix="refs", fsync=False) as writer:
        ref = writer.write_exchange(result())
        second = writer.write_exchange(result())
    bad = [
        WarcRef(ref.file, ref.offset + 1, ref.length, ref.record_id),
        WarcRef(ref.file, ref.offset, ref.length - 1, ref.record_id),
        WarcRef(ref.file, ref.offset, ref.length + 5, ref.record_id),
        WarcRef(ref.file, ref.offset, ref.length, second.record_id),
        WarcRef(ref.file, 10**9, ref.length, ref.record_id),
        WarcRef("missing.warc.gz", 0, 10, ref.record_id),
    ]
    for wrong in bad:
        with pytest.raises(ArchiveError):
            read_record(archive, wrong)


def jwat(name: str) -> Path:
    """A file of the jwat sample set."""
    return WARC_SAMPLES / "jwat" / name


JWAT_INVALID = sorted(p.name for p in (WARC_SAMPLES / "jwat").glob("invalid-*"))
JWAT_VALID = sorted(p.name for p in (WARC_SAMPLES / "jwat").glob("valid-*"))
# jwat's complaint about this file is literal '?' characters in WARC-Target-URI query strings,
# which RFC 3986 allows; the records are otherwise sound, so the reader accepts them.
ACCEPTED_INVALID = {"invalid-warcfile-encoding-headers.warc.gz"}
# Files that only break a "should" of WARC 1.1 (missing or odd Content-Type) fail in strict mode only.
SHOULD_ONLY = {
    "invalid-warcfile-contenttype-recommended.warc",
    "invalid-warcfile-contenttype-warcinfo-recommended.warc",
}


@pytest.mark.parametrize("name", JWAT_INVALID)
def test_jwat_invalid_samples_raise(name: str) -> None:
    """Every invalid jwat sample raises ArchiveError naming file and offset (strict mode), except one URI quibble."""
    if name in ACCEPTED_INVALID:
        assert list(iter_records(jwat(name), strict=True))
        return
    if name in SHOULD_ONLY:
        list(iter_records(jwat(name)))
    with pytest.raises(ArchiveError, match=rf"{re.escape(name)} at offset \d+: "):
        list(iter_records(jwat(name), strict=True))


@pytest.mark.parametrize("name", JWAT_VALID)
def test_jwat_valid_samples_read(name: str) -> None:
    """Every valid jwat sample iterates without error, strict mode included."""
    for ref, rec in iter_records(jwat(name), strict=True):
        assert ref.record_id == rec.record_id
        assert rec.record_type in ("response", "resource", "conversion")


@pytest.mark.parametrize(
    "name",
    [
        "example.warc",
        "example.warc.gz",
        "example-iana.org-chunked.warc",
        "example-resource.warc.gz",
        "post-test.warc.gz",
        "example-space-in-target-uri.warc.gz",
        "example-wget-bad-target-uri.warc.gz",
    ],
)
def test_warcio_valid_samples_read_back_by_ref(name: str) -> None:
    """Valid warcio samples iterate, and each yielded ref reads back the same record."""
    path = WARC_SAMPLES / "warcio" / name
    got = list(iter_records(path))
    assert got
    for ref, rec in got:
        assert read_record(path.parent, ref) == rec
        assert rec.url and not rec.url.startswith("<")


def test_chunked_payload_in_foreign_warc_is_dechunked() -> None:
    """A response archived with its chunked transfer coding reads back de-chunked."""
    (_, rec), *_ = iter_records(WARC_SAMPLES / "warcio" / "example-iana.org-chunked.warc")
    assert rec.header("transfer-encoding") == "chunked"
    assert rec.body.startswith(b"<!doctype html>") and rec.body.rstrip().endswith(b"</html>")


@pytest.mark.parametrize(
    ("name", "offset"),
    [
        ("example-trunc.warc", 1197),  # two whole warcinfo records, then a response cut short
        ("example-wrong-chunks.warc.gz", 0),  # one record spread over three gzip members
        ("example-bad-non-chunked.warc.gz", 0),  # the whole file is one gzip member
        ("example-bad.warc.gz.bad", 0),
        ("example.arc", 0),
        ("example.arc.gz", 0),
        ("bad.arc", 0),
        ("LICENSE", 0),
    ],
)
def test_broken_warcio_samples_raise_at_the_defect(name: str, offset: int) -> None:
    """Broken warcio samples raise ArchiveError naming the file and the offset of the first bad record."""
    with pytest.raises(ArchiveError, match=rf"{re.escape(name)} at offset {offset}: "):
        list(iter_records(WARC_SAMPLES / "warcio" / name))


def test_record_then_garbage_yields_the_record_first() -> None:
    """The good record before trailing garbage is yielded before the error."""
    path = jwat("invalid-warcfile-record-then-garbage.warc")
    it = iter_records(path)
    ref, rec = next(it)
    assert rec.http_status == 200 and ref.offset == 0
    with pytest.raises(ArchiveError, match=r"at offset \d+"):
        next(it)


def test_digest_verification() -> None:
    """verify_digests catches the sample whose payload digest is wrong and passes the good ones."""
    with pytest.raises(ArchiveError, match="digest"):
        list(iter_records(WARC_SAMPLES / "warcio" / "example-digest.warc", verify_digests=True))
    list(iter_records(WARC_SAMPLES / "warcio" / "example-digest.warc"))  # unverified, it reads
    for name in ("example.warc.gz", "example-iana.org-chunked.warc", "post-test.warc.gz"):
        assert list(iter_records(WARC_SAMPLES / "warcio" / name, verify_digests=True))


def test_missing_file_raises_archive_error(tmp_path: Path) -> None:
    """Iterating a file that does not exist raises ArchiveError."""
    with pytest.raises(ArchiveError):
        list(iter_records(tmp_path / "nope.warc.gz"))


# --------------------------------------------------------------------------- recovery


def abandoned_file(folder: Path, count: int = 12) -> tuple[Path, list[WarcRef]]:
    """A .open file with ``count`` exchanges whose writer is gone (its fd closed without rename)."""
    writer = WarcWriter(folder, prefix="crash", fsync=False)
    refs = [
        writer.write_exchange(result(f"http://127.0.0.1:8080/c/{i}", page(i, 3_000)))
        for i in range(count)
    ]
    assert writer._fd is not None
    os.close(writer._fd)  # the process "dies": no close, no rename
    writer._fd = None
    writer._closed = True
    return folder / (refs[0].file + ".open"), refs


@pytest.mark.parametrize(
    "cut", ["mid_member", "member_boundary", "gzip_trailer", "two_bytes", "header_only"]
)
def test_recover_cuts_a_torn_tail(archive: Path, cut: str) -> None:
    """Recovery keeps the whole records before a torn tail, renames the file, and old refs stay valid."""
    path, refs = abandoned_file(archive)
    last = refs[-1]
    size = path.stat().st_size
    end = {
        "mid_member": last.offset + last.length // 2,
        "member_boundary": last.offset
        + last.length,  # the request record of the last exchange is lost
        "gzip_trailer": size - 3,
        "two_bytes": size + 2,
        "header_only": 5,
    }[cut]
    if end > size:
        with open(path, "ab") as f:
            f.write(b"\x1f\x8b")  # a member that had only begun
    else:
        os.truncate(path, end)
    assert recover(archive, only=[path.name]) == ([] if cut == "header_only" else [refs[0].file])
    assert not path.exists()
    if cut == "header_only":
        assert list(archive.iterdir()) == []  # nothing whole was left: the file is removed
        return
    final = archive / refs[0].file
    kept = [r for r, _ in iter_records(final, strict=True, verify_digests=True)]
    assert kept == (refs[:-1] if cut == "mid_member" else refs)
    for ref in kept:
        read_record(archive, ref)
    assert final.stat().st_size <= size


def test_recover_leaves_live_and_foreign_files_alone(archive: Path) -> None:
    """By default only orphans of this host are recovered: a live writer's file and other hosts' files are kept."""
    live = WarcWriter(archive, prefix="live", fsync=False)
    live_ref = live.write_exchange(result())
    foreign = archive / "other-4242-otherhost-20240101000000000-00000-0123abcd.warc.gz.open"
    foreign.write_bytes((archive / (live_ref.file + ".open")).read_bytes())
    odd = archive / "not-our-format.warc.gz.open"
    odd.write_bytes(b"")
    assert orphaned_files(archive) == []
    assert recover(archive) == []
    assert (archive / (live_ref.file + ".open")).exists() and foreign.exists() and odd.exists()
    live.close()
    foreign.unlink()
    odd.unlink()


def test_orphan_detection_by_pid(archive: Path) -> None:
    """A file named after a dead pid of this host is an orphan; one whose pid now belongs to a younger process too."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(proc.stdout)
    host = host_tag()
    dead = archive / f"x-{dead_pid}-{host}-20240101000000000-00000-0123abcd.warc.gz.open"
    reused = (
        archive / f"x-{os.getpid()}-{host}-20000101000000000-00000-0123abcd.warc.gz.open"
    )  # we started later
    mine = (
        archive
        / f"x-{os.getpid()}-{host}-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}000-00000-0123abcd.warc.gz.open"
    )
    for path in (dead, reused, mine):
        path.write_bytes(b"")
    found = orphaned_files(archive)
    assert dead.name in found and reused.name in found and mine.name not in found
    for path in (dead, reused, mine):
        path.unlink()


CHILD = """
import json, os, sys
from shoal.archive import WarcWriter
from shoal.exchange import FetchResult
writer = WarcWriter(sys.argv[1], prefix="killed", fsync=False)
i = 0
while True:
    body = os.urandom(4000) + b"x" * (i % 5000)
    ref = writer.write_exchange(FetchResult(url=f"http://127.0.0.1/k/{i}", status=200, reason="OK",
        http_version="1.1", headers=[("Content-Type", "application/octet-stream")], body=body,
        request_headers=[("Host", "127.0.0.1")]))
    print(json.dumps([ref.file, ref.offset, ref.length, ref.record_id]), flush=True)
    i += 1
"""


def test_recover_after_sigkill(archive: Path) -> None:
    """A writer killed with SIGKILL mid-loop leaves an orphan that recover() closes with every printed ref intact."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(archive)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    lines = [child.stdout.readline() for _ in range(150)]
    time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    lines += rest.splitlines(keepends=True)
    refs = [WarcRef(*json.loads(line)) for line in lines if line.endswith("\n")]
    (name,) = {r.file for r in refs}
    assert orphaned_files(archive) == [name + ".open"]
    assert recover(archive) == [name]
    assert [p.name for p in archive.iterdir()] == [name]
    kept = {r.record_id for r, _ in iter_records(archive / name, strict=True, verify_digests=True)}
    for ref in refs:
        assert ref.record_id in kept
        assert read_record(archive, ref).url.startswith("http://127.0.0.1/k/")


def test_files_rotate_by_age_and_report_open_and_close(archive: Path) -> None:
    """A file older than max_seconds is closed by rotate_if_older (or the next write), with on_open/on_close called once each."""
    events: list[tuple[str, str]] = []
    writer = WarcWriter(
        archive,
        prefix="aged",
        fsync=False,
        max_seconds=3600,
        on_open=lambda name: events.append(("open", name)),
        on_close=lambda name, path: events.append(("close", path.name)),
    )
    first = writer.write_exchange(result())
    assert events == [("open", first.file)]
    assert not writer.rotate_if_older()  # younger than an hour
    assert writer.rotate_if_older(0.0)
    assert events == [("open", first.file), ("close", first.file)]
    assert (archive / first.file).exists() and writer.current_file is None
    writer.max_seconds = 0.0
    second = writer.write_exchange(result())  # a write past the age closes the file at once
    assert second.file != first.file and writer.current_file is None
    assert events[2:] == [("open", second.file), ("close", second.file)]
    writer.close()
    assert len(events) == 4


RECOVERER = """
import json, os, sys, time
from shoal.archive import recover
folder, go = sys.argv[1], sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.001)
print(json.dumps(recover(folder)), flush=True)
"""


def dead_pid() -> int:
    """The pid of a process that has already exited."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(proc.stdout)


def orphans(folder: Path, count: int) -> tuple[list[str], bytes]:
    """``count`` orphaned ``.open`` files of a dead writer of this host; returns their final names and content."""
    template = folder.parent / "template"
    template.mkdir(exist_ok=True)
    path, _ = abandoned_file(template)
    data = path.read_bytes()
    path.unlink()
    pid, host = dead_pid(), host_tag()
    names = []
    for i in range(count):
        name = f"orphan-{pid}-{host}-20240101000000{i:03d}-00000-0123abcd.warc.gz"
        (folder / (name + ".open")).write_bytes(data)
        names.append(name)
    return names, data


def test_concurrent_recoveries_close_each_orphan_exactly_once(
    archive: Path, tmp_path: Path
) -> None:
    """Two workers recovering the same folder at the same moment both succeed and each orphan is closed once."""
    for round_ in range(4):
        names, _ = orphans(archive, 6)
        go = tmp_path / f"go-{round_}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", RECOVERER, str(archive), str(go)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        time.sleep(0.3)  # both are polling for the start signal
        go.touch()
        results = [p.communicate(timeout=60) for p in procs]
        for p, (_out, err) in zip(procs, results, strict=True):
            assert p.returncode == 0, err
        got = [n for out, _ in results for n in json.loads(out)]
        assert sorted(got) == sorted(names)  # every orphan once, by one of the two
        assert sorted(p.name for p in archive.iterdir()) == sorted(names)
        for name in names:
            assert len(list(iter_records(archive / name, strict=True))) == 12
            (archive / name).unlink()


def test_recovery_takes_over_a_claim_whose_recoverer_died(archive: Path) -> None:
    """A file claimed by a recoverer that died half-way is claimed again and closed by the next recovery."""
    (name,), data = orphans(archive, 1)
    claim = archive / f"{name}.open.recovering-{dead_pid()}-1700000000000-0123abcd"
    os.rename(archive / (name + ".open"), claim)
    assert recover(archive) == [name]
    assert [p.name for p in archive.iterdir()] == [name]
    assert (archive / name).read_bytes() == data


def test_recovery_refuses_to_overwrite_a_final_file(archive: Path) -> None:
    """When the final name already exists, recovery raises and leaves both files as they were."""
    (name,), data = orphans(archive, 1)
    (archive / name).write_bytes(data)
    with pytest.raises(ArchiveError, match="already exists"):
        recover(archive, only=[name])
    assert sorted(p.name for p in archive.iterdir()) == sorted([name, name + ".open"])
    (archive / (name + ".open")).unlink()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB tmpfs mounted for the test (needs root)."""
    with tmpfs(tmp_path / "small", "256k") as mnt:
        yield mnt


def test_full_disk_raises_archive_error_with_enospc(small_disk: Path) -> None:
    """On a full filesystem writing raises ArchiveError carrying ENOSPC (critical), and the file keeps only whole records."""
    writer = WarcWriter(small_disk, prefix="full", fsync=False)
    refs = []
    with pytest.raises(ArchiveError) as info:
        for i in range(100):
            refs.append(
                writer.write_exchange(result(f"http://127.0.0.1/f/{i}", os.urandom(30_000)))
            )
    assert info.value.errno == errno.ENOSPC and info.value.critical
    assert "No space left" in str(info.value)
    assert refs
    for ref in refs:
        assert read_record(small_disk, ref).url.startswith("http://127.0.0.1/f/")


def test_read_only_archive_raises_archive_error_with_erofs(small_disk: Path) -> None:
    """A read-only archive folder: creating the next file raises ArchiveError carrying EROFS (critical)."""
    writer = WarcWriter(small_disk, prefix="ro", fsync=False, max_bytes=1024 * 1024)
    writer.write_exchange(result())
    writer.close()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    writer = WarcWriter(small_disk, prefix="ro", fsync=False)
    with pytest.raises(ArchiveError) as info:
        writer.write_exchange(result())
    assert info.value.errno == errno.EROFS and info.value.critical


def _as_nobody(folder: Path, when: str, to_parent: int, from_parent: int) -> None:
    """In a forked child: become nobody, write (and close) in ``folder``, report the ArchiveError."""
    try:
        os.setgid(65534)
        os.setuid(65534)
        writer = WarcWriter(folder, prefix="acl", fsync=False)
        if when == "close":
            writer.write_exchange(result())
            os.write(to_parent, b"written\n")
            os.read(from_parent, 1)
        try:
            if when == "write":
                writer.write_exchange(result())
            else:
                writer.close()
        except ArchiveError as exc:
            os.write(to_parent, json.dumps([exc.errno, exc.critical, str(exc)]).encode() + b"\n")
    finally:
        os._exit(0)


@pytest.mark.parametrize("when", ["write", "close"])
def test_unwritable_archive_raises_archive_error_with_eacces(
    request: pytest.FixtureRequest, when: str
) -> None:
    """A folder the worker's user may not write: creating or closing (renaming) a file raises ArchiveError with EACCES."""
    if os.geteuid() != 0:
        missing("root", "run the tests as root (CI does) to switch to an unprivileged user")
    folder = Path(tempfile.mkdtemp(prefix="shoal-acl-"))  # pytest's tmp_path is private to root
    request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))
    os.chown(folder, 65534, 65534)
    folder.chmod(0o755)
    up_r, up_w = os.pipe()
    down_r, down_w = os.pipe()
    if when == "write":
        folder.chmod(0o555)
    pid = os.fork()
    if pid == 0:
        _as_nobody(folder, when, up_w, down_r)
    os.close(up_w)
    os.close(down_r)
    with os.fdopen(up_r) as from_child:
        if when == "close":
            assert from_child.readline() == "written\n"
            folder.chmod(0o555)  # the worker's user can no longer rename files there
            os.write(down_w, b"g")
        line = from_child.readline()
    os.close(down_w)
    os.waitpid(pid, 0)
    folder.chmod(0o755)
    code, critical, message = json.loads(line)
    assert code == errno.EACCES and critical, message


# --------------------------------------------------------------------------- content decoding


def reference_html(name: str) -> bytes:
    """The decoded bytes of a compression sample, through the stock libraries without a cap."""
    data = (COMPRESSION / name).read_bytes()
    if name == "html-br.bin":
        return bytes(brotli.decompress(data))
    if name.startswith("html-zstd"):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True).read()
    if name == "html-rawdeflate.bin":
        return zlib.decompress(data, -15)
    if name == "html-gzip-deflate.bin":
        return gzip.decompress(zlib.decompress(data))
    return zlib.decompress(data, 47)


@pytest.mark.parametrize(
    ("name", "encoding"),
    [
        ("html-gzip.bin", "gzip"),
        ("html-gzip.bin", "x-gzip"),
        ("html-rawdeflate.bin", "deflate"),
        ("html-zlibdeflate.bin", "deflate"),
        ("html-br.bin", "br"),
        ("html-zstd-static-content-size.bin", "zstd"),
        ("html-zstd-static-no-content-size.bin", "zstd"),
        ("html-zstd-streaming-no-content-size.bin", "zstd"),
        ("html-gzip-deflate.bin", "gzip, deflate"),
    ],
)
def test_decode_samples(name: str, encoding: str) -> None:
    """Each encoded sample decodes to the page, and a cap below its size cuts it and says so."""
    expected = reference_html(name)
    assert expected.startswith(b"<!DOCTYPE") or expected.lstrip().startswith(b"<")
    data = (COMPRESSION / name).read_bytes()
    assert content_decode(data, encoding, 10**6) == (expected, False)
    assert content_decode(data, encoding, len(expected)) == (expected, False)
    assert content_decode(data, encoding, 1000) == (expected[:1000], True)


def test_three_stacked_codings_are_refused() -> None:
    """More than two stacked codings raise ContentCodingError (gzip, deflate, gzip sample)."""
    with pytest.raises(ContentCodingError, match="stacked"):
        content_decode(
            (COMPRESSION / "html-gzip-deflate-gzip.bin").read_bytes(), "gzip, deflate, gzip", 10**6
        )


@pytest.mark.parametrize(
    "name", ["truncated-crc-error.gz", "truncated-crc-error-short.gz", "unexpected-eof.gz"]
)
def test_truncated_streams_give_their_prefix(name: str) -> None:
    """A cut gzip stream is decoded as far as it goes and reported truncated, not raised."""
    data, truncated = content_decode((COMPRESSION / name).read_bytes(), "gzip", 10**6)
    assert truncated and len(data) > 1000
    if name == "unexpected-eof.gz":
        # Scrapy's expected output was saved as the latin-1 text of the bytes, re-encoded as UTF-8.
        expected = (
            (COMPRESSION / "unexpected-eof-output.txt")
            .read_bytes()
            .decode("utf-8")
            .encode("latin-1")
        )
        assert data == expected


@pytest.mark.parametrize(
    ("name", "encoding"),
    [
        ("bomb-gzip.bin", "gzip"),
        ("bomb-deflate.bin", "deflate"),
        ("bomb-br.bin", "br"),
        ("bomb-zstd.bin", "zstd"),
    ],
)
def test_bombs_stop_at_the_cap_with_bounded_memory(name: str, encoding: str) -> None:
    """An 11.5 MB bomb decoded with a 1 MB cap returns 1 MB, truncated, using a few MB of memory at most."""
    data = (COMPRESSION / name).read_bytes()
    content_decode(
        data, encoding, 1000
    )  # imports and first-use allocations outside the measurement
    tracemalloc.start()
    try:
        out, truncated = content_decode(data, encoding, 1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (len(out), truncated) == (1 << 20, True)
    assert peak < 3 * (1 << 20), f"peak {peak} bytes"


@pytest.mark.parametrize(
    ("name", "encoding"),
    [
        ("bomb-gzip.bin", "gzip"),
        ("bomb-deflate.bin", "deflate"),
        ("bomb-br.bin", "br"),
        ("bomb-zstd.bin", "zstd"),
    ],
)
def test_bombs_decode_whole_under_a_large_cap(name: str, encoding: str) -> None:
    """With a cap above the real size the whole 11,511,612 bytes come out, not truncated; one byte less is truncated."""
    data = (COMPRESSION / name).read_bytes()
    out, truncated = content_decode(data, encoding, BOMB_SIZE)
    assert (len(out), truncated) == (BOMB_SIZE, False)
    out, truncated = content_decode(data, encoding, BOMB_SIZE - 1)
    assert (len(out), truncated) == (BOMB_SIZE - 1, True)
    out, truncated = content_decode(data[: len(data) // 2], encoding, BOMB_SIZE)
    assert truncated and len(out) < BOMB_SIZE


def test_decode_edge_cases() -> None:
    """Identity and empty bodies pass through; unknown codings and bodies that are not what they claim raise."""
    assert content_decode(b"abc", None, 10) == (b"abc", False)
    assert content_decode(b"abc", "identity", 2) == (b"ab", True)
    assert content_decode(b"", "gzip", 10) == (b"", False)
    member = gzip.compress(b"a" * 100)
    assert content_decode(member + member, "gzip", 1000) == (b"a" * 200, False)
    assert content_decode(member + b"\0\0", "gzip", 1000) == (b"a" * 100, False)
    assert content_decode(zlib.compress(b"zlib in a gzip label"), "gzip", 1000) == (
        b"zlib in a gzip label",
        False,
    )
    for coding in ("compress", "sdch", "gzip, gzip, gzip"):
        with pytest.raises(ContentCodingError):
            content_decode(member, coding, 1000)
    for coding in ("gzip", "deflate", "br", "zstd"):
        with pytest.raises(ContentCodingError, match="not valid"):
            content_decode(b"<html>plain text with a wrong label</html>", coding, 1000)


# --------------------------------------------------------------------------- speed


def test_write_exchange_speed(archive: Path) -> None:
    """write_exchange of a 20 KB page stays well under the crawl's per-page budget (prints µs per call)."""
    res = result(body=page(size=20_000))
    with WarcWriter(archive, prefix="speed", fsync=False) as writer:
        writer.write_exchange(res)
        best = float("inf")
        for _ in range(5):
            started = time.process_time()
            refs = [writer.write_exchange(res) for _ in range(100)]
            best = min(best, (time.process_time() - started) / 100)
        read_started = time.process_time()
        for ref in refs:
            read_record(archive, ref)
        read = (time.process_time() - read_started) / len(refs)
    print(f"write_exchange {best * 1e6:.0f} µs, read_record {read * 1e6:.0f} µs")
    assert best < 0.0015  # generous: the number to watch is printed above
