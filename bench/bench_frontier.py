"""Benchmark the shared frontier: claims+completes per second per backend, and 1 vs 4 worker processes.

Part 1, the frontier alone (no HTTP): for each backend (a SQLite file, the
PostgreSQL server at 127.0.0.1:5432 and the MariaDB server at 127.0.0.1:3306,
each in a fresh database dropped afterwards) and each number of worker
processes (1, 4, 16), a crawl is seeded with ``--urls`` URLs spread over 256
hosts (no politeness delay, no per-host cap), then every process loops on one
:meth:`SqlFrontier.sync` per transaction, exactly as a worker does: it
completes (``done``) the batch it claimed in the previous transaction and
claims the next ``--batch`` URLs. The processes start together (a barrier
after their connections are open) and stop after ``--seconds``; the figure is
URLs completed per second by all of them together, plus transactions per
second. Exclusivity is checked on the way: no URL may be completed twice.

The database server's own cost is measured alongside, because on a small
machine the clients, the server and the load generator share the cores and
throughput alone cannot tell contention from CPU starvation: the CPU time of
the server processes during the run (every ``postgres`` or ``mariadbd``
process; on PostgreSQL also the backends serving the benchmark's own
connections alone, which other users of the server do not disturb) divided by
the URLs completed, and the URLs per second one server core could carry at
that cost. Lock waits are sampled every 20 ms while it runs: PostgreSQL
backends of the benchmark database waiting on a lock (``pg_stat_activity``
``wait_event_type = 'Lock'``), MariaDB transactions of the benchmark schema in
``LOCK WAIT`` (``information_schema.INNODB_TRX``) plus the server's
``Innodb_row_lock_waits`` counter.

Part 3, scale (``--scale 10000,1000000``): the frontier seeded with that many
pending URLs, then one worker process runs ``--scale-syncs`` syncs (complete
the last batch, claim the next): the median and 95th percentile time of a
sync, the process's resident memory after them, and the time of one whole
status frame (:meth:`SqlFrontier.status`).

Part 2, end to end: the generated benchmark site (``bench/gen_site.py``, served
by a private nginx exactly as ``bench/run.py`` does, whose functions are
reused) crawled through PostgreSQL with ``shoal submit`` then ``shoal work
--processes P`` for P = 1 and 4, each with a fresh database and access log;
pages/s, CPU and the exactly-once verdict from the access log.

The machine is small and shared: the 1-minute load average is printed with
every row (before/after the measurement).

Usage (from the repository root)::

    .venv/bin/python bench/bench_frontier.py [--seconds 5] [--batch 32] [--backends sqlite,postgresql,mariadb]
        [--processes 4,16,32] [--pages 20000] [--no-crawl] [--no-frontier] [--json]
        [--scale 10000,1000000] [--scale-syncs 300]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO / "src"))

import gen_site  # noqa: E402 - bench/gen_site.py: the benchmark site
import run as site_bench  # noqa: E402 - bench/run.py: site, nginx, measuring, access-log checks

PG_ADMIN = os.environ.get(
    "SHOAL_BENCH_PG",
    os.environ.get("SHOAL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
)
MYSQL_ADMIN = os.environ.get(
    "SHOAL_BENCH_MYSQL", os.environ.get("SHOAL_TEST_MYSQL", "mysql://root@127.0.0.1:3306/")
)
HOSTS = 256

R = TypeVar("R")
"""A row type of one part of the benchmark."""


def log(msg: str) -> None:
    """Progress on stderr, so that ``--json`` output stays clean."""
    print(f"[bench_frontier] {msg}", file=sys.stderr, flush=True)


def load1() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


# ---------------------------------------------------------------------------
# Fresh databases.
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(backend: str, folder: Path) -> Iterator[str]:
    """A new empty database on ``backend``; yields its URL and drops it afterwards."""
    name = f"shoal_bench_{uuid.uuid4().hex[:10]}"
    if backend == "sqlite":
        path = folder / f"{name}.sqlite"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{path}{suffix}").unlink()
        return
    if backend == "postgresql":
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    if backend == "mariadb":
        import pymysql
        from sqlalchemy.engine import make_url

        u = make_url(MYSQL_ADMIN.replace("mysql://", "mysql+pymysql://", 1))
        params: dict[str, Any] = {
            "host": u.host or "127.0.0.1",
            "port": u.port or 3306,
            "user": u.username or "root",
            "password": u.password or "",
            "connect_timeout": 5,
        }
        conn = pymysql.connect(**params)
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        conn.close()
        try:
            yield f"{MYSQL_ADMIN.rstrip('/')}/{name}"
        finally:
            conn = pymysql.connect(**params)
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            conn.close()
        return
    raise ValueError(f"unknown backend {backend!r}")


# ---------------------------------------------------------------------------
# Part 1: claims + completes per second.
# ---------------------------------------------------------------------------


DROP_INDEXES: list[str] = []
"""Indexes dropped after seeding (``--drop-index``): what each one costs the write path."""


def seed(url: str, crawl: str, n: int, analyze: bool) -> int:
    """Create the crawl and add ``n`` URLs over :data:`HOSTS` hosts; returns the crawl id.

    With ``analyze`` the planner statistics are refreshed afterwards, as the
    server's autovacuum would do within a minute or so of a crawl's start.
    """
    from sqlalchemy import text

    from shoal.frontier import NewURL, SqlFrontier
    from shoal.urls import canonicalize

    f = SqlFrontier(url)
    try:
        cid = f.open_crawl(crawl, "bench").id
        batch: list[NewURL] = []
        for i in range(n):
            c = canonicalize(f"http://h{i % HOSTS}.bench.test/p/{i}")
            batch.append(NewURL(c.url, c.url_key, c.host, c.host_key, 0, "detail", 0, 0))
            if len(batch) == 5000:
                f.add_urls(cid, batch, 0)
                batch = []
        if batch:
            f.add_urls(cid, batch, 0)
        for name in DROP_INDEXES:
            with f.engine.connect() as conn:
                conn.execute(
                    text(f"DROP INDEX {name}" + (" ON urls" if f.dialect == "mysql" else ""))
                )
                conn.commit()
        if analyze:
            with f.engine.connect() as conn:
                conn.execute(
                    text("ANALYZE TABLE urls, hosts" if f.dialect == "mysql" else "ANALYZE")
                )
                conn.commit()
        return cid
    finally:
        f.close()


def _backend_pids(f: Any) -> list[str]:
    """The server's ``/proc`` entries serving this frontier's pooled connection.

    PostgreSQL: the backend process (``pg_backend_pid()``). MariaDB: the
    connection's thread inside ``mariadbd`` (``PROCESSLIST.TID``, MariaDB >= 10.5).
    """
    from sqlalchemy import text

    with f.engine.connect() as conn:
        if f.dialect == "postgresql":
            return [f"/proc/{int(conn.execute(text('SELECT pg_backend_pid()')).scalar_one())}"]
        if f.dialect == "mysql":
            tid = conn.execute(
                text("SELECT TID FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()")
            ).scalar()
            server = [
                p for p in _server_processes("mariadb") if Path(f"/proc/{p}/task/{tid}").exists()
            ]
            return [f"/proc/{server[0]}/task/{tid}"] if tid and server else []
    return []


def _server_processes(backend: str) -> list[int]:
    import psutil

    names = {"postgresql": ("postgres",), "mariadb": ("mariadbd", "mysqld")}.get(backend, ())
    return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] in names]


def _cpu_of(entries: list[str]) -> float:
    """CPU seconds (user + system) used so far by these processes or threads (0 for one gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in entries:
        try:
            stat = Path(entry, "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def server_cpu(backend: str) -> float:
    """CPU seconds used so far by every process of the database server (all its users)."""
    return _cpu_of([f"/proc/{pid}" for pid in _server_processes(backend)])


def bench_sync(f: Any, cid: int, owner: str, outcomes: list[Any], claim: int) -> Any:
    """One :meth:`SqlFrontier.sync` as a worker of the benchmark makes it: report ``outcomes``,
    claim ``claim`` URLs on 10-minute leases, no per-host cap, no delay, no reaping."""
    return f.sync(
        cid,
        owner,
        outcomes,
        claim=claim,
        lease_ms=600_000,
        per_host=1_000_000,
        default_delay_ms=0,
        jitter=0.0,
        horizon_ms=2000,
        reap=False,
    )


def _child(
    url: str,
    cid: int,
    owner: str,
    batch: int,
    seconds: float,
    barrier: Any,
    results: Any,
    end_barrier: Any,
) -> None:
    """One worker process: sync (complete the last batch, claim the next) until the time is up."""
    from shoal.frontier import Outcome, SqlFrontier, Status

    f = SqlFrontier(url, create=False, pool_size=1)
    done_ids: list[int] = []
    txs = 0
    fenced = 0
    try:
        f.now_ms()
        pids = _backend_pids(f)
        barrier.wait(120)
        cpu0 = _cpu_of(pids)
        start = time.monotonic()
        end = start + seconds
        outcomes: list[Outcome] = []
        last = start
        while True:
            stop = time.monotonic() >= end
            res = bench_sync(f, cid, owner, outcomes, 0 if stop else batch)
            txs += 1
            for o, ok in zip(outcomes, res.accepted, strict=True):
                if ok:
                    done_ids.append(o.url_id)
                else:
                    fenced += 1
            last = time.monotonic()
            if stop or not res.claimed:
                break
            outcomes = [
                Outcome(
                    c.id,
                    c.lease_token,
                    Status.DONE,
                    host_key=c.host_key,
                    http_status=200,
                    fetched_at=1,
                )
                for c in res.claimed
            ]
        results.put(
            {
                "owner": owner,
                "done": done_ids,
                "txs": txs,
                "fenced": fenced,
                "elapsed": last - start,
                "backend_cpu": _cpu_of(pids) - cpu0,
            }
        )
        end_barrier.wait(300)
    except BaseException as exc:  # reported by the parent
        results.put({"owner": owner, "error": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        f.close()


@contextlib.contextmanager
def spawned(
    ctx: Any, target: Callable[..., None], arg_lists: list[tuple[Any, ...]], join_timeout: float
) -> Iterator[None]:
    """One ``target`` process of ``ctx`` per tuple of arguments, started on entry; on the way out
    each is joined, and killed if it outlives ``join_timeout`` seconds."""
    procs = [ctx.Process(target=target, args=args) for args in arg_lists]
    for p in procs:
        p.start()
    try:
        yield
    finally:
        for p in procs:
            p.join(join_timeout)
            if p.is_alive():
                p.kill()


def measured_rows(what: str, cases: list[tuple[str, Callable[[], R], Callable[..., R]]]) -> list[R]:
    """``measure()`` of each ``(label, measure, failed)`` case, logged as ``what: label``; a case that
    raises gives ``failed(error=...)`` instead (a missing server is a row, not the end of the run)."""
    rows: list[R] = []
    for label, measure, failed in cases:
        log(f"{what}: {label}")
        try:
            rows.append(measure())
        except Exception as exc:
            rows.append(failed(error=f"{type(exc).__name__}: {exc}"))
    return rows


@dataclass
class FrontierRow:
    """One backend x processes measurement."""

    backend: str
    processes: int
    batch: int
    completed: int = 0
    seconds: float = 0.0
    urls_per_s: float = 0.0
    tx_per_s: float = 0.0
    duplicates: int = 0
    fenced: int = 0
    analyzed: bool = True
    load_before: float = 0.0
    load_after: float = 0.0
    server_cpu_s: float = 0.0
    """CPU seconds of every server process during the run (other users of the server included)."""
    server_us_per_url: float = 0.0
    backend_us_per_url: float = 0.0
    """CPU of the server processes/threads serving the benchmark's own connections, per URL."""
    urls_per_core_s: float = 0.0
    """URLs one server core could complete per second at the measured cost per URL."""
    lock_samples: int = 0
    lock_wait_samples: int = 0
    """Samples in which at least one of the benchmark's transactions waited on a lock."""
    lock_waiting_max: int = 0
    row_lock_waits: int = 0
    """MariaDB: ``Innodb_row_lock_waits`` during the run (server-wide)."""
    error: str = ""


class LockSampler:
    """Samples lock waits of one database every 20 ms on its own thread and connection."""

    def __init__(self, backend: str, url: str) -> None:
        self.backend, self.url = backend, url
        self.samples = self.waiting_samples = self.max_waiting = 0
        self.row_lock_waits = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _query(self) -> tuple[str, str | None]:
        if self.backend == "postgresql":
            return (
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
                None,
            )
        return (
            "SELECT COUNT(*) FROM information_schema.INNODB_TRX t "
            "JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
            "WHERE t.trx_state = 'LOCK WAIT' AND p.DB = DATABASE()",
            "SHOW GLOBAL STATUS LIKE 'Innodb_row_lock_waits'",
        )

    def _run(self) -> None:
        from sqlalchemy import text

        from shoal.frontier.dialects import make_engine

        engine = make_engine(self.url, pool_size=1)
        q, counter = self._query()
        try:
            with engine.connect() as conn:
                before = int(conn.execute(text(counter)).one()[1]) if counter else 0
                conn.commit()
                while not self._stop.is_set():
                    n = int(conn.execute(text(q)).scalar_one())
                    conn.commit()
                    self.samples += 1
                    self.waiting_samples += 1 if n else 0
                    self.max_waiting = max(self.max_waiting, n)
                    self._stop.wait(0.02)
                if counter:
                    self.row_lock_waits = int(conn.execute(text(counter)).one()[1]) - before
        finally:
            engine.dispose()

    def __enter__(self) -> LockSampler:
        if self.backend in ("postgresql", "mariadb"):
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)


def bench_frontier(
    backend: str, processes: int, batch: int, seconds: float, urls: int, folder: Path, analyze: bool
) -> FrontierRow:
    """Measure claims+completes/s of ``processes`` worker processes on a fresh database of ``backend``."""
    row = FrontierRow(backend, processes, batch, analyzed=analyze)
    with fresh_database(backend, folder) as url:
        cid = seed(url, "bench", urls, analyze)
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(processes + 1)
        end_barrier = ctx.Barrier(processes + 1)
        results = ctx.Queue()
        owners = [
            (url, cid, f"bench-{i}", batch, seconds, barrier, results, end_barrier)
            for i in range(processes)
        ]
        with spawned(ctx, _child, owners, 30):
            with LockSampler(backend, url) as locks:
                cpu0 = server_cpu(backend)
                barrier.wait(180)
                row.load_before = load1()
                out = [results.get(timeout=seconds + 120) for _ in owners]
                row.server_cpu_s = round(server_cpu(backend) - cpu0, 3)
                row.load_after = load1()
            end_barrier.wait(60)
            row.lock_samples, row.lock_wait_samples = locks.samples, locks.waiting_samples
            row.lock_waiting_max, row.row_lock_waits = locks.max_waiting, locks.row_lock_waits
        errors = [o["error"] for o in out if "error" in o]
        if errors:
            row.error = errors[0]
            return row
        ids = [i for o in out for i in o["done"]]
        row.completed = len(ids)
        row.duplicates = len(ids) - len(set(ids))
        row.fenced = sum(o["fenced"] for o in out)
        row.seconds = round(max(o["elapsed"] for o in out), 2)
        row.urls_per_s = round(row.completed / row.seconds, 1) if row.seconds else 0.0
        row.tx_per_s = round(sum(o["txs"] for o in out) / row.seconds, 1) if row.seconds else 0.0
        if row.completed:
            row.server_us_per_url = round(1e6 * row.server_cpu_s / row.completed, 1)
            backend_cpu = sum(o.get("backend_cpu", 0.0) for o in out)
            row.backend_us_per_url = round(1e6 * backend_cpu / row.completed, 1)
            cost = row.backend_us_per_url or row.server_us_per_url
            row.urls_per_core_s = round(1e6 / cost) if cost else 0.0
        if row.completed >= urls:
            log(f"{backend} x{processes}: ran out of URLs ({urls}) before {seconds}s: raise --urls")
    return row


# ---------------------------------------------------------------------------
# Part 3: the frontier at 10k vs 1M pending URLs.
# ---------------------------------------------------------------------------


@dataclass
class ScaleRow:
    """One backend x pending-URL count: sync latency, worker memory, status time."""

    backend: str
    pending: int
    syncs: int = 0
    seed_s: float = 0.0
    sync_ms_median: float = 0.0
    sync_ms_p95: float = 0.0
    rss_mb: float = 0.0
    status_ms: float = 0.0
    error: str = ""


def seed_bulk(url: str, crawl: str, n: int) -> int:
    """Like :func:`seed` but fast enough for a million URLs: one seed URL per host goes through
    :meth:`SqlFrontier.add_urls` (creating the hosts), the rest are inserted as plain rows in
    multi-row INSERTs (their keys need not be canonical hashes for the claim to work)."""
    from sqlalchemy import insert, text

    from shoal.frontier import NewURL, SqlFrontier
    from shoal.frontier.tables import urls
    from shoal.urls import canonicalize

    f = SqlFrontier(url)
    try:
        cid = f.open_crawl(crawl, "bench").id
        first = [canonicalize(f"http://h{i}.bench.test/p/{i}") for i in range(min(n, HOSTS))]
        f.add_urls(
            cid, [NewURL(c.url, c.url_key, c.host, c.host_key, 0, "detail", 0, 0) for c in first], 0
        )
        now = f.now_ms()
        with f.engine.begin() as conn:
            for start in range(len(first), n, 20_000):
                conn.execute(
                    insert(urls),
                    [
                        {
                            "crawl_id": cid,
                            "url_key": i,
                            "url": f"http://h{i % HOSTS}.bench.test/p/{i}",
                            "host_key": first[i % HOSTS].host_key,
                            "status": "pending",
                            "rule": 0,
                            "kind": "detail",
                            "depth": 0,
                            "priority": 0,
                            "discovered_at": now,
                            "next_attempt_at": now,
                        }
                        for i in range(start, min(n, start + 20_000))
                    ],
                )
        with f.engine.connect() as conn:
            conn.execute(text("ANALYZE TABLE urls, hosts" if f.dialect == "mysql" else "ANALYZE"))
            conn.commit()
        return cid
    finally:
        f.close()


def _scale_child(url: str, cid: int, batch: int, syncs: int, results: Any) -> None:
    """One worker process: ``syncs`` syncs (complete the last batch, claim the next), each timed."""
    import psutil

    from shoal.frontier import Outcome, SqlFrontier, Status

    f = SqlFrontier(url, create=False, pool_size=1)
    try:
        times: list[float] = []
        outcomes: list[Outcome] = []
        for _ in range(syncs):
            t0 = time.perf_counter()
            res = bench_sync(f, cid, "scale", outcomes, batch)
            times.append(time.perf_counter() - t0)
            outcomes = [
                Outcome(c.id, c.lease_token, Status.DONE, host_key=c.host_key, fetched_at=1)
                for c in res.claimed
            ]
        rss = psutil.Process().memory_info().rss
        t0 = time.perf_counter()
        f.status(cid)
        status_s = time.perf_counter() - t0
        results.put({"times": times, "rss": rss, "status": status_s})
    except BaseException as exc:  # reported by the parent
        results.put({"error": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        f.close()


def bench_scale(backend: str, pending: int, batch: int, syncs: int, folder: Path) -> ScaleRow:
    """Seed ``pending`` URLs on a fresh database, then time a worker's syncs and a status frame."""
    row = ScaleRow(backend, pending, syncs)
    with fresh_database(backend, folder) as url:
        t0 = time.monotonic()
        cid = seed_bulk(url, "scale", pending)
        row.seed_s = round(time.monotonic() - t0, 1)
        ctx = mp.get_context("spawn")
        results = ctx.Queue()
        with spawned(ctx, _scale_child, [(url, cid, batch, syncs, results)], 60):
            out = results.get(timeout=1800)
        if "error" in out:
            row.error = out["error"]
            return row
        ms = sorted(1000 * t for t in out["times"][10:])  # the first few warm the caches
        row.sync_ms_median = round(statistics.median(ms), 2)
        row.sync_ms_p95 = round(ms[int(0.95 * (len(ms) - 1))], 2)
        row.rss_mb = round(out["rss"] / 1e6, 1)
        row.status_ms = round(1000 * out["status"], 1)
    return row


def scale_table(rows: list[ScaleRow]) -> str:
    """Part 3 as an aligned text table."""
    head = [
        "backend",
        "pending URLs",
        "seed s",
        "syncs",
        "sync ms median",
        "sync ms p95",
        "worker RSS MB",
        "status frame ms",
    ]
    body = [
        [
            r.backend,
            str(r.pending),
            f"{r.seed_s:.0f}",
            str(r.syncs),
            f"{r.sync_ms_median:.2f}",
            f"{r.sync_ms_p95:.2f}",
            f"{r.rss_mb:.1f}",
            f"{r.status_ms:.0f}",
        ]
        if not r.error
        else [r.backend, str(r.pending), "error: " + r.error[:80], "", "", "", "", ""]
        for r in rows
    ]
    return _table(head, body)


# ---------------------------------------------------------------------------
# Part 2: the benchmark site through PostgreSQL, 1 vs 4 processes.
# ---------------------------------------------------------------------------


@dataclass
class CrawlRow:
    """One end-to-end crawl of the benchmark site."""

    processes: int
    pages: int = 0
    seconds: float = 0.0
    pages_per_s: float = 0.0
    cpu_s: float = 0.0
    cpu_ms_per_page: float = 0.0
    exactly_once: str = ""
    load_before: float = 0.0
    load_after: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def bench_crawl(
    processes: int, site: Path, expected: list[str], workdir: Path, concurrency: int, timeout: float
) -> CrawlRow:
    """``shoal submit`` the benchmark site to a fresh PostgreSQL database, then ``shoal work --processes N``."""
    row = CrawlRow(processes)
    shoal = site_bench.shoal_command(None)
    with site_bench.run_folder(workdir, keep=False) as run, fresh_database("postgresql", run) as db:
        server = site_bench.Server(
            site, run, f"shoal-pg-{processes}", os.path.exists(site_bench.NGINX)
        )
        spec_text = site_bench.SHOAL_SPEC.format(
            base_url=server.base_url, concurrency=concurrency, run=run
        )
        # The per-host cap is fleet-wide: give every process its full concurrency on the one host.
        fleet_cap = f"concurrency_per_host = {concurrency * processes}"
        spec_text = spec_text.replace(f"concurrency_per_host = {concurrency}", fleet_cap)
        assert fleet_cap in spec_text
        spec = run / "bench.toml"
        spec.write_text(spec_text)
        with server:
            sub = site_bench.measure(
                [*shoal, "submit", str(spec), "--db", db], run, run / "submit.out", 120
            )
            if sub.exit_code != 0:
                row.exactly_once = (
                    f"submit exit {sub.exit_code}: {(run / 'submit.out').read_text()[-500:]}"
                )
                return row
            row.load_before = load1()
            log(f"crawl: {processes} process(es) on PostgreSQL")
            m = site_bench.measure(
                [*shoal, "work", "--db", db, "--processes", str(processes)],
                run,
                run / "work.out",
                timeout,
            )
            row.load_after = load1()
        counts = site_bench.check_log(server.access_log, expected)
        row.pages = counts["pages"]
        row.seconds = round(m.wall, 2)
        row.pages_per_s = round(row.pages / m.wall, 1) if m.wall else 0.0
        row.cpu_s = round(m.cpu, 2)
        row.cpu_ms_per_page = round(1000 * m.cpu / row.pages, 2) if row.pages else 0.0
        row.exactly_once = site_bench.verdict(counts)
        if m.exit_code != 0:
            tail = (run / "work.out").read_text(errors="replace")[-1500:]
            row.exactly_once = f"exit {m.exit_code}; {row.exactly_once}"
            log(f"shoal work exited with {m.exit_code}:\n{tail}")
    return row


# ---------------------------------------------------------------------------
# Output.
# ---------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def frontier_table(rows: list[FrontierRow]) -> str:
    """Part 1 as an aligned text table."""
    head = [
        "backend",
        "procs",
        "batch",
        "stats",
        "completed",
        "seconds",
        "URLs/s",
        "tx/s",
        "dup",
        "server us/URL",
        "own connections us/URL",
        "URLs/s per server core",
        "lock-wait samples",
        "load 1m before/after",
    ]
    body = [
        [
            r.backend,
            str(r.processes),
            str(r.batch),
            "analyzed" if r.analyzed else "cold",
            str(r.completed),
            f"{r.seconds:.1f}",
            f"{r.urls_per_s:.0f}",
            f"{r.tx_per_s:.0f}",
            str(r.duplicates),
            f"{r.server_us_per_url:.0f}" if r.backend != "sqlite" else "-",
            f"{r.backend_us_per_url:.0f}" if r.backend != "sqlite" else "-",
            f"{r.urls_per_core_s:.0f}" if r.backend != "sqlite" else "-",
            (
                f"{r.lock_wait_samples}/{r.lock_samples} (max {r.lock_waiting_max})"
                + (f", row lock waits {r.row_lock_waits}" if r.backend == "mariadb" else "")
            )
            if r.backend != "sqlite"
            else "-",
            f"{r.load_before:.2f} / {r.load_after:.2f}",
        ]
        if not r.error
        else [
            r.backend,
            str(r.processes),
            str(r.batch),
            "",
            "error: " + r.error[:80],
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
        ]
        for r in rows
    ]
    return _table(head, body)


def crawl_table(rows: list[CrawlRow]) -> str:
    """Part 2 as an aligned text table."""
    head = [
        "processes",
        "pages",
        "seconds",
        "pages/s",
        "CPU s",
        "CPU ms/page",
        "exactly-once",
        "load 1m before/after",
    ]
    body = [
        [
            str(r.processes),
            str(r.pages),
            f"{r.seconds:.1f}",
            f"{r.pages_per_s:.1f}",
            f"{r.cpu_s:.1f}",
            f"{r.cpu_ms_per_page:.2f}",
            r.exactly_once,
            f"{r.load_before:.2f} / {r.load_after:.2f}",
        ]
        for r in rows
    ]
    return _table(head, body)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(
        description="Benchmark the shared SQL frontier and multi-process crawling."
    )
    ap.add_argument(
        "--backends",
        default="sqlite,postgresql,mariadb",
        help="comma-separated (default: all three)",
    )
    ap.add_argument(
        "--processes",
        default="4,16,32",
        help="worker process counts for part 1 (default 4,16,32)",
    )
    ap.add_argument(
        "--scale",
        default="",
        help="part 3: pending URL counts, comma-separated (e.g. 10000,1000000; default: skip)",
    )
    ap.add_argument("--scale-syncs", type=int, default=300, help="syncs timed in part 3")
    ap.add_argument(
        "--drop-index",
        default="",
        help="indexes to drop after seeding, comma-separated: measures what each costs the writes",
    )
    ap.add_argument(
        "--batch", default="32", help="URLs claimed per transaction, comma-separated (default 32)"
    )
    ap.add_argument(
        "--seconds", type=float, default=5.0, help="length of each part-1 measurement (default 5)"
    )
    ap.add_argument(
        "--urls", type=int, default=60_000, help="URLs seeded for each part-1 measurement"
    )
    ap.add_argument(
        "--pages", type=int, default=20_000, help="detail pages of the part-2 site (default 20000)"
    )
    ap.add_argument(
        "--crawl-processes", default="1,4", help="shoal work processes for part 2 (default 1,4)"
    )
    ap.add_argument(
        "--concurrency", type=int, default=64, help="fetches in flight per process in part 2"
    )
    ap.add_argument(
        "--timeout", type=float, default=1800.0, help="kill a part-2 crawl after this many seconds"
    )
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "shoal-bench")
    ap.add_argument(
        "--no-analyze",
        action="store_true",
        help="part 1 without ANALYZE after seeding (cold statistics)",
    )
    ap.add_argument("--no-frontier", action="store_true", help="skip part 1")
    ap.add_argument("--no-crawl", action="store_true", help="skip part 2")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)

    DROP_INDEXES.extend(n for n in args.drop_index.split(",") if n)
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.workdir.chmod(0o755)
    log(f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    backends = args.backends.split(",")
    frows: list[FrontierRow] = []
    if not args.no_frontier:
        with tempfile.TemporaryDirectory(prefix="frontier-", dir=args.workdir) as tmp:
            frows = measured_rows(
                "frontier",
                [
                    (
                        f"{backend}, {n} process(es), batch {batch}",
                        partial(
                            bench_frontier,
                            backend,
                            n,
                            batch,
                            args.seconds,
                            args.urls,
                            Path(tmp),
                            not args.no_analyze,
                        ),
                        partial(FrontierRow, backend, n, batch),
                    )
                    for backend in backends
                    for batch in (int(b) for b in args.batch.split(","))
                    for n in (int(p) for p in args.processes.split(","))
                ],
            )
    srows: list[ScaleRow] = []
    if args.scale:
        batch = int(args.batch.split(",")[0])
        with tempfile.TemporaryDirectory(prefix="scale-", dir=args.workdir) as tmp:
            srows = measured_rows(
                "scale",
                [
                    (
                        f"{backend}, {n} pending URLs",
                        partial(bench_scale, backend, n, batch, args.scale_syncs, Path(tmp)),
                        partial(ScaleRow, backend, n),
                    )
                    for backend in backends
                    for n in (int(x) for x in args.scale.split(","))
                ],
            )
    crows: list[CrawlRow] = []
    if not args.no_crawl:
        site = site_bench.ensure_site(args.workdir, args.pages)
        expected = gen_site.page_uris(args.pages)
        for n in (int(p) for p in args.crawl_processes.split(",")):
            crows.append(
                bench_crawl(n, site, expected, args.workdir, args.concurrency, args.timeout)
            )
    if args.json:
        print(
            json.dumps(
                {
                    "frontier": [asdict(r) for r in frows],
                    "crawl": [asdict(r) for r in crows],
                    "scale": [asdict(r) for r in srows],
                    "cpus": os.cpu_count(),
                },
                indent=2,
            )
        )
    else:
        if frows:
            print(
                f"claims+completes (one sync per transaction, {args.seconds:.0f}s each, {HOSTS} hosts, no delay)"
            )
            print(frontier_table(frows))
        if srows:
            print(
                f"\nscale: one worker process, {args.scale_syncs} syncs (complete + claim "
                f"{args.batch.split(',')[0]}), then one status frame"
            )
            print(scale_table(srows))
        if crows:
            print(
                f"\nend to end: {len(gen_site.page_uris(args.pages))}-page site, nginx, PostgreSQL, "
                f"concurrency {args.concurrency} per process"
            )
            print(crawl_table(crows))
        print(
            f"\n{os.cpu_count()} CPUs; load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
    bad = (
        any(r.error or r.duplicates for r in frows)
        or any(r.exactly_once != "yes" for r in crows)
        or any(r.error for r in srows)
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
