"""The frontier contract: what a worker may ask of the shared URL table.

One implementation (:class:`shoal.frontier.sql.SqlFrontier`) serves SQLite,
PostgreSQL and MySQL/MariaDB; the contract is what the behavioural tests pin
down for all three. All times are integer milliseconds on the database clock
(:meth:`Frontier.now_ms`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from shoal.frontier.revisit import PayloadRef, Previous

if TYPE_CHECKING:
    from shoal.frontier.reads import CaptureRow, StatusSnapshot
    from shoal.frontier.warc_files import WarcFileRow

__all__ = [
    "ClaimedURL",
    "CrawlInfo",
    "Frontier",
    "HostUpdate",
    "NewURL",
    "Outcome",
    "Status",
    "SyncResult",
]


class Status(StrEnum):
    """The state of a URL row. ``done``, ``failed`` and ``skipped`` are terminal."""

    PENDING = "pending"
    LEASED = "leased"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class CrawlInfo:
    """A crawl row: its id, name, stored spec text and state."""

    id: int
    name: str
    spec: str
    state: str


@dataclass(slots=True)
class NewURL:
    """A URL to add to the frontier (a seed, a discovered link or a redirect target).

    ``status`` is ``pending`` unless the URL is recorded as already decided
    (``skipped`` with ``skip_reason``, e.g. beyond the depth limit). Adding a
    URL whose canonical form is already in the crawl does nothing.
    """

    url: str
    url_key: int
    host: str
    host_key: int
    rule: int
    kind: str
    depth: int
    priority: int = 0
    parent_id: int | None = None
    redirects: int = 0
    status: Status = Status.PENDING
    skip_reason: str | None = None


@dataclass(slots=True)
class ClaimedURL:
    """A URL leased to one worker; ``lease_token`` fences its completion.

    ``not_before`` is the politeness slot (ms) reserved for it on its host: the
    worker must not send the request earlier.
    """

    id: int
    url: str
    host_key: int
    rule: int
    kind: str
    depth: int
    redirects: int
    attempts: int
    lease_token: int
    not_before: int
    previous: Previous | None = None
    """The last fetch of a URL fetched before (a revisit): its validators and last full payload."""


@dataclass(slots=True)
class HostUpdate:
    """A change to a host's politeness state that an outcome brings.

    ``min_delay_ms`` raises the host's interval (robots Crawl-delay);
    ``not_before`` pushes its next slot (Retry-After); ``pause_until`` with
    ``pause_reason`` pauses it (blocked).
    """

    host_key: int
    min_delay_ms: int | None = None
    not_before: int | None = None
    pause_until: int | None = None
    pause_reason: str | None = None


@dataclass(slots=True)
class Outcome:
    """What became of one claimed URL, written by :meth:`Frontier.sync`.

    ``status`` is terminal, or ``pending`` with ``next_attempt_at`` for a retry.
    The outcome is applied only while the lease (``url_id``, ``lease_token``)
    is still held; ``links`` are added in the same transaction.
    """

    url_id: int
    lease_token: int
    status: Status
    host_key: int = 0
    error_class: str | None = None
    error_detail: str | None = None
    skip_reason: str | None = None
    http_status: int | None = None
    final_url: str | None = None
    content_type: str | None = None
    body_bytes: int | None = None
    fetched_at: int | None = None
    fetch_ms: int | None = None
    warc_file: str | None = None
    warc_offset: int | None = None
    warc_length: int | None = None
    warc_record_id: str | None = None
    next_attempt_at: int | None = None
    refund_attempt: bool = False
    """The attempt does not count (the worker stopped or the host was paused)."""
    links: list[NewURL] = field(default_factory=list)
    host_update: HostUpdate | None = None
    revisit: bool = False
    """A refetch of a URL fetched before: not counted again in the crawl's pages, its new links counted."""
    revisit_at: int | None = None
    """When a ``done`` page is due again (its rule's ``revisit``); None: never."""
    validators: tuple[str | None, str | None] | None = None
    """``(ETag, Last-Modified)`` to store for the URL; None keeps the stored ones."""
    payload: PayloadRef | None = None
    """The full capture this fetch wrote (new content); None keeps the stored one."""


@dataclass(slots=True)
class SyncResult:
    """What one :meth:`Frontier.sync` transaction did.

    ``accepted`` holds, per outcome given, whether it was applied (False: the
    lease was lost and another worker owns the URL now). ``claimed`` are the
    newly leased URLs.
    """

    accepted: list[bool]
    claimed: list[ClaimedURL]
    links_added: int = 0
    leases_reaped: int = 0
    found: dict[int, int] = field(default_factory=dict)
    """For each revisit outcome applied (by URL id): how many unknown URLs its links added."""
    revisits_due: int = 0
    """Pages whose revisit came due and went back to ``pending`` in this transaction."""


class Frontier(Protocol):
    """The shared URL table. Every method is one short transaction.

    Every consumer (worker, crawl runner, CLI, notifier, parse stage) types
    against this protocol; :class:`~shoal.frontier.sql.SqlFrontier` is checked
    by mypy to satisfy it.
    """

    @property
    def safe_url(self) -> str:
        """The database URL without its password (for messages)."""
        ...

    def close(self) -> None:
        """Close every pooled connection."""
        ...

    def now_ms(self) -> int:
        """The database clock in milliseconds (local clock plus a measured offset)."""
        ...

    def open_crawl(self, name: str, spec_text: str, max_pages: int | None = None) -> CrawlInfo:
        """Create the crawl, or return the existing one of that name (its spec and budget updated).

        ``max_pages`` is the crawl-wide page budget: claims never lease more
        than it leaves (pages fetched plus URLs in flight), fleet-wide.
        """
        ...

    def get_crawl(self, name: str | None = None) -> CrawlInfo:
        """The crawl of that name, or the only/latest one; raises FrontierError if none."""
        ...

    def add_urls(self, crawl_id: int, new: list[NewURL], default_delay_ms: int) -> int:
        """Add URLs (seeds); existing canonical URLs are left alone. Returns how many were new."""
        ...

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
        horizon_ms: int,
        reap: bool,
    ) -> SyncResult:
        """Apply outcomes (fenced) and their links, then lease up to ``claim`` due URLs.

        One transaction. A claimed URL's host has its next slot advanced so the
        minimum interval holds across the fleet; ``reap`` first returns to
        ``pending`` the URLs whose lease expired and whose owner stopped
        heartbeating (counted in ``lease_lost``), skipping rows another
        transaction holds. The worker's row counts the outcomes applied
        (``pages_done``, ``pages_failed``, ``bytes_archived``) in the same
        transaction. When the crawl's ``max_pages`` is reached, every pending
        URL becomes ``skipped`` (``max_pages``).
        """
        ...

    def heartbeat(self, crawl_id: int, owner: str, lease_ms: int) -> int:
        """Record that ``owner`` is alive, which keeps its leases; returns 1 if it is registered."""
        ...

    def release(self, crawl_id: int, owner: str) -> int:
        """Give back every lease ``owner`` holds (clean stop); returns how many."""
        ...

    def leases_held(self, crawl_id: int, owner: str) -> dict[int, int]:
        """The leases ``owner`` holds now: url id -> lease token (a worker checks its view with it)."""
        ...

    def reserve_slot(self, crawl_id: int, host_key: int, jitter: float) -> int:
        """Reserve the next politeness slot of a host (ms) outside a claim."""
        ...

    def pending_left(self, crawl_id: int, lease_ms: int | None = None) -> bool:
        """True while any URL is pending or leased (with ``lease_ms``: or a silent worker's WARC file is unsafe)."""
        ...

    def wake_at(self, crawl_id: int) -> int | None:
        """The earliest time (ms) a URL may become claimable (a retry or a revisit), or None."""
        ...

    def refresh_urls(self, crawl_id: int, items: Sequence[tuple[int, int]]) -> int:
        """Make ``done`` pages due now whose ``(url_key, lastmod ms)`` is after their last fetch."""
        ...

    def warc_file_opened(
        self, crawl_id: int, name: str, worker_id: str, hostname: str, location: str
    ) -> None:
        """Record a WARC file its writer just created, bound for ``location``."""
        ...

    def warc_file_closed(self, crawl_id: int, name: str, size: int, sha256: str) -> None:
        """A WARC file is complete on its worker's disk."""
        ...

    def warc_file_uploaded(self, crawl_id: int, name: str, location: str) -> None:
        """A WARC file is uploaded and verified at ``location``: its captures are safe."""
        ...

    def unsafe_warc_files(self, crawl_id: int, hostname: str | None = None) -> list[WarcFileRow]:
        """WARC files bound for S3 and not uploaded yet (of one host, or all)."""
        ...

    def release_lost_files(self, crawl_id: int, lease_ms: int) -> int:
        """Put back to pending the URLs of unuploaded files whose worker is dead; returns how many."""
        ...

    def set_crawl_state(self, crawl_id: int, state: str) -> bool:
        """Mark a crawl running, finished or stopped; True when this call changed it."""
        ...

    def update_host_delays(self, crawl_id: int, default_delay_ms: int) -> None:
        """Apply a changed spec delay to known hosts (a robots Crawl-delay still wins)."""
        ...

    def release_dead_local(self, crawl_id: int, hostname: str, alive: Callable[[int], bool]) -> int:
        """Return the leases of workers on this machine whose process is gone; returns how many."""
        ...

    def count_done(self, crawl_id: int) -> int:
        """Pages fetched so far (the crawl's counter)."""
        ...

    def skip_pending(self, crawl_id: int, reason: str) -> int:
        """Mark every pending URL ``skipped`` with ``reason``; returns how many."""
        ...

    def redirect_chain(self, url_id: int, limit: int) -> list[int]:
        """The url_keys of the URLs that redirected to this one (nearest first), up to ``limit``."""
        ...

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
        ...

    def stop_worker(
        self, worker_id: str, state: str = "stopped", detail: str | None = None
    ) -> None:
        """Record a worker as stopped (or ``failed`` with a detail)."""
        ...

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
        ...

    def has_signature(self, crawl_id: int, signature: str) -> bool:
        """True when an error of this signature was already recorded for the crawl."""
        ...

    def pending_events(
        self, crawl_id: int | None = None, kinds: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """Events not yet notified (oldest first)."""
        ...

    def claim_event(self, event_id: int) -> bool:
        """Mark an event as being sent; True for the one caller of the fleet that claimed it."""
        ...

    def status(
        self, crawl_id: int, *, top_hosts: int = 50, errors: int = 20, minutes: int = 240
    ) -> StatusSnapshot:
        """The whole status of a crawl, read in one consistent read-only transaction."""
        ...

    def status_counts(self, crawl_id: int) -> dict[str, int]:
        """URLs of the crawl by status (every status present)."""
        ...

    def captures(self, crawl_id: int, *, assets: bool = False) -> list[CaptureRow]:
        """The crawl's archived responses in archive order: pages, or with ``assets`` only assets."""
        ...
