"""The worker: claim → fetch → archive → extract links → complete, until the crawl ends.

A worker holds no state the database does not have. It runs on one asyncio
loop: ``concurrency`` fetch tasks take leased URLs from a local queue, and one
sync task writes their outcomes and discovered links and claims the next batch
in a single transaction every ``flush_interval`` (DESIGN.md: batch the
database work). The WARC files are flushed (and fsync'd) before the outcomes
that refer to them are committed, so a URL is never ``done`` without its
record. Database calls run on one dedicated thread, WARC writes on another.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from shoal import __version__
from shoal.archive import WarcWriter
from shoal.content import HTML_TYPES
from shoal.content.charset import decode_html
from shoal.content.codings import coding_problem, content_decode
from shoal.errors import (
    ContentCodingError,
    DatabaseUnavailable,
    ErrorClass,
    FetchError,
    PolicyRefusal,
    SkipReason,
)
from shoal.exchange import FetchRequest, FetchResult
from shoal.fetch.base import Fetcher
from shoal.fetch.classify import classify_status, error_signature, is_redirect, parse_retry_after
from shoal.fetch.http import HostHeaders, HttpFetcher
from shoal.fetch.robots import RobotsCache
from shoal.frontier.contract import ClaimedURL, HostUpdate, NewURL, Outcome, Status, SyncResult
from shoal.frontier.policy import retry_at
from shoal.frontier.sql import SqlFrontier
from shoal.notify import Notifier
from shoal.secrets import redact_text, redact_url
from shoal.spec import Spec
from shoal.urls import Canonical, HostScope, URLError, canonicalize, host_of
from shoal.worker.links import LinkExtractor, Router, without_userinfo
from shoal.worker.stats import WorkerStats

__all__ = ["CriticalStop", "Worker", "make_worker_id"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class CriticalStop(Exception):
    """A critical error: the worker stops cleanly and says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def make_worker_id() -> str:
    """``hostname-pid-random``: unique across machines and restarts."""
    return f"{socket.gethostname()[:60]}-{os.getpid()}-{random.getrandbits(24):06x}"


def _local_ip() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET: no packet is sent by connect() on UDP
            return str(s.getsockname()[0])
    except OSError:
        return None


@dataclass
class _HostMemory:
    """What this worker remembers of a host between fetches (not shared)."""

    refusal_logged: bool = False
    block_streak: int = 0
    robots_delay_ms: int | None = None
    next_start: float = 0.0
    """Monotonic time before which this worker starts no request to the host (Crawl-delay)."""


class Worker:
    """Runs one crawl's loop in this process until the crawl is finished or it is stopped.

    ``fetchers`` maps a rule's ``render`` value (``http``, ``browser``) to the
    fetcher that serves it.
    """

    def __init__(
        self,
        *,
        spec: Spec,
        frontier: SqlFrontier,
        crawl_id: int,
        fetchers: dict[str, Fetcher],
        archive: WarcWriter,
        robots: RobotsCache | None,
        worker_id: str | None = None,
        stats: WorkerStats | None = None,
        exit_when_idle: bool = True,
        notifier: Notifier | None = None,
    ) -> None:
        self.spec = spec
        self.frontier = frontier
        self.crawl_id = crawl_id
        self.fetchers = fetchers
        self.archive = archive
        self.robots = robots
        self.id = worker_id or make_worker_id()
        self.stats = stats or WorkerStats()
        self.exit_when_idle = exit_when_idle
        self.notifier = notifier
        self.router = Router(spec.rules)
        self.scope = HostScope(_allowed_hosts(spec), spec.scope.strip_query_params)
        self.links = LinkExtractor(self.router, self.scope, spec.limits)
        self.host_headers = HostHeaders(spec.scope.resolved_headers(), spec.crawl.seeds)
        w = spec.worker
        self.concurrency = w.concurrency
        self.batch = w.claim_batch or max(16, w.concurrency * 2)
        self.lease_ms = int(w.lease_seconds * 1000)
        self.delay_ms = int(spec.politeness.delay * 1000)
        self._db = ThreadPoolExecutor(1, thread_name_prefix="shoal-db")
        self._io = ThreadPoolExecutor(1, thread_name_prefix="shoal-warc")
        # Heartbeats have their own thread (and connection) so that a slow sync
        # transaction never delays them past the lease.
        self._hb = ThreadPoolExecutor(1, thread_name_prefix="shoal-heartbeat")
        self._queue: asyncio.Queue[ClaimedURL] = asyncio.Queue()
        self._outcomes: list[Outcome] = []
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._hosts: dict[int, _HostMemory] = {}
        self._seen: set[int] = set()
        self._signatures: set[str] = set()
        self._inflight = 0
        self._unsynced_writes = 0
        self._critical: str | None = None
        self._finished = False
        self._fetched_base = 0
        # The database-loss state (monotonic times): while a call failed after the last good
        # sync, heartbeats stop so that leases lapse, and the next sync reaps the lapsed ones.
        self._db_failed_at = 0.0
        self._synced_at = 0.0
        self._db_gave_up = False
        self._orphans_possible = False

    # -- running ----------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, lambda: fn(*args, **kwargs))

    def stop(self) -> None:
        """Ask the worker to stop: in-flight fetches finish, queued leases are given back."""
        self._stop.set()
        self._wake.set()

    @property
    def finished(self) -> bool:
        """True when the worker stopped because nothing was left to crawl."""
        return self._finished

    async def run(self) -> WorkerStats:
        """Run until the crawl is finished, :meth:`stop` is called, or a critical error."""
        hostname = socket.gethostname()
        await self._call(
            self.frontier.register_worker,
            self.crawl_id,
            self.id,
            hostname=hostname,
            ip=_local_ip(),
            pid=os.getpid(),
            version=__version__,
            concurrency=self.concurrency,
        )
        self._fetched_base = await self._call(self.frontier.count_done, self.crawl_id)
        fetch_tasks = [
            asyncio.create_task(self._fetch_loop(), name=f"fetch-{i}")
            for i in range(self.concurrency)
        ]
        heartbeat = asyncio.create_task(self._heartbeat_loop(), name="heartbeat")
        state, detail = "stopped", None
        try:
            await self._sync_loop()
        except CriticalStop as exc:
            self._critical = exc.message
            state, detail = "failed", exc.message
        finally:
            self._stop.set()
            for t in fetch_tasks:
                t.cancel()
            heartbeat.cancel()
            await asyncio.gather(*fetch_tasks, heartbeat, return_exceptions=True)
            await self._shutdown(state, detail)
        if self._critical:
            raise CriticalStop(self._critical)
        return self.stats

    async def _shutdown(self, state: str, detail: str | None) -> None:
        # Outcomes already produced are written; URLs still queued are given back.
        leftovers = []
        while not self._queue.empty():
            c = self._queue.get_nowait()
            leftovers.append(
                Outcome(
                    c.id,
                    c.lease_token,
                    Status.PENDING,
                    host_key=c.host_key,
                    refund_attempt=True,
                    next_attempt_at=None,
                )
            )
        self._outcomes.extend(leftovers)
        try:
            await self._flush_archive()
            if self._outcomes:
                await self._sync_once(claim=0)
            await self._call(self.frontier.release, self.crawl_id, self.id)
            await self._call(self.frontier.stop_worker, self.id, state, detail)
            if self._critical:
                await self._call(
                    self.frontier.record_event,
                    self.crawl_id,
                    "critical",
                    self._critical,
                    severity="error",
                    worker_id=self.id,
                    error_class="critical",
                )
            await self._notify()
        except (DatabaseUnavailable, CriticalStop) as exc:
            log.error("could not record the worker's stop: %s", exc)
        finally:
            await asyncio.get_running_loop().run_in_executor(self._io, self.archive.close)
            self._db.shutdown(wait=True)
            self._io.shutdown(wait=True)
            self._hb.shutdown(wait=True)

    # -- the sync task: outcomes out, claims in ---------------------------

    def _want(self) -> int:
        if self._stop.is_set():
            return 0
        have = self._queue.qsize() + self._inflight
        want = self.batch - have
        limit = self.spec.limits.max_pages
        if limit is not None:
            budget = limit - (self._fetched_base + self.stats.done) - have
            want = min(want, budget)
        return max(0, want)

    async def _flush_archive(self) -> None:
        if self._unsynced_writes:
            self._unsynced_writes = 0
            await asyncio.get_running_loop().run_in_executor(self._io, self.archive.sync)

    async def _sync_once(self, claim: int) -> int:
        outcomes, self._outcomes = self._outcomes, []
        await self._flush_archive()
        p = self.spec.politeness
        reap = time.monotonic() - getattr(self, "_last_reap", 0.0) > min(5.0, self.lease_ms / 4000)
        if reap:
            self._last_reap = time.monotonic()

        def sync() -> SyncResult:
            # After losing the database, the first sync that gets through reaps first: leases
            # that lapsed while our heartbeats were gone are returned (and counted) before our
            # outcomes are fenced, instead of being revived by our next heartbeat.
            return self.frontier.sync(
                self.crawl_id,
                self.id,
                outcomes,
                claim=claim,
                lease_ms=self.lease_ms,
                per_host=p.concurrency_per_host,
                default_delay_ms=self.delay_ms,
                jitter=p.jitter,
                horizon_ms=max(2000, int(self.spec.worker.flush_interval * 4000)),
                reap=reap or self._db_failed_at > self._synced_at,
            )

        res = await self._db_retry(sync)
        self._synced_at = time.monotonic()
        for ok, o in zip(res.accepted, outcomes, strict=True):
            if ok:  # now in the database: later pages need not send these links again
                self._seen.update(n.url_key for n in o.links)
        fenced = res.accepted.count(False)
        if fenced:
            self.stats.fenced += fenced
            log.warning(
                "%d outcome(s) not applied: their lease had expired and another worker owns them",
                fenced,
            )
        self.stats.links_added += res.links_added
        self.stats.leases_reaped += res.leases_reaped
        for c in res.claimed:
            self._queue.put_nowait(c)
        self.stats.claimed += len(res.claimed)
        self.stats.queued = self._queue.qsize()
        return len(res.claimed)

    async def _db_retry(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call the frontier; while the database is unreachable retry with backoff for the grace period."""
        grace = self.spec.worker.db_grace_seconds
        start = time.monotonic()
        delay = 0.5
        while True:
            try:
                return await self._call(fn, *args, **kwargs)
            except DatabaseUnavailable as exc:
                self.stats.db_errors += 1
                self._db_failed_at = time.monotonic()
                # A transaction whose commit was not acknowledged may have leased URLs we never saw.
                self._orphans_possible = True
                waited = time.monotonic() - start
                if waited >= grace or self._db_gave_up:
                    self._db_gave_up = (
                        True  # the clean stop that follows does not wait a second grace
                    )
                    raise CriticalStop(
                        f"the frontier database was unreachable for {waited:.0f}s: {exc}"
                    ) from None
                pause = min(delay, grace - waited)
                log.warning("frontier database unreachable (%s); retrying in %.1fs", exc, pause)
                await asyncio.sleep(pause)
                delay = min(delay * 2, 10.0)

    async def _sync_loop(self) -> None:
        interval = self.spec.worker.flush_interval
        idle_sleep = 0.05
        while True:
            stopping = self._stop.is_set()
            claimed = await self._sync_once(0 if stopping else self._want())
            if stopping and self._inflight == 0:
                return
            if claimed == 0 and self._queue.empty() and self._inflight == 0 and not self._outcomes:
                if self._orphans_possible:
                    # We hold nothing, so any lease the database gives us came from a sync whose
                    # answer was lost with the connection: give it back, or it is stuck while we live.
                    self._orphans_possible = False
                    if await self._db_retry(self.frontier.release, self.crawl_id, self.id):
                        continue
                if self._want() == 0 and self.spec.limits.max_pages is not None and not stopping:
                    await self._db_retry(
                        self.frontier.skip_pending, self.crawl_id, SkipReason.MAX_PAGES.value
                    )
                if not await self._db_retry(self.frontier.pending_left, self.crawl_id):
                    self._finished = True
                    if await self._db_retry(
                        self.frontier.set_crawl_state, self.crawl_id, "finished"
                    ):
                        await self._call(
                            self.frontier.record_event,
                            self.crawl_id,
                            "finished",
                            await self._call(self._finish_message),
                            worker_id=self.id,
                        )
                    return
                if not self.exit_when_idle and self._stop.is_set():
                    return
                # Nothing due now (politeness slots, retry times): wait a little, longer each time.
                await self._sleep_or_wake(idle_sleep)
                idle_sleep = min(idle_sleep * 2, 1.0)
                continue
            idle_sleep = 0.05
            await self._sleep_or_wake(interval)

    async def _sleep_or_wake(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _finish_message(self) -> str:
        from sqlalchemy import func, select

        from shoal.frontier.tables import urls

        u = urls.c
        rows = self.frontier.query(
            select(u.status, func.count()).where(u.crawl_id == self.crawl_id).group_by(u.status)
        )
        counts = ", ".join(f"{n} {s}" for s, n in sorted(rows))
        return f"crawl {self.spec.name} finished: {counts}"

    async def _notify(self) -> None:
        if self.notifier is None or not self.notifier.enabled():
            return
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._hb, self.notifier.send_pending, self.frontier, self.crawl_id, self.spec.name
            )
        except Exception as exc:  # notifications never stop a crawl
            log.warning("notify failed: %s", exc)

    async def _heartbeat_loop(self) -> None:
        every = max(0.5, self.lease_ms / 4000)
        last_notify = time.monotonic()
        while True:
            await asyncio.sleep(every)
            if time.monotonic() - last_notify > 30:
                last_notify = time.monotonic()
                await self._notify()
            if self._db_failed_at > self._synced_at:
                # The database was lost and no sync got through since: our leases must lapse
                # (others may take the URLs), not be kept alive by a heartbeat that happens to pass.
                continue
            stats = {
                "pages_done": self.stats.done,
                "pages_failed": sum(self.stats.failed.values()),
                "bytes_archived": self.stats.bytes_archived,
            }
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._hb, self.frontier.heartbeat, self.crawl_id, self.id, self.lease_ms, stats
                )
            except DatabaseUnavailable as exc:
                # Leases are not extended while the database is away: they may expire and
                # another worker may take the URLs; the fence then refuses our outcomes.
                log.warning("heartbeat failed: %s", exc)

    # -- the fetch tasks ----------------------------------------------------

    async def _fetch_loop(self) -> None:
        while True:
            c = await self._queue.get()
            if self._stop.is_set():
                self._outcomes.append(
                    Outcome(
                        c.id,
                        c.lease_token,
                        Status.PENDING,
                        host_key=c.host_key,
                        refund_attempt=True,
                    )
                )
                continue
            self._inflight += 1
            try:
                outcome = await self._process(c)
            except CriticalStop as exc:
                self._critical = exc.message
                outcome = Outcome(
                    c.id, c.lease_token, Status.PENDING, host_key=c.host_key, refund_attempt=True
                )
                self._outcomes.append(outcome)
                self.stop()
                continue
            finally:
                self._inflight -= 1
            self._count(outcome)
            self._outcomes.append(outcome)
            if (
                len(self._outcomes) >= self.batch // 2
                or self._queue.qsize() < self.concurrency // 2
            ):
                self._wake.set()

    def _count(self, o: Outcome) -> None:
        s = self.stats
        if o.status is Status.DONE:
            s.done += 1
        elif o.status is Status.FAILED:
            s.failed[o.error_class or "unknown"] += 1
        elif o.status is Status.SKIPPED:
            s.skipped[o.skip_reason or "?"] += 1
        elif o.error_class:
            s.retries += 1

    def _host(self, key: int) -> _HostMemory:
        m = self._hosts.get(key)
        if m is None:
            m = self._hosts[key] = _HostMemory()
        return m

    async def _process(self, c: ClaimedURL) -> Outcome:
        """Fetch one leased URL and decide its outcome; never raises but CriticalStop."""
        try:
            return await self._fetch_and_decide(c)
        except CriticalStop:
            raise
        except FetchError as exc:
            if exc.error_class is ErrorClass.CRITICAL:
                raise CriticalStop(exc.detail) from None
            return self._failure(c, exc.error_class, exc.detail, http_status=exc.http_status)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise CriticalStop(
                    f"cannot write the archive: {exc} (free disk space or change [storage] archive)"
                ) from None
            return await self._unknown(c, exc)
        except Exception as exc:
            return await self._unknown(c, exc)

    async def _unknown(self, c: ClaimedURL, exc: Exception) -> Outcome:
        sig = error_signature(exc)
        log.exception("unexpected error on %s (signature %s)", redact_url(c.url), sig)
        if sig not in self._signatures:
            self._signatures.add(sig)
            try:
                if not await self._call(self.frontier.has_signature, self.crawl_id, sig):
                    await self._call(
                        self.frontier.record_event,
                        self.crawl_id,
                        "new_error",
                        redact_text(
                            f"new kind of error {type(exc).__name__}: {exc} (first seen on {c.url})"
                        ),
                        severity="warning",
                        worker_id=self.id,
                        url=redact_url(c.url),
                        error_class="unknown",
                        signature=sig,
                    )
            except DatabaseUnavailable:
                pass
        return self._failure(
            c, ErrorClass.UNKNOWN, redact_text(f"{type(exc).__name__}: {exc} [signature {sig}]")
        )

    def _failure(
        self,
        c: ClaimedURL,
        cls: ErrorClass,
        detail: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
        ref: Any = None,
        result: FetchResult | None = None,
        host_update: HostUpdate | None = None,
    ) -> Outcome:
        lim = self.spec.limits
        now = self.frontier.now_ms()
        retryable = cls in (
            ErrorClass.TRANSIENT,
            ErrorClass.UNKNOWN,
            ErrorClass.MISSING,
            ErrorClass.BLOCKED,
        )
        max_tries = lim.max_retries if cls is not ErrorClass.MISSING else min(lim.max_retries, 2)
        o = Outcome(
            c.id,
            c.lease_token,
            Status.FAILED,
            host_key=c.host_key,
            error_class=cls.value,
            error_detail=detail,
            http_status=http_status,
            fetched_at=now,
            host_update=host_update,
        )
        if ref is not None and result is not None:
            self._attach(o, ref, result)
        if retryable and c.attempts <= max_tries:
            o.status = Status.PENDING
            o.next_attempt_at = retry_at(
                now,
                c.attempts,
                lim.retry_base,
                lim.retry_max,
                retry_after,
                self.spec.politeness.max_retry_after,
            )
        return o

    @staticmethod
    def _attach(o: Outcome, ref: Any, result: FetchResult) -> None:
        o.warc_file, o.warc_offset, o.warc_length = ref.file, ref.offset, ref.length
        o.warc_record_id = ref.record_id
        o.content_type = result.content_type
        o.body_bytes = len(result.body)
        o.fetch_ms = int(result.elapsed * 1000)

    async def _robots_ok(
        self, c: ClaimedURL, mem: _HostMemory
    ) -> tuple[bool | None, HostUpdate | None, str]:
        """What robots.txt says of ``c``: ``(True, crawl-delay update, "")`` allowed, ``(False, ...)``
        disallowed, ``(None, None, why)`` robots.txt could not be read (5xx, 429, timeout,
        unreachable): disallowed for now, the URL is retried once the cache may ask again."""
        if self.robots is None:
            return True, None, ""
        robots = await self.robots.robots(c.url)
        if not robots.allowed(c.url):
            if robots.temporary:
                why = f"HTTP {robots.status}" if robots.status is not None else "unreachable"
                return None, None, f"robots.txt unavailable ({why}): disallowed for now"
            return False, None, ""
        delay = robots.crawl_delay()
        update = None
        if delay is not None:
            ms = int(min(delay, self.spec.politeness.max_crawl_delay) * 1000)
            if ms > self.delay_ms and mem.robots_delay_ms != ms:
                mem.robots_delay_ms = ms
                update = HostUpdate(c.host_key, min_delay_ms=ms)
        return True, update, ""

    async def _wait_slot(self, not_before_ms: int, host_key: int) -> None:
        """Wait for a politeness slot; a slot missed by more than the tolerance is reserved anew.

        Slots are one interval apart, so starting late would bring this request
        closer to the next worker's; a late start takes a fresh slot instead.
        """
        tolerance = min(250, max(10, self.delay_ms // 20))
        for _ in range(5):
            wait = not_before_ms - self.frontier.now_ms()
            if wait > 0:
                await asyncio.sleep(wait / 1000)
                wait = not_before_ms - self.frontier.now_ms()
            if self.delay_ms <= 0 or -wait <= tolerance:
                return
            not_before_ms = await self._db_retry(
                self.frontier.reserve_slot, self.crawl_id, host_key, self.spec.politeness.jitter
            )

    async def wait_host_slot(self, url: str) -> None:
        """Take a politeness slot of ``url``'s host outside a claim (robots.txt fetches)."""
        if self.delay_ms <= 0:
            return
        try:
            key = canonicalize(url).host_key
        except URLError:
            return
        slot = await self._db_retry(
            self.frontier.reserve_slot, self.crawl_id, key, self.spec.politeness.jitter
        )
        await self._wait_slot(slot, key)

    async def _fetch_and_decide(self, c: ClaimedURL) -> Outcome:
        """Address policy, robots.txt, politeness slot, fetch, archive, then :meth:`_decide`.

        The address policy is asked first, so a refused host is ``skipped``
        ``address_policy`` without a request for its robots.txt either. A 2xx
        response that is not HTML is ``skipped`` ``content_type`` without being
        read or archived when ``limits.archive_non_html`` is off.
        """
        mem = self._host(c.host_key)
        rule = self.router.rule(c.rule)
        render = rule.render if rule is not None else "http"
        fetcher = self.fetchers.get(render)
        if fetcher is None:
            raise CriticalStop(
                f"rule {rule.label if rule else '?'} asks for render = {render!r} but this worker has no {render} "
                "fetcher (run `shoal doctor` to check the browser installation)"
            )
        lim = self.spec.limits
        skip_types = not lim.archive_non_html and c.kind != "asset"
        http = self.fetchers.get("http")
        try:
            if isinstance(http, HttpFetcher):
                await http.check_address(c.url)
            ok, robots_update, why = await self._robots_ok(c, mem)
            if ok is False:
                return Outcome(
                    c.id,
                    c.lease_token,
                    Status.SKIPPED,
                    host_key=c.host_key,
                    skip_reason=SkipReason.ROBOTS.value,
                )
            if ok is None:
                ttl = self.robots.temporary_ttl if self.robots is not None else 300.0
                return self._failure(c, ErrorClass.TRANSIENT, why, retry_after=ttl)
            await self._wait_slot(c.not_before, c.host_key)
            if mem.robots_delay_ms is not None:
                # URLs claimed before robots.txt was read hold slots at the old interval:
                # space them by the Crawl-delay here (later claims get it from the hosts table).
                now = time.monotonic()
                start = max(now, mem.next_start)
                mem.next_start = start + mem.robots_delay_ms / 1000
                if start > now:
                    await asyncio.sleep(start - now)
            deadline = time.monotonic() + lim.fetch_timeout
            request = FetchRequest(
                c.url,
                rule,
                deadline,
                headers=tuple(self.host_headers.for_url(c.url).items()),
                html_only=skip_types,
            )
            result = await fetcher.fetch(request)
        except PolicyRefusal as exc:
            if not mem.refusal_logged:
                mem.refusal_logged = True
                log.warning("not fetching from %s: %s", host_of(c.url), redact_text(exc.detail))
            return Outcome(
                c.id,
                c.lease_token,
                Status.SKIPPED,
                host_key=c.host_key,
                skip_reason=exc.reason.value,
                error_detail=redact_text(exc.detail),
            )
        if skip_types and 200 <= result.status < 300 and result.content_type not in HTML_TYPES:
            return Outcome(
                c.id,
                c.lease_token,
                Status.SKIPPED,
                host_key=c.host_key,
                skip_reason=SkipReason.CONTENT_TYPE.value,
                http_status=result.status,
                content_type=result.content_type,
                host_update=robots_update,
                error_detail=f"{result.content_type} is not archived (limits.archive_non_html = false)",
            )
        loop = asyncio.get_running_loop()
        ref = await loop.run_in_executor(
            self._io,
            partial(self.archive.write_exchange, result, fetched_at=result.started_at or None),
        )
        self._unsynced_writes += 1
        self.stats.bytes_archived += ref.length
        return await self._decide(c, rule, result, ref, robots_update, mem)

    async def _decide(
        self,
        c: ClaimedURL,
        rule: Any,
        res: FetchResult,
        ref: Any,
        host_update: HostUpdate | None,
        mem: _HostMemory,
    ) -> Outcome:
        now = self.frontier.now_ms()
        status = res.status
        p = self.spec.politeness
        if status in (403, 429):
            mem.block_streak += 1
        elif status < 400:
            mem.block_streak = 0
        cls = classify_status(status)
        if cls is None and not is_redirect(status):
            # The body matters for a page, not for an error or a redirect (those keep their status's class).
            if res.truncated == "length":
                return self._failure(
                    c,
                    ErrorClass.PERMANENT,
                    f"body over the {self.spec.limits.max_body_bytes}-byte cap",
                    http_status=status,
                    ref=ref,
                    result=res,
                    host_update=host_update,
                )
            if res.truncated == "unspecified":
                return self._failure(
                    c,
                    ErrorClass.PERMANENT,
                    "malformed response body (broken transfer framing)",
                    http_status=status,
                    ref=ref,
                    result=res,
                    host_update=host_update,
                )
            if res.truncated is not None:
                return self._failure(
                    c,
                    ErrorClass.TRANSIENT,
                    f"body cut short ({res.truncated})",
                    http_status=status,
                    ref=ref,
                    result=res,
                    host_update=host_update,
                )
        if cls is not None:
            retry_after = (
                parse_retry_after(res.header("retry-after")) if status in (429, 503) else None
            )
            if retry_after is not None:
                nb = now + int(min(retry_after, p.max_retry_after) * 1000)
                host_update = HostUpdate(
                    c.host_key,
                    not_before=nb,
                    min_delay_ms=host_update.min_delay_ms if host_update else None,
                )
            if mem.block_streak >= p.block_threshold:
                until = now + int(p.block_pause * 1000)
                host_update = HostUpdate(c.host_key, pause_until=until, pause_reason="blocked")
                await self._call(
                    self.frontier.record_event,
                    self.crawl_id,
                    "blocked",
                    f"host {host_of(c.url)} answered {mem.block_streak} times 403/429 in a row: paused for {p.block_pause:.0f}s",
                    severity="warning",
                    worker_id=self.id,
                    url=redact_url(c.url),
                    host=host_of(c.url),
                    error_class="blocked",
                )
                mem.block_streak = 0
                return self._failure(
                    c,
                    ErrorClass.BLOCKED,
                    f"HTTP {status}; host paused",
                    http_status=status,
                    retry_after=p.block_pause,
                    ref=ref,
                    result=res,
                    host_update=host_update,
                )
            return self._failure(
                c,
                cls,
                f"HTTP {status} {res.reason}".strip(),
                http_status=status,
                retry_after=retry_after,
                ref=ref,
                result=res,
                host_update=host_update,
            )
        o = Outcome(
            c.id,
            c.lease_token,
            Status.DONE,
            host_key=c.host_key,
            http_status=status,
            fetched_at=now,
            host_update=host_update,
        )
        self._attach(o, ref, res)
        if is_redirect(status):
            return await self._redirect(c, res, o)
        if res.rendered_html is None:
            problem = (
                coding_problem(res.header("content-encoding")) if res.decoded is None else None
            )
            if problem is not None:
                return self._failure(
                    c,
                    ErrorClass.PERMANENT,
                    f"unsupported content coding: {problem}",
                    http_status=status,
                    ref=ref,
                    result=res,
                    host_update=host_update,
                )
            if status == 200 and not res.body and res.content_type in HTML_TYPES:
                # An empty 200 page is a server glitch (overload, a WAF) far more often than a real page.
                return self._failure(
                    c,
                    ErrorClass.TRANSIENT,
                    "HTTP 200 with an empty body",
                    http_status=status,
                    ref=ref,
                    result=res,
                    host_update=host_update,
                )
        if res.content_type in HTML_TYPES:
            if c.kind == "list":
                o.links = self._extract(c, rule, res)
            elif c.kind == "detail" and rule is not None and rule.images:
                o.links = self._assets(c, rule.images, res)
        return o

    async def _redirect(self, c: ClaimedURL, res: FetchResult, o: Outcome) -> Outcome:
        location = res.header("location")
        if not location:
            return o
        try:
            # Credentials in the target (a relative Location inherits the page's) stay out of the frontier.
            target = without_userinfo(canonicalize(location, c.url, self.scope.strip))
        except URLError as exc:
            o.status, o.error_class = Status.FAILED, ErrorClass.PERMANENT.value
            o.error_detail = redact_text(f"redirect to an uncrawlable URL: {exc}")
            return o
        o.final_url = target.url
        hops = c.redirects + 1
        if hops > self.spec.limits.max_redirects:
            o.status, o.error_class = Status.FAILED, ErrorClass.PERMANENT.value
            o.error_detail = f"redirect chain longer than {self.spec.limits.max_redirects} hops"
            return o
        chain = [canonicalize(c.url).url_key]
        if c.redirects > 0:
            chain = await self._call(self.frontier.redirect_chain, c.id, c.redirects)
        if target.url_key in chain:
            o.status, o.error_class = Status.FAILED, ErrorClass.PERMANENT.value
            o.error_detail = f"redirect loop back to {redact_url(target.url)}"
            return o
        new = self.links.new_url(
            target,
            parent_id=c.id,
            parent_rule=c.rule,
            parent_kind=c.kind,
            parent_depth=c.depth,
            redirects=hops,
        )
        if new is None:
            # The target is outside the crawl's scope: recorded so the user sees where it went.
            new = NewURL(
                target.url,
                target.url_key,
                target.host,
                target.host_key,
                c.rule,
                c.kind,
                c.depth,
                parent_id=c.id,
                redirects=hops,
                status=Status.SKIPPED,
                skip_reason=SkipReason.SCOPE.value,
            )
        new.depth = c.depth  # a redirect is the same page moved, not one hop deeper
        o.links = [new]
        return o

    def _html_of(self, res: FetchResult) -> str | bytes:
        """The document to look for links in: the rendered DOM, or the decoded body."""
        if res.rendered_html is not None:
            return res.rendered_html
        if res.decoded is not None:  # decoded (and capped) by the fetcher as it streamed
            text, codec = decode_html(res.decoded, res.header("content-type"))
            return res.decoded if codec in ("utf-8", "utf_8") else text
        body = res.body
        enc = res.header("content-encoding")
        if enc and enc.strip().lower() not in ("identity", ""):
            with contextlib.suppress(
                ContentCodingError
            ):  # mislabelled (a plain body called gzip): use the bytes
                body, _ = content_decode(body, enc, self.spec.limits.max_body_bytes)
        text, codec = decode_html(body, res.header("content-type"))
        return body if codec in ("utf-8", "utf_8") else text

    def _assets(self, c: ClaimedURL, selector: str, res: FetchResult) -> list[NewURL]:
        """Images the rule asks for (for OCR at parse time), fetched as ``asset`` URLs of any host."""
        out = []
        page: set[int] = set()
        for src in self.links.srcs(self._html_of(res), selector):
            try:
                canon = canonicalize(src, c.url, self.scope.strip)
            except URLError:
                continue
            if canon.url_key in self._seen or canon.url_key in page:
                continue
            page.add(canon.url_key)
            out.append(
                NewURL(
                    canon.url,
                    canon.url_key,
                    canon.host,
                    canon.host_key,
                    c.rule,
                    "asset",
                    c.depth,
                    priority=c.depth * 100 - 1,
                    parent_id=c.id,
                )
            )
        return out

    def _extract(self, c: ClaimedURL, rule: Any, res: FetchResult) -> list[NewURL]:
        html = self._html_of(res)
        hrefs, base = self.links.hrefs(html, rule.follow if rule is not None else None)
        base_url = c.url
        if base:
            with contextlib.suppress(URLError):
                base_url = canonicalize(base, c.url).url
        cut = base_url.find("/", base_url.find("//") + 2)
        origin = base_url[:cut] if cut >= 0 else base_url
        seen = self._seen
        page: set[int] = set()
        found: list[Canonical] = []
        for href in hrefs:
            canon = self.links.resolve(href, base_url, origin)
            if canon is None or canon.url_key in seen or canon.url_key in page:
                continue
            page.add(canon.url_key)
            found.append(canon)
        if len(seen) > 2_000_000:
            seen.clear()
        links = self.links.page_links(
            found, parent_id=c.id, parent_rule=c.rule, parent_kind=c.kind, parent_depth=c.depth
        )
        # Links to be written join _seen only once an outcome carrying them is accepted (_sync_once):
        # a fenced outcome's links are dropped, and a later page must be free to bring them again.
        seen.update(page.difference(n.url_key for n in links))
        return links


def _allowed_hosts(spec: Spec) -> list[str]:
    if spec.scope.allowed_hosts:
        return list(spec.scope.allowed_hosts)
    hosts = []
    for s in spec.crawl.seeds:
        try:
            hosts.append(canonicalize(s).host)
        except URLError:
            continue
    return hosts
