"""The worker: claim → fetch → archive → extract links → complete, until the crawl ends.

A worker holds no state the database does not have. It runs on one asyncio
loop: ``concurrency`` fetch tasks take leased URLs from the sync task's queue
(:class:`~shoal.worker.sync.FrontierSync`, which writes outcomes and claims in
batches), check each one in turn against the address policy, robots.txt and
the host's politeness slot, fetch it, write it to the WARC archive, and hand
the response to :class:`~shoal.worker.outcomes.Outcomes`, which turns it into
the URL's outcome. WARC writes run on their own thread.

A critical error (the database gone past its grace, the archive's disk full
or read-only) stops the worker cleanly: the URL it was on and every URL it
holds go back to pending with their attempt refunded, a ``critical`` event is
recorded, and :meth:`Worker.run` raises :class:`~shoal.errors.CriticalStop`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from shoal import __version__
from shoal.archive import WarcWriter
from shoal.content import HTML_TYPES
from shoal.errors import (
    ArchiveError,
    CriticalStop,
    ErrorClass,
    FetchError,
    PolicyRefusal,
    SkipReason,
)
from shoal.exchange import FetchRequest
from shoal.fetch.base import Fetcher
from shoal.fetch.http import HostHeaders
from shoal.fetch.robots import RobotsCache
from shoal.fetch.sitemaps import HostMap
from shoal.frontier.contract import ClaimedURL, Frontier, Outcome
from shoal.notify import Notifier
from shoal.secrets import redact_text
from shoal.spec import Spec
from shoal.urls import host_of
from shoal.worker import revisits
from shoal.worker.hosts import Politeness
from shoal.worker.links import LinkExtractor, Router, crawl_scope
from shoal.worker.outcomes import Outcomes
from shoal.worker.stats import WorkerStats
from shoal.worker.sync import FrontierSync, LeaseLost

__all__ = ["AddressCheck", "Worker", "make_worker_id"]

log = logging.getLogger(__name__)

AddressCheck = Callable[[str], Awaitable[None]]
"""Raises :class:`~shoal.errors.PolicyRefusal` when the address policy refuses a URL's host
(asked before robots.txt, so a refused host gets no request at all)."""


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


class Worker:
    """Runs one crawl's loop in this process until the crawl is finished or it is stopped.

    ``fetchers`` maps a rule's ``render`` value (``http``, ``browser``) to the
    fetcher that serves it; ``address_check`` is asked before anything else
    about a URL (the HTTP fetcher's :meth:`~shoal.fetch.http.HttpFetcher.check_address`).
    """

    def __init__(
        self,
        *,
        spec: Spec,
        frontier: Frontier,
        crawl_id: int,
        fetchers: dict[str, Fetcher],
        archive: WarcWriter,
        robots: RobotsCache | None,
        address_check: AddressCheck | None = None,
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
        self.address_check = address_check
        self.id = worker_id or make_worker_id()
        self.stats = stats or WorkerStats()
        self.router = Router(spec.rules)
        self.links = LinkExtractor(self.router, crawl_scope(spec), spec.limits)
        self.host_headers = HostHeaders(spec.scope.resolved_headers(), spec.crawl.seeds)
        self.concurrency = spec.worker.concurrency
        self._io = ThreadPoolExecutor(1, thread_name_prefix="shoal-warc")
        self.sync = FrontierSync(
            frontier=frontier,
            crawl_id=crawl_id,
            worker_id=self.id,
            spec=spec,
            stats=self.stats,
            flush_archive=self._flush_archive,
            accepted=lambda o: self.links.remember(o.links),
            exit_when_idle=exit_when_idle,
            notifier=notifier,
        )
        self.polite = Politeness(
            spec=spec, frontier=frontier, crawl_id=crawl_id, robots=robots, retry=self.sync.retry
        )
        self.outcomes = Outcomes(
            sync=self.sync,
            links=self.links,
            host_map=HostMap(spec.crawl.host_map),
            plan=revisits.RevisitPlan.of(spec),
        )
        self._unsynced_writes = 0
        self._critical: str | None = None
        self._fetch_tasks: list[asyncio.Task[None]] = []

    # -- running ----------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop: in-flight fetches finish, queued leases are given back."""
        self.sync.stop()

    def hurry(self) -> None:
        """Stop sooner: fetches in flight are abandoned and their URLs given back too.

        The stop stays clean (outcomes written, leases released, the worker's
        row marked stopped); only the wait for slow fetches, and for a database
        that is unreachable, is cut.
        """
        self.sync.stop(hurry=True)
        for t in self._fetch_tasks:
            t.cancel()

    @property
    def finished(self) -> bool:
        """True when the worker stopped because nothing was left to crawl."""
        return self.sync.finished

    @property
    def inflight(self) -> int:
        """Fetches under way now."""
        return self.sync.inflight

    @property
    def queued(self) -> int:
        """Leased URLs waiting for a fetch task."""
        return self.sync.queue.qsize()

    async def run(self) -> WorkerStats:
        """Run until the crawl is finished, :meth:`stop` is called, or a critical error."""
        register = partial(
            self.frontier.register_worker,
            self.crawl_id,
            self.id,
            hostname=socket.gethostname(),
            ip=_local_ip(),
            pid=os.getpid(),
            version=__version__,
            concurrency=self.concurrency,
        )
        heartbeat: asyncio.Task[None] | None = None
        state, detail = "stopped", None
        try:
            await self.sync.start(register)
            self._fetch_tasks = [
                asyncio.create_task(self._fetch_loop(), name=f"fetch-{i}")
                for i in range(self.concurrency)
            ]
            heartbeat = asyncio.create_task(self.sync.heartbeat_loop(), name="heartbeat")
            await self.sync.run()
        except CriticalStop as exc:
            self._critical = exc.message
        finally:
            self.sync.stop()
            tasks = [*self._fetch_tasks, *([heartbeat] if heartbeat is not None else [])]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._critical:
                state, detail = "failed", self._critical
            await self._shutdown(state, detail)
        if self._critical:
            raise CriticalStop(self._critical)
        return self.stats

    async def _shutdown(self, state: str, detail: str | None) -> None:
        # Outcomes already produced are written; URLs still queued are given back.
        try:
            await self.sync.finish(state, detail, self._critical)
        finally:
            try:
                await asyncio.get_running_loop().run_in_executor(self._io, self.archive.close)
            except (ArchiveError, OSError) as exc:
                log.error("could not close the WARC file: %s", exc)
            self._io.shutdown(wait=True)
            self.sync.close()

    async def _flush_archive(self) -> None:
        if self._unsynced_writes:
            self._unsynced_writes = 0
            try:
                await asyncio.get_running_loop().run_in_executor(self._io, self.archive.sync)
            except ArchiveError as exc:
                raise CriticalStop(_archive_message(exc)) from None

    # -- the fetch tasks ----------------------------------------------------

    async def _fetch_loop(self) -> None:
        sync = self.sync
        while True:
            c = await sync.queue.get()
            if sync.stopping.is_set():
                sync.give_back(c)
                continue
            sync.inflight += 1
            try:
                outcome = await self._process(c)
            except asyncio.CancelledError:
                sync.give_back(c)  # hurried: the URL goes back untouched
                raise
            except LeaseLost:
                sync.forget(c)  # reaped while we were not heard from: another worker's now
                continue
            except CriticalStop as exc:
                if self._critical is None:
                    self._critical = exc.message
                sync.give_back(c)
                self.stop()
                continue
            finally:
                sync.inflight -= 1
            self.stats.count(outcome)
            sync.put(outcome)

    async def _process(self, c: ClaimedURL) -> Outcome:
        """Fetch one leased URL and decide its outcome; never raises but CriticalStop and LeaseLost."""
        try:
            return await self._fetch_and_decide(c)
        except (CriticalStop, LeaseLost):
            raise
        except FetchError as exc:
            if exc.error_class is ErrorClass.CRITICAL:
                raise CriticalStop(exc.detail) from None
            return self.outcomes.failure(
                c, exc.error_class, exc.detail, http_status=exc.http_status
            )
        except ArchiveError as exc:
            if exc.critical:
                raise CriticalStop(_archive_message(exc)) from None
            return await self.outcomes.unknown(c, exc)
        except OSError as exc:
            if exc.errno in ArchiveError.CRITICAL_ERRNOS:
                raise CriticalStop(_archive_message(exc)) from None
            return await self.outcomes.unknown(c, exc)
        except Exception as exc:
            return await self.outcomes.unknown(c, exc)

    async def wait_host_slot(self, url: str) -> None:
        """Take a politeness slot of ``url``'s host outside a claim (robots.txt fetches)."""
        await self.polite.wait_host_slot(url)

    async def _fetch_and_decide(self, c: ClaimedURL) -> Outcome:
        """Address policy, robots.txt, politeness slot, fetch, archive, then :meth:`Outcomes.response <shoal.worker.outcomes.Outcomes.response>`.

        The address policy is asked first, so a refused host is ``skipped``
        ``address_policy`` without a request for its robots.txt either. A 2xx
        response that is not HTML is ``skipped`` ``content_type`` without being
        read or archived when ``limits.archive_non_html`` is off.
        """
        mem = self.polite.host(c.host_key)
        rule = self.router.rule(c.rule)
        render = rule.render if rule is not None else "http"
        fetcher = self.fetchers.get(render)
        if fetcher is None:
            raise CriticalStop(
                f"rule {rule.label if rule else '?'} asks for render = {render!r} but this worker has no {render} "
                "fetcher (run `shoal doctor` to check the browser installation)"
            )
        lim = self.spec.limits
        skip_types = not lim.archive_non_html and c.kind not in ("asset", *revisits.LISTING_KINDS)
        if c.previous is None and self.sync.over_budget(c):
            return self.outcomes.skipped(c, SkipReason.MAX_PAGES.value)
        try:
            if self.address_check is not None:
                await self.address_check(c.url)
            ok, robots_update, why = await self.polite.robots_ok(c, mem)
            if ok is False:
                return self.outcomes.skipped(c, SkipReason.ROBOTS.value)
            if ok is None:
                ttl = self.robots.temporary_ttl if self.robots is not None else 300.0
                return self.outcomes.failure(c, ErrorClass.TRANSIENT, why, retry_after=ttl)
            await self.polite.wait_slot(c.not_before, c.host_key)
            await self.polite.pace(mem)
            request = FetchRequest(
                c.url,
                rule,
                time.monotonic() + lim.fetch_timeout,
                headers=tuple(self.host_headers.for_url(c.url).items())
                + (revisits.request_headers(c) if render == "http" else ()),
                html_only=skip_types,
            )
            if not await self.sync.owns(c):
                raise LeaseLost()
            result = await fetcher.fetch(request)
        except PolicyRefusal as exc:
            if not mem.refusal_logged:
                mem.refusal_logged = True
                hint = (
                    "; to crawl loopback or private addresses set [scope] allow_private = true "
                    'or allow_cidrs = ["10.0.0.0/8", ...] in the spec'
                    if exc.reason is SkipReason.ADDRESS_POLICY
                    else ""
                )
                log.warning(
                    "not fetching from %s: %s%s", host_of(c.url), redact_text(exc.detail), hint
                )
            return self.outcomes.skipped(c, exc.reason.value, detail=redact_text(exc.detail))
        if skip_types and 200 <= result.status < 300 and result.content_type not in HTML_TYPES:
            return self.outcomes.skipped(
                c,
                SkipReason.CONTENT_TYPE.value,
                detail=f"{result.content_type} is not archived (limits.archive_non_html = false)",
                result=result,
                host_update=robots_update,
            )
        # A 304 or an unchanged payload becomes a revisit record referring to the last capture.
        archived = await asyncio.get_running_loop().run_in_executor(
            self._io,
            partial(revisits.archive, self.archive, c, result, result.started_at or None),
        )
        ref = archived.ref
        self._unsynced_writes += 1
        self.stats.bytes_archived += ref.length
        return await self.outcomes.response(c, rule, result, ref, robots_update, mem, archived)


def _archive_message(exc: Exception) -> str:
    return (
        f"cannot write the archive: {exc} "
        "(free disk space, make the archive folder writable, or change [storage] archive)"
    )
