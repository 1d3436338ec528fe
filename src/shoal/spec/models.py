"""The crawl spec's pydantic models, one per TOML section; :class:`Spec` is the whole file.

Every model forbids unknown keys and infinite or NaN numbers and is frozen. The
checks of each key live in its model's validators (patterns and selectors in
:mod:`shoal.spec.patterns`); :mod:`shoal.spec.load` turns a failed validation
into the message that names the key and the value.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shoal import __version__
from shoal.errors import SpecError
from shoal.frontier.revisit import parse_duration
from shoal.spec.patterns import (
    UrlPattern,
    check_browser_css,
    check_link_css,
    compile_regex,
)

__all__ = [
    "BROWSER_KEYS",
    "DEFAULT_USER_AGENT",
    "CrawlSpec",
    "Ec2FleetSpec",
    "EnvSecret",
    "FleetSpec",
    "LimitsSpec",
    "NotifySpec",
    "PolitenessSpec",
    "Rule",
    "ScopeSpec",
    "SeedSource",
    "Spec",
    "StorageSpec",
    "WorkerSpec",
]

DEFAULT_USER_AGENT = f"shoal/{__version__} (web archive crawler)"

DAY = 86_400.0
WEEK = 7 * DAY
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Characters that may not appear in a header value (tab is allowed, CR, LF and NUL are not)."""

BROWSER_KEYS = ("wait_for", "wait_timeout", "scroll", "click", "frames", "screenshot")
"""Rule keys that only a ``render = "browser"`` rule uses."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Rule(_Model):
    """Which URLs a rule covers and what to do with them.

    Exactly one of ``glob`` and ``regex`` is given. A glob starting with ``/`` is
    matched against the path and query; any other glob against the whole URL. A
    regex (RE2 syntax) is searched in the whole URL. Selectors are checked when the
    spec is validated, by the engine that runs them (see :func:`check_link_css`).
    """

    name: str = ""
    glob: str | None = None
    regex: str | None = None
    kind: Literal["list", "detail"] = "detail"
    follow: list[str] | None = None
    """CSS selectors of the links to follow on a list page; None follows every in-scope link."""
    render: Literal["http", "browser"] = "http"
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    """Lower is fetched first among due URLs of one host (after depth)."""
    images: str | None = None
    """CSS selector of images to fetch into the archive too (for OCR at parse time)."""
    # Browser options: a rule without render = "browser" may not set them.
    wait_for: str | None = None
    wait_timeout: float = Field(default=10.0, gt=0, le=300)
    scroll: int = Field(default=0, ge=0, le=1000)
    click: list[str] = Field(default_factory=list)
    frames: bool = False
    screenshot: bool = False
    revisit: float | None = None
    """Seconds (written ``"30m"``, ``"1h"``, ``"7d"``) after its last fetch when a page is fetched again."""
    revisit_for: float | None = None
    """How long after its first fetch a page keeps being revisited (``"7d"``); None: for ever."""

    @field_validator("revisit", "revisit_for", mode="before")
    @classmethod
    def _duration(cls, v: object) -> float | None:
        return None if v is None else parse_duration(v)

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            compile_regex(v)
        return v

    @field_validator("follow", "click")
    @classmethod
    def _selectors(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        check = check_link_css if info.field_name == "follow" else check_browser_css
        for sel in v or []:
            check(sel)
        return v

    @field_validator("images")
    @classmethod
    def _images(cls, v: str | None) -> str | None:
        if v is not None:
            check_link_css(v)
        return v

    @field_validator("wait_for")
    @classmethod
    def _wait_for(cls, v: str | None) -> str | None:
        if v is not None:
            check_browser_css(v)
        return v

    @model_validator(mode="after")
    def _one_pattern(self) -> Rule:
        if (self.glob is None) == (self.regex is None):
            raise ValueError("give exactly one of 'glob' or 'regex'")
        if self.render != "browser":
            given = [k for k in BROWSER_KEYS if k in self.model_fields_set]
            if given:
                raise ValueError(
                    f"{', '.join(given)}: browser-only key(s) on a rule fetched over HTTP;"
                    ' add render = "browser" to the rule, or remove them'
                )
        if self.revisit_for is not None and self.revisit is None:
            raise ValueError("revisit_for needs revisit (how often to fetch the page again)")
        return self

    def compiled(self) -> UrlPattern:
        """The pattern compiled: a regex by RE2 (linear time), a glob by :func:`fnmatch.translate`."""
        if self.regex is not None:
            return compile_regex(self.regex)
        assert self.glob is not None
        return re.compile(fnmatch.translate(self.glob))

    @property
    def label(self) -> str:
        """A short name for status output: the name, else the pattern."""
        return self.name or self.glob or self.regex or "?"


def _check_header_value(value: str, what: str) -> None:
    if _CONTROL.search(value):
        raise ValueError(
            f"{what} contains a line break, NUL or another control character (not allowed in a header)"
        )


class EnvSecret(_Model):
    """A header value read from an environment variable when the worker starts: ``{ env = "VAR" }``."""

    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """The variable's name (letters, digits and ``_``)."""


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
    headers: dict[str, dict[str, str | EnvSecret]] = Field(default_factory=dict)
    """Extra request headers per host (``name[:port]``, no wildcards), e.g. a login cookie or an
    ``Authorization``: sent to that host only, never on a redirect to another one, and redacted
    in logs, status output and WARC request records. A value is a string, or
    ``{ env = "VAR" }`` to read it from an environment variable when the worker starts
    (the database then holds the variable's name, not the secret)."""

    @field_validator("headers")
    @classmethod
    def _headers(
        cls, v: dict[str, dict[str, str | EnvSecret]]
    ) -> dict[str, dict[str, str | EnvSecret]]:
        for host, hdrs in v.items():
            if not host or any(ch in host for ch in "/*@ ") or _CONTROL.search(host):
                raise ValueError(
                    f"{host!r} is not a host name such as example.com or 127.0.0.1:8000 (no scheme, path or wildcard)"
                )
            for name, value in hdrs.items():
                if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                    raise ValueError(
                        f"{name!r} (for {host}) is not a valid header name"
                        " (letters, digits and !#$%&'*+.^_`|~- only)"
                    )
                if isinstance(value, str):
                    _check_header_value(value, f"the value of {name} for {host}")
        return v

    def resolved_headers(self) -> dict[str, dict[str, str]]:
        """The headers with every ``{ env = "VAR" }`` replaced by the variable's value.

        Called when a worker starts; raises :class:`SpecError` naming the header and
        the variable when the variable is not set, or its value cannot be a header value.
        """
        out: dict[str, dict[str, str]] = {}
        for host, hdrs in self.headers.items():
            out[host] = {}
            for name, value in hdrs.items():
                if isinstance(value, str):
                    out[host][name] = value
                    continue
                key = f"scope.headers.{host!r}.{name}"
                got = os.environ.get(value.env)
                if got is None:
                    raise SpecError(
                        f"{key}: the environment variable {value.env} is not set; set it where"
                        f" the worker runs (export {value.env}=...) or give the value in the spec"
                    )
                try:
                    _check_header_value(got, f"the environment variable {value.env}")
                except ValueError as exc:
                    raise SpecError(f"{key}: {exc}") from None
                out[host][name] = got
        return out

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
    max_crawl_delay: float = Field(default=60.0, ge=0, le=DAY)
    """A robots.txt Crawl-delay above this is capped to it."""
    max_retry_after: float = Field(default=3600.0, ge=0, le=WEEK)
    block_threshold: int = Field(default=5, ge=1, le=1_000_000)
    """Consecutive 403/429 answers from one host that pause it as blocked."""
    block_pause: float = Field(default=600.0, ge=0, le=WEEK)

    @field_validator("user_agent")
    @classmethod
    def _user_agent(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the User-Agent may not be empty")
        if _CONTROL.search(v) or "\t" in v:
            raise ValueError(
                "the User-Agent contains a line break or another control character"
                " (it would break every request's headers)"
            )
        return v


class LimitsSpec(_Model):
    """Bounds of a crawl and of each fetch."""

    max_depth: int = Field(default=10, ge=0, le=100_000)
    max_pages: int | None = Field(default=None, ge=1, le=2**53)
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1024, le=2**40)
    fetch_timeout: float = Field(default=60.0, gt=0, le=DAY)
    """Total deadline of one fetch (connect, headers and body)."""
    connect_timeout: float = Field(default=10.0, gt=0, le=3600)
    max_redirects: int = Field(default=5, ge=0, le=50)
    max_retries: int = Field(default=3, ge=0, le=100)
    retry_base: float = Field(default=2.0, gt=0, le=DAY)
    """First retry waits about this many seconds; each next one doubles (with jitter)."""
    retry_max: float = Field(default=3600.0, gt=0, le=WEEK)
    max_url_length: int = Field(default=2048, ge=64, le=1_000_000)
    max_path_segments: int = Field(default=32, ge=1, le=100_000)
    max_repeated_segments: int = Field(default=3, ge=1, le=100_000)
    """A path in which one segment occurs more than this many times is a trap."""
    calendar_years_ahead: int | None = Field(default=3, ge=0, le=1000)
    """A URL dated (``2031-05``, ``/2031/05/``, ``year=2031``, ``date=20310501``) more than this many
    years after the current year is an infinite-calendar trap; None turns the check off."""
    archive_non_html: bool = True
    """Archive responses that are not HTML (images, PDFs); they are never parsed for links."""
    max_links_per_page: int = Field(default=5000, ge=1, le=10_000_000)
    """New links taken from one page at most; the rest are cut (a link flood) and counted as ``max_links``."""


class StorageSpec(_Model):
    """Where the frontier and the archive live; ``{name}`` is replaced by the crawl name."""

    frontier: str = "sqlite:///shoal-data/{name}/frontier.sqlite"
    archive: str = "shoal-data/{name}/warc"
    """A local folder, or ``s3://bucket/prefix`` (files are written to ``staging``, then uploaded)."""
    warc_max_bytes: int = Field(default=1024**3, ge=1024 * 1024, le=2**40)
    warc_max_seconds: float = Field(default=300.0, gt=0, le=DAY)
    """A WARC file is closed (and uploaded) once it is this old, even if not full."""
    fsync: bool = True
    """fsync WARC files before their URLs are marked done."""
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    """An S3-compatible endpoint (default: AWS). Credentials come from the boto3 chain only."""
    region: str | None = Field(default=None, pattern=r"^[a-z0-9-]+$")
    staging: str = "shoal-data/{name}/warc-staging"
    """With an ``s3://`` archive: the local folder files are written to before their upload."""
    keep_local: bool = False
    """With an ``s3://`` archive: keep each file in ``staging`` after its verified upload."""

    @field_validator("archive")
    @classmethod
    def _archive(cls, v: str) -> str:
        if v.startswith("s3://"):
            bucket = v[5:].split("/", 1)[0]
            if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
                raise ValueError(
                    f"{v!r} has no valid bucket name: use s3://bucket/prefix "
                    "(3-63 lower-case letters, digits, '.' and '-')"
                )
        elif "://" in v:
            raise ValueError(f"{v!r}: an archive is a local folder or s3://bucket/prefix")
        return v


class WorkerSpec(_Model):
    """How one worker process runs."""

    concurrency: int = Field(default=16, ge=1, le=4096)
    lease_seconds: float = Field(default=120.0, ge=1, le=DAY)
    claim_batch: int = Field(default=0, ge=0, le=100_000)
    """URLs claimed per transaction; 0 = chosen from the concurrency."""
    flush_interval: float = Field(default=0.2, gt=0, le=60)
    """Seconds between batched writes of outcomes and discovered links."""
    browsers: int = Field(default=1, ge=0, le=64)
    browser_recycle_pages: int = Field(default=100, ge=1, le=1_000_000)
    chromium: str | None = None
    """Path of the Chromium binary (default: found on PATH or /usr/bin/chromium)."""
    chromedriver: str | None = None
    """Path of chromedriver (default: found on PATH or /usr/bin/chromedriver); never downloaded."""
    db_grace_seconds: float = Field(default=120.0, ge=0, le=WEEK)
    """How long a worker keeps retrying an unreachable database before it stops."""


class NotifySpec(_Model):
    """Where events are sent, as apprise URLs."""

    urls: list[str] = Field(default_factory=list)
    events: list[str] = Field(
        default_factory=lambda: ["finished", "critical", "new_error", "blocked", "quality"]
    )


class SeedSource(_Model):
    """A seed that lists pages: a sitemap (or sitemap index) or an RSS/Atom feed."""

    sitemap: str | None = None
    feed: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SeedSource:
        if (self.sitemap is None) == (self.feed is None):
            raise ValueError('give exactly one of sitemap = "URL" or feed = "URL"')
        return self

    @property
    def url(self) -> str:
        """The sitemap's or the feed's URL."""
        return self.sitemap or self.feed or ""

    @property
    def kind(self) -> Literal["sitemap", "feed"]:
        """``sitemap`` or ``feed``."""
        return "sitemap" if self.sitemap is not None else "feed"


class CrawlSpec(_Model):
    """The crawl's identity and starting points.

    ``seeds`` may mix page URLs with ``{ sitemap = "URL" }`` and ``{ feed = "URL" }``
    tables; those are split into ``sources``, so ``seeds`` holds page URLs only.
    """

    name: str
    """Letters, digits, ``_``, ``.`` and ``-`` (at most 64), starting with a letter or digit: it names folders."""
    seeds: list[str] = Field(default_factory=list)
    sources: list[SeedSource] = Field(default_factory=list)
    """Sitemaps and feeds whose entries become URLs (from ``seeds``)."""
    sitemaps: Literal["robots"] | None = None
    """``"robots"``: the ``Sitemap:`` lines of each seed host's robots.txt are seeds too."""
    host_map: dict[str, str] = Field(default_factory=dict)
    """Hosts named by sitemaps and feeds mapped to the host crawled (``"blog.example.com" = "127.0.0.1:8611"``)."""

    @model_validator(mode="before")
    @classmethod
    def _split_sources(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("seeds"), list):
            seeds = data["seeds"]
            data = dict(data)
            data["seeds"] = [s for s in seeds if not isinstance(s, dict)]
            data["sources"] = [*data.get("sources", []), *(s for s in seeds if isinstance(s, dict))]
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", v):
            raise ValueError(
                "a crawl name is 1 to 64 letters, digits, '_', '.' or '-' starting with a letter"
                " or digit (it names the data folder, so no '/', '..' or leading '.')"
            )
        return v

    @model_validator(mode="after")
    def _some_seed(self) -> CrawlSpec:
        if not self.seeds and not self.sources:
            raise ValueError(
                'give at least one seed: a URL, { sitemap = "URL" } or { feed = "URL" }'
            )
        return self

    @field_validator("host_map")
    @classmethod
    def _host_map(cls, v: dict[str, str]) -> dict[str, str]:
        for src, dst in v.items():
            for h in (src, dst):
                if not h or any(ch in h for ch in "/*@ ") or h != h.strip():
                    raise ValueError(
                        f"{h!r} is not a host name such as blog.example.com or 127.0.0.1:8611 "
                        "(no scheme, path or wildcard)"
                    )
        return v


class Ec2FleetSpec(_Model):
    """``[fleet.ec2]``: how ``shoal fleet up --provider ec2`` launches workers."""

    region: str | None = None
    instance_type: str = Field(default="t3.small", pattern=r"^[a-z0-9]+[a-z0-9-]*\.[a-z0-9]+$")
    ami: str | None = Field(default=None, pattern=r"^ami-[0-9a-f]{8,17}$")
    """Default: the latest Debian 12 image (SSM public parameter)."""
    arch: Literal["amd64", "arm64"] = "amd64"
    subnet: str | None = Field(default=None, pattern=r"^subnet-[0-9a-f]+$")
    security_groups: list[Annotated[str, Field(pattern=r"^sg-[0-9a-f]+$")]] = Field(
        default_factory=list
    )
    key_name: str | None = None
    spot: bool = False
    bucket: str | None = None
    """Where the shoal wheel goes (default: the bucket of an ``s3://`` archive)."""
    endpoint_url: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class FleetSpec(_Model):
    """``[fleet]``: defaults for ``shoal fleet up``."""

    provider: Literal["local", "ec2"] = "local"
    count: int = Field(default=2, ge=1, le=1000)
    ec2: Ec2FleetSpec = Field(default_factory=Ec2FleetSpec)


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
    fleet: FleetSpec = Field(default_factory=FleetSpec)
    parse: dict[str, Any] = Field(default_factory=dict)
    """Table definitions for ``shoal parse``; validated by :mod:`shoal.parse`."""

    _base: Path | None = PrivateAttr(default=None)

    @property
    def name(self) -> str:
        return self.crawl.name

    @property
    def base_dir(self) -> Path | None:
        """The folder relative paths of the spec resolve against: the spec file's, or None (the working directory)."""
        return self._base

    def with_base(self, base: str | Path | None) -> Spec:
        """This spec with relative paths resolved against ``base`` (made absolute); returns self."""
        self._base = None if base is None else Path(base).resolve()
        return self

    def resolve_path(self, path: str) -> str:
        """``path`` with ``{name}`` filled in, made absolute against :attr:`base_dir` when relative."""
        path = path.replace("{name}", self.crawl.name)
        if self._base is None or not path or Path(path).is_absolute():
            return path
        return str(self._base / path)

    def frontier_url(self) -> str:
        """The frontier database URL with ``{name}`` filled in; a relative SQLite path is the spec folder's."""
        url = self.storage.frontier.replace("{name}", self.crawl.name)
        prefix = "sqlite:///"
        if self._base is not None and url.startswith(prefix):
            path, q, query = url[len(prefix) :].partition("?")
            if path and path != ":memory:" and not path.startswith("/"):
                return prefix + self.resolve_path(path) + q + query
        return url

    def archive_dir(self) -> str:
        """The archive folder with ``{name}`` filled in, relative to the spec file's folder (or the ``s3://`` URL)."""
        if self.storage.archive.startswith("s3://"):
            return self.storage.archive.replace("{name}", self.crawl.name)
        return self.resolve_path(self.storage.archive)
