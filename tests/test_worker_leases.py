"""A worker's leases against stops and outages (issue #14 section 4), with real ``shoal work`` processes.

- A worker started while the database is down waits for it (``--db-grace``)
  instead of exiting at once.
- A worker resumed after SIGSTOP does not fetch the URLs whose leases were
  reaped and taken by another worker meanwhile (SQLite and PostgreSQL).

The database outage that leases must survive is in ``test_crash_recovery.py``
(``test_workers_ride_out_a_database_outage_longer_than_their_lease``).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from shoal.frontier import SqlFrontier
from shoal.frontier.tables import urls
from tests.conftest import make_db
from tests.pg_private import PrivatePostgres
from tests.sites.graph import GraphSite
from tests.test_crash_recovery import (
    Fleet,
    _private_pg,
    check_crawl,
    count,
    submit,
    wait_for,
)


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A throwaway PostgreSQL server (trust authentication) that the test may stop and start."""
    yield from _private_pg()


@pytest.fixture
def graph_site() -> Iterator[Callable[..., GraphSite]]:
    """Starts graph sites that are stopped after the test."""
    started: list[GraphSite] = []

    def start(**kwargs: object) -> GraphSite:
        site = GraphSite(**kwargs).start()  # type: ignore[arg-type]
        started.append(site)
        return site

    yield start
    for s in started:
        s.stop()


@pytest.mark.postgres
def test_a_worker_started_before_its_database_waits_for_it(
    private_pg: PrivatePostgres, graph_site: Callable[..., GraphSite], tmp_path: Path
) -> None:
    """`shoal work` started while PostgreSQL is down retries (log says so) and crawls once it is up, exit 0."""
    site = graph_site(n=30)
    db = private_pg.create_database("late")
    crawl_id = submit(site, tmp_path, db, delay=0.0, lease=5.0, grace=60.0)
    private_pg.stop("fast")
    fleet = Fleet(db, tmp_path)
    try:
        w = fleet.spawn()
        wait_for(
            "the worker to say it is waiting for the database",
            lambda: "frontier database unreachable" in w.output(),
            30,
        )
        assert w.proc.poll() is None, w.output()[-3000:]
        private_pg.start()
        fleet.wait(90)
        assert not fleet.failed(), w.output()[-3000:]
    finally:
        fleet.close()
    assert w.proc.returncode == 0, w.output()[-3000:]
    check_crawl(site, db, crawl_id, tmp_path / "warc")


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_resumed_worker_does_not_fetch_leases_reaped_while_it_was_stopped(
    backend: str, graph_site: Callable[..., GraphSite], tmp_path: Path
) -> None:
    """SIGSTOP a worker holding queued leases; another owner reaps and claims them; after SIGCONT the worker fetches none of them and says so."""
    # 30 pages are enough for a queue of leases; a longer crawl after the check proves nothing more.
    site = graph_site(n=30)
    db, drop = make_db(backend, tmp_path)
    try:
        lease = 2.0
        crawl_id = submit(
            site, tmp_path, db, delay=0.15, per_host=16, concurrency=4, lease=lease, batch=24
        )
        fleet = Fleet(db, tmp_path)
        done = select(func.count()).select_from(urls).where(urls.c.status == "done")
        leased = select(func.count()).select_from(urls).where(urls.c.status == "leased")
        f = SqlFrontier(db, create=False)
        try:
            a = fleet.spawn()
            wait_for(
                "worker A to hold a queue of leases",
                lambda: count(db, done) >= 3 and count(db, leased) >= 5,
                60,
                0.02,
            )
            os.killpg(a.proc.pid, signal.SIGSTOP)
            stolen: set[str] = set()

            def steal() -> bool:
                # Another owner reaps A's expired leases (A's heartbeat is silent for a lease
                # period), then claims them for a long time.
                kw: dict[str, Any] = {"per_host": 100, "default_delay_ms": 0, "jitter": 0.0}
                res = f.sync(
                    crawl_id, "another", [], claim=0, lease_ms=int(lease * 1000), reap=True, **kw
                )
                if not res.leases_reaped:
                    return False
                res = f.sync(
                    crawl_id, "another", [], claim=100, lease_ms=600_000, horizon_ms=600_000, **kw
                )
                stolen.update(c.url for c in res.claimed)
                return True

            wait_for("A's leases to be reaped", steal, 30, 0.2)
            os.killpg(a.proc.pid, signal.SIGCONT)
            resumed_at = time.monotonic()
            wait_for(
                "A to notice its leases were taken back",
                lambda: "taken back while this worker was not heard from" in a.output(),
                30,
            )
            late = [
                f"http://{h}:{site.ports[h]}{p}" for t, h, p in list(site.hits) if t >= resumed_at
            ]
            assert stolen and not stolen.intersection(late), sorted(stolen.intersection(late))
            f.release(crawl_id, "another")  # A may now finish the crawl
            fleet.wait(120)
            assert not fleet.failed(), a.output()[-3000:]
        finally:
            f.close()
            fleet.close()
        check_crawl(site, db, crawl_id, tmp_path / "warc")
    finally:
        drop()  # type: ignore[operator]
