"""What becomes of a claimed URL: its :class:`~shoal.frontier.contract.Outcome`, built in one place.

:class:`Outcomes` turns what happened to one leased URL into the outcome the
worker commits: a skip with its reason, a failure (put back ``pending`` with
a backoff while its error class is retryable and attempts are left), an
unexpected exception (an ``unknown`` failure, with a ``new_error`` event the
first time its signature is seen in the crawl), or a fetched and archived
response carried out as :func:`shoal.fetch.classify.decide` says: the host
paused when it blocks, a ``Retry-After`` honoured, a redirect followed (never
past ``limits.max_redirects``, never round a loop), a sitemap's or feed's URLs
added, and a list page's links extracted. Every outcome carries the lease it
answers for, so the frontier applies it only while that lease holds.

It never fetches or archives; it reads and writes the frontier only through
the worker's :class:`~shoal.worker.sync.FrontierSync`.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from shoal.archive import WarcRef
from shoal.content import HTML_TYPES
from shoal.content.codings import coding_problem
from shoal.errors import ErrorClass, FrontierError, SkipReason, URLError
from shoal.exchange import FetchResult
from shoal.fetch.classify import Response, block_streak, decide, error_signature
from shoal.fetch.sitemaps import HostMap
from shoal.frontier.contract import ClaimedURL, HostUpdate, NewURL, Outcome, Status
from shoal.frontier.policy import retry_at
from shoal.secrets import redact_text, redact_url
from shoal.spec import Rule
from shoal.urls import canonicalize, host_of
from shoal.worker import revisits
from shoal.worker.hosts import HostMemory
from shoal.worker.links import LinkExtractor
from shoal.worker.sync import FrontierSync

__all__ = ["Outcomes"]

log = logging.getLogger(__name__)


class Outcomes:
    """Builds the outcomes of one worker's claimed URLs.

    ``sync`` is the worker's channel to the frontier (events, redirect
    chains, refreshed URLs, the page budget); ``links`` finds and checks the
    URLs a page adds; ``host_map`` and ``plan`` are the crawl's host mapping
    and revisit plan.
    """

    def __init__(
        self,
        *,
        sync: FrontierSync,
        links: LinkExtractor,
        host_map: HostMap,
        plan: revisits.RevisitPlan,
    ) -> None:
        self.sync = sync
        self.spec = sync.spec
        self.frontier = sync.frontier
        self.links = links
        self.scope = links.scope
        self.host_map = host_map
        self.plan = plan
        self._signatures: set[str] = set()

    async def unknown(self, c: ClaimedURL, exc: Exception) -> Outcome:
        """An ``unknown`` failure for an unexpected ``exc``; its signature's first sighting is an event."""
        sig = error_signature(exc)
        log.exception("unexpected error on %s (signature %s)", redact_url(c.url), sig)
        if sig not in self._signatures:
            self._signatures.add(sig)
            try:
                if not await self.sync.call(self.frontier.has_signature, self.sync.crawl_id, sig):
                    await self.sync.call(
                        self.frontier.record_event,
                        self.sync.crawl_id,
                        "new_error",
                        redact_text(
                            f"new kind of error {type(exc).__name__}: {exc} (first seen on {c.url})"
                        ),
                        severity="warning",
                        worker_id=self.sync.worker_id,
                        url=redact_url(c.url),
                        error_class="unknown",
                        signature=sig,
                    )
            except FrontierError:  # the event is a courtesy: the outcome is what counts
                pass
        return self.failure(
            c, ErrorClass.UNKNOWN, redact_text(f"{type(exc).__name__}: {exc} [signature {sig}]")
        )

    def failure(
        self,
        c: ClaimedURL,
        cls: ErrorClass,
        detail: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
        ref: WarcRef | None = None,
        result: FetchResult | None = None,
        host_update: HostUpdate | None = None,
    ) -> Outcome:
        """A ``cls`` failure, made ``pending`` again with a backoff while it may be retried.

        ``transient``, ``unknown``, ``missing`` and ``blocked`` are retried up to
        ``limits.max_retries`` attempts (``missing`` twice at most); ``retry_after``
        (seconds) is honoured up to ``politeness.max_retry_after``. ``ref`` and
        ``result`` attach the archived response.
        """
        lim = self.spec.limits
        now = self.frontier.now_ms()
        retryable = cls in (
            ErrorClass.TRANSIENT,
            ErrorClass.UNKNOWN,
            ErrorClass.MISSING,
            ErrorClass.BLOCKED,
        )
        max_tries = lim.max_retries if cls is not ErrorClass.MISSING else min(lim.max_retries, 2)
        o = _outcome(
            c,
            Status.FAILED,
            error_class=cls.value,
            error_detail=detail,
            http_status=http_status,
            fetched_at=now,
            host_update=host_update,
        )
        if ref is not None and result is not None:
            _attach(o, ref, result)
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
    def skipped(
        c: ClaimedURL,
        reason: str,
        *,
        detail: str | None = None,
        result: FetchResult | None = None,
        host_update: HostUpdate | None = None,
    ) -> Outcome:
        """A ``skipped`` outcome with its ``reason`` (a :class:`~shoal.errors.SkipReason` value)."""
        return _outcome(
            c,
            Status.SKIPPED,
            skip_reason=reason,
            error_detail=detail,
            http_status=result.status if result is not None else None,
            content_type=result.content_type if result is not None else None,
            host_update=host_update,
        )

    async def response(
        self,
        c: ClaimedURL,
        rule: Rule | None,
        res: FetchResult,
        ref: WarcRef,
        host_update: HostUpdate | None,
        mem: HostMemory,
        archived: revisits.Archived | None = None,
    ) -> Outcome:
        """Carry out :func:`~shoal.fetch.classify.decide`: outcome, host update, event, links.

        A page that brought nothing new (a 304, an unchanged payload) extracts no
        links; a sitemap or feed adds the URLs it lists.
        """
        now = self.frontier.now_ms()
        p = self.spec.politeness
        mem.block_streak = block_streak(mem.block_streak, res.status)
        rendered = res.rendered_html is not None
        d = decide(
            Response(
                res.status,
                res.reason,
                truncated=res.truncated,
                content_type=res.content_type,
                body_empty=not res.body,
                rendered=rendered,
                coding_problem=(
                    coding_problem(res.header("content-encoding"))
                    if res.decoded is None and not rendered
                    else None
                ),
                retry_after=res.header("retry-after"),
            ),
            streak=mem.block_streak,
            block_threshold=p.block_threshold,
            max_body_bytes=self.spec.limits.max_body_bytes,
        )
        if d.error_class is not None:
            retry_after = d.retry_after
            if d.blocked:
                host_update = HostUpdate(
                    c.host_key, pause_until=now + int(p.block_pause * 1000), pause_reason="blocked"
                )
                await self.sync.call(
                    self.frontier.record_event,
                    self.sync.crawl_id,
                    "blocked",
                    f"host {host_of(c.url)} answered {mem.block_streak} times 403/429 in a row: "
                    f"paused for {p.block_pause:.0f}s",
                    severity="warning",
                    worker_id=self.sync.worker_id,
                    url=redact_url(c.url),
                    host=host_of(c.url),
                    error_class="blocked",
                )
                mem.block_streak = 0
                retry_after = p.block_pause
            elif retry_after is not None:
                host_update = HostUpdate(
                    c.host_key,
                    not_before=now + int(min(retry_after, p.max_retry_after) * 1000),
                    min_delay_ms=host_update.min_delay_ms if host_update else None,
                )
            return self.failure(
                c,
                d.error_class,
                d.detail,
                http_status=res.status,
                retry_after=retry_after,
                ref=ref,
                result=res,
                host_update=host_update,
            )
        o = _outcome(
            c,
            Status.DONE,
            http_status=res.status,
            fetched_at=now,
            host_update=host_update,
        )
        _attach(o, ref, res)
        unchanged = False
        if archived is not None:
            unchanged = revisits.settle(o, c, archived, res, self.plan.due(c, now))
        if mem.sitemaps:
            o.links.extend(revisits.source_urls_of(mem.sitemaps, c.url, self.host_map, self.scope))
            mem.sitemaps = []
        if d.redirect:
            return await self._redirect(c, res, o)
        if unchanged:
            return o
        if c.kind in revisits.LISTING_KINDS:
            return await self._listing(c, res, o)
        if res.content_type in HTML_TYPES:
            if c.kind == "list":
                left = self.sync.budget_left()  # this page is one of them
                budget = None if left is None else max(0, left - 1)
                page = self.links.extract(c, rule, res, budget=budget)
                o.links = page.links
                if page.cut:
                    await self._flooded(c, page.cut)
            elif c.kind == "detail" and rule is not None and rule.images:
                o.links = self.links.assets(c, rule.images, res)
        return o

    async def _listing(self, c: ClaimedURL, res: FetchResult, o: Outcome) -> Outcome:
        """A sitemap or feed: the URLs it lists; pages it dates after their last fetch come due now."""
        body = res.decoded if res.decoded is not None else res.body
        links, dated, problem = revisits.listing_links(
            c,
            body,
            self.host_map,
            lambda canon, parent: self.links.new_url(
                canon,
                parent_id=parent.id,
                parent_rule=parent.rule,
                parent_kind=parent.kind,
                parent_depth=parent.depth,
            ),
            self.scope.allows,
            max_bytes=self.spec.limits.max_body_bytes,
        )
        if problem is not None:
            log.warning("%s", redact_text(problem))
            o.error_detail = problem[:500]
        o.links.extend(links)
        if dated:
            await self.sync.retry(self.frontier.refresh_urls, self.sync.crawl_id, dated)
        return o

    async def _flooded(self, c: ClaimedURL, cut: int) -> None:
        """Count and report a page whose links were cut at ``max_links_per_page``."""
        self.sync.stats.links_cut += cut
        cap = self.spec.limits.max_links_per_page
        message = (
            f"{redact_url(c.url)}: {cut} link(s) past the first {cap} new ones cut "
            "(limits.max_links_per_page)"
        )
        log.warning("%s", message)
        with contextlib.suppress(FrontierError):
            await self.sync.call(
                self.frontier.record_event,
                self.sync.crawl_id,
                SkipReason.MAX_LINKS.value,
                message,
                severity="warning",
                worker_id=self.sync.worker_id,
                url=redact_url(c.url),
                host=host_of(c.url),
            )

    async def _redirect(self, c: ClaimedURL, res: FetchResult, o: Outcome) -> Outcome:
        location = res.header("location")
        if not location:
            return o
        try:
            # Credentials in the target (a relative Location inherits the page's) stay out of the frontier.
            target = canonicalize(location, c.url, self.scope.strip)
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
            chain = await self.sync.retry(self.frontier.redirect_chain, c.id, c.redirects)
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


def _outcome(c: ClaimedURL, status: Status, **fields: Any) -> Outcome:
    """The outcome ``status`` of the claimed URL ``c`` (its lease and host), with ``fields``."""
    return Outcome(c.id, c.lease_token, status, host_key=c.host_key, **fields)


def _attach(o: Outcome, ref: WarcRef, result: FetchResult) -> None:
    o.warc_file, o.warc_offset, o.warc_length = ref.file, ref.offset, ref.length
    o.warc_record_id = ref.record_id
    o.content_type = result.content_type
    o.body_bytes = len(result.body)
    o.fetch_ms = int(result.elapsed * 1000)
