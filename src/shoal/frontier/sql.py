"""The SQL frontier: one implementation of the contract for SQLite, PostgreSQL and MySQL/MariaDB.

Claims lease a batch of due URLs with ``SELECT ... FOR UPDATE SKIP LOCKED``
(PostgreSQL, MySQL 8, MariaDB >= 10.6) at READ COMMITTED, or inside one
``BEGIN IMMEDIATE`` transaction (SQLite). Host rows are locked together with
their URLs, so the minimum interval per host holds for the whole fleet.
Outcomes are fenced by the lease token. Dialect differences live in
:mod:`shoal.frontier.dialects`; the claim query and reaper in
:mod:`shoal.frontier.claim`, the outcome writer in :mod:`shoal.frontier.complete`,
the inserts of new URLs in :mod:`shoal.frontier.new_urls`, the ``workers`` and
``events`` writes in :mod:`shoal.frontier.workers` and :mod:`shoal.frontier.events`
(all run inside this class's transactions).
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, case, select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from shoal.errors import DatabaseFull, DatabaseUnavailable, FrontierError
from shoal.frontier import claim as claim_sql
from shoal.frontier import complete as completion
from shoal.frontier import dialects, new_urls, reads, warc_files
from shoal.frontier import due as revisit_sql
from shoal.frontier import events as event_sql
from shoal.frontier import workers as worker_sql
from shoal.frontier.contract import CrawlInfo, Frontier, NewURL, Outcome, SyncResult
from shoal.frontier.schema import ensure_schema
from shoal.frontier.tables import crawls, hosts, urls
from shoal.secrets import redact_url

__all__ = ["SqlFrontier"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_U = urls.c
_H = hosts.c


class SqlFrontier:
    """The frontier on a SQL database reached by a SQLAlchemy URL.

    ``create`` migrates an empty database; otherwise the schema must already be
    at this version's revision (see :mod:`shoal.frontier.schema`).
    """

    def __init__(self, url: str, *, create: bool = True, pool_size: int = 4) -> None:
        self.url = dialects.with_driver(url)
        self.engine = dialects.make_engine(self.url, pool_size=pool_size)
        self.dialect = self.engine.dialect.name
        self._skip_locked = dialects.uses_skip_locked(self.engine)
        self._snapshot_options = dialects.snapshot_options(self.engine)
        self._rng = random.Random()
        try:
            ensure_schema(self.engine, create=create)
        except OperationalError as exc:
            raise DatabaseUnavailable(
                f"cannot open the frontier database {self.safe_url}: {exc.orig}"
            ) from None
        self._offset_ms = 0
        self._measure_clock()
        self._adder = new_urls.Adder(self.engine)
        self._outcomes = completion.Writer(self.engine)

    # -- plumbing ---------------------------------------------------------

    @property
    def safe_url(self) -> str:
        """The database URL without its password."""
        return redact_url(self.url)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def _measure_clock(self) -> None:
        q = dialects.clock_sql(self.engine)
        if q is None:
            return
        with self.engine.connect() as conn:
            t0 = time.time()
            db_ms = int(conn.execute(q).scalar_one())
            t1 = time.time()
        self._offset_ms = db_ms - int((t0 + t1) * 500)

    def now_ms(self) -> int:
        """The database clock in milliseconds (local clock plus the offset measured at start)."""
        return int(time.time() * 1000) + self._offset_ms

    def _tx(
        self, fn: Callable[[Connection], T], *, readonly: bool = False, attempts: int = 20
    ) -> T:
        """Run ``fn`` in one transaction, again on deadlock; translate a lost server."""
        delay = 0.01
        for i in range(attempts):
            try:
                if readonly:
                    with (
                        self.engine.connect().execution_options(
                            readonly=True, **self._snapshot_options
                        ) as conn,
                        conn.begin(),
                    ):
                        return fn(conn)
                with self.engine.begin() as conn:
                    return fn(conn)
            except DBAPIError as exc:
                if dialects.is_full(exc):
                    raise DatabaseFull(
                        f"the frontier database {self.safe_url} cannot write: {exc.orig}"
                    ) from exc
                if dialects.is_unavailable(exc):
                    raise DatabaseUnavailable(
                        f"the frontier database {self.safe_url} is unreachable: {exc.orig}"
                    ) from exc
                if dialects.is_retryable(exc) and i + 1 < attempts:
                    time.sleep(delay * (1 + self._rng.random()))
                    delay = min(delay * 2, 1.0)
                    continue
                raise
        raise FrontierError("transaction retries exhausted")  # pragma: no cover

    def _lock(self, q: Any, *, skip: bool = True) -> Any:
        if not self._skip_locked:
            return q
        return q.with_for_update(skip_locked=skip)

    def _tx_adding(self, fn: Callable[[Connection], tuple[T, list[tuple[int, int]]]]) -> T:
        """Run ``fn`` (which adds URLs) in one transaction; the hosts it created are known once it committed."""
        result, fresh = self._tx(fn)
        self._adder.remember(fresh)
        return result

    # -- crawls -----------------------------------------------------------

    def open_crawl(self, name: str, spec_text: str, max_pages: int | None = None) -> CrawlInfo:
        """Create the crawl, or return the existing one of that name with its spec and budget updated."""
        digest = hashlib.sha256(spec_text.encode()).hexdigest()

        def run(conn: Connection) -> CrawlInfo:
            now = self.now_ms()
            submitted = dict(
                spec=spec_text,
                spec_hash=digest,
                state="running",
                updated_at=now,
                max_pages=max_pages,
            )
            row = conn.execute(select(crawls).where(crawls.c.name == name)).first()
            if row is None:
                conn.execute(crawls.insert().values(name=name, created_at=now, **submitted))
            elif row.spec_hash != digest or row.state != "running" or row.max_pages != max_pages:
                conn.execute(
                    update(crawls)
                    .where(crawls.c.id == row.id)
                    .values(finished_at=None, **submitted)
                )
            r = conn.execute(select(crawls).where(crawls.c.name == name)).one()
            return CrawlInfo(r.id, r.name, r.spec, r.state)

        return self._tx(run)

    def get_crawl(self, name: str | None = None) -> CrawlInfo:
        """The crawl of that name, else the most recently created; raises FrontierError if none."""

        def run(conn: Connection) -> CrawlInfo | None:
            q = select(crawls)
            q = q.where(crawls.c.name == name) if name else q.order_by(crawls.c.id.desc()).limit(1)
            r = conn.execute(q).first()
            return None if r is None else CrawlInfo(r.id, r.name, r.spec, r.state)

        info = self._tx(run, readonly=True)
        if info is None:
            what = f"no crawl named {name!r}" if name else "no crawl"
            raise FrontierError(
                f"{what} in {self.safe_url}: submit one with `shoal submit SPEC --db URL`"
            )
        return info

    def set_crawl_state(self, crawl_id: int, state: str) -> bool:
        """Mark a crawl running, finished or stopped; True when this call changed it (one worker of a fleet)."""
        now = self.now_ms()
        values: dict[str, Any] = {"state": state, "updated_at": now}
        if state == "finished":
            values["finished_at"] = now
        res = self._tx(
            lambda c: c.execute(
                update(crawls)
                .where(crawls.c.id == crawl_id, crawls.c.state != state)
                .values(**values)
            )
        )
        return bool(res.rowcount)

    def update_host_delays(self, crawl_id: int, default_delay_ms: int) -> None:
        """Apply a changed spec delay to known hosts (a robots Crawl-delay still wins)."""
        self._tx(
            lambda c: c.execute(
                update(hosts)
                .where(_H.crawl_id == crawl_id)
                .values(
                    min_delay_ms=case(
                        (_H.robots_delay_ms > default_delay_ms, _H.robots_delay_ms),
                        else_=default_delay_ms,
                    )
                )
            )
        )

    def add_urls(self, crawl_id: int, new: list[NewURL], default_delay_ms: int) -> int:
        """Add URLs (seeds); existing canonical URLs are left alone. Returns how many were new."""

        return self._tx_adding(
            lambda c: self._adder.add(c, crawl_id, new, default_delay_ms, self.now_ms())
        )

    # -- the claim/complete cycle ----------------------------------------

    def sync(
        self,
        crawl_id: int,
        owner: str,
        outcomes: list[Outcome],
        *,
        claim: int,
        lease_ms: int,
        per_host: int,
        default_delay_ms: int,
        jitter: float,
        horizon_ms: int = 2000,
        reap: bool = False,
    ) -> SyncResult:
        """Apply outcomes (fenced) and their links, then lease up to ``claim`` due URLs, in one transaction.

        The worker's row counts the outcomes applied (``pages_done``,
        ``pages_failed``, ``bytes_archived``) in the same transaction, so its
        numbers are exactly what it committed, even if it is killed next.
        """

        def run(conn: Connection) -> tuple[SyncResult, list[tuple[int, int]]]:
            now = self.now_ms()
            reaped = claim_sql.reap(conn, crawl_id, now, lease_ms, self._lock) if reap else 0
            accepted, added, fresh, done, found = completion.complete(
                conn,
                self._outcomes,
                self._lock,
                self._adder,
                crawl_id,
                owner,
                outcomes,
                default_delay_ms,
                now,
            )
            want, refetch_only = (
                claim_sql.budget(conn, crawl_id, claim, done, self._lock)
                if claim > 0
                else (0, False)
            )
            # Revisits that came due go back to pending first, so this very claim may take them.
            promoted = revisit_sql.promote(conn, crawl_id, now, self._lock) if claim > 0 else 0
            claimed = (
                claim_sql.lease_due(
                    conn,
                    self.engine,
                    self._rng,
                    self._lock,
                    crawl_id,
                    owner,
                    want,
                    lease_ms,
                    per_host,
                    jitter,
                    horizon_ms,
                    now,
                    refetch_only=refetch_only,
                )
                if want > 0
                else []
            )
            claim_sql.count_reaped(conn, crawl_id, reaped)
            applied = [o for o, ok in zip(outcomes, accepted, strict=True) if ok]
            if applied:
                worker_sql.count(
                    conn, crawl_id, owner, now, completion.worker_counts(applied, done, found)
                )
            return SyncResult(accepted, claimed, added, reaped, found, promoted), fresh

        return self._tx_adding(run)

    def reserve_slot(self, crawl_id: int, host_key: int, jitter: float) -> int:
        """Reserve the next politeness slot of a host outside a claim (redirect hops, robots)."""
        return self._now_tx(
            claim_sql.reserve_slot, self._rng, self._lock, crawl_id, host_key, jitter
        )

    def heartbeat(self, crawl_id: int, owner: str, lease_ms: int) -> int:
        """Record that ``owner`` is alive, which keeps every lease it holds; returns 1 if it is registered.

        Leases are kept by the owner's heartbeat, not by rewriting each URL row:
        the reaper takes a URL only when its lease time passed *and* its owner's
        heartbeat is older than ``lease_ms``.
        """
        return self._now_tx(worker_sql.heartbeat, crawl_id, owner)

    def leases_held(self, crawl_id: int, owner: str) -> dict[int, int]:
        """The leases ``owner`` holds now: url id -> lease token (the leased rows, by ``ix_urls_status``)."""
        q = select(_U.id, _U.lease_token).where(
            _U.crawl_id == crawl_id, _U.status == "leased", _U.lease_owner == owner
        )
        return self._tx(
            lambda c: {int(r.id): int(r.lease_token) for r in c.execute(q)}, readonly=True
        )

    def release(self, crawl_id: int, owner: str) -> int:
        """Give back every lease ``owner`` holds without charging an attempt; returns how many."""
        return self._now_tx(worker_sql.release, crawl_id, owner)

    def release_dead_local(self, crawl_id: int, hostname: str, alive: Callable[[int], bool]) -> int:
        """Return the leases of workers on this machine whose process is gone (after kill -9)."""
        rows = self._tx(lambda c: worker_sql.running_on(c, crawl_id, hostname), readonly=True)
        total = 0
        for r in rows:
            if alive(r.pid):
                continue
            total += self._now_tx(worker_sql.release_dead, crawl_id, r.id)
        return total

    def pending_left(self, crawl_id: int, lease_ms: int | None = None) -> bool:
        """True while any URL is pending or leased.

        With ``lease_ms``, also while a WARC file bound for S3 is not uploaded
        and its worker has missed its heartbeats: once the lease passes, its
        URLs go back to pending (:func:`~shoal.frontier.warc_files.release_lost`).
        """
        q = (
            select(_U.id)
            .where(_U.crawl_id == crawl_id, _U.status.in_(("pending", "leased")))
            .limit(1)
        )

        def run(c: Connection) -> bool:
            if c.execute(q).first() is not None:
                return True
            silent = max(1000, lease_ms // 2) if lease_ms is not None else None
            return silent is not None and warc_files.lost_files_waiting(
                c, crawl_id, self.now_ms(), silent
            )

        return self._tx(run, readonly=True)

    def wake_at(self, crawl_id: int) -> int | None:
        """The earliest time (ms) a URL may become claimable (a retry or a revisit), or None."""
        return self._tx(lambda c: revisit_sql.wake_at(c, crawl_id), readonly=True)

    def refresh_urls(self, crawl_id: int, items: Sequence[tuple[int, int]]) -> int:
        """Make ``done`` pages due now whose sitemap ``(url_key, lastmod ms)`` is after their last fetch."""
        if not items:
            return 0
        return self._tx(lambda c: revisit_sql.refresh(c, crawl_id, items, self.now_ms()))

    def revisit_schedule(self, crawl_id: int) -> revisit_sql.RevisitSchedule:
        """What is due when (for ``shoal status``)."""
        return self._tx(lambda c: revisit_sql.schedule(c, crawl_id, self.now_ms()), readonly=True)

    def count_done(self, crawl_id: int) -> int:
        """Pages fetched so far (the crawl's counter)."""
        return int(
            self._tx(
                lambda c: c.execute(reads.pages_fetched(crawl_id)).scalar_one(),
                readonly=True,
            )
        )

    def skip_pending(self, crawl_id: int, reason: str) -> int:
        """Mark every pending URL never fetched ``skipped`` with ``reason`` (e.g. max_pages reached).

        A page fetched before and pending again for its revisit keeps its place.
        """
        return self._tx(lambda c: claim_sql.skip_unfetched(c, crawl_id, reason))

    def redirect_chain(self, url_id: int, limit: int) -> list[int]:
        """The url_keys of the URLs that redirected to this one (nearest first), up to ``limit``."""

        def run(conn: Connection) -> list[int]:
            keys: list[int] = []
            current: int | None = url_id
            for _ in range(limit + 1):
                row = conn.execute(
                    select(_U.url_key, _U.parent_id, _U.redirects).where(_U.id == current)
                ).first()
                if row is None:
                    break
                keys.append(row.url_key)
                if row.redirects <= 0 or row.parent_id is None:
                    break
                current = row.parent_id
            return keys

        return self._tx(run, readonly=True)

    # -- workers and events ----------------------------------------------

    def register_worker(
        self,
        crawl_id: int,
        worker_id: str,
        *,
        hostname: str,
        ip: str | None,
        pid: int,
        version: str,
        concurrency: int,
    ) -> None:
        """Record a worker as running."""
        now = self.now_ms()
        self._tx(
            lambda c: worker_sql.register(
                c,
                crawl_id,
                worker_id,
                now,
                hostname=hostname,
                ip=ip,
                pid=pid,
                version=version,
                concurrency=concurrency,
            )
        )

    def stop_worker(
        self, worker_id: str, state: str = "stopped", detail: str | None = None
    ) -> None:
        """Record a worker as stopped (or ``failed`` with a detail)."""
        now = self.now_ms()
        self._tx(lambda c: worker_sql.stop(c, worker_id, state, detail, now))

    def record_event(
        self,
        crawl_id: int,
        kind: str,
        message: str,
        *,
        severity: str = "info",
        worker_id: str | None = None,
        url: str | None = None,
        host: str | None = None,
        error_class: str | None = None,
        signature: str | None = None,
    ) -> None:
        """Append an event (finished, critical, new_error, blocked, quality, ...)."""
        now = self.now_ms()
        self._tx(
            lambda c: event_sql.record(
                c,
                crawl_id,
                now,
                kind,
                message,
                severity=severity,
                worker_id=worker_id,
                url=url,
                host=host,
                error_class=error_class,
                signature=signature,
            )
        )

    def has_signature(self, crawl_id: int, signature: str) -> bool:
        """True when an error of this signature was already recorded for the crawl."""
        return self._tx(lambda c: event_sql.has_signature(c, crawl_id, signature), readonly=True)

    def pending_events(
        self, crawl_id: int | None = None, kinds: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """Events not yet notified (oldest first, at most 500)."""
        wanted = None if kinds is None else list(kinds)
        return self._tx(lambda c: reads.unsent_events(c, crawl_id, wanted), readonly=True)

    def claim_event(self, event_id: int) -> bool:
        """Mark an event as being sent; True for the one caller of the fleet that claimed it."""
        return self._tx(lambda c: event_sql.claim(c, event_id))

    # -- reading for status and parse ---------------------------------------

    def status(
        self, crawl_id: int, *, top_hosts: int = 50, errors: int = 20, minutes: int = 240
    ) -> reads.StatusSnapshot:
        """The whole status of a crawl, read in one consistent read-only transaction."""
        return self._tx(
            lambda c: reads.snapshot(
                c, crawl_id, self.now_ms(), top_hosts=top_hosts, errors=errors, minutes=minutes
            ),
            readonly=True,
        )

    def status_counts(self, crawl_id: int) -> dict[str, int]:
        """URLs of the crawl by status (every status present)."""
        return self._tx(lambda c: reads.status_counts(c, crawl_id), readonly=True)

    def captures(self, crawl_id: int, *, assets: bool = False) -> list[reads.CaptureRow]:
        """The crawl's archived responses in archive order: pages, or with ``assets`` only assets."""
        return self._tx(lambda c: reads.capture_rows(c, crawl_id, assets=assets), readonly=True)

    # -- WARC files -----------------------------------------------------------------------------

    def _now_tx(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args, now)`` in one transaction, ``now`` read inside it."""
        return self._tx(lambda c: fn(c, *args, self.now_ms()))

    def warc_file_opened(
        self, crawl_id: int, name: str, worker_id: str, hostname: str, location: str
    ) -> None:
        """Record a WARC file its writer just created, bound for ``location``."""
        self._now_tx(warc_files.opened, crawl_id, name, worker_id, hostname, location)

    def warc_file_closed(self, crawl_id: int, name: str, size: int, sha256: str) -> None:
        """A WARC file is complete on its worker's disk."""
        self._now_tx(warc_files.closed, crawl_id, name, size, sha256)

    def warc_file_uploaded(self, crawl_id: int, name: str, location: str) -> None:
        """A WARC file is uploaded and verified at ``location``: its captures are safe."""
        self._now_tx(warc_files.uploaded, crawl_id, name, location)

    def unsafe_warc_files(
        self, crawl_id: int, hostname: str | None = None
    ) -> list[warc_files.WarcFileRow]:
        """WARC files bound for S3 and not uploaded yet (of one host, or all)."""
        return self._tx(lambda c: warc_files.unsafe_files(c, crawl_id, hostname), readonly=True)

    def release_lost_files(self, crawl_id: int, lease_ms: int) -> int:
        """Put back to pending the URLs of unuploaded files whose worker is dead; returns how many."""
        return self._tx(
            lambda c: warc_files.release_lost(c, crawl_id, self.now_ms(), lease_ms, self._lock)
        )

    def query(self, q: Any) -> list[Any]:
        """Run a read-only SELECT and return its rows: for tests and bench scripts only.

        Code under ``src/shoal`` outside the frontier package never builds SQL;
        it calls the named methods above.
        """
        return self._tx(lambda c: list(c.execute(q).all()), readonly=True)


_satisfies_contract: type[Frontier] = SqlFrontier
"""mypy checks here that :class:`SqlFrontier` implements every method of :class:`Frontier`."""
