"""The crawl spec: a TOML file validated once, at the edge, with pydantic.

A bad spec raises :class:`~shoal.errors.SpecError` whose message lists every
problem as ``key: what was expected (got value)``; nothing starts on a bad spec.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shoal import __version__
from shoal.errors import SpecError

__all__ = [
    "ArchiveSpec",
    "CrawlSpec",
    "LimitsSpec",
    "NotifySpec",
    "PolitenessSpec",
    "Rule",
    "ScopeSpec",
    "Spec",
    "StorageSpec",
    "WorkerSpec",
    "format_validation_error",
    "load_spec",
    "parse_spec",
]

DEFAULT_USER_AGENT = f"shoal/{__version__} (web archive crawler)"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Model):
    """Which URLs a rule covers and what to do with them.

    Exactly one of ``glob`` and ``regex`` is given. A glob starting with ``/`` is
    matched against the path and query; any other glob against the whole URL. A
    regex is searched (``re.search``) in the whole URL.
    """

    name: str = ""
    glob: str | None = None
    regex: str | None = None
    kind: Literal["list", "detail"] = "detail"
    follow: list[str] | None = None
    """CSS selectors of the links to follow on a list page; None follows every in-scope link."""
    render: Literal["http", "browser"] = "http"
    priority: int = 0
    """Lower is fetched first among due URLs of one host (after depth)."""
    images: str | None = None
    """CSS selector of images to fetch into the archive too (for OCR at parse time)."""
    # Browser options; used only with render = "browser".
    wait_for: str | None = None
    wait_timeout: float = Field(default=10.0, gt=0, le=300)
    scroll: int = Field(default=0, ge=0, le=1000)
    click: list[str] = Field(default_factory=list)
    frames: bool = False
    screenshot: bool = False

    @model_validator(mode="after")
    def _one_pattern(self) -> Rule:
        if (self.glob is None) == (self.regex is None):
            raise ValueError("give exactly one of 'glob' or 'regex'")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex {self.regex!r} does not compile: {exc}") from exc
        return self

    def compiled(self) -> re.Pattern[str]:
        """The pattern as a compiled regex (globs translated)."""
        if self.regex is not None:
            return re.compile(self.regex)
        assert self.glob is not None
        return re.compile(fnmatch.translate(self.glob))

    @property
    def label(self) -> str:
        """A short name for status output: the name, else the pattern."""
        return self.name or self.glob or self.regex or "?"


class ScopeSpec(_Model):
    """Which hosts and addresses may be fetched."""

    allowed_hosts: list[str] = Field(default_factory=list)
    """Host names (``example.com``, ``*.example.com``, ``127.0.0.1:8000``); empty = the seeds' hosts."""
    allow_private: bool = False
    """Allow loopback, private and link-local addresses (tests and the demo turn it on)."""
    allow_cidrs: list[str] = Field(default_factory=list)
    """Extra networks allowed even when private, e.g. ``10.1.0.0/16``."""
    strip_query_params: list[str] = Field(
        default_factory=lambda: [
            "utm_source",
            "utm_medium",
            "utm_campaign",
            "utm_term",
            "utm_content",
            "fbclid",
            "gclid",
        ]
    )
    """Query parameters dropped by URL canonicalisation (globs allowed)."""
    headers: dict[str, dict[str, str]] = Field(default_factory=dict)
    """Extra request headers per host (``name[:port]``, no wildcards), e.g. a login cookie or an
    ``Authorization``: sent to that host only, never on a redirect to another one, and redacted
    in logs, status output and WARC request records."""

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for host, hdrs in v.items():
            if not host or any(ch in host for ch in "/*@ "):
                raise ValueError(
                    f"{host!r} is not a host name such as example.com or 127.0.0.1:8000 (no scheme, path or wildcard)"
                )
            for name, value in hdrs.items():
                if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                    raise ValueError(f"{name!r} (for {host}) is not a valid header name")
                if any(ch in value for ch in "\r\n\0"):
                    raise ValueError(f"the value of {name} for {host} contains a line break or NUL")
        return v

    @field_validator("allow_cidrs")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for c in v:
            try:
                ipaddress.ip_network(c, strict=False)
            except ValueError as exc:
                raise ValueError(f"{c!r} is not a network in CIDR form such as 10.0.0.0/8") from exc
        return v


class PolitenessSpec(_Model):
    """How gently hosts are treated; held for the whole fleet through the database."""

    user_agent: str = DEFAULT_USER_AGENT
    delay: float = Field(default=1.0, ge=0, le=3600)
    """Minimum seconds between two requests to one host."""
    jitter: float = Field(default=0.25, ge=0, le=10)
    """Up to this fraction of ``delay`` is added at random to each interval."""
    concurrency_per_host: int = Field(default=2, ge=1, le=1024)
    robots: bool = True
    max_crawl_delay: float = Field(default=60.0, ge=0)
    """A robots.txt Crawl-delay above this is capped to it."""
    max_retry_after: float = Field(default=3600.0, ge=0)
    block_threshold: int = Field(default=5, ge=1)
    """Consecutive 403/429 answers from one host that pause it as blocked."""
    block_pause: float = Field(default=600.0, ge=0)


class LimitsSpec(_Model):
    """Bounds of a crawl and of each fetch."""

    max_depth: int = Field(default=10, ge=0)
    max_pages: int | None = Field(default=None, ge=1)
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    fetch_timeout: float = Field(default=60.0, gt=0)
    """Total deadline of one fetch (connect, headers and body)."""
    connect_timeout: float = Field(default=10.0, gt=0)
    max_redirects: int = Field(default=5, ge=0, le=50)
    max_retries: int = Field(default=3, ge=0, le=100)
    retry_base: float = Field(default=2.0, gt=0)
    """First retry waits about this many seconds; each next one doubles (with jitter)."""
    retry_max: float = Field(default=3600.0, gt=0)
    max_url_length: int = Field(default=2048, ge=64)
    max_path_segments: int = Field(default=32, ge=1)
    max_repeated_segments: int = Field(default=3, ge=1)
    """A path in which one segment occurs more than this many times is a trap."""
    calendar_years_ahead: int | None = Field(default=3, ge=0)
    """A URL dated (``2031-05``, ``/2031/05/``, ``year=2031``, ``date=20310501``) more than this many
    years after the current year is an infinite-calendar trap; None turns the check off."""
    archive_non_html: bool = True
    """Archive responses that are not HTML (images, PDFs); they are never parsed for links."""


class StorageSpec(_Model):
    """Where the frontier and the archive live; ``{name}`` is replaced by the crawl name."""

    frontier: str = "sqlite:///shoal-data/{name}/frontier.sqlite"
    archive: str = "shoal-data/{name}/warc"
    warc_max_bytes: int = Field(default=1024**3, ge=1024 * 1024)
    fsync: bool = True
    """fsync WARC files before their URLs are marked done."""


class WorkerSpec(_Model):
    """How one worker process runs."""

    concurrency: int = Field(default=16, ge=1, le=4096)
    lease_seconds: float = Field(default=120.0, ge=1)
    claim_batch: int = Field(default=0, ge=0)
    """URLs claimed per transaction; 0 = chosen from the concurrency."""
    flush_interval: float = Field(default=0.2, gt=0, le=60)
    """Seconds between batched writes of outcomes and discovered links."""
    browsers: int = Field(default=1, ge=0, le=64)
    browser_recycle_pages: int = Field(default=100, ge=1)
    chromium: str | None = None
    """Path of the Chromium binary (default: found on PATH or /usr/bin/chromium)."""
    chromedriver: str | None = None
    """Path of chromedriver (default: found on PATH or /usr/bin/chromedriver); never downloaded."""
    db_grace_seconds: float = Field(default=120.0, ge=0)
    """How long a worker keeps retrying an unreachable database before it stops."""


class NotifySpec(_Model):
    """Where events are sent, as apprise URLs."""

    urls: list[str] = Field(default_factory=list)
    events: list[str] = Field(
        default_factory=lambda: ["finished", "critical", "new_error", "blocked", "quality"]
    )


class ArchiveSpec(_Model):
    """Kept for symmetry with storage; reserved for S3 shipping options."""

    s3_bucket: str | None = None
    s3_prefix: str = ""


class CrawlSpec(_Model):
    """The crawl's identity and starting points."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    seeds: list[str] = Field(min_length=1)


class Spec(_Model):
    """A whole crawl spec, as in the TOML file."""

    crawl: CrawlSpec
    rules: list[Rule] = Field(default_factory=list)
    scope: ScopeSpec = Field(default_factory=ScopeSpec)
    politeness: PolitenessSpec = Field(default_factory=PolitenessSpec)
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    storage: StorageSpec = Field(default_factory=StorageSpec)
    worker: WorkerSpec = Field(default_factory=WorkerSpec)
    notify: NotifySpec = Field(default_factory=NotifySpec)
    archive: ArchiveSpec = Field(default_factory=ArchiveSpec)
    parse: dict[str, Any] = Field(default_factory=dict)
    """Table definitions for ``shoal parse``; validated by :mod:`shoal.parse`."""

    @property
    def name(self) -> str:
        return self.crawl.name

    def frontier_url(self) -> str:
        """The frontier database URL with ``{name}`` filled in."""
        return self.storage.frontier.replace("{name}", self.crawl.name)

    def archive_dir(self) -> str:
        """The archive folder with ``{name}`` filled in."""
        return self.storage.archive.replace("{name}", self.crawl.name)


def format_validation_error(
    exc: ValidationError, source: str, *, what: str = "crawl spec", prefix: tuple[str, ...] = ()
) -> str:
    """One line per problem: ``key.path: what was expected (got value)``; shared by every spec section."""
    lines = [f"{source}: the {what} is invalid ({exc.error_count()} problem(s)):"]
    for err in exc.errors():
        loc = [
            str(p)
            for p in err["loc"]
            if not str(p).startswith(("function-after", "function-before"))
        ]
        key = ".".join([*prefix, *loc]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling; see the README's spec reference)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        value = err.get("input")
        shown = "" if err["type"] == "missing" or isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"  - {key}: {msg}{shown}")
    return "\n".join(lines)


def parse_spec(text: str, source: str = "<spec>") -> Spec:
    """Parse and validate TOML text into a :class:`Spec`, or raise :class:`SpecError`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: not valid TOML: {exc}") from None
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, source)) from None
    _check_seeds(spec, source)
    return spec


def _check_seeds(spec: Spec, source: str) -> None:
    from shoal.urls import URLError, canonicalize

    bad = []
    for i, seed in enumerate(spec.crawl.seeds):
        try:
            canonicalize(seed)
        except URLError as exc:
            bad.append(f"  - crawl.seeds.{i}: {exc} (got {seed!r})")
    if bad:
        raise SpecError(f"{source}: the crawl spec is invalid:\n" + "\n".join(bad))


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file, or raise :class:`SpecError` naming the problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{p}: no such spec file (give the path of a .toml crawl spec)") from None
    except UnicodeDecodeError:
        raise SpecError(f"{p}: the spec file is not UTF-8 text") from None
    return parse_spec(text, str(p))
