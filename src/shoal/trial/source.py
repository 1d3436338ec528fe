"""Getting the page ``shoal try`` looks at: fetched as a crawl would fetch it, or read from the archive.

- :func:`fetch_page` goes through the spec's address policy, its robots.txt,
  its headers and the rule's fetcher (HTTP or Chromium); a refusal raises
  :class:`~shoal.trial.result.TrialError` saying what a crawl would do and what
  setting changes it. Nothing is written to the frontier or the archive.
- :func:`read_archived` reads the latest capture of the URL, and for each
  ``[parse]`` table the capture ``shoal parse`` would read (the rendered DOM of
  a browser rule, by default).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.errors import PolicyRefusal, ShoalError
from shoal.exchange import FetchRequest
from shoal.spec import Rule, Spec
from shoal.trial.result import Step, TrialError, timed
from shoal.urls import Canonical

__all__ = ["Fetched", "fetch_page", "read_archived"]


@dataclass
class Fetched:
    """The page as the trial saw it: status, headers, final URL, its bytes and its decoded text."""

    status: int | None
    content_type: str | None
    headers: list[tuple[str, str]]
    final_url: str
    html: str
    body: bytes
    encoding: str
    fetched_at_ms: int | None
    record_id: str | None = None


async def fetch_page(spec: Spec, c: Canonical, rule: Rule | None, steps: list[Step]) -> Fetched:
    """Fetch ``c`` as a crawl of ``spec`` would with ``rule`` (see the module docstring)."""
    from shoal.content.charset import decode_html
    from shoal.crawl import build_fetchers, http_fetcher, robots_getter
    from shoal.fetch.address import AddressPolicy
    from shoal.fetch.http import HostHeaders
    from shoal.fetch.robots import RobotsCache

    policy = AddressPolicy(spec.scope.allow_private, spec.scope.allow_cidrs)
    render = rule.render if rule is not None else "http"
    only = spec.model_copy(update={"rules": [rule]} if rule is not None else {"rules": []})
    http = http_fetcher(only, policy)
    fetchers = build_fetchers(only, policy, http)
    try:
        with timed(steps, "address policy"):
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

            robots = RobotsCache(robots_getter(http, timeout, no_wait), spec.politeness.user_agent)
            with timed(steps, "robots.txt"):
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
        with timed(steps, f"fetch ({render})", note):
            res = await fetcher.fetch(request)
        note[0] = f"HTTP {res.status}, {len(res.body)} bytes"
        steps[-1] = Step(steps[-1].name, steps[-1].seconds, note[0])
    finally:
        for f in fetchers.values():
            with contextlib.suppress(Exception):
                await f.close()
    with timed(steps, "decode"):
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
    return Fetched(
        res.status,
        res.header("content-type"),
        list(res.headers),
        res.url,
        html,
        body,
        codec,
        int(time.time() * 1000),
    )


def _page_of(page: Any, fetched_at: int | None) -> Fetched:
    return Fetched(
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


def read_archived(
    spec: Spec, c: Canonical, db_url: str | None, steps: list[Step]
) -> tuple[Fetched, str | None, str, dict[str, Any]]:
    """The latest capture of ``c``, the rule name and kind the crawl gave it, and each table's page.

    A table's page is what ``shoal parse`` reads for it (the rendered DOM of a
    browser rule, by default), or the reason it cannot be parsed.
    """
    from shoal.parse.captures import (
        NotParsed,
        capture_of,
        load_page,
        open_frontier,
        rendered_dom,
    )

    with timed(steps, "find capture"):
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
    cap = capture_of(r, rule)
    with timed(steps, "read archive", [f"{r.warc_file}@{r.warc_offset}"]):
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
        with timed(steps, "read rendered DOM"):
            dom = rendered_dom(Path(spec.archive_dir()), r.warc_file, r.warc_record_id)
        if dom is not None:
            fetched.html = dom
    return fetched, rule, r.kind, tables
