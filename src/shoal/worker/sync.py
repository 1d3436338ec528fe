"""The sync task: a worker's one conversation with the frontier, batched.

Fetch tasks hand outcomes to :meth:`FrontierSync.put` and take leased URLs from
:attr:`FrontierSync.queue`. The sync loop writes the outcomes (with their
discovered links) and claims the next batch in one transaction every
``flush_interval``, after the WARC records they refer to are flushed, so a URL
is never ``done`` without its record. Guarantees:

- **Database calls** run on one dedicated thread; heartbeats on another (with
  their own pooled connection), so a slow sync never delays them past the lease.
- **Grace.** While the database is unreachable, calls are retried with backoff
  for ``worker.db_grace_seconds``; past it the worker stops with
  :class:`~shoal.errors.CriticalStop`.
- **Leases across an outage.** Heartbeats go on being tried while the
  database is away, and after a failed call the retry sends a heartbeat
  first, so on its return our leases that nobody reaped are ours again; this
  worker then reaps nothing for one lease period (nor in its first lease
  period after start), so the other workers of the fleet get their heartbeat
  in first too. Outcomes of an outage shorter than the grace are accepted on
  return; anything another worker really claimed is fenced by its lease token.
- **Lease view.** :meth:`FrontierSync.owns` says, just before each fetch,
  whether a claimed URL is still ours: while the last good heartbeat is
  younger than the lease nobody can have reaped it (no query); past that (the
  process was stopped, say by SIGSTOP) a heartbeat is sent and the held
  leases are read back once, and the URLs reaped meanwhile are dropped
  without a request.
- **Budget.** No more is claimed than ``limits.max_pages`` allows given what
  the crawl has done and what this worker holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from shoal.errors import (
    CriticalStop,
    DatabaseFull,
    DatabaseUnavailable,
    FrontierError,
    SkipReason,
)
from shoal.frontier.contract import ClaimedURL, Frontier, Outcome, Status, SyncResult
from shoal.notify import Notifier
from shoal.spec import Spec
from shoal.worker.revisits import RevisitPlan, idle_seconds, new_pages_message
from shoal.worker.stats import WorkerStats

__all__ = ["FrontierSync", "LeaseLost"]

log = logging.getLogger(__name__)
T = TypeVar("T")

LINKS_PER_TRANSACTION = 20_000
"""Outcomes are written in several transactions when their links exceed this many."""


class LeaseLost(Exception):
    """The URL's lease is no longer this worker's (reaped while it was stopped): not fetched."""


class FrontierSync:
    """Outcomes out, claims in: the database side of one worker (see the module docstring).

    ``flush_archive`` makes the WARC records written so far durable; it is
    awaited before any outcome referring to them is committed. ``accepted`` is
    called with each outcome the frontier applied (not fenced).
    """

    def __init__(
        self,
        *,
        frontier: Frontier,
        crawl_id: int,
        worker_id: str,
        spec: Spec,
        stats: WorkerStats,
        flush_archive: Callable[[], Awaitable[None]],
        accepted: Callable[[Outcome], None],
        exit_when_idle: bool = True,
        notifier: Notifier | None = None,
    ) -> None:
        self.frontier = frontier
        self.crawl_id = crawl_id
        self.worker_id = worker_id
        self.spec = spec
        self.stats = stats
        self._flush_archive = flush_archive
        self._accepted = accepted
        self.exit_when_idle = exit_when_idle
        self.notifier = notifier
        w = spec.worker
        self.concurrency = w.concurrency
        self.batch = w.claim_batch or max(16, w.concurrency * 2)
        self.lease_ms = int(w.lease_seconds * 1000)
        self.delay_ms = int(spec.politeness.delay * 1000)
        self.queue: asyncio.Queue[ClaimedURL] = asyncio.Queue()
        self.inflight = 0
        self.finished = False
        """True once the crawl had nothing left to do (this worker marked or found it finished)."""
        self.stopping = asyncio.Event()
        self.hurried = False
        self.keeps_open = RevisitPlan.of(spec).keeps_open
        """A crawl with revisit rules is never finished: the loop waits for the next due page."""
        self._wake = asyncio.Event()
        self._outcomes: list[Outcome] = []
        self._urls: dict[int, str] = {}
        """The URLs of the leases this worker holds (for event messages)."""
        self._fetched_base = 0
        self._last_reap = float("-inf")
        self._db = ThreadPoolExecutor(1, thread_name_prefix="shoal-db")
        self._hb = ThreadPoolExecutor(1, thread_name_prefix="shoal-heartbeat")
        # The database-loss state (monotonic times). While a call failed after the last good
        # contact, leases may only be trusted again after a heartbeat gets through.
        self._db_failed_at = 0.0
        self._db_back_at = float("-inf")
        self._db_gave_up = False
        self._orphans_possible = False
        # The lease view: until this database-clock instant nobody can have reaped our leases.
        self._leases_safe_until = 0
        self._tokens: dict[int, int] = {}
        """The leases this worker believes it holds: url id -> lease token."""
        self._checking: asyncio.Task[None] | None = None
        self._must_check = False

    # -- calls ----------------------------------------------------------------

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one frontier call on the database thread (no retry)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, lambda: fn(*args, **kwargs))

    async def retry(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call the frontier; while the database is unreachable retry with backoff for the grace period."""
        grace = self.spec.worker.db_grace_seconds
        start = time.monotonic()
        delay = 0.5
        while True:
            try:
                result = await self.call(fn, *args, **kwargs)
            except DatabaseFull as exc:
                raise CriticalStop(
                    f"{exc} (free disk space on the database's server or make it writable, "
                    "then run the crawl again)"
                ) from None
            except DatabaseUnavailable as exc:
                self.stats.db_errors += 1
                self._db_failed_at = time.monotonic()
                # A transaction whose commit was not acknowledged may have leased URLs we never saw.
                self._orphans_possible = True
                waited = time.monotonic() - start
                if waited >= grace or self._db_gave_up or self.hurried:
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
                # Back? A heartbeat goes first: it keeps the leases nobody reaped meanwhile.
                await self._beat()
                continue
            return result

    @property
    def db_gave_up(self) -> bool:
        """True once the database stayed unreachable past the grace (the worker stops critically)."""
        return self._db_gave_up

    @property
    def db_lost(self) -> bool:
        """True while the last frontier call failed and no call got through since."""
        return self._db_failed_at > self._db_back_at

    def _db_ok(self) -> None:
        if self.db_lost:
            self._db_back_at = time.monotonic()

    # -- starting and stopping ------------------------------------------------

    async def start(self, register: Callable[[], None]) -> None:
        """Register the worker (``register`` runs on the database thread) and read the crawl's count."""
        await self.retry(register)
        self._leases_safe_until = self.frontier.now_ms() + self.lease_ms * 3 // 4
        # A worker that starts during or just after an outage must not reap the fleet's leases
        # before their owners' heartbeats are back in: it waits one lease period, as after an outage.
        self._db_back_at = time.monotonic()
        self._fetched_base = await self.retry(self.frontier.count_done, self.crawl_id)

    def stop(self, hurry: bool = False) -> None:
        """Ask the sync loop to stop claiming and end once nothing is in flight.

        With ``hurry`` an unreachable database is no longer waited for either.
        """
        self.hurried = self.hurried or hurry
        self.stopping.set()
        self._wake.set()

    def put(self, outcome: Outcome) -> None:
        """Hand over one outcome; the sync loop writes it soon (sooner when many are waiting)."""
        self._drop_token(outcome.url_id, outcome.lease_token)
        self._outcomes.append(outcome)
        if len(self._outcomes) >= self.batch // 2 or self.queue.qsize() < self.concurrency // 2:
            self._wake.set()

    def give_back(self, c: ClaimedURL) -> None:
        """Return a claimed URL untouched (its attempt not counted): stopping, or a critical error."""
        self._drop_token(c.id, c.lease_token)
        self._outcomes.append(
            Outcome(c.id, c.lease_token, Status.PENDING, host_key=c.host_key, refund_attempt=True)
        )

    async def finish(self, state: str, detail: str | None, critical: str | None) -> None:
        """Write what is left, give back every queued lease and record the worker's stop."""
        while not self.queue.empty():
            self.give_back(self.queue.get_nowait())
        try:
            if self._outcomes:
                with contextlib.suppress(CriticalStop):  # an archive failure: written, then raised
                    await self._sync_once(claim=0)
            await self.call(self.frontier.release, self.crawl_id, self.worker_id)
            await self.call(self.frontier.stop_worker, self.worker_id, state, detail)
            if critical:
                await self.call(
                    self.frontier.record_event,
                    self.crawl_id,
                    "critical",
                    critical,
                    severity="error",
                    worker_id=self.worker_id,
                    error_class="critical",
                )
            await self.notify()
        except (FrontierError, CriticalStop) as exc:
            log.error("could not record the worker's stop: %s", exc)

    def close(self) -> None:
        """Wait for the database threads to end."""
        self._db.shutdown(wait=True)
        self._hb.shutdown(wait=True)

    # -- the sync loop ----------------------------------------------------------

    def want(self) -> int:
        """How many URLs to claim now: room in the batch, within the crawl's page budget."""
        if self.stopping.is_set():
            return 0
        have = self.queue.qsize() + self.inflight
        want = self.batch - have
        limit = self.spec.limits.max_pages
        if limit is not None and not self.keeps_open:
            # With revisits, refetches need claims past the budget: new pages are refused
            # one by one instead (:meth:`over_budget`).
            budget = limit - (self._fetched_base + self.stats.done) - have
            want = min(want, budget)
        return max(0, want)

    def over_budget(self, c: ClaimedURL) -> bool:
        """True for a first fetch the crawl's ``max_pages`` no longer allows (crawls that stay open)."""
        left = self.budget_left()
        return self.keeps_open and left is not None and left <= 0 and c.kind != "asset"

    def budget_left(self) -> int | None:
        """Pages the crawl may still fetch beyond what this worker holds (None: no limit)."""
        limit = self.spec.limits.max_pages
        if limit is None:
            return None
        return max(0, limit - (self._fetched_base + self.stats.done - self.stats.revisits))

    async def run(self) -> None:
        """Sync until the crawl is finished, or until stopped and nothing is in flight."""
        interval = self.spec.worker.flush_interval
        idle_sleep = 0.05
        while True:
            stopping = self.stopping.is_set()
            claimed = await self._sync_once(0 if stopping else self.want())
            if stopping and self.inflight == 0:
                return
            if claimed == 0 and self.queue.empty() and self.inflight == 0 and not self._outcomes:
                if self._orphans_possible:
                    # We hold nothing, so any lease the database gives us came from a sync whose
                    # answer was lost with the connection: give it back, or it is stuck while we live.
                    self._orphans_possible = False
                    if await self.retry(self.frontier.release, self.crawl_id, self.worker_id):
                        continue
                if (
                    self.spec.limits.max_pages is not None
                    and not stopping
                    and (self.want() == 0 or (self.keeps_open and self.budget_left() == 0))
                ):
                    await self.retry(
                        self.frontier.skip_pending, self.crawl_id, SkipReason.MAX_PAGES.value
                    )
                if self.keeps_open and not await self.retry(
                    self.frontier.pending_left, self.crawl_id, lease_ms=self.lease_ms
                ):
                    # Revisits keep the crawl open: sleep until the next page is due.
                    wake = await self.retry(self.frontier.wake_at, self.crawl_id)
                    await self._sleep_or_wake(idle_seconds(wake, self.frontier.now_ms()))
                    continue
                if not await self.retry(
                    self.frontier.pending_left, self.crawl_id, lease_ms=self.lease_ms
                ):
                    self.finished = True
                    if await self.retry(self.frontier.set_crawl_state, self.crawl_id, "finished"):
                        counts = await self.retry(self.frontier.status_counts, self.crawl_id)
                        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if n)
                        await self.call(
                            self.frontier.record_event,
                            self.crawl_id,
                            "finished",
                            f"crawl {self.spec.name} finished: {summary}",
                            worker_id=self.worker_id,
                        )
                    return
                if not self.exit_when_idle and self.stopping.is_set():
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

    def _reap_now(self) -> bool:
        """Reap on a regular beat, but not within one lease period of a database outage (or start).

        After an outage every worker's heartbeat is old: reaping at once would
        take the whole fleet's leases. Waiting one lease period lets their
        heartbeats in first; what a dead worker held is reaped after that.
        """
        now = time.monotonic()
        if self.db_lost or now - self._db_back_at < self.lease_ms / 1000:
            return False
        if now - self._last_reap > min(5.0, self.lease_ms / 4000):
            self._last_reap = now
            return True
        return False

    async def _sync_once(self, claim: int) -> int:
        outcomes, self._outcomes = self._outcomes, []
        broken: CriticalStop | None = None
        try:
            await self._flush_archive()
        except CriticalStop as exc:
            # The records may not be durable: the URLs they hold go back untouched, the rest is written.
            broken, claim = exc, 0
            outcomes = [o if o.warc_file is None else _refund(o) for o in outcomes]
        p = self.spec.politeness
        reap = self._reap_now()
        # Outcomes go in several transactions when they carry many links, so none is huge.
        parts: list[list[Outcome]] = [[]]
        links = 0
        for o in outcomes:
            if parts[-1] and links + len(o.links) > LINKS_PER_TRANSACTION:
                parts.append([])
                links = 0
            parts[-1].append(o)
            links += len(o.links)
        claimed = 0
        for i, part in enumerate(parts):
            last = i == len(parts) - 1

            def sync(
                part: list[Outcome] = part, last: bool = last, first: bool = i == 0
            ) -> SyncResult:
                return self.frontier.sync(
                    self.crawl_id,
                    self.worker_id,
                    part,
                    claim=claim if last else 0,
                    lease_ms=self.lease_ms,
                    per_host=p.concurrency_per_host,
                    default_delay_ms=self.delay_ms,
                    jitter=p.jitter,
                    horizon_ms=max(2000, int(self.spec.worker.flush_interval * 4000)),
                    reap=reap and first,
                )

            res = await self.retry(sync)
            self._db_ok()
            pages = {k: self._urls.get(k, "") for k in res.found}
            claimed += self._apply(part, res)
            if res.found and sum(res.found.values()):
                await self._new_pages(res.found, pages)
        if broken is not None:
            raise broken
        return claimed

    async def _new_pages(self, found: dict[int, int], urls: dict[int, str]) -> None:
        """One ``new_pages`` event per sync whose revisits found unknown URLs."""
        self.stats.found_new += sum(found.values())
        try:
            await self.call(
                self.frontier.record_event,
                self.crawl_id,
                "new_pages",
                new_pages_message(self.spec.name, found, urls),
                worker_id=self.worker_id,
            )
        except DatabaseUnavailable as exc:
            log.warning("could not record a new_pages event: %s", exc)

    def _apply(self, outcomes: list[Outcome], res: SyncResult) -> int:
        for ok, o in zip(res.accepted, outcomes, strict=True):
            if ok:
                self._accepted(o)
        fenced = res.accepted.count(False)
        if fenced:
            self.stats.fenced += fenced
            log.warning(
                "%d outcome(s) not applied: their lease had expired and another worker owns them",
                fenced,
            )
        self.stats.links_added += res.links_added
        self.stats.leases_reaped += res.leases_reaped
        for o in outcomes:
            self._urls.pop(o.url_id, None)
        for c in res.claimed:
            self._urls[c.id] = c.url
            self._tokens[c.id] = c.lease_token
            self.queue.put_nowait(c)
        self.stats.claimed += len(res.claimed)
        self.stats.queued = self.queue.qsize()
        return len(res.claimed)

    # -- heartbeats and the lease view ---------------------------------------

    async def _beat(self) -> bool:
        """One heartbeat on its own thread; True when it got through."""
        sent_at = self.frontier.now_ms()
        try:
            registered = await asyncio.get_running_loop().run_in_executor(
                self._hb,
                self.frontier.heartbeat,
                self.crawl_id,
                self.worker_id,
                self.lease_ms,
            )
        except FrontierError as exc:
            # While the database is away nobody can reap; once it is back, this heartbeat (tried
            # every few seconds) is what keeps our leases before any other worker may reap them.
            self._db_failed_at = time.monotonic()
            log.warning("heartbeat failed: %s", exc)
            return False
        self._db_ok()
        if sent_at >= self._leases_safe_until:
            # We were silent long enough for our leases to be reaped: check before fetching more.
            self._must_check = True
        if registered:
            # Our heartbeat_at is at least sent_at: no lease of ours is reapable before
            # sent_at + lease. A quarter lease of margin covers the clock offset's error.
            self._leases_safe_until = max(self._leases_safe_until, sent_at + self.lease_ms * 3 // 4)
        return True

    async def heartbeat_loop(self) -> None:
        """Keep our leases alive (also while the database is away, to be first in on its return)."""
        every = max(0.5, self.lease_ms / 4000)
        last_notify = time.monotonic()
        while True:
            await asyncio.sleep(every)
            if time.monotonic() - last_notify > 30:
                last_notify = time.monotonic()
                await self.notify()
            await self._beat()

    async def owns(self, c: ClaimedURL) -> bool:
        """Whether ``c``'s lease is still ours, from the heartbeat's view (see the module docstring).

        Free while our last heartbeat is younger than the lease. Past that (the
        process was stopped, or the heartbeats failed), the held leases are read
        back once for every fetch waiting on the answer, and the ones another
        worker reaped meanwhile are dropped. While the database is unreachable
        the answer is yes: nobody can reap then, and if somebody did, the
        outcome is fenced on return.
        """
        if self._tokens.get(c.id) != c.lease_token:
            return False
        if self.db_lost or (
            not self._must_check and self.frontier.now_ms() < self._leases_safe_until
        ):
            return True
        if self._checking is None or self._checking.done():
            self._checking = asyncio.create_task(self._check_leases())
        with contextlib.suppress(FrontierError):
            await asyncio.shield(self._checking)
        return self._tokens.get(c.id) == c.lease_token

    def forget(self, c: ClaimedURL) -> None:
        """Drop a URL whose lease is no longer ours: no outcome, no request."""
        if self._drop_token(c.id, c.lease_token):
            self._urls.pop(c.id, None)
        self.stats.leases_dropped += 1

    def _drop_token(self, url_id: int, token: int) -> bool:
        """Forget lease (url_id, token); a newer lease of the same URL (claimed again) stays."""
        if self._tokens.get(url_id) == token:
            del self._tokens[url_id]
            return True
        return False

    async def _check_leases(self) -> None:
        if not await self._beat():
            return
        before = dict(self._tokens)  # leases claimed after this point are not judged by this read
        held = await self.call(self.frontier.leases_held, self.crawl_id, self.worker_id)
        self._must_check = False
        lost = [i for i, t in before.items() if held.get(i) != t and self._tokens.get(i) == t]
        for i in lost:
            del self._tokens[i]
        if lost:
            log.warning(
                "%d lease(s) were taken back while this worker was not heard from: "
                "their URLs are not fetched here",
                len(lost),
            )

    async def notify(self) -> None:
        """Send the crawl's pending notifications (never raises: notifications never stop a crawl)."""
        if self.notifier is None or not self.notifier.enabled():
            return
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._hb, self.notifier.send_pending, self.frontier, self.crawl_id, self.spec.name
            )
        except Exception as exc:  # notifications never stop a crawl
            log.warning("notify failed: %s", exc)


def _refund(o: Outcome) -> Outcome:
    """``o``'s URL given back untouched: pending again, its attempt not counted, nothing else kept."""
    return Outcome(
        o.url_id, o.lease_token, Status.PENDING, host_key=o.host_key, refund_attempt=True
    )
