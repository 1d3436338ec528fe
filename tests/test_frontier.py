"""The frontier contract, the same behavioural tests on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import select, text

from shoal.frontier import ClaimedURL, NewURL, Outcome, SqlFrontier, Status, SyncResult
from shoal.frontier.tables import urls
from shoal.urls import canonicalize


def new(
    url: str, *, depth: int = 0, status: Status = Status.PENDING, reason: str | None = None
) -> NewURL:
    c = canonicalize(url)
    return NewURL(
        c.url,
        c.url_key,
        c.host,
        c.host_key,
        0,
        "detail",
        depth,
        depth,
        status=status,
        skip_reason=reason,
    )


def sync(
    f: SqlFrontier,
    cid: int,
    owner: str,
    outcomes: list[Outcome] | None = None,
    *,
    claim: int = 10,
    lease_ms: int = 60_000,
    per_host: int = 1000,
    delay_ms: int = 0,
    horizon_ms: int = 2000,
    reap: bool = False,
) -> SyncResult:
    return f.sync(
        cid,
        owner,
        outcomes or [],
        claim=claim,
        lease_ms=lease_ms,
        per_host=per_host,
        default_delay_ms=delay_ms,
        jitter=0.0,
        horizon_ms=horizon_ms,
        reap=reap,
    )


def done(c: ClaimedURL, links: list[NewURL] | None = None) -> Outcome:
    return Outcome(
        c.id,
        c.lease_token,
        Status.DONE,
        host_key=c.host_key,
        http_status=200,
        fetched_at=int(time.time() * 1000),
        links=links or [],
    )


def rows(f: SqlFrontier, cid: int) -> dict[str, tuple[str, int]]:
    return {
        r.url: (r.status, r.lease_lost)
        for r in f.query(
            select(urls.c.url, urls.c.status, urls.c.lease_lost).where(urls.c.crawl_id == cid)
        )
    }


@pytest.fixture
def frontier(db_url: str) -> Iterator[SqlFrontier]:
    f = SqlFrontier(db_url)
    yield f
    f.close()


def test_add_is_idempotent_per_canonical_url(frontier: SqlFrontier) -> None:
    """The same canonical URL added twice (even spelled differently) is one row."""
    cid = frontier.open_crawl("c", "spec").id
    assert frontier.add_urls(cid, [new("http://a.test/x"), new("http://a.test/y")], 0) == 2
    frontier.add_urls(cid, [new("HTTP://A.test:80/x#frag")], 0)
    assert len(rows(frontier, cid)) == 2


def test_open_crawl_returns_the_same_crawl_and_updates_its_spec(frontier: SqlFrontier) -> None:
    """Opening a crawl twice by name gives one crawl; the newer spec text is kept."""
    a = frontier.open_crawl("c", "one")
    b = frontier.open_crawl("c", "two")
    assert a.id == b.id and b.spec == "two"
    assert frontier.get_crawl().name == "c"


def test_claim_leases_due_urls_in_priority_order(frontier: SqlFrontier) -> None:
    """A claim leases pending URLs, lower depth first, each with the claim's token."""
    cid = frontier.open_crawl("c", "s").id
    frontier.add_urls(
        cid, [new("http://a.test/deep", depth=3), new("http://a.test/top", depth=0)], 0
    )
    res = sync(frontier, cid, "w1", claim=1)
    assert [c.url for c in res.claimed] == ["http://a.test/top"]
    assert rows(frontier, cid)["http://a.test/top"][0] == "leased"
    assert sync(frontier, cid, "w2", claim=5).claimed[0].url == "http://a.test/deep"
    assert sync(frontier, cid, "w3", claim=5).claimed == []


def test_outcome_and_links_are_written_together_and_fenced(frontier: SqlFrontier) -> None:
    """A completed URL is done and its links are added; a re-delivered outcome is refused and adds nothing."""
    cid = frontier.open_crawl("c", "s").id
    frontier.add_urls(cid, [new("http://a.test/")], 0)
    c = sync(frontier, cid, "w1").claimed[0]
    links = [
        new("http://a.test/1", depth=1),
        new("http://a.test/2", depth=1),
        new("http://a.test/1", depth=1),
    ]
    res = sync(frontier, cid, "w1", [done(c, links)], claim=0)
    assert res.accepted == [True]
    again = sync(frontier, cid, "w1", [done(c, [*links, new("http://a.test/3")])], claim=0)
    assert again.accepted == [False]
    r = rows(frontier, cid)
    assert r["http://a.test/"][0] == "done"
    assert sorted(r) == ["http://a.test/", "http://a.test/1", "http://a.test/2"]


def test_expired_lease_is_reclaimed_and_the_stale_owner_cannot_complete(
    frontier: SqlFrontier,
) -> None:
    """After a lease expires another worker gets the URL; the first worker's late outcome is refused."""
    cid = frontier.open_crawl("c", "s").id
    frontier.add_urls(cid, [new("http://a.test/p")], 0)
    stale = sync(frontier, cid, "slow", lease_ms=50).claimed[0]
    time.sleep(0.15)
    res = sync(frontier, cid, "fast", reap=True)
    assert res.leases_reaped == 1
    fresh = res.claimed[0]
    assert fresh.id == stale.id and fresh.lease_token != stale.lease_token
    late = sync(
        frontier,
        cid,
        "slow",
        [Outcome(stale.id, stale.lease_token, Status.FAILED, error_class="transient")],
        claim=0,
    )
    assert late.accepted == [False]
    assert sync(frontier, cid, "fast", [done(fresh)], claim=0).accepted == [True]
    assert rows(frontier, cid)["http://a.test/p"] == ("done", 1)


def test_heartbeat_keeps_a_lease_alive(frontier: SqlFrontier) -> None:
    """A worker that heartbeats keeps its leases past their first expiry."""
    cid = frontier.open_crawl("c", "s").id
    frontier.register_worker(cid, "w1", hostname="h", ip=None, pid=1, version="t", concurrency=1)
    frontier.add_urls(cid, [new("http://a.test/p")], 0)
    c = sync(frontier, cid, "w1", lease_ms=300).claimed[0]
    for _ in range(3):
        time.sleep(0.15)
        assert frontier.heartbeat(cid, "w1", 300) == 1
    assert sync(frontier, cid, "other", lease_ms=300, reap=True).leases_reaped == 0
    assert sync(frontier, cid, "w1", [done(c)], claim=0).accepted == [True]


def test_lease_of_a_worker_that_stops_heartbeating_is_reaped(frontier: SqlFrontier) -> None:
    """A registered worker whose heartbeat is older than the lease loses its URLs to the next claimer."""
    cid = frontier.open_crawl("c", "s").id
    frontier.register_worker(cid, "w1", hostname="h", ip=None, pid=1, version="t", concurrency=1)
    frontier.add_urls(cid, [new("http://a.test/p")], 0)
    stale = sync(frontier, cid, "w1", lease_ms=200).claimed[0]
    time.sleep(0.3)
    res = sync(frontier, cid, "w2", lease_ms=200, reap=True)
    assert res.leases_reaped == 1 and res.claimed[0].id == stale.id
    assert sync(frontier, cid, "w1", [done(stale)], claim=0).accepted == [False]


def test_release_gives_leases_back_without_charging_an_attempt(frontier: SqlFrontier) -> None:
    """A clean stop returns leased URLs to pending with their attempt count unchanged."""
    cid = frontier.open_crawl("c", "s").id
    frontier.add_urls(cid, [new(f"http://a.test/{i}") for i in range(5)], 0)
    assert len(sync(frontier, cid, "w1").claimed) == 5
    assert frontier.release(cid, "w1") == 5
    again = sync(frontier, cid, "w2").claimed
    assert len(again) == 5 and all(c.attempts == 1 for c in again)


def test_retry_waits_for_its_time(frontier: SqlFrontier) -> None:
    """A URL sent back to pending with a retry time is not claimable before that time."""
    cid = frontier.open_crawl("c", "s").id
    frontier.add_urls(cid, [new("http://a.test/r")], 0)
    c = sync(frontier, cid, "w1").claimed[0]
    later = frontier.now_ms() + 400
    o = Outcome(c.id, c.lease_token, Status.PENDING, error_class="transient", next_attempt_at=later)
    sync(frontier, cid, "w1", [o], claim=0)
    assert sync(frontier, cid, "w1").claimed == []
    assert frontier.pending_left(cid)
    time.sleep(0.5)
    again = sync(frontier, cid, "w1").claimed
    assert len(again) == 1 and again[0].attempts == 2


def test_host_interval_holds_across_claims(frontier: SqlFrontier) -> None:
    """With a per-host delay, claims hand out one slot per interval, whoever claims."""
    cid = frontier.open_crawl("c", "s").id
    frontier.add_urls(cid, [new(f"http://slow.test/{i}") for i in range(6)], 300)
    first = sync(frontier, cid, "w1", delay_ms=300, horizon_ms=100).claimed
    assert len(first) == 1
    assert sync(frontier, cid, "w2", delay_ms=300, horizon_ms=100).claimed == []
    time.sleep(0.35)
    second = sync(frontier, cid, "w2", delay_ms=300, horizon_ms=100).claimed
    assert len(second) == 1
    assert second[0].not_before - first[0].not_before >= 300
    # A wider horizon reserves several slots at once, still one interval apart.
    many = sync(frontier, cid, "w3", delay_ms=300, horizon_ms=1000).claimed
    gaps = [b.not_before - a.not_before for a, b in itertools.pairwise(many)]
    assert len(many) == 3 and all(g >= 300 for g in gaps)


def test_per_host_concurrency_caps_leases(frontier: SqlFrontier) -> None:
    """No more URLs of one host are leased at once than its concurrency allows."""
    cid = frontier.open_crawl("c", "s").id
    frontier.add_urls(
        cid, [new(f"http://a.test/{i}") for i in range(10)] + [new("http://b.test/")], 0
    )
    got = sync(frontier, cid, "w1", claim=10, per_host=3).claimed
    assert Counter(c.url.split("/")[2] for c in got) == {"a.test": 3, "b.test": 1}
    assert sync(frontier, cid, "w2", claim=10, per_host=3).claimed == []


def test_host_pause_and_retry_after_move_the_next_slot(frontier: SqlFrontier) -> None:
    """A paused host and a Retry-After push the host's next claim into the future."""
    from shoal.frontier import HostUpdate

    cid = frontier.open_crawl("c", "s").id
    frontier.add_urls(cid, [new(f"http://a.test/{i}") for i in range(3)], 0)
    c = sync(frontier, cid, "w1", claim=1).claimed[0]
    hu = HostUpdate(c.host_key, not_before=frontier.now_ms() + 400)
    sync(frontier, cid, "w1", [Outcome(c.id, c.lease_token, Status.DONE, host_update=hu)], claim=0)
    assert sync(frontier, cid, "w1", claim=5, horizon_ms=0).claimed == []
    time.sleep(0.45)
    assert len(sync(frontier, cid, "w1", claim=5, horizon_ms=0).claimed) == 2


def test_concurrent_workers_complete_every_url_exactly_once(db_url: str) -> None:
    """Four workers with their own connections claim concurrently: every URL is completed once, none lost."""
    setup = SqlFrontier(db_url)
    cid = setup.open_crawl("c", "s").id
    n = 400
    setup.add_urls(cid, [new(f"http://h{i % 7}.test/{i}") for i in range(n)], 0)
    completed: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(name: str) -> None:
        f = SqlFrontier(db_url)
        try:
            pending: list[Outcome] = []
            for _ in range(500):
                res = sync(f, cid, name, pending, claim=8)
                with lock:
                    completed.extend(
                        o.url_id for o, ok in zip(pending, res.accepted, strict=True) if ok
                    )
                pending = [done(c) for c in res.claimed]
                if not res.claimed and not f.pending_left(cid):
                    break
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            f.close()

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(completed) == n and len(set(completed)) == n
    assert Counter(s for s, _ in rows(setup, cid).values()) == {"done": n}
    setup.close()


def test_claim_query_is_served_by_the_claim_index(frontier: SqlFrontier) -> None:
    """The per-host claim reads the claim index in order: no sort step (SQLite, MariaDB), no seq scan (PostgreSQL)."""
    cid = frontier.open_crawl("c", "s").id
    frontier.add_urls(cid, [new(f"http://a.test/{i}", depth=i % 5) for i in range(300)], 0)
    hk = canonicalize("http://a.test/").host_key
    sql = (
        f"SELECT id, url FROM urls WHERE crawl_id = {cid} AND host_key = {hk} AND status = 'pending' "
        f"AND next_attempt_at <= {frontier.now_ms()} ORDER BY priority, id LIMIT 10"
    )
    with frontier.engine.connect() as conn:
        if frontier.dialect == "sqlite":
            plan = " ".join(str(r[-1]) for r in conn.execute(text("EXPLAIN QUERY PLAN " + sql)))
            assert "ix_urls_claim" in plan and "TEMP B-TREE" not in plan, plan
        elif frontier.dialect == "postgresql":
            conn.execute(text("ANALYZE urls"))
            conn.execute(text("SET enable_seqscan = off"))
            plan = " ".join(r[0] for r in conn.execute(text("EXPLAIN " + sql)))
            assert "ix_urls_claim" in plan and "Sort" not in plan, plan
        else:
            conn.execute(text("ANALYZE TABLE urls"))
            plan = " ".join(str(r) for r in conn.execute(text("EXPLAIN " + sql)))
            assert "ix_urls_claim" in plan and "filesort" not in plan, plan
