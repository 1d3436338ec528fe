"""Many workers, one database: crashes, a lost database, idempotent writes and hidden credentials.

The crash tests run ``shoal work`` processes against a private PostgreSQL
server (:mod:`tests.pg_private`) that they kill, stop and restart at will; the
machine's shared server is never touched. The idempotency tests run on every
backend through the ``db_url`` fixture.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from shoal.archive import WarcRef, read_record, recover
from shoal.errors import DatabaseUnavailable
from shoal.frontier import ClaimedURL, NewURL, Outcome, SqlFrontier, Status, SyncResult
from shoal.frontier.dialects import is_retryable, is_unavailable, make_engine
from shoal.frontier.tables import events, hosts, urls, workers
from shoal.urls import canonicalize
from tests.conftest import missing
from tests.pg_private import PgUnavailable, PrivatePostgres
from tests.sites.graph import GraphSite

SHOAL = [sys.executable, "-m", "shoal"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "250", "SHOAL_DEBUG": ""}


# ---------------------------------------------------------------------------
# Fixtures and helpers.
# ---------------------------------------------------------------------------


def _private_pg(**kwargs: str) -> Iterator[PrivatePostgres]:
    try:
        pg = PrivatePostgres(**kwargs)  # type: ignore[arg-type]
    except PgUnavailable as exc:
        missing("a private PostgreSQL server", f"{exc}; install postgresql-15 (initdb, pg_ctl)")
    try:
        pg.start()
        yield pg
    finally:
        pg.close()


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A throwaway PostgreSQL server (trust authentication) that the test may stop and restart."""
    yield from _private_pg()


@pytest.fixture
def private_pg_scram() -> Iterator[PrivatePostgres]:
    """A throwaway PostgreSQL server whose TCP connections need a password (scram-sha-256)."""
    yield from _private_pg(auth_host="scram-sha-256")


@pytest.fixture
def graph_site() -> Iterator[Callable[..., GraphSite]]:
    """Starts graph sites that are stopped after the test."""
    started: list[GraphSite] = []

    def start(**kwargs: Any) -> GraphSite:
        site = GraphSite(**kwargs).start()
        started.append(site)
        return site

    yield start
    for s in started:
        s.stop()


def crawl_spec(
    site: GraphSite,
    data: Path,
    *,
    name: str = "crash",
    delay: float = 0.0,
    per_host: int = 4,
    concurrency: int = 4,
    lease: float = 3.0,
    grace: float = 30.0,
    batch: int = 0,
) -> str:
    """A crawl of the graph site with short leases, a fleet-wide per-host delay and a DB grace period."""
    seeds = ", ".join(f'"{site.url(h)}"' for h in site.hosts)
    allowed = ", ".join(f'"{h}:{site.ports[h]}"' for h in site.hosts)
    return f"""
[crawl]
name = "{name}"
seeds = [{seeds}]

[scope]
allowed_hosts = [{allowed}]
allow_private = true

[politeness]
delay = {delay}
jitter = 0.1
concurrency_per_host = {per_host}

[limits]
max_depth = 100000
fetch_timeout = 10

[storage]
archive = "{data}/warc"
fsync = false

[worker]
concurrency = {concurrency}
lease_seconds = {lease}
claim_batch = {batch}
flush_interval = 0.1
db_grace_seconds = {grace}
"""


def shoal(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the shoal command to its end and capture its output."""
    return subprocess.run(
        [*SHOAL, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        stdin=subprocess.DEVNULL,
    )


def submit(site: GraphSite, tmp_path: Path, db: str, **spec: object) -> int:
    """Write the spec, ``shoal submit`` it to ``db``; returns the crawl id."""
    path = tmp_path / "crawl.toml"
    path.write_text(crawl_spec(site, tmp_path, **spec))  # type: ignore[arg-type]
    res = shoal("submit", str(path), "--db", db)
    assert res.returncode == 0, res.stdout + res.stderr
    f = SqlFrontier(db, create=False)
    try:
        return f.get_crawl().id
    finally:
        f.close()


@dataclass
class WorkerProc:
    """One ``shoal work`` process and where its output goes."""

    proc: subprocess.Popen[bytes]
    log: Path
    killed: bool = False

    def output(self) -> str:
        """Everything the process printed so far."""
        return self.log.read_text(errors="replace")


@dataclass
class Fleet:
    """``shoal work`` processes that the test starts, kills and always cleans up."""

    db: str
    logs: Path
    procs: list[WorkerProc] = field(default_factory=list)

    def spawn(self) -> WorkerProc:
        """Start one worker (its own session, output to a file)."""
        log = self.logs / f"worker-{len(self.procs)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [*SHOAL, "work", "--db", self.db],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=ENV,
                start_new_session=True,
            )
        w = WorkerProc(proc, log)
        self.procs.append(w)
        return w

    def alive(self) -> list[WorkerProc]:
        """The workers still running."""
        return [w for w in self.procs if w.proc.poll() is None]

    def kill(self, w: WorkerProc) -> None:
        """SIGKILL one worker (no chance to give anything back) and reap it."""
        w.killed = True
        with _suppress_gone():
            os.killpg(w.proc.pid, signal.SIGKILL)
        w.proc.wait(10)

    def failed(self) -> list[WorkerProc]:
        """Workers that exited with an error without having been killed."""
        return [w for w in self.procs if not w.killed and w.proc.poll() not in (None, 0)]

    def wait(self, timeout: float) -> None:
        """Wait for every worker to exit on its own; fails (after killing them) past ``timeout``."""
        deadline = time.monotonic() + timeout
        for w in self.procs:
            try:
                w.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(
                    f"worker {w.proc.pid} did not exit within {timeout:.0f}s:\n{w.output()[-3000:]}"
                )

    def close(self) -> None:
        """Kill whatever still runs (the test's ``finally``)."""
        for w in self.alive():
            with _suppress_gone():
                os.killpg(w.proc.pid, signal.SIGKILL)
            w.proc.wait(10)


class _suppress_gone:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> bool:
        return exc_type is not None and issubclass(exc_type, ProcessLookupError | PermissionError)


def frontier_rows(db: str, crawl_id: int) -> dict[str, tuple[str, int, WarcRef | None]]:
    """url -> (status, lease_lost, archive ref) for every URL of the crawl."""
    f = SqlFrontier(db, create=False)
    try:
        q = select(
            urls.c.url,
            urls.c.status,
            urls.c.lease_lost,
            urls.c.warc_file,
            urls.c.warc_offset,
            urls.c.warc_length,
            urls.c.warc_record_id,
        ).where(urls.c.crawl_id == crawl_id)
        out: dict[str, tuple[str, int, WarcRef | None]] = {}
        for r in f.query(q):
            ref = (
                WarcRef(r.warc_file, r.warc_offset, r.warc_length, r.warc_record_id)
                if r.warc_file
                else None
            )
            out[r.url] = (r.status, r.lease_lost, ref)
        return out
    finally:
        f.close()


def page_hits(site: GraphSite) -> Counter[str]:
    """How often the server answered each page, keyed by the page's absolute URL."""
    return Counter(
        f"http://{h}:{site.ports[h]}{p}" for _, h, p in list(site.hits) if p.startswith("/p/")
    )


def check_crawl(site: GraphSite, db: str, crawl_id: int, archive: Path) -> tuple[int, int]:
    """Every page done, served at least once, duplicates only where a lease was lost, archived.

    Returns (duplicate fetches, leases lost).
    """
    rows = frontier_rows(db, crawl_id)
    expected = {site.url(h, f"/p/{i}") for h in site.hosts for i in range(site.n)}
    assert set(rows) == expected
    not_done = {u: r[0] for u, r in rows.items() if r[0] != "done"}
    assert not_done == {}, f"{len(not_done)} URLs not done: {list(not_done.items())[:10]}"
    hits = page_hits(site)
    assert set(hits) == expected, f"never served: {sorted(expected - set(hits))[:10]}"
    dupes = {u: c - 1 for u, c in hits.items() if c > 1}
    unexplained = {u: (extra, rows[u][1]) for u, extra in dupes.items() if extra > rows[u][1]}
    assert unexplained == {}, (
        f"fetched again without a lost lease (extra fetches, lease_lost): {unexplained}"
    )
    # Every done URL's response is in the archive where the frontier says (killed writers' files recovered).
    recover(archive)
    for u, (_, _, ref) in rows.items():
        assert ref is not None, u
        rec = read_record(archive, ref)
        assert rec.url == u and rec.http_status == 200
    return sum(dupes.values()), sum(r[1] for r in rows.values())


def lease_holders(f: SqlFrontier, crawl_id: int) -> set[int]:
    """The pids of the workers holding leases right now (empty while the database is away)."""
    q = select(workers.c.pid).where(
        workers.c.crawl_id == crawl_id,
        workers.c.id.in_(
            select(urls.c.lease_owner).where(urls.c.crawl_id == crawl_id, urls.c.status == "leased")
        ),
    )
    try:
        return {r.pid for r in f.query(q)}
    except DatabaseUnavailable:
        return set()


def wait_for(
    what: str, predicate: Callable[[], bool], timeout: float, interval: float = 0.1
) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def count(db: str, q: object) -> int:
    """The single integer a COUNT/SUM query returns (0 for NULL)."""
    f = SqlFrontier(db, create=False)
    try:
        return int(f.query(q)[0][0] or 0)
    finally:
        f.close()


# ---------------------------------------------------------------------------
# Crashes: SIGKILLed workers and a database crash in the middle of a crawl.
# ---------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.slow
def test_killed_workers_and_a_database_crash_lose_no_url(
    private_pg: PrivatePostgres, graph_site: Callable[..., GraphSite], tmp_path: Path
) -> None:
    """Workers SIGKILLed at random and one DB crash: every URL done, duplicates only where a lease was lost."""
    seed = int(os.environ.get("SHOAL_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    site = graph_site(n=120, hosts=("127.0.0.2", "127.0.0.3"))
    db = private_pg.create_database("crash")
    crawl_id = submit(site, tmp_path, db, delay=0.08, lease=3.0, grace=30.0)
    fleet = Fleet(db, tmp_path)
    watcher = SqlFrontier(db, create=False)
    kills, crashed_at = 0, None
    t0 = time.monotonic()
    try:
        for _ in range(3):
            fleet.spawn()
        next_kill = t0 + rng.uniform(1.0, 2.5)
        while True:
            now = time.monotonic()
            # Only a guard against a crawl that never ends (it takes ~15 s idle), to report the seed.
            assert now - t0 < 240, f"crawl not finished after 240s (seed {seed}, {kills} kills)"
            failed = fleet.failed()
            assert not failed, f"a worker failed (seed {seed}):\n{failed[0].output()[-3000:]}"
            try:
                if not watcher.pending_left(crawl_id):
                    break
            except DatabaseUnavailable:
                pass
            alive = fleet.alive()
            if kills < 6 and now >= next_kill and alive:
                # A worker holding leases is the interesting victim (one still starting holds nothing).
                holding = lease_holders(watcher, crawl_id)
                fleet.kill(rng.choice([w for w in alive if w.proc.pid in holding] or alive))
                kills += 1
                next_kill = now + rng.uniform(0.8, 2.0)
            if crashed_at is None and kills >= 2:
                # The server dies like a crash (no checkpoint, sessions cut) and comes back at once.
                crashed_at = now - t0
                private_pg.stop("immediate")
                time.sleep(0.3)
                private_pg.start()
            while len(fleet.alive()) < 3:
                fleet.spawn()
            time.sleep(0.1)
        elapsed = time.monotonic() - t0
        # Nothing is left to do: the workers still running notice it and exit on their own, cleanly.
        fleet.wait(20)
        assert not fleet.failed(), f"seed {seed}:\n{fleet.failed()[0].output()[-3000:]}"
    finally:
        watcher.close()
        fleet.close()
    assert crashed_at is not None and kills >= 3, (
        f"the crawl ended too early to test anything ({kills} kills)"
    )
    for w in fleet.procs:
        if not w.killed:
            assert "Traceback" not in w.output(), w.output()[-3000:]
    dupes, lost = check_crawl(site, db, crawl_id, tmp_path / "warc")
    assert lost >= 1, "killed workers held leases: some must have been lost and counted"
    print(
        f"seed {seed}: {kills} kills, DB crash at {crashed_at:.1f}s, {len(fleet.procs)} workers, "
        f"{elapsed:.1f}s, {dupes} duplicate fetches, {lost} leases lost"
    )


@pytest.mark.postgres
@pytest.mark.slow
def test_workers_ride_out_a_database_outage_longer_than_their_lease(
    private_pg: PrivatePostgres, graph_site: Callable[..., GraphSite], tmp_path: Path
) -> None:
    """The DB is down longer than the lease but shorter than the grace: workers keep retrying and keep their leases; every outcome is accepted on return."""
    site = graph_site(n=50)
    db = private_pg.create_database("outage")
    lease = 2.0
    crawl_id = submit(site, tmp_path, db, delay=0.1, lease=lease, grace=30.0, batch=4, per_host=16)
    fleet = Fleet(db, tmp_path)
    try:
        a, b = fleet.spawn(), fleet.spawn()
        owners = select(func.count(func.distinct(urls.c.lease_owner))).where(
            urls.c.status == "leased"
        )
        wait_for("both workers to hold leases", lambda: count(db, owners) == 2, 20, 0.05)
        private_pg.stop("immediate")
        down = time.monotonic()
        while time.monotonic() - down < 2.5 * lease:
            assert a.proc.poll() is None and b.proc.poll() is None, (
                "a worker exited while the database was away"
            )
            time.sleep(0.1)
        private_pg.start()
        fleet.wait(60)
        assert not fleet.failed(), fleet.failed()[0].output()[-3000:]
    finally:
        fleet.close()
    logs = a.output() + b.output()
    assert "frontier database unreachable" in logs and "retrying in" in logs
    assert "Traceback" not in logs
    # Both workers' heartbeats got in before either reaped: no lease was lost, nothing was fenced,
    # no page was fetched twice.
    assert "not applied: their lease had expired" not in logs, logs[-3000:]
    dupes, lost = check_crawl(site, db, crawl_id, tmp_path / "warc")
    assert (dupes, lost) == (0, 0)
    leased_left = count(db, select(func.count()).select_from(urls).where(urls.c.status == "leased"))
    assert leased_left == 0


@pytest.mark.postgres
@pytest.mark.slow
def test_worker_stops_with_exit_3_when_the_database_is_gone_past_the_grace_period(
    private_pg: PrivatePostgres, graph_site: Callable[..., GraphSite], tmp_path: Path
) -> None:
    """With the DB gone longer than db_grace_seconds the worker stops within the grace, exit 3, one clear message."""
    site = graph_site(n=100)
    db = private_pg.create_database("gone")
    grace = 4.0
    submit(site, tmp_path, db, delay=0.1, lease=2.0, grace=grace)
    fleet = Fleet(db, tmp_path)
    try:
        w = fleet.spawn()
        done = select(func.count()).select_from(urls).where(urls.c.status == "done")
        wait_for("a few pages to be done", lambda: count(db, done) >= 5, 20, 0.05)
        private_pg.stop("immediate")
        down = time.monotonic()
        code = w.proc.wait(grace + 20)
        took = time.monotonic() - down
    finally:
        fleet.close()
    out = w.output()
    assert code == 3, out[-3000:]
    assert "critical error" in out and "unreachable" in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert grace <= took < grace + 5, (
        f"stopped {took:.1f}s after the database went away (grace {grace}s)"
    )


class LostAnswerFrontier(SqlFrontier):
    """A frontier whose sync commits and then fails once, as when the server dies before answering COMMIT."""

    def __init__(self, url: str, after_calls: int) -> None:
        super().__init__(url)
        self.calls = 0
        self.after_calls = after_calls
        self.lost: list[ClaimedURL] = []

    def sync(self, *args: object, **kwargs: object) -> SyncResult:
        """Run the real sync; once, after ``after_calls`` calls, drop its answer when it leased something."""
        res = super().sync(*args, **kwargs)  # type: ignore[arg-type]
        self.calls += 1
        if not self.lost and self.calls > self.after_calls and res.claimed:
            self.lost = res.claimed
            raise DatabaseUnavailable(
                f"the frontier database {self.safe_url} is unreachable: server closed the connection"
            )
        return res


def test_leases_whose_claim_answer_was_lost_are_given_back(
    graph_site: Callable[..., GraphSite], tmp_path: Path
) -> None:
    """A claim committed but never answered leaves leases the worker never saw: it gives them back and finishes."""
    from shoal.crawl import run_async, run_loop, start_crawl
    from shoal.spec import parse_spec

    site = graph_site(n=40)
    text_ = crawl_spec(site, tmp_path, lease=60.0, delay=0.0)
    spec = parse_spec(text_)
    db = f"sqlite:///{tmp_path / 'frontier.sqlite'}"
    f = LostAnswerFrontier(db, after_calls=2)
    try:
        crawl = start_crawl(f, spec, text_)

        async def crawl_for_at_most(seconds: float) -> tuple[object, bool]:
            import asyncio

            return await asyncio.wait_for(
                run_async(spec, f, crawl, progress=False, install_signals=False), seconds
            )

        _, finished_ = run_loop(crawl_for_at_most(30))
    finally:
        f.close()
    assert f.lost, "the test never lost an answer"
    assert finished_
    rows = frontier_rows(db, crawl.id)
    assert {st for st, _, _ in rows.values()} == {"done"} and len(rows) == 40
    # The lost claims were never fetched by anyone before they were given back: no page twice.
    assert set(page_hits(site).values()) == {1}


@pytest.mark.postgres
def test_a_lost_server_is_unavailable_and_the_pool_reconnects_after_a_restart(
    private_pg: PrivatePostgres,
) -> None:
    """Cut sessions and a stopped server are 'unavailable' (a bad query is not); the frontier works again after."""
    db = private_pg.create_database("classify")
    f = SqlFrontier(db)
    engine = make_engine(db)
    try:
        cid = f.open_crawl("c", "s").id
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            private_pg.execute(f"SELECT pg_terminate_backend({pid})")
            with pytest.raises(DBAPIError) as cut:
                conn.execute(text("SELECT 1"))
        assert is_unavailable(cut.value)
        with engine.connect() as conn, pytest.raises(DBAPIError) as bad:
            conn.execute(text("SELECT no_such_column FROM urls"))
        assert not is_unavailable(bad.value) and not is_retryable(bad.value)
        private_pg.stop("immediate")
        with pytest.raises(DBAPIError) as refused:
            engine.connect()
        assert is_unavailable(refused.value)
        with pytest.raises(DatabaseUnavailable, match="unreachable"):
            f.pending_left(cid)
        private_pg.start()
        assert (
            f.pending_left(cid) is False
        )  # the pooled connections were replaced, nothing to do by hand
    finally:
        engine.dispose()
        f.close()


# ---------------------------------------------------------------------------
# Idempotent writes, on every backend.
# ---------------------------------------------------------------------------


def new(url: str, depth: int = 1) -> NewURL:
    """A discovered link as the worker builds it."""
    c = canonicalize(url)
    return NewURL(c.url, c.url_key, c.host, c.host_key, 0, "list", depth, depth)


def do_sync(
    f: SqlFrontier, cid: int, owner: str, outcomes: list[Outcome], claim: int = 0
) -> SyncResult:
    """One sync the way a worker calls it, without politeness."""
    return f.sync(
        cid,
        owner,
        outcomes,
        claim=claim,
        lease_ms=60_000,
        per_host=1000,
        default_delay_ms=0,
        jitter=0.0,
        horizon_ms=2000,
        reap=False,
    )


def finished(c: ClaimedURL, links: list[NewURL]) -> Outcome:
    """A done outcome with its links."""
    return Outcome(
        c.id,
        c.lease_token,
        Status.DONE,
        host_key=c.host_key,
        http_status=200,
        fetched_at=1,
        links=links,
    )


def test_a_redelivered_outcome_batch_writes_nothing_twice(db_url: str) -> None:
    """A batch delivered again (its first commit's answer was lost) is refused whole: no row, counter or host doubled."""
    f = SqlFrontier(db_url)
    try:
        cid = f.open_crawl("c", "s").id
        f.add_urls(cid, [new(f"http://a.test/{i}", 0) for i in range(4)], 0)
        claimed = do_sync(f, cid, "w1", [], claim=4).claimed
        assert len(claimed) == 4
        batch = [
            finished(
                c,
                [new(f"http://a.test/{c.id}/{k}") for k in range(3)]
                + [new("http://a.test/shared"), new("http://b.test/new-host")],
            )
            for c in claimed
        ]
        first = do_sync(f, cid, "w1", batch)
        assert first.accepted == [True] * 4
        assert first.links_added == 4 * 3 + 2
        again = do_sync(f, cid, "w1", batch, claim=0)
        assert again.accepted == [False] * 4 and again.links_added == 0
        # The same outcome twice in one batch is applied once.
        more = do_sync(f, cid, "w1", [], claim=1).claimed
        twice = do_sync(f, cid, "w1", [finished(more[0], []), finished(more[0], [])])
        assert twice.accepted == [True, False]
        n_urls = count(db_url, select(func.count()).select_from(urls).where(urls.c.crawl_id == cid))
        n_keys = count(
            db_url, select(func.count(func.distinct(urls.c.url_key))).where(urls.c.crawl_id == cid)
        )
        assert n_urls == n_keys == 4 + 4 * 3 + 2
        assert (
            count(db_url, select(func.count()).select_from(hosts).where(hosts.c.crawl_id == cid))
            == 2
        )
        assert f.count_done(cid) == 5  # the workers' counters: each outcome counted once
        assert (
            count(db_url, select(func.count()).select_from(urls).where(urls.c.status == "done"))
            == 5
        )
    finally:
        f.close()


def test_two_workers_rediscovering_the_same_links_at_once_add_each_once(db_url: str) -> None:
    """Two workers completing pages that link to the same URLs, concurrently: one row per URL, nothing lost."""
    setup = SqlFrontier(db_url)
    cid = setup.open_crawl("c", "s").id
    pages = 80
    setup.add_urls(cid, [new(f"http://h{i % 3}.test/p{i}", 0) for i in range(pages)], 0)
    barrier = threading.Barrier(2)
    added: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(owner: str) -> None:
        f = SqlFrontier(db_url)
        try:
            barrier.wait(10)
            while True:
                got = do_sync(f, cid, owner, [], claim=4).claimed
                if not got:
                    break
                # Every seed page links to the same 40 shared URLs (on new hosts too) plus two of its own;
                # the linked pages link nowhere.
                outs = [
                    finished(
                        c,
                        [new(f"http://s{k % 4}.test/shared/{k}") for k in range(40)]
                        + [new(f"http://h0.test/own/{c.id}/{j}") for j in range(2)],
                    )
                    if "/p" in c.url
                    else finished(c, [])
                    for c in got
                ]
                res = do_sync(f, cid, owner, outs)
                assert all(res.accepted)
                with lock:
                    added.append(res.links_added)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            f.close()

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    setup.close()
    assert not errors, errors
    total = pages + 40 + 2 * pages
    n_urls = count(db_url, select(func.count()).select_from(urls).where(urls.c.crawl_id == cid))
    n_keys = count(
        db_url, select(func.count(func.distinct(urls.c.url_key))).where(urls.c.crawl_id == cid)
    )
    assert n_urls == n_keys == total
    assert sum(added) == total - pages  # each link counted as new by exactly one worker
    assert (
        count(db_url, select(func.count()).select_from(hosts).where(hosts.c.crawl_id == cid))
        == 3 + 4
    )
    assert (
        count(db_url, select(func.count()).select_from(urls).where(urls.c.status == "done"))
        == total
    )


# ---------------------------------------------------------------------------
# Credentials never printed.
# ---------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.slow
def test_the_database_password_never_appears_in_output(
    private_pg_scram: PrivatePostgres, graph_site: Callable[..., GraphSite], tmp_path: Path
) -> None:
    """submit, status, work (one and two processes) and their failures never print the password."""
    secret = "secretpw-7f3a"
    wrong = "secretpw-wrong-91c"
    pg = private_pg_scram
    pg.execute(
        f"CREATE ROLE crawler LOGIN PASSWORD '{secret}'", "CREATE DATABASE creds OWNER crawler"
    )
    db = pg.url("creds", user="crawler", password=secret)
    site = graph_site(n=20)
    spec = tmp_path / "creds.toml"
    spec.write_text(crawl_spec(site, tmp_path, name="creds"))
    failing = {
        "wrong-password": ("status", "--db", pg.url("creds", user="crawler", password=wrong)),
        "wrong-password-work": ("work", "--db", pg.url("creds", user="crawler", password=wrong)),
        "no-server": (
            "work", "--db", f"postgresql://crawler:{secret}@127.0.0.1:1/creds", "--db-grace", "1"
        ),
        "bad-url": ("status", "--db", f"postgresql://crawler:{secret}@127.0.0.1:notaport/creds"),
    }  # fmt: skip
    # The failing commands depend on nothing: they run alongside the crawl's own, which go in order.
    with ThreadPoolExecutor(len(failing)) as pool:
        failed = {name: pool.submit(shoal, *args) for name, args in failing.items()}
        runs = {
            "submit": shoal("submit", str(spec), "--db", db),
            "status": shoal("status", "--db", db),
            "status-json": shoal("status", db, "--json"),
            "work": shoal("-v", "work", "--db", db),
            "work-2": shoal("work", "--db", db, "--processes", "2"),
            "db-upgrade": shoal("db", "upgrade", "--db", db),
        }
        runs.update({name: f.result() for name, f in failed.items()})
    for name, res in runs.items():
        text = res.stdout + res.stderr
        assert secret not in text and wrong not in text, f"{name} printed the password:\n{text}"
    for ok in ("submit", "status", "status-json", "work", "work-2", "db-upgrade"):
        assert runs[ok].returncode == 0, f"{ok}: {runs[ok].stdout}{runs[ok].stderr}"
    assert "crawler:***@" in runs["submit"].stdout
    for bad in ("wrong-password", "wrong-password-work", "bad-url"):
        assert runs[bad].returncode == 2, f"{bad}: {runs[bad].stdout}{runs[bad].stderr}"
        assert "Traceback" not in runs[bad].stderr
    # No server: the worker waits its start-up grace for it (1 s here), then stops as critical.
    assert runs["no-server"].returncode == 3, runs["no-server"].stderr
    assert "unreachable" in runs["no-server"].stderr
    assert "password authentication failed" in runs["wrong-password"].stderr
    # Nor is it stored where status pages and alerts come from.
    f = SqlFrontier(db, create=False)
    try:
        stored = [str(v) for r in f.query(select(events.c.message)) for v in r]
        stored += [
            str(v)
            for r in f.query(select(workers.c.id, workers.c.detail, workers.c.hostname))
            for v in r
        ]
        stored += [f.get_crawl().spec]
    finally:
        f.close()
    assert not any(secret in s for s in stored)
    assert urlsplit(db).password == secret  # the URL really carried it
