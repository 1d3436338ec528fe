"""``shoal try SPEC URL``: one page through the spec, to check rules, selectors and fields before a crawl.

What it does, and guarantees:

- The URL is matched to the spec's rules exactly as a crawl matches it
  (:class:`~shoal.worker.links.Router`): the first matching rule wins.
- The page is fetched politely through the same parts a crawl uses: the
  spec's address policy (a refused address is not contacted), its robots.txt
  (a disallowed page is not fetched), its user agent and ``[scope.headers]``,
  and the same fetcher as the rule (HTTP, or headless Chromium for
  ``render = "browser"``). One request for robots.txt, one for the page;
  nothing is written to the frontier or the archive.
- With ``from_archive`` the latest capture of the URL is read from the
  crawl's archive instead (the one ``shoal parse`` would read), and nothing
  is fetched.
- The links ``follow`` finds on a list page are listed with what a crawl
  would do with each: added, or dropped and why (not a crawlable URL, a
  repeat on the page, a host out of scope, no rule matches, or a trap limit),
  as if the page were a seed (depth 0). The images a detail rule archives are
  listed too.
- Every ``[parse]`` table fed by the rule (its ``from``) is extracted from the
  page with the parse stage's own extractor; values are shown before
  redaction and without OCR (those need the archive).
- Each step says how long it took.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from shoal.errors import PolicyRefusal, ShoalError, URLError
from shoal.exchange import FetchRequest
from shoal.spec import Rule, Spec
from shoal.urls import Canonical, HostScope, canonicalize
from shoal.worker.links import LinkExtractor, Router

__all__ = [
    "LinkVerdict",
    "Step",
    "TableTrial",
    "TrialError",
    "TrialResult",
    "render_trial",
    "try_page",
]


class TrialError(ShoalError):
    """``shoal try`` cannot go on (no rule, refused address, robots.txt, nothing archived)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a trial and how long it took."""

    name: str
    seconds: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class LinkVerdict:
    """A link found on the page and what a crawl would do with it."""

    href: str
    """As written in the page."""
    url: str | None
    """Canonical absolute URL (None when the href is not a crawlable URL)."""
    rule: str | None
    kind: str | None
    kept: bool
    """True when a crawl would add it as pending."""
    reason: str | None
    """Why it is dropped or skipped (None when kept)."""


@dataclass(frozen=True, slots=True)
class TableTrial:
    """The rows one ``[parse]`` table takes from the page."""

    table: str
    rows: list[dict[str, Any]]
    missing: list[str]
    """Required fields missing (once per row)."""
    cast_errors: dict[str, int]
    error: str | None


@dataclass
class TrialResult:
    """Everything ``shoal try`` found out about one page."""

    url: str
    source: str
    """``fetch`` or ``archive``."""
    rule: str | None
    rule_index: int
    kind: str
    render: str
    http_status: int | None = None
    outcome: str = ""
    """What a crawl would record for the page itself (``done``, ``failed (permanent)``, a redirect)."""
    content_type: str | None = None
    final_url: str | None = None
    fetched_bytes: int = 0
    links: list[LinkVerdict] = field(default_factory=list)
    images: list[LinkVerdict] = field(default_factory=list)
    tables: list[TableTrial] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    @property
    def followed(self) -> list[str]:
        """The URLs a crawl would add from this page, in page order."""
        return [v.url for v in self.links if v.kept and v.url is not None]

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``shoal try --json``)."""
        d = asdict(self)
        d["followed"] = self.followed
        return d


@contextlib.contextmanager
def _timed(steps: list[Step], name: str, detail: list[str] | None = None) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        steps.append(Step(name, time.perf_counter() - t0, detail[0] if detail else ""))


def _scope(spec: Spec) -> HostScope:
    hosts = list(spec.scope.allowed_hosts)
    if not hosts:
        for s in spec.crawl.seeds:
            with contextlib.suppress(URLError):
                hosts.append(canonicalize(s).host)
    return HostScope(hosts, spec.scope.strip_query_params)


def _rule_label(rule: Rule | None, index: int) -> str:
    if rule is None:
        return "(no rules: every in-scope URL is a list page)"
    return rule.name or f"rules.{index}"


# --------------------------------------------------------------------------- getting the page


@dataclass
class _Fetched:
    status: int | None
    content_type: str | None
    headers: list[tuple[str, str]]
    final_url: str
    html: str
    body: bytes
    encoding: str
    fetched_at_ms: int | None
    record_id: str | None = None


async def _fetch(spec: Spec, c: Canonical, rule: Rule | None, steps: list[Step]) -> _Fetched:
    from shoal.content.charset import decode_html
    from shoal.crawl import _robots_getter, build_fetchers
    from shoal.fetch.address import AddressPolicy
    from shoal.fetch.http import HostHeaders, HttpFetcher
    from shoal.fetch.robots import RobotsCache

    policy = AddressPolicy(spec.scope.allow_private, spec.scope.allow_cidrs)
    render = rule.render if rule is not None else "http"
    only = spec.model_copy(update={"rules": [rule]} if rule is not None else {"rules": []})
    fetchers = build_fetchers(only, policy)
    try:
        http = fetchers["http"]
        assert isinstance(http, HttpFetcher)
        with _timed(steps, "address policy"):
            try:
                await http.check_address(c.url)
            except PolicyRefusal as exc:
                raise TrialError(
                    f"{c.host} is refused by the address policy ({exc.detail}): a crawl would skip it "
                    "(address_policy); set [scope] allow_private = true or allow_cidrs to reach it"
                ) from None
        if spec.politeness.robots:
            timeout = min(30.0, spec.limits.fetch_timeout)

            async def no_wait(_url: str) -> None:
                return None

            robots = RobotsCache(_robots_getter(http, timeout, no_wait), spec.politeness.user_agent)
            with _timed(steps, "robots.txt"):
                rules = await robots.robots(c.url)
            if not rules.allowed(c.url) and rules.temporary:
                raise TrialError(
                    f"robots.txt of {c.host} cannot be read now (unreachable, or a server error): "
                    "a crawl would wait and retry (RFC 9309: disallow for now); check that the site is up"
                )
            if not rules.allowed(c.url):
                raise TrialError(
                    f"robots.txt of {c.host} does not let {spec.politeness.user_agent!r} fetch {c.url}: "
                    "a crawl would skip it (robots); set [politeness] robots = false only for your own site"
                )
        fetcher = fetchers[render]
        host_headers = HostHeaders(spec.scope.resolved_headers(), spec.crawl.seeds)
        request = FetchRequest(
            c.url,
            rule,
            time.monotonic() + spec.limits.fetch_timeout,
            headers=tuple(host_headers.for_url(c.url).items()),
        )
        note = [f"{render}"]
        with _timed(steps, f"fetch ({render})", note):
            res = await fetcher.fetch(request)
        note[0] = f"HTTP {res.status}, {len(res.body)} bytes"
        steps[-1] = Step(steps[-1].name, steps[-1].seconds, note[0])
    finally:
        for f in fetchers.values():
            with contextlib.suppress(Exception):
                await f.close()
    with _timed(steps, "decode"):
        body = res.decoded if res.decoded is not None else res.body
        enc = res.header("content-encoding")
        if res.decoded is None and enc and enc.strip().lower() not in ("", "identity"):
            from shoal.content.codings import content_decode

            with contextlib.suppress(ShoalError):
                body, _ = content_decode(res.body, enc, spec.limits.max_body_bytes)
        if res.rendered_html is not None:
            html, codec = res.rendered_html, "utf-8"
        else:
            html, codec = decode_html(body, res.header("content-type"))
    return _Fetched(
        res.status,
        res.header("content-type"),
        list(res.headers),
        res.url,
        html,
        body,
        codec,
        int(time.time() * 1000),
    )


def _page_of(page: Any, fetched_at: int | None) -> _Fetched:
    return _Fetched(
        page.http_status,
        page.content_type,
        page.headers,
        page.final_url,
        page.text,
        page.body,
        page.encoding,
        fetched_at,
        page.warc_record_id,
    )


def _table_captures(
    spec: Spec, frontier: Any, info: Any, c: Canonical
) -> dict[str, tuple[Any, int | None]]:
    """Per ``[parse]`` table, the capture of ``c`` that ``shoal parse`` would read (rendered DOM or response)."""
    if not spec.parse:
        return {}
    from shoal.parse import parse_config
    from shoal.parse.captures import read_captures

    ps = parse_config(spec)
    caps = read_captures(
        frontier,
        info.id,
        spec,
        info.spec,
        ps,
        list(ps.tables),
        all_captures=False,
        archive_dir=spec.archive_dir(),
    )
    out: dict[str, tuple[Any, int | None]] = {}
    for cap in caps:
        if cap.url != c.url:
            continue
        for t in cap.tables:
            have = out.get(t)
            if have is None or (cap.fetched_at or 0) >= (have[1] or 0):
                out[t] = (cap, cap.fetched_at)
    return out


def _from_archive(
    spec: Spec, c: Canonical, db_url: str | None, steps: list[Step]
) -> tuple[_Fetched, str | None, str, dict[str, Any]]:
    """The latest capture of ``c``, the rule name and kind the crawl gave it, and each table's page.

    A table's page is what ``shoal parse`` reads for it (the rendered DOM of a
    browser rule, by default), or the reason it cannot be parsed.
    """
    from shoal.parse.captures import Capture, NotParsed, load_page, open_frontier

    with _timed(steps, "find capture"):
        frontier = open_frontier(db_url or spec.frontier_url())
        try:
            info = frontier.get_crawl(spec.name)
            rows = [r for r in frontier.captures(info.id) if r.url_key == c.url_key]
            table_caps = _table_captures(spec, frontier, info, c) if rows else {}
        finally:
            frontier.close()
    if not rows:
        raise TrialError(
            f"no capture of {c.url} in crawl {spec.name!r}: crawl it first, or try it without --from-archive"
        )
    r = max(rows, key=lambda r: (r.fetched_at or 0, r.warc_file, r.warc_offset))
    names = [x.name for x in spec.rules]
    rule = names[r.rule] if 0 <= r.rule < len(names) else None
    cap = Capture(
        0,
        r.id,
        r.url,
        r.final_url or r.url,
        rule,
        r.kind,
        r.http_status,
        r.fetched_at,
        r.content_type,
        r.warc_file,
        r.warc_offset,
        r.warc_length,
        r.warc_record_id or "",
        (),
    )
    with _timed(steps, "read archive", [f"{r.warc_file}@{r.warc_offset}"]):
        try:
            page = load_page(cap, spec.archive_dir(), spec.limits.max_body_bytes)
        except NotParsed as exc:
            raise TrialError(f"the capture of {c.url} cannot be parsed: {exc}") from None
        tables: dict[str, Any] = {}
        for t, (tcap, _at) in table_caps.items():
            try:
                tables[t] = load_page(tcap, spec.archive_dir(), spec.limits.max_body_bytes)
            except (NotParsed, ShoalError, OSError) as exc:
                tables[t] = str(exc)
    fetched = _page_of(page, r.fetched_at)
    rule_spec = spec.rules[r.rule] if 0 <= r.rule < len(spec.rules) else None
    if rule_spec is not None and rule_spec.render == "browser" and r.warc_record_id:
        # Links of a browser rule come from the rendered DOM, in a crawl too.
        with _timed(steps, "read rendered DOM"):
            dom = _rendered_dom(Path(spec.archive_dir()) / r.warc_file, r.warc_record_id)
        if dom is not None:
            fetched.html = dom
    return fetched, rule, r.kind, tables


def _rendered_dom(path: Path, response_id: str) -> str | None:
    """The DOM a browser rendered for the response ``response_id`` (its ``conversion`` record), if archived."""
    from shoal.archive import iter_records

    for p in (path, Path(str(path) + ".open")):
        if not p.exists():
            continue
        for _ref, rec in iter_records(p):
            if (
                rec.record_type == "conversion"
                and rec.warc_headers.get("WARC-Refers-To") == response_id
            ):
                body: bytes = rec.body
                return body.decode("utf-8", "replace")
    return None


# --------------------------------------------------------------------------- what the page gives


def _links(
    spec: Spec, router: Router, c: Canonical, target_rule: int, kind: str, page: _Fetched
) -> list[LinkVerdict]:
    scope = _scope(spec)
    ex = LinkExtractor(router, scope, spec.limits)
    rule = router.rule(target_rule)
    hrefs, base = ex.hrefs(page.html, rule.follow if rule is not None else None)
    base_url = page.final_url or c.url
    if base:
        with contextlib.suppress(URLError):
            base_url = canonicalize(base, base_url).url
    cut = base_url.find("/", base_url.find("//") + 2)
    origin = base_url[:cut] if cut >= 0 else base_url
    out: list[LinkVerdict | tuple[str, Canonical]] = []
    seen: set[int] = {c.url_key}
    found: list[Canonical] = []
    for href in hrefs:
        canon = ex.resolve(href, base_url, origin)
        if canon is None:
            out.append(LinkVerdict(href, None, None, None, False, "not a crawlable URL"))
            continue
        if canon.url_key in seen:
            why = "the page itself" if canon.url_key == c.url_key else "repeated on the page"
            out.append(LinkVerdict(href, canon.url, None, None, False, why))
            continue
        seen.add(canon.url_key)
        if not scope.allows(canon.host):
            out.append(
                LinkVerdict(href, canon.url, None, None, False, f"host {canon.host} out of scope")
            )
            continue
        if router.match(canon.url) is None:
            out.append(LinkVerdict(href, canon.url, None, None, False, "no rule matches"))
            continue
        found.append(canon)
        out.append((href, canon))
    rows = ex.page_links(
        found, parent_id=None, parent_rule=target_rule, parent_kind=kind, parent_depth=0
    )
    by_key = {r.url_key: r for r in rows}
    verdicts: list[LinkVerdict] = []
    for item in out:
        if isinstance(item, LinkVerdict):
            verdicts.append(item)
            continue
        href, canon = item
        n = by_key[canon.url_key]
        r = router.rule(n.rule)
        verdicts.append(
            LinkVerdict(
                href,
                canon.url,
                _rule_label(r, n.rule) if r is not None else None,
                n.kind,
                n.skip_reason is None,
                None if n.skip_reason is None else f"skipped ({n.skip_reason})",
            )
        )
    return verdicts


def _images(
    spec: Spec, router: Router, c: Canonical, rule: Rule, page: _Fetched
) -> list[LinkVerdict]:
    ex = LinkExtractor(router, _scope(spec), spec.limits)
    out = []
    for src in ex.srcs(page.html, rule.images or ""):
        try:
            canon = canonicalize(src, page.final_url or c.url, ex.scope.strip)
        except URLError:
            out.append(LinkVerdict(src, None, None, "asset", False, "not a crawlable URL"))
            continue
        out.append(LinkVerdict(src, canon.url, rule.name or None, "asset", True, None))
    return out


def _tables(
    spec: Spec,
    c: Canonical,
    rule: str | None,
    kind: str,
    page: _Fetched,
    steps: list[Step],
    archived: dict[str, Any] | None = None,
) -> list[TableTrial]:
    """Each table fed by the rule, extracted from the fetched page or, from the archive, from
    the capture ``shoal parse`` reads for it (``archived``: table → Page, or why it cannot be parsed)."""
    if not spec.parse:
        return []
    from shoal.parse import Page, TableExtractor, parse_config
    from shoal.parse.extract import fetched_datetime

    ps = parse_config(spec)
    out = []
    for name, t in ps.tables.items():
        if not ((rule is not None and rule in t.from_) or kind in t.from_):
            continue
        if archived is not None:
            got = archived.get(name, "no capture of this page feeds the table")
            if isinstance(got, str):
                out.append(TableTrial(name, [], [], {}, got))
                continue
            p = got
        else:
            p = Page(
                url=c.url,
                final_url=page.final_url or c.url,
                fetched_at=fetched_datetime(page.fetched_at_ms),
                http_status=page.status,
                content_type=page.content_type,
                headers=page.headers,
                body=page.body,
                text=page.html,
                encoding=page.encoding,
                rule=rule,
                kind=kind,
                warc_record_id=page.record_id,
            )
        with _timed(steps, f"table {name}"):
            res = TableExtractor(name, t).extract(p)
        out.append(TableTrial(name, res.rows, res.missing, dict(res.cast_errors), res.error))
    return out


def _outcome(page: _Fetched) -> str:
    from shoal.fetch.classify import classify_status, is_redirect

    status = page.status or 0
    if is_redirect(status):
        loc = next((v for k, v in page.headers if k.lower() == "location"), None)
        return f"done (a redirect to {loc}: the target is a URL of its own)"
    cls = classify_status(status)
    if cls is not None:
        if cls.value == "permanent":
            return "failed (permanent), no retry"
        return f"{cls.value}: retried with backoff, failed ({cls.value}) when retries run out"
    return "done"


def try_page(
    spec: Spec, url: str, *, from_archive: bool = False, db_url: str | None = None
) -> TrialResult:
    """Run one page through ``spec`` (see the module docstring); raises TrialError when it cannot."""
    steps: list[Step] = []
    try:
        c = canonicalize(url, strip=_scope(spec).strip)
    except URLError as exc:
        raise TrialError(f"{url!r} is not a URL a crawl can fetch: {exc}") from None
    router = Router(spec.rules)
    target = router.match(c.url)
    if target is None:
        names = ", ".join(r.name or f"rules.{i}" for i, r in enumerate(spec.rules))
        raise TrialError(
            f"no rule matches {c.url}: a crawl would not add it (rules tried in order: {names})"
        )
    rule = router.rule(target.rule)
    rule_name = rule.name or None if rule is not None else None
    kind = target.kind
    archived: dict[str, Any] | None = None
    if from_archive:
        page, stored_rule, stored_kind, archived = _from_archive(spec, c, db_url, steps)
        rule_name = stored_rule or rule_name
        kind = stored_kind or kind
        source = "archive"
    else:
        from shoal.crawl import run_loop

        page = run_loop(_fetch(spec, c, rule, steps))
        source = "fetch"
    result = TrialResult(
        url=c.url,
        source=source,
        rule=rule_name,
        rule_index=target.rule,
        kind=kind,
        render=rule.render if rule is not None else "http",
        http_status=page.status,
        outcome=_outcome(page),
        content_type=page.content_type,
        final_url=page.final_url,
        fetched_bytes=len(page.body),
        steps=steps,
    )
    if kind == "list":
        with _timed(steps, "links"):
            result.links = _links(spec, router, c, target.rule, kind, page)
    elif rule is not None and rule.images:
        with _timed(steps, "images"):
            result.images = _images(spec, router, c, rule, page)
    result.tables = _tables(spec, c, rule_name, kind, page, steps, archived)
    return result


# --------------------------------------------------------------------------- showing it


def _value(v: Any, width: int = 160) -> str:
    s = v.isoformat() if hasattr(v, "isoformat") else repr(v) if not isinstance(v, str) else v
    s = " ".join(s.split())
    return s if len(s) <= width else s[: width - 1] + "…"


_LONG_BUILTINS = frozenset({"main_text", "html"})


def render_trial(r: TrialResult) -> RenderableType:
    """The trial for a terminal: the rule, the links, each table's values, the steps' times."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("url", escape(r.url))
    head.add_row(
        "rule",
        escape(f"{r.rule or '(none)'} (kind {r.kind}, render {r.render})"),
    )
    head.add_row("outcome", Text(r.outcome))
    head.add_row(
        "page",
        escape(
            f"{'archived capture' if r.source == 'archive' else 'fetched'}: HTTP {r.http_status}, "
            f"{r.content_type or '?'}, {r.fetched_bytes} bytes"
            + (f", final URL {r.final_url}" if r.final_url and r.final_url != r.url else "")
        ),
    )
    parts: list[RenderableType] = [head]
    if r.kind == "list":
        t = Table(
            title=f"links: {len(r.followed)} followed, {len(r.links) - len(r.followed)} dropped"
        )
        for col in ("url", "rule", "kind", "what a crawl does"):
            t.add_column(col, overflow="fold")
        for v in r.links:
            t.add_row(
                Text(v.url or v.href),
                Text(v.rule or "-"),
                Text(v.kind or "-"),
                Text("follow" if v.kept else v.reason or "", style="green" if v.kept else "yellow"),
            )
        parts.append(t)
    if r.images:
        t = Table(title=f"images archived: {len(r.images)}")
        t.add_column("url", overflow="fold")
        for v in r.images:
            t.add_row(Text(v.url or f"{v.href} ({v.reason})"))
        parts.append(t)
    for tt in r.tables:
        t = Table(title=escape(f"[parse] table {tt.table}: {len(tt.rows)} row(s)"))
        t.add_column("field", style="bold")
        t.add_column("value", overflow="fold")
        if tt.error:
            t.add_row("error", Text(tt.error, style="red"))
        for i, row in enumerate(tt.rows):
            if i:
                t.add_section()
            for k, val in row.items():
                t.add_row(Text(k), Text(_value(val, 80 if k in _LONG_BUILTINS else 160)))
        if tt.missing:
            t.add_row("missing", Text(", ".join(sorted(set(tt.missing))), style="red"))
        if tt.cast_errors:
            t.add_row(
                "not cast",
                Text(", ".join(f"{k} {n}" for k, n in tt.cast_errors.items()), style="red"),
            )
        parts.append(t)
    if not r.tables:
        parts.append(Text("no [parse] table takes this page (see their `from`)", style="dim"))
    steps = Table(title="steps")
    steps.add_column("step")
    steps.add_column("ms", justify="right")
    steps.add_column("detail")
    for s in r.steps:
        steps.add_row(Text(s.name), f"{s.seconds * 1000:.1f}", Text(s.detail))
    parts.append(steps)
    parts.append(Text("values are shown before redaction and without OCR", style="dim"))
    return Group(*parts)
