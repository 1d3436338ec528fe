"""Status tells the truth: after a crawl with SIGKILLed workers, every number equals the URL rows (three backends)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shoal.frontier import SqlFrontier
from shoal.frontier.tables import urls
from tests.sites.graph import GraphSite
from tests.test_crash_recovery import Fleet, graph_site, lease_holders, submit

__all__ = ["assert_status_is_true", "graph_site"]


def assert_status_is_true(db: str, crawl_id: int) -> None:
    """The status frame's totals, worker counters and crawl counters equal what the URL rows say."""
    f = SqlFrontier(db, create=False)
    try:
        snap = f.status(crawl_id, top_hosts=1000)
        u = urls.c
        own = {
            s: int(n)
            for s, n in f.query(
                select(u.status, func.count()).where(u.crawl_id == crawl_id).group_by(u.status)
            )
        }
        assert {s: n for s, n in snap.counts.items() if n} == own
        for s, n in snap.counts.items():
            assert sum(h.counts[s] for h in snap.hosts) == n
        by_worker = {
            w: int(n)
            for w, n in f.query(
                select(u.fetched_by, func.count())
                .where(u.crawl_id == crawl_id, u.status == "done")
                .group_by(u.fetched_by)
            )
        }
        assert {w.id: w.pages_done for w in snap.workers if w.pages_done} == by_worker
        lost, archived = f.query(
            select(
                func.coalesce(func.sum(u.lease_lost), 0), func.coalesce(func.sum(u.warc_length), 0)
            ).where(u.crawl_id == crawl_id)
        )[0]
        assert snap.leases_reaped == int(lost)
        assert snap.bytes_archived == int(archived)
        assert snap.fetched == own.get("done", 0)
        assert sum(b.done for b in snap.throughput) == own.get("done", 0)
    finally:
        f.close()


@pytest.mark.slow
def test_status_is_true_after_workers_are_killed(
    db_url: str, graph_site: Callable[..., GraphSite], tmp_path: Path
) -> None:
    """Workers SIGKILLed mid-crawl: totals, per-worker pages and crawl counters still equal the URL rows."""
    rng = random.Random(7)
    site = graph_site(n=150, hosts=("127.0.0.2", "127.0.0.3"))
    crawl_id = submit(site, tmp_path, db_url, delay=0.05, lease=2.0, grace=30.0)
    fleet = Fleet(db_url, tmp_path)
    watcher = SqlFrontier(db_url, create=False)
    kills = 0
    deadline = time.monotonic() + 240
    try:
        for _ in range(3):
            fleet.spawn()
        while watcher.pending_left(crawl_id):
            assert time.monotonic() < deadline, f"crawl not finished ({kills} kills)"
            failed = fleet.failed()
            assert not failed, failed[0].output()[-3000:]
            holding = lease_holders(watcher, crawl_id)
            victims = [w for w in fleet.alive() if w.proc.pid in holding]
            if kills < 2 and victims and watcher.status_counts(crawl_id)["done"] > 40 * (kills + 1):
                fleet.kill(rng.choice(victims))
                kills += 1
                fleet.spawn()
            time.sleep(0.1)
        fleet.wait(60)
        assert not fleet.failed(), fleet.failed()[0].output()[-3000:]
    finally:
        watcher.close()
        fleet.close()
    assert kills == 2, "the crawl ended before the workers could be killed"
    assert_status_is_true(db_url, crawl_id)
