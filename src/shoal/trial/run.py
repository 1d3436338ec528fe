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

from typing import Any

from shoal.errors import URLError
from shoal.spec import Rule, Spec
from shoal.trial.result import LinkVerdict, Step, TableTrial, TrialError, TrialResult, timed
from shoal.trial.source import Fetched, fetch_page, read_archived
from shoal.urls import Canonical, canonicalize
from shoal.worker.links import LinkExtractor, Router, crawl_scope, page_base

__all__ = ["try_page"]


def _rule_label(rule: Rule | None, index: int) -> str:
    if rule is None:
        return "(no rules: every in-scope URL is a list page)"
    return rule.name or f"rules.{index}"


def _links(
    spec: Spec, router: Router, c: Canonical, target_rule: int, kind: str, page: Fetched
) -> list[LinkVerdict]:
    scope = crawl_scope(spec)
    ex = LinkExtractor(router, scope, spec.limits)
    rule = router.rule(target_rule)
    hrefs, base = ex.hrefs(page.html, rule.follow if rule is not None else None)
    base_url, origin = page_base(page.final_url or c.url, base)
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
    spec: Spec, router: Router, c: Canonical, rule: Rule, page: Fetched
) -> list[LinkVerdict]:
    ex = LinkExtractor(router, crawl_scope(spec), spec.limits)
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
    page: Fetched,
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
        with timed(steps, f"table {name}"):
            res = TableExtractor(name, t).extract(p)
        out.append(TableTrial(name, res.rows, res.missing, dict(res.cast_errors), res.error))
    return out


def _outcome(page: Fetched) -> str:
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
        c = canonicalize(url, strip=crawl_scope(spec).strip)
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
        page, stored_rule, stored_kind, archived = read_archived(spec, c, db_url, steps)
        rule_name = stored_rule or rule_name
        kind = stored_kind or kind
        source = "archive"
    else:
        from shoal.crawl import run_loop

        page = run_loop(fetch_page(spec, c, rule, steps))
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
        with timed(steps, "links"):
            result.links = _links(spec, router, c, target.rule, kind, page)
    elif rule is not None and rule.images:
        with timed(steps, "images"):
            result.images = _images(spec, router, c, rule, page)
    result.tables = _tables(spec, c, rule_name, kind, page, steps, archived)
    return result
