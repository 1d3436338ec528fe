"""The frontier's status reads on SQLite, PostgreSQL and MariaDB: true numbers, read in one consistent frame."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from shoal.frontier import Outcome, SqlFrontier, Status, read_status
from shoal.frontier.tables import urls
from tests.test_frontier import done, new, sync


@pytest.fixture
def frontier(db_url: str) -> Iterator[SqlFrontier]:
    f = SqlFrontier(db_url)
    yield f
    f.close()


def own_counts(f: SqlFrontier, cid: int) -> dict[str, int]:
    q = select(urls.c.status, func.count()).where(urls.c.crawl_id == cid).group_by(urls.c.status)
    return {s: int(n) for s, n in f.query(q)}


def test_status_numbers_equal_the_frontier_rows(frontier: SqlFrontier) -> None:
    """Totals by status, error class, skip reason, HTTP status, hosts and last errors match the URL rows."""
    cid = frontier.open_crawl("c", "s").id
    seeds = [new(f"http://a.test/{i}") for i in range(6)] + [
        new(f"http://b.test/{i}") for i in range(3)
    ]
    seeds.append(new("http://a.test/deep", status=Status.SKIPPED, reason="max_depth"))
    frontier.add_urls(cid, seeds, 0)
    frontier.register_worker(cid, "w1", hostname="h", ip=None, pid=1, version="t", concurrency=4)
    claimed = sync(frontier, cid, "w1", claim=20).claimed
    now = frontier.now_ms()
    outcomes: list[Outcome] = []
    for i, c in enumerate(claimed):
        if i < 4:
            outcomes.append(done(c))
        elif i < 6:
            outcomes.append(
                Outcome(
                    c.id,
                    c.lease_token,
                    Status.FAILED,
                    host_key=c.host_key,
                    error_class="http",
                    error_detail="HTTP 404",
                    http_status=404,
                    fetched_at=now,
                )
            )
        elif i == 6:
            outcomes.append(
                Outcome(
                    c.id,
                    c.lease_token,
                    Status.PENDING,
                    host_key=c.host_key,
                    error_class="timeout",
                    fetched_at=now,
                    next_attempt_at=now + 3_600_000,
                )
            )
    sync(frontier, cid, "w1", outcomes, claim=0)

    snap = read_status(frontier, cid)
    assert snap.counts == {
        **dict.fromkeys(("pending", "leased", "done", "failed", "skipped"), 0),
        **own_counts(frontier, cid),
    }
    assert snap.counts["done"] == 4 and snap.counts["failed"] == 2 and snap.counts["leased"] == 2
    assert snap.total == 10
    assert snap.fetched == 4
    assert snap.failed == {"http": 2}
    assert snap.skipped == {"max_depth": 1}
    assert snap.http_status == {200: 4, 404: 2}
    assert snap.due_now == 0 and snap.next_due_ms == now + 3_600_000
    assert sum(b.done for b in snap.throughput) == 4
    assert sum(b.failed for b in snap.throughput) == 2
    assert {k: v for b in snap.throughput for k, v in b.errors.items()} == {"http": 2}
    by_host = {h.host: h for h in snap.hosts}
    assert set(by_host) == {"a.test", "b.test"}
    for s in snap.counts:
        assert sum(h.counts[s] for h in snap.hosts) == snap.counts[s]
    assert {e.url for e in snap.last_errors} == {c.url for c in claimed[4:7]}, (
        "errors carry the full URL"
    )
    assert {e.status for e in snap.last_errors} == {"failed", "pending"}
    assert [w.id for w in snap.workers] == ["w1"]


def test_a_status_frame_is_consistent_under_concurrent_writes(frontier: SqlFrontier) -> None:
    """While workers complete URLs, every frame's hosts add up to its totals and its done count to the crawl counter."""
    cid = frontier.open_crawl("c", "s").id
    hosts = [f"h{i}.test" for i in range(8)]
    frontier.add_urls(cid, [new(f"http://{h}/{i}") for h in hosts for i in range(150)], 0)
    stop = threading.Event()
    turns = threading.Semaphore(0)  # each frame lets one sync through, so frames see the crawl move
    errors: list[BaseException] = []

    def work(owner: str) -> None:
        f = SqlFrontier(frontier.url, create=False)
        try:
            pending: list[Outcome] = []
            while not stop.is_set():
                turns.acquire(timeout=5)
                res = sync(f, cid, owner, pending, claim=8)
                pending = [done(c) for c in res.claimed]
                if not res.claimed and not pending:
                    break
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            f.close()

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    frames = 0
    moving = 0
    last_done = -1
    deadline = time.monotonic() + 300
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        snap = frontier.status(cid, top_hosts=100)
        frames += 1
        assert snap.total == 1200
        assert snap.fetched == snap.counts["done"], snap
        for s, n in snap.counts.items():
            assert sum(h.counts[s] for h in snap.hosts) == n, (s, snap.counts, snap.hosts)
        assert sum(b.done for b in snap.throughput) == snap.counts["done"]
        if 0 < snap.counts["done"] < 1200 and snap.counts["done"] != last_done:
            moving += 1
        last_done = snap.counts["done"]
        turns.release()
    stop.set()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert frames > 0 and moving > 0, "frames were read while the crawl moved"
    assert {s: n for s, n in frontier.status_counts(cid).items() if n} == own_counts(frontier, cid)


def test_status_queries_are_served_by_indexes(frontier: SqlFrontier) -> None:
    """Every query of a status frame on ``urls`` reads an index: no full table scan on any backend."""
    from sqlalchemy import event

    cid = frontier.open_crawl("c", "s").id
    frontier.add_urls(cid, [new(f"http://h{i % 40}.test/{i}") for i in range(3000)], 0)
    claimed = sync(frontier, cid, "w", claim=400).claimed
    sync(frontier, cid, "w", [done(c) for c in claimed], claim=0)
    seen: list[tuple[str, Any]] = []

    def grab(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        if " urls" in statement and statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(frontier.engine, "before_cursor_execute", grab)
    try:
        frontier.status(cid)
    finally:
        event.remove(frontier.engine, "before_cursor_execute", grab)
    assert len(seen) >= 8, seen
    assert_no_full_scan_of_urls(frontier, seen)


def test_claim_and_complete_queries_are_served_by_indexes(frontier: SqlFrontier) -> None:
    """Every SELECT of a sync (complete, claim) that reads ``urls`` probes an index: no full scan (MariaDB's EXISTS semi-join was one)."""
    from sqlalchemy import event

    cid = frontier.open_crawl("c", "s").id
    frontier.add_urls(cid, [new(f"http://h{i % 40}.test/{i}") for i in range(3000)], 0)
    held = [done(c) for c in sync(frontier, cid, "w", claim=32).claimed]
    seen: list[tuple[str, Any]] = []

    def grab(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        if " urls" in statement and statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(frontier.engine, "before_cursor_execute", grab)
    try:
        sync(frontier, cid, "w", held, claim=32, reap=True)
    finally:
        event.remove(frontier.engine, "before_cursor_execute", grab)
    assert any("hosts" in st for st, _ in seen), seen
    assert_no_full_scan_of_urls(frontier, seen)


def assert_no_full_scan_of_urls(frontier: SqlFrontier, seen: list[tuple[str, Any]]) -> None:
    """EXPLAIN each statement with its parameters: no plan reads the whole ``urls`` table."""
    from sqlalchemy import text

    with frontier.engine.connect() as conn:
        if frontier.dialect == "postgresql":
            conn.execute(text("ANALYZE urls"))
            conn.execute(text("SET enable_seqscan = off"))
        elif frontier.dialect == "mysql":
            conn.execute(text("ANALYZE TABLE urls"))
        for statement, params in seen:
            if frontier.dialect == "sqlite":
                plan = [
                    str(r[-1])
                    for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
                ]
                bare = [p for p in plan if p.startswith("SCAN urls") and "INDEX" not in p]
                assert not bare, (statement, plan)
            elif frontier.dialect == "postgresql":
                text_plan = " ".join(
                    r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, params).all()
                )
                assert "Seq Scan on urls" not in text_plan, (statement, text_plan)
            else:
                maps = conn.exec_driver_sql("EXPLAIN " + statement, params).mappings().all()
                full = [r for r in maps if r["table"] == "urls" and r["type"] == "ALL"]
                assert not full, (statement, maps)


def test_max_pages_is_a_crawl_wide_budget(frontier: SqlFrontier) -> None:
    """Three workers claiming at once never take more than max_pages; the rest becomes skipped (max_pages)."""
    cid = frontier.open_crawl("c", "s", max_pages=10).id
    frontier.add_urls(cid, [new(f"http://h{i % 5}.test/{i}") for i in range(60)], 0)
    held: dict[str, list[Outcome]] = {"a": [], "b": [], "c": []}
    leased_total = 0
    for _ in range(20):
        for owner in held:
            res = sync(frontier, cid, owner, held[owner], claim=4)
            held[owner] = [done(c) for c in res.claimed]
            leased_total += len(res.claimed)
            counts = frontier.status_counts(cid)
            assert counts["done"] + counts["leased"] <= 10, counts
    counts = frontier.status_counts(cid)
    assert counts["done"] == 10 and leased_total == 10
    assert counts["pending"] == 0 and counts["skipped"] == 50
    snap = frontier.status(cid)
    assert snap.skipped == {"max_pages": 50} and snap.fetched == 10 and snap.max_pages == 10


def test_failed_pages_give_their_budget_back(frontier: SqlFrontier) -> None:
    """A URL that fails does not spend the page budget: another URL is claimed in its place."""
    cid = frontier.open_crawl("c", "s", max_pages=2).id
    frontier.add_urls(cid, [new(f"http://a.test/{i}") for i in range(5)], 0)
    first = sync(frontier, cid, "w", claim=5).claimed
    assert len(first) == 2
    failed = Outcome(first[0].id, first[0].lease_token, Status.FAILED, error_class="http")
    second = sync(frontier, cid, "w", [failed, done(first[1])], claim=5).claimed
    assert len(second) == 1
    sync(frontier, cid, "w", [done(second[0])], claim=5)
    assert frontier.status_counts(cid) == {
        "pending": 0,
        "leased": 0,
        "done": 2,
        "failed": 1,
        "skipped": 2,
    }


def test_worker_counters_count_the_outcomes_each_sync_applied(frontier: SqlFrontier) -> None:
    """A worker's row counts exactly the outcomes its syncs committed: fenced ones are not counted."""
    cid = frontier.open_crawl("c", "s").id
    for w in ("w1", "w2"):
        frontier.register_worker(cid, w, hostname="h", ip=None, pid=1, version="t", concurrency=1)
    frontier.add_urls(cid, [new(f"http://a.test/{i}") for i in range(4)], 0)
    c1, c2, c3, c4 = sync(frontier, cid, "w1", claim=4).claimed
    ok = done(c1)
    ok.warc_length = 500
    bad = Outcome(c2.id, c2.lease_token, Status.FAILED, error_class="http", warc_length=100)
    stale = done(c3)
    stale.lease_token += 1  # a lease w1 no longer holds: refused, not counted
    sync(frontier, cid, "w1", [ok, bad, stale], claim=0)
    sync(frontier, cid, "w1", [done(c3)], claim=0)
    frontier.stop_worker("w1")
    rows = {w.id: w for w in frontier.status(cid).workers}
    w1 = rows["w1"]
    assert (w1.pages_done, w1.pages_failed, w1.bytes_archived, w1.state) == (2, 1, 600, "stopped")
    assert (rows["w2"].pages_done, rows["w2"].pages_failed) == (0, 0)
    assert sum(w.pages_done for w in rows.values()) == frontier.status_counts(cid)["done"]
    assert c4.id


def test_counters_of_the_crawl_row_match_the_url_rows(frontier: SqlFrontier) -> None:
    """Bytes archived, retries scheduled and leases reaped are counted as the URL rows change."""
    cid = frontier.open_crawl("c", "s").id
    frontier.add_urls(cid, [new(f"http://a.test/{i}") for i in range(4)], 0)
    c1, c2, c3, c4 = sync(frontier, cid, "gone", claim=4, lease_ms=1).claimed
    ok = done(c1)
    ok.warc_length = 1000
    retry = Outcome(
        c2.id,
        c2.lease_token,
        Status.PENDING,
        error_class="timeout",
        next_attempt_at=frontier.now_ms() + 3_600_000,
    )
    sync(frontier, cid, "gone", [ok, retry], claim=0)
    time.sleep(0.01)  # the 1 ms leases of c3, c4 are over (their owner never registered)
    res = sync(frontier, cid, "other", claim=0, reap=True)
    assert res.leases_reaped == 2
    snap = frontier.status(cid)
    assert (snap.bytes_archived, snap.retried, snap.leases_reaped) == (1000, 1, 2)
    total_lost = sum(int(r[0]) for r in frontier.query(select(urls.c.lease_lost)))
    assert total_lost == snap.leases_reaped
    assert {c3.id, c4.id} <= {
        int(r[0]) for r in frontier.query(select(urls.c.id).where(urls.c.status == "pending"))
    }
