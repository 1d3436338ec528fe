"""Error classes and the one exception tree of shoal.

Every failure a worker meets is turned into an :class:`ErrorClass` (the table in
DESIGN.md says what happens to each). Driver and library errors are translated
into this tree at the boundary where they occur. Every exception shoal raises on
purpose is a :class:`ShoalError`; all of them are defined here except the three
of optional stages, which subclass it in their own module so that the core
never imports them::

    ShoalError
    ├── SpecError                  invalid crawl spec (nothing starts; exit 2)
    ├── URLError                   a URL that cannot be parsed or is not http(s) (also a ValueError)
    ├── ListingError               a sitemap or feed that cannot be read (or is refused as unsafe XML)
    ├── FrontierError              the frontier database
    │   ├── SchemaVersionError     database schema unknown to this version
    │   ├── DatabaseUnavailable    cannot reach the database (critical after grace)
    │   └── DatabaseFull           the database cannot write: disk full, read-only (critical)
    ├── ArchiveError               WARC writing, shipping or reading (``errno`` when an OSError)
    ├── ContentCodingError         a Content-Encoding that cannot be undone
    ├── AddressRefused             the address policy refused every address of a host, or the
    │                              one a socket was to connect to (also an OSError, so it
    │                              crosses aiohttp's connector); becomes a PolicyRefusal
    ├── CriticalStop               a worker cannot go on (database, disk): it stops, exit 3
    ├── FleetError                 starting, listing or ending workers failed (names the fix)
    ├── CastError                  a parsed value does not convert to its field's type (also a ValueError)
    ├── FetchError                 one fetch failed; carries its ErrorClass
    │   ├── PolicyRefusal          not fetched on purpose (skipped with a reason)
    │   └── BrowserError           the browser could not render a page
    ├── ParseError                 (shoal.parse.config) parsing could not run or write its output
    ├── OcrUnavailable             (shoal.parse.ocr) Tesseract or its languages are missing
    └── TrialError                 (shoal.trial) ``shoal try`` cannot fetch or read the page

A ``FetchError`` never stops a worker: it becomes an outcome of the URL. Only
``ErrorClass.CRITICAL`` stops a worker, cleanly. The command line prints a
``ShoalError`` as one line naming the problem and the fix, without a traceback.
Exceptions that never leave their module (control flow inside the browser
proxy, the decoders, the browser session, the parse loader) stay private there
and are caught where they are raised.
"""

from __future__ import annotations

import errno as _errno
from enum import StrEnum

__all__ = [
    "AddressRefused",
    "ArchiveError",
    "BrowserError",
    "CastError",
    "ContentCodingError",
    "CriticalStop",
    "DatabaseFull",
    "DatabaseUnavailable",
    "ErrorClass",
    "FetchError",
    "FleetError",
    "FrontierError",
    "ListingError",
    "PolicyRefusal",
    "SchemaVersionError",
    "ShoalError",
    "SkipReason",
    "SpecError",
    "URLError",
]


class ErrorClass(StrEnum):
    """What kind of failure a fetch met, which decides what happens next."""

    TRANSIENT = "transient"
    """Timeouts, resets, DNS failure, 5xx, 408, 429: retried with backoff."""
    PERMANENT = "permanent"
    """404/410 and other 4xx, invalid URL, over the size cap: failed, no retry."""
    BLOCKED = "blocked"
    """Repeated 403/429, captcha or login wall: the host is paused."""
    MISSING = "missing"
    """The page rendered but an expected element is absent: a few retries."""
    CRITICAL = "critical"
    """The worker itself cannot go on (database, disk, browser): it stops cleanly."""
    UNKNOWN = "unknown"
    """Anything else: recorded with a signature, retried a few times."""


class SkipReason(StrEnum):
    """Why a URL was deliberately not fetched (its status is ``skipped``)."""

    ROBOTS = "robots"
    ADDRESS_POLICY = "address_policy"
    SCOPE = "scope"
    MAX_DEPTH = "max_depth"
    MAX_PAGES = "max_pages"
    URL_TOO_LONG = "url_too_long"
    REPEATED_SEGMENTS = "repeated_segments"
    TOO_MANY_SEGMENTS = "too_many_segments"
    CONTENT_TYPE = "content_type"
    DEADLINE = "deadline"
    EMPTY_PAGES = "empty_pages"
    """A list rule's own pagination past the depth limit, grown by pages that gave nothing new (``?page=n+1`` beyond the end)."""
    CALENDAR = "calendar"
    """A URL dated too far in the future (an infinite calendar)."""
    MAX_LINKS = "max_links"
    """Links past ``limits.max_links_per_page`` on one page (a link flood): counted, not stored."""


class ShoalError(Exception):
    """Base of every error shoal raises on purpose."""


class SpecError(ShoalError):
    """The crawl spec is invalid. The message names the key, the value and what was expected."""


class URLError(ShoalError, ValueError):
    """A URL that cannot be parsed, or whose scheme is not http(s)."""


class ListingError(ShoalError):
    """A sitemap or feed that cannot be read: not XML, unsafe XML (entities), too large, unknown root."""


class FrontierError(ShoalError):
    """The frontier database failed in a way the caller must hear about."""


class SchemaVersionError(FrontierError):
    """The database schema is older or newer than this version of shoal knows."""


class DatabaseUnavailable(FrontierError):
    """The database cannot be reached (connection refused, server gone)."""


class DatabaseFull(FrontierError):
    """The database cannot write: its disk is full, or it is read-only. No retry helps: critical."""


class ArchiveError(ShoalError):
    """A WARC file could not be written, shipped or read back.

    ``errno`` is the ``errno`` of the ``OSError`` behind it, if any: see
    :attr:`critical` for the ones that stop a worker.
    """

    CRITICAL_ERRNOS: frozenset[int] = frozenset(
        {_errno.ENOSPC, _errno.EDQUOT, _errno.EROFS, _errno.EACCES, _errno.EPERM, _errno.EIO}
    )
    """Disk full, quota, read-only or unwritable archive, I/O error: no page can be archived."""

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno

    @property
    def critical(self) -> bool:
        """True when the archive itself is unusable (disk full, read-only, no permission)."""
        return self.errno in self.CRITICAL_ERRNOS


class ContentCodingError(ShoalError):
    """A body's ``Content-Encoding`` cannot be undone (unknown, too many layers, not that coding)."""


class AddressRefused(ShoalError, OSError):
    """The address policy refused a host: every address its name resolved to, or the address a
    socket was about to connect to (``connecting``). Nothing was sent to it.

    An :class:`OSError` (``EACCES``) so that aiohttp's connector passes it up as a
    connection error; the fetcher turns it into a ``PolicyRefusal``
    (``skipped address_policy``).
    """

    def __init__(self, host: str, addresses: list[str], *, connecting: bool = False) -> None:
        message = (
            f"connection to {host} refused by the address policy"
            if connecting
            else f"{host} resolves only to refused addresses {addresses}"
        )
        OSError.__init__(self, _errno.EACCES, message)
        self.host = host
        self.addresses = addresses
        self.message = message

    def __str__(self) -> str:
        return self.message


class CastError(ShoalError, ValueError):
    """An extracted value does not convert to its field's type (recorded per field, never raised out of a parse)."""


class CriticalStop(ShoalError):
    """The worker cannot go on (database gone past its grace, archive or frontier disk full or
    read-only): it stops cleanly, its URLs go back to pending untouched, and the command exits 3."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FleetError(ShoalError):
    """A fleet provider could not start, list or end workers; the message names the fix."""


class FetchError(ShoalError):
    """One fetch failed. ``error_class`` says what the worker does with the URL."""

    def __init__(
        self,
        error_class: ErrorClass,
        detail: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{error_class}: {detail}")
        self.error_class = error_class
        self.detail = detail
        self.http_status = http_status
        self.retry_after = retry_after


class PolicyRefusal(FetchError):
    """The URL is not fetched on purpose; it ends ``skipped`` with ``reason``."""

    def __init__(self, reason: SkipReason, detail: str) -> None:
        super().__init__(ErrorClass.PERMANENT, detail)
        self.reason = reason


class BrowserError(FetchError):
    """The browser failed to render a page (crash, driver death, timeout)."""
