"""The frontier's status reads on SQLite, PostgreSQL and MariaDB: true numbers, read in one consistent frame."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from shoal.frontier import Outcome, SqlFrontier, Status, read_status
from shoal.frontier.tables import urls
from tests.test_frontier import done, new, sync


@pytest.fixture
def frontier(db_url: str):
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
