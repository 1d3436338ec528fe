"""Revisits: the pure due-time policy, the frontier's promotion of due pages, and crawls that stay open."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from shoal.archive import WarcRef, WarcWriter, iter_records, read_record
from shoal.archive.encode import sha1_digest
from shoal.crawl import run_async, start_crawl
from shoal.errors import ArchiveError
from shoal.exchange import FetchResult
from shoal.frontier import NewURL, Outcome, SqlFrontier, Status, SyncResult
from shoal.frontier.revisit import (
    PayloadRef,
    Previous,
    Verdict,
    conditional_headers,
    format_duration,
    next_revisit,
    parse_duration,
    validators,
    verdict,
)
from shoal.frontier.tables import urls
from shoal.notify import Notifier
from shoal.parse import run_parse
from shoal.resubmit import spec_changes
from shoal.spec import NotifySpec, Spec, parse_spec
from shoal.urls import canonicalize
from tests.conftest import make_db
from tests.sites.fresh import FreshSite
from tests.test_notify import Hook

# -- the pure policy -------------------------------------------------------------------------


def test_durations_parse_in_every_unit_and_refuse_nonsense() -> None:
    """'30m', '1h30m', '7d', '500ms', '2w' and plain numbers parse; words, zero and signs do not."""
    assert parse_duration("30m") == 1800
    assert parse_duration("1h30m") == 5400
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("500ms") == 0.5
    assert parse_duration("2w") == 14 * 86400
    assert parse_duration(90) == 90
    for bad in ("soon", "", "0s", "-5m", "5 minutes", "1x", True, None):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert format_duration(5400) == "1h30m"
    assert format_duration(0.25) == "250ms"


def test_next_revisit_respects_the_window_from_the_first_fetch() -> None:
    """A page is due `revisit` after each fetch, and never again once past `revisit_for` from its first fetch."""
    day = 86_400_000
    assert next_revisit(1000, None, None, None) is None
    assert next_revisit(1000, None, 60.0, None) == 61_000
    assert next_revisit(0, None, 86400.0, 7 * 86400.0) == day
    assert next_revisit(6 * day, 0, 86400.0, 7 * 86400.0) == 7 * day
    assert next_revisit(6 * day + 1, 0, 86400.0, 7 * 86400.0) is None


def test_conditional_headers_only_with_a_known_payload() -> None:
    """If-None-Match/If-Modified-Since are sent for a revisit whose last full capture is known, cleaned."""
    pay = PayloadRef("sha1:X", "f.warc.gz", 0, 10, "<urn:uuid:1>", 5)
    assert conditional_headers(None) == ()
    assert conditional_headers(Previous(1, 1, '"abc"', "Tue, 01 Oct 2024 00:00:00 GMT")) == ()
    got = conditional_headers(Previous(1, 1, '"abc"', "Tue, 01 Oct 2024 00:00:00 GMT", pay))
    assert got == (
        ("If-None-Match", '"abc"'),
        ("If-Modified-Since", "Tue, 01 Oct 2024 00:00:00 GMT"),
    )
    assert conditional_headers(Previous(1, 1, '"a"\r\nX-Evil: 1', None, pay)) == ()
    assert validators([("ETag", ' "v1" '), ("last-modified", "x" * 65)]) == ('"v1"', None)


def test_verdict_tells_not_modified_identical_and_changed_apart() -> None:
    """304 with a known payload is not modified; a 200 with the same digest identical; else changed."""
    body = b"<html>same</html>"
    pay = PayloadRef(sha1_digest(body), "f", 0, 1, "<urn:uuid:1>", 5)
    prev = Previous(1, 1, None, None, pay)
    assert verdict(prev, 304, None) is Verdict.NOT_MODIFIED
    assert verdict(prev, 200, sha1_digest(body)) is Verdict.IDENTICAL
    assert verdict(prev, 200, sha1_digest(b"other")) is Verdict.CHANGED
    assert verdict(None, 200, sha1_digest(body)) is Verdict.CHANGED
    assert verdict(Previous(1, 1), 304, None) is Verdict.CHANGED
    assert sha1_digest(b"").startswith("sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ")


# -- the frontier ----------------------------------------------------------------------------


def _new(url: str) -> NewURL:
    c = canonicalize(url)
    return NewURL(c.url, c.url_key, c.host, c.host_key, 0, "list", 0)


def _sync(
    f: SqlFrontier, cid: int, outcomes: list[Outcome] | None = None, claim: int = 10
) -> SyncResult:
    return f.sync(
        cid,
        "w1",
        outcomes or [],
        claim=claim,
        lease_ms=60_000,
        per_host=100,
        default_delay_ms=0,
        jitter=0.0,
        horizon_ms=2000,
        reap=False,
    )


def test_due_pages_come_back_through_the_claim_with_their_last_fetch(db_url: str) -> None:
    """A done page with a due time is claimed again once due, carrying validators and payload; not before."""
    f = SqlFrontier(db_url)
    try:
        cid = f.open_crawl("c", "spec").id
        f.register_worker(cid, "w1", hostname="h", ip=None, pid=1, version="t", concurrency=1)
        f.add_urls(cid, [_new("http://a.example/list"), _new("http://a.example/other")], 0)
        first = _sync(f, cid).claimed
        assert len(first) == 2 and all(c.previous is None for c in first)
        now = f.now_ms()
        pay = PayloadRef("sha1:AAAA", "x.warc.gz", 10, 99, "<urn:uuid:r1>", now)
        done = [
            Outcome(
                c.id,
                c.lease_token,
                Status.DONE,
                http_status=200,
                fetched_at=now,
                revisit_at=now + 600_000 if c.url.endswith("list") else None,
                validators=('"e1"', None),
                payload=pay,
            )
            for c in first
        ]
        res = _sync(f, cid, done)
        assert res.accepted == [True, True] and res.claimed == []
        assert f.wake_at(cid) == now + 600_000
        assert f.count_done(cid) == 2
        f._offset_ms += 600_001  # the test moves the frontier's clock past the due time
        again = _sync(f, cid)
        assert [c.url for c in again.claimed] == ["http://a.example/list"]
        assert again.revisits_due == 1
        prev = again.claimed[0].previous
        assert prev is not None and prev.etag == '"e1"' and prev.payload == pay
        assert again.claimed[0].attempts == 1
        # A 304: no new payload, the old one stays; the refetch is not one more page.
        c = again.claimed[0]
        link = _new("http://a.example/new-post")
        res = _sync(
            f,
            cid,
            [
                Outcome(
                    c.id,
                    c.lease_token,
                    Status.DONE,
                    http_status=304,
                    fetched_at=f.now_ms(),
                    revisit=True,
                    revisit_at=f.now_ms() + 600_000,
                    links=[link, _new("http://a.example/other")],
                )
            ],
            claim=0,
        )
        assert res.found == {c.id: 1}
        assert f.count_done(cid) == 2
        sched = f.revisit_schedule(cid)
        assert sched.scheduled == 1 and sched.revisited == 1 and sched.found_new == 1
        assert sched.due_now == 0  # the new post is a first fetch, not a revisit
        assert f.skip_pending(cid, "max_pages") == 1
        f._offset_ms += 600_001
        back = _sync(f, cid).claimed
        assert [b.url for b in back] == ["http://a.example/list"]
        assert back[0].previous is not None and back[0].previous.payload == pay
    finally:
        f.close()


# -- the archive -----------------------------------------------------------------------------


def test_revisit_records_are_valid_warc_and_refer_to_the_payload(tmp_path: Path) -> None:
    """Both revisit profiles pass `warcio check`, and each names the capture holding its payload."""
    body = b"<html><body>same</body></html>"
    ok = FetchResult(
        "http://a.example/p",
        200,
        "OK",
        "1.1",
        [("Content-Type", "text/html"), ("ETag", '"e1"')],
        body,
        [("User-Agent", "t")],
    )
    w = WarcWriter(tmp_path, prefix="t", fsync=False)
    first = w.write_exchange(ok, fetched_at=1_700_000_000)
    digest = sha1_digest(body)
    not_modified = FetchResult(
        "http://a.example/p", 304, "Not Modified", "1.1", [("ETag", '"e1"')], b"", []
    )
    r304 = w.write_revisit(
        not_modified,
        profile="server-not-modified",
        refers_to=first.record_id,
        refers_to_uri=ok.url,
        refers_to_date=1_700_000_000,
        payload_digest=digest,
    )
    same = w.write_revisit(
        ok,
        profile="identical-payload-digest",
        refers_to=first.record_id,
        refers_to_uri=ok.url,
        refers_to_date=1_700_000_000,
        payload_digest=digest,
    )
    with pytest.raises(ArchiveError, match="unknown revisit profile"):
        w.write_revisit(
            ok,
            profile="maybe",
            refers_to=first.record_id,
            refers_to_uri=ok.url,
            refers_to_date=0,
            payload_digest=digest,
        )
    w.close()
    files = sorted(tmp_path.glob("*.warc.gz"))
    check = subprocess.run(
        [sys.executable, "-m", "warcio.cli", "check", "-v", *map(str, files)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    for ref, status, profile in ((r304, 304, "server-not-modified"), (same, 200, "identical")):
        rec = read_record(tmp_path, ref, verify_digests=True)
        assert rec.record_type == "revisit" and rec.http_status == status and rec.body == b""
        assert rec.warc_headers["WARC-Refers-To"] == first.record_id
        assert rec.warc_headers["WARC-Payload-Digest"] == digest
        assert profile in rec.warc_headers["WARC-Profile"]
        assert rec.warc_headers["WARC-Refers-To-Date"] == "2023-11-14T22:13:20.000000Z"


# -- crawls that stay open -------------------------------------------------------------------

FRESH_SPEC = """\
[crawl]
name = "fresh"
seeds = ["{base}/list"]

[[rules]]
name = "list"
regex = '/list$'
kind = "list"
revisit = "1h"

[[rules]]
name = "post"
glob = "/post/*"
kind = "detail"
revisit = "1h"
revisit_for = "30d"

[[rules]]
name = "about"
glob = "/about"
kind = "detail"
revisit = "1h"

[scope]
allow_private = true

[politeness]
delay = 0
jitter = 0
robots = false

[storage]
frontier = "{db}"
archive = "{archive}"
fsync = false

[worker]
concurrency = 4
flush_interval = 0.05
"""

HOUR_MS = 3_600_000


def fresh_spec(site: FreshSite, db: str, tmp_path: Path) -> tuple[Spec, str]:
    text = FRESH_SPEC.format(base=site.url(""), db=db, archive=tmp_path / "warc")
    return parse_spec(text), text


async def settled(frontier: SqlFrontier, cid: int, timeout: float = 90.0) -> None:
    """Wait until nothing is pending or leased and nothing is due: a revisit cycle is over."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        counts = frontier.status_counts(cid)
        wake = frontier.wake_at(cid)
        idle = counts["pending"] == 0 and counts["leased"] == 0 and counts["done"] > 0
        if idle and (wake is None or wake > frontier.now_ms()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the crawl did not settle: {frontier.status_counts(cid)}")


def records_by_url(archive: Path) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for path in sorted(archive.glob("*.warc.gz*")):
        for _ref, rec in iter_records(path):
            if rec.record_type in ("response", "revisit"):
                out.setdefault(rec.url, []).append(rec)
    return out


def test_revisit_cycles_fetch_conditionally_and_archive_only_what_changed(
    db_url: str, tmp_path: Path
) -> None:
    """Each cycle asks every page once; 304 and same-body 200 become revisit records, changes full captures."""
    with FreshSite() as site:
        site.publish("first")
        site.publish("second", validators=False)
        spec, text = fresh_spec(site, db_url, tmp_path)
        frontier = SqlFrontier(db_url)
        crawl = start_crawl(frontier, spec, text)
        cid = crawl.id
        pages = ["/about", "/list", "/post/1", "/post/2"]

        async def main() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(
                run_async(spec, frontier, crawl, progress=False, install_signals=False, stop=stop)
            )
            try:
                await settled(frontier, cid)
                assert site.pages() == pages
                assert [site.hits(p) for p in pages] == [1, 1, 1, 1]
                assert not task.done()  # a crawl with revisits is never finished
                # Cycle 2: a comment on post 1; the list page does not change.
                site.advance(60)
                site.comment(1, "a new comment")
                frontier._offset_ms += HOUR_MS + 1000  # the test moves the crawl's clock
                await settled(frontier, cid)
                assert [site.hits(p) for p in pages] == [2, 2, 2, 2]
                assert site.hits("/list", 304) == 1 and site.hits("/post/1", 200) == 2
                assert site.hits("/post/2", 200) == 2 and site.hits("/about", 200) == 2
                # Cycle 3: a new post; only it is new, fetched once.
                site.advance(60)
                site.publish("third")
                frontier._offset_ms += HOUR_MS + 1000
                await settled(frontier, cid)
                assert site.pages() == [*pages, "/post/3"]
                assert [site.hits(p) for p in pages] == [3, 3, 3, 3]
                assert site.hits("/post/3") == 1
                assert site.hits("/list", 200) == 2 and site.hits("/post/1", 304) == 1
                sched = frontier.revisit_schedule(cid)
                assert sched.found_new == 1 and sched.scheduled == 5
                assert not task.done()
            finally:
                stop.set()
                stats, finished = await asyncio.wait_for(task, 60)
            assert not finished and stats.revisits == 8 and stats.found_new == 1

        try:
            asyncio.run(main())
            recs = records_by_url(tmp_path / "warc")
            kinds = {
                u.rsplit("/", 2)[-1] if "/post/" in u else u.rsplit("/", 1)[-1]: [
                    (
                        r.record_type,
                        r.http_status,
                        (r.warc_headers.get("WARC-Profile") or "").rsplit("/", 1)[-1],
                    )
                    for r in sorted(rs, key=lambda r: r.date)
                ]
                for u, rs in recs.items()
            }
            full, nm, same = (
                ("response", 200, ""),
                ("revisit", 304, "server-not-modified"),
                (
                    "revisit",
                    200,
                    "identical-payload-digest",
                ),
            )
            assert kinds["list"] == [full, nm, full]
            assert kinds["1"] == [full, full, nm]
            assert kinds["2"] == [full, same, same]
            assert kinds["about"] == [full, same, same]
            assert kinds["3"] == [full]
            # Readers resolve a revisit to the payload it refers to: the newest content.
            caps = {c.url.rsplit("/", 1)[-1]: c for c in frontier.captures(cid)}
            assert set(caps) == {"list", "1", "2", "3", "about"}
            for name, needle in (("1", b"a new comment"), ("list", b"third"), ("2", b"second")):
                c = caps[name]
                rec = read_record(
                    tmp_path / "warc",
                    WarcRef(c.warc_file, c.warc_offset, c.warc_length, c.warc_record_id),
                )
                assert rec.record_type == "response" and needle in rec.body and c.http_status == 200
            events = [e for e in frontier.pending_events(cid) if e["kind"] == "new_pages"]
            assert len(events) == 1 and "1 new URL(s)" in events[0]["message"]
            assert "/list (+1)" in events[0]["message"]
            assert not [e for e in frontier.pending_events(cid) if e["kind"] == "finished"]
            with Hook() as hook:
                notifier = Notifier(NotifySpec(urls=[hook.url], events=["new_pages"]))
                assert notifier.send_pending(frontier, cid, "fresh") == 1
                assert notifier.send_pending(frontier, cid, "fresh") == 0
            assert [m["title"] for m in hook.received] == ["shoal: new pages in fresh"]
            assert "/list (+1)" in hook.received[0]["message"]
        finally:
            frontier.close()


# -- shoal crawl as a process: stays open, stops on SIGTERM, survives SIGKILL ---------------------

SHOAL = [sys.executable, "-m", "shoal"]


def wait_for(what: str, predicate: Any, timeout: float = 90.0) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def spawn_crawl(spec_path: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [*SHOAL, "crawl", str(spec_path), "--no-progress"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def rows_of(db: str) -> list[Any]:
    f = SqlFrontier(db, create=False)
    try:
        return f.query(select(urls))
    finally:
        f.close()


def test_crawl_with_revisits_keeps_running_until_sigterm_and_exits_0(tmp_path: Path) -> None:
    """`shoal crawl` does not end when every page is done but waits for the next due one; SIGTERM exits 0."""
    with FreshSite() as site:
        site.publish("first")
        db = f"sqlite:///{tmp_path / 'f.sqlite'}"
        spec_path = tmp_path / "spec.toml"
        spec_path.write_text(fresh_spec(site, db, tmp_path)[1])
        proc = spawn_crawl(spec_path, tmp_path / "crawl.log")
        try:
            wait_for(
                "every page fetched once",
                lambda: (
                    site.pages() == ["/about", "/list", "/post/1"]
                    and all(r.status == "done" for r in rows_of(db))
                ),
            )
            status = subprocess.run(
                [*SHOAL, "status", str(spec_path), "--json"],
                capture_output=True,
                text=True,
                timeout=60,
                stdin=subprocess.DEVNULL,
            )
            assert status.returncode == 0, status.stderr
            shown = json.loads(status.stdout)
            shown = shown[0] if isinstance(shown, list) else shown
            assert shown["revisits"]["scheduled"] == 3 and shown["revisits"]["due_now"] == 0
            assert 3000 < shown["revisits"]["next_due_in_s"] <= 3600
            assert proc.poll() is None, (tmp_path / "crawl.log").read_text()
            assert [site.hits(p) for p in site.pages()] == [1, 1, 1]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, (tmp_path / "crawl.log").read_text()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert {r.status for r in rows_of(db)} == {"done"}
        assert all(r.revisit_at is not None and r.lease_owner is None for r in rows_of(db))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_during_a_revisit_cycle_loses_nothing(backend: str, tmp_path: Path) -> None:
    """A worker killed while revisiting leaves no URL stuck: a restart revisits every page and every record reads back."""
    db, drop = make_db(backend, tmp_path)
    try:
        with FreshSite() as site:
            for i in range(12):
                site.publish(f"post {i}", validators=i % 2 == 0)
            spec_text = fresh_spec(site, db, tmp_path)[1].replace('"1h"', '"1s"')
            spec_text = spec_text.replace("delay = 0\n", "delay = 0.05\n")
            spec_path = tmp_path / "spec.toml"
            spec_path.write_text(spec_text)
            pages = ["/about", "/list", *(f"/post/{i}" for i in range(1, 13))]
            proc = spawn_crawl(spec_path, tmp_path / "crawl.log")
            try:
                wait_for(
                    "a revisit cycle under way",
                    lambda: site.hits("/list") >= 2 and len(site.log) >= 20,
                )
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                before = {p: site.hits(p) for p in pages}
                proc = spawn_crawl(spec_path, tmp_path / "crawl.log")
                wait_for(
                    "every page fetched again after the restart",
                    lambda: all(site.hits(p) >= before[p] + 2 for p in pages),
                    timeout=120,
                )
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(60) == 0, (tmp_path / "crawl.log").read_text()
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            rows = rows_of(db)
            assert sorted(r.url.split(":", 2)[2].split("/", 1)[1] for r in rows) == sorted(
                p[1:] for p in pages
            )
            assert all(r.lease_owner is None and r.status in ("done", "pending") for r in rows)
            archive = tmp_path / "warc"
            for r in rows:
                assert r.payload_record_id is not None and r.first_fetched_at is not None
                pay = read_record(
                    archive,
                    WarcRef(
                        r.payload_file, r.payload_offset, r.payload_length, r.payload_record_id
                    ),
                    verify_digests=True,
                )
                assert pay.record_type == "response" and pay.http_status == 200
                last = read_record(
                    archive, WarcRef(r.warc_file, r.warc_offset, r.warc_length, r.warc_record_id)
                )
                if last.record_type == "revisit":
                    assert last.warc_headers["WARC-Payload-Digest"] == r.payload_digest
    finally:
        drop()  # type: ignore[operator]


# -- submitting again ------------------------------------------------------------------------


def test_spec_changes_name_each_key_and_hide_secrets() -> None:
    """Changed keys are listed as old -> new, rules by name; header values and notify URLs stay hidden."""
    old = '[crawl]\nname = "c"\nseeds = ["http://a/"]\n[[rules]]\nname = "post"\nglob = "/p/*"\n'
    new = (
        '[crawl]\nname = "c"\nseeds = ["http://a/"]  # same\n[[rules]]\nname = "post"\n'
        'glob = "/p/*"\nrevisit = "1d"\n[scope.headers]\n"a" = { Cookie = "s=1" }\n'
    )
    assert spec_changes(old, old.replace("\n", "\n\n")) == []
    assert spec_changes(old, new) == [
        "rules[\"post\"].revisit: (unset) -> '1d'",
        "scope.headers.a.Cookie: changed (value hidden)",
    ]


def test_resubmitting_needs_replace_for_a_changed_spec_and_has_nothing_to_do_when_finished(
    tmp_path: Path,
) -> None:
    """A changed spec is refused without --replace, naming what changed; an identical finished crawl is left alone."""
    with FreshSite() as site:
        site.publish("first")
        db = f"sqlite:///{tmp_path / 'f.sqlite'}"
        text = fresh_spec(site, db, tmp_path)[1]
        once = text.replace('revisit = "1h"\n', "").replace('revisit_for = "30d"\n', "")
        spec_path = tmp_path / "spec.toml"
        spec_path.write_text(once)

        def shoal(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*SHOAL, *args],
                capture_output=True,
                text=True,
                timeout=120,
                stdin=subprocess.DEVNULL,
            )

        crawled = shoal("crawl", str(spec_path), "--no-progress")
        assert crawled.returncode == 0, crawled.stdout + crawled.stderr
        again = shoal("submit", str(spec_path), "--db", db)
        assert again.returncode == 0 and "nothing to do" in again.stdout
        f = SqlFrontier(db, create=False)
        try:
            assert f.get_crawl("fresh").state == "finished"
        finally:
            f.close()
        spec_path.write_text(once.replace("jitter = 0\n", "jitter = 0.1\n"))
        rerun = shoal("crawl", str(spec_path), "--no-progress")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert "politeness.jitter: 0 -> 0.1" in rerun.stderr  # said, then used
        spec_path.write_text(once.replace("delay = 0\n", "delay = 0.5\n"))
        refused = shoal("submit", str(spec_path), "--db", db)
        assert refused.returncode == 2
        assert "politeness.delay: 0 -> 0.5" in refused.stdout
        assert "--replace" in refused.stderr
        spec_path.write_text(text)
        replaced = shoal("submit", str(spec_path), "--db", db, "--replace")
        assert replaced.returncode == 0, replaced.stdout + replaced.stderr
        assert "rules[\"list\"].revisit: (unset) -> '1h'" in replaced.stdout
        reopened = shoal("submit", str(spec_path), "--db", db)
        assert reopened.returncode == 0 and "submitted" in reopened.stdout
        f = SqlFrontier(db, create=False)
        try:
            info = f.get_crawl("fresh")
            assert info.state == "running" and info.spec == text
        finally:
            f.close()


# -- incremental parse -----------------------------------------------------------------------

PARSE = """
[parse]
to = "jsonl"

[parse.tables.posts]
from = "post"

[parse.tables.posts.fields]
heading = { css = "h1.title", required = true }
comments = { css = "span.count", type = "int" }
"""


def test_incremental_parse_after_each_cycle_equals_a_full_parse(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After every revisit cycle `--incremental` parses only new captures and writes the table a full parse writes."""
    with FreshSite() as site:
        site.publish("first")
        site.publish("second", validators=False)
        db = f"sqlite:///{tmp_path / 'f.sqlite'}"
        text = fresh_spec(site, db, tmp_path)[1] + PARSE
        spec = parse_spec(text)
        frontier = SqlFrontier(db)
        crawl = start_crawl(frontier, spec, text)
        parsed: list[int] = []

        def both(n: int) -> list[dict[str, Any]]:
            inc = run_parse(spec, out=tmp_path / "inc", incremental=True, progress=False)
            run_parse(spec, out=tmp_path / f"full{n}", progress=False)
            a = (tmp_path / "inc" / "posts.jsonl").read_text()
            b = (tmp_path / f"full{n}" / "posts.jsonl").read_text()
            assert a == b
            parsed.append(inc.pages)
            return [json.loads(line) for line in a.splitlines()]

        async def main() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(
                run_async(spec, frontier, crawl, progress=False, install_signals=False, stop=stop)
            )
            try:
                await settled(frontier, crawl.id)
                rows = await asyncio.to_thread(both, 1)
                assert [(r["heading"], r["comments"]) for r in rows] == [
                    ("first", 0),
                    ("second", 0),
                ]
                site.advance(60)
                site.comment(1, "hello")
                site.publish("third")
                frontier._offset_ms += HOUR_MS + 1000
                await settled(frontier, crawl.id)
                rows = await asyncio.to_thread(both, 2)
                assert [(r["heading"], r["comments"]) for r in rows] == [
                    ("first", 1),
                    ("second", 0),
                    ("third", 0),
                ]
                # Cycle 3 changes nothing: 304s and unchanged payloads only.
                frontier._offset_ms += HOUR_MS + 1000
                await settled(frontier, crawl.id)
            finally:
                stop.set()
                await asyncio.wait_for(task, 60)

        try:
            caplog.set_level(logging.INFO, logger="shoal.parse.run")
            asyncio.run(main())
            assert "2 of 2 capture(s) parsed now" in caplog.text
            assert "3 of 3 capture(s) parsed now" in caplog.text  # all refetched in cycle 2
            run_parse(spec, out=tmp_path / "inc", incremental=True, progress=False)
            caplog.clear()
            run_parse(spec, out=tmp_path / "inc", incremental=True, progress=False)
            assert "0 of 3 capture(s) parsed now" in caplog.text
            # Every capture, revisit records resolved to the payload they refer to, at their own time.
            run_parse(spec, out=tmp_path / "all", all_captures=True, progress=False)
            every = [
                json.loads(line)
                for line in (tmp_path / "all" / "posts.jsonl").read_text().splitlines()
            ]
            seen: dict[str, list[int]] = {}
            for r in sorted(every, key=lambda r: r["fetched_at"]):
                seen.setdefault(r["heading"], []).append(r["comments"])
            assert seen == {"first": [0, 1, 1], "second": [0, 0, 0], "third": [0, 0]}
            assert len({(r["heading"], r["fetched_at"]) for r in every}) == len(every)
        finally:
            frontier.close()
        cache = sorted(p.name for p in (tmp_path / "inc").iterdir() if p.name.startswith("."))
        assert cache == [".shoal-incremental-posts.pickle"]
