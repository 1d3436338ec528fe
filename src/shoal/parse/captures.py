"""What is parsed: the captures of a crawl read from the frontier, and each one loaded from the archive.

:func:`read_captures` lists the ``done`` captures of the pages each table
takes (its ``from`` rules or kinds, its ``statuses``) in archive order; with
``all_captures`` also every older capture of those URLs found in the WARC
files. Each table reads the capture its ``source`` names: for pages of
``render = "browser"`` rules the rendered DOM (the ``conversion`` record the
crawl archived beside the response, with its frames) unless the table or
``[parse.rules.NAME]`` says ``source = "response"``.

What a capture is and how it is read back: :mod:`shoal.parse.load`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shoal.archive import (
    S3Location,
    WarcRef,
    archive_files,
    archive_location,
    iter_archive_file,
)
from shoal.errors import ArchiveError, SpecError, URLError
from shoal.frontier.contract import Frontier
from shoal.frontier.reads import CaptureRow
from shoal.frontier.sql import SqlFrontier
from shoal.parse.config import ParseError, ParseSpec, TableSpec
from shoal.parse.load import AssetRef, Capture, FrameRef, NotParsed, load_page, media_type
from shoal.spec import Rule, Spec, parse_spec
from shoal.urls import HostScope, canonicalize

__all__ = [
    "AssetRef",
    "Capture",
    "FrameRef",
    "NotParsed",
    "capture_of",
    "load_page",
    "media_type",
    "open_frontier",
    "read_assets",
    "read_captures",
    "rendered_dom",
]

log = logging.getLogger(__name__)


def open_frontier(url: str) -> SqlFrontier:
    """The crawl's frontier, or ParseError when a SQLite file is not there (the crawl never ran)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:" and not Path(path).exists():
            raise ParseError(
                f"no frontier database at {url}: has the crawl been run? (`shoal crawl SPEC`)"
            )
    return SqlFrontier(url, create=False)


def _stored_rules(spec: Spec, stored_spec: str) -> list[Rule]:
    """The rules the crawl ran with (the frontier's ``rule`` column indexes them)."""
    try:
        return list(parse_spec(stored_spec, "stored crawl spec").rules)
    except SpecError:
        return list(spec.rules)


def _wanted(table: TableSpec, rule: str | None, kind: str) -> bool:
    return (rule is not None and rule in table.from_) or kind in table.from_


def _plan(ps: ParseSpec, table: str, rule: str | None, browser: set[str]) -> tuple[str, str | None]:
    """(source, encoding) of ``table`` for a page of ``rule``: ``response``, ``rendered`` or ``auto-rendered``."""
    t = ps.tables[table]
    r = ps.rules.get(rule or "")
    source: str = t.source if t.source != "auto" else r.source if r is not None else "auto"
    if source == "auto":
        source = "auto-rendered" if rule in browser else "response"
    encoding = t.encoding or (r.encoding if r is not None else None)
    return source, encoding


@dataclass
class _Rendered:
    """What a browser fetch archived beside a response: its DOM and its frames."""

    dom: dict[str, tuple[WarcRef, str]]
    """Response record id → (conversion record, its content type)."""
    frames: dict[str, list[FrameRef]]
    """Response record id → the frames' HTML records."""


def _response_of(row: CaptureRow, rule: str | None, feeds: tuple[str, ...]) -> Capture:
    """The archived response a frontier capture row points at, feeding ``feeds`` (planned later)."""
    return Capture(
        0,
        row.id,
        row.url,
        row.final_url or row.url,
        rule,
        row.kind,
        row.http_status,
        row.fetched_at,
        row.content_type,
        row.warc_file,
        row.warc_offset,
        row.warc_length,
        row.warc_record_id,
        feeds,
    )


def capture_of(row: CaptureRow, rule: str | None) -> Capture:
    """The response capture of one frontier capture row (of rule ``rule``), feeding no table."""
    return _response_of(row, rule, ())


def _ref(cap: Capture) -> WarcRef:
    return WarcRef(cap.file, cap.offset, cap.length, cap.record_id)


def _reading(cap: Capture, record: WarcRef, content_type: str | None, **changes: Any) -> Capture:
    """``cap`` pointed at ``record`` (of ``content_type``), with ``changes``."""
    return replace(
        cap,
        content_type=content_type,
        file=record.file,
        offset=record.offset,
        length=record.length,
        record_id=record.record_id,
        **changes,
    )


def _conversion_of(rec: Any) -> str | None:
    """The response record id a ``conversion`` record (a rendered DOM) refers to; None for other records."""
    if rec.record_type != "conversion":
        return None
    refers: str | None = rec.warc_headers.get("WARC-Refers-To") or None
    return refers


def rendered_dom(location: Path | S3Location, name: str, response_id: str) -> str | None:
    """The DOM a browser rendered for the response ``response_id`` (its ``conversion`` record in
    file ``name``), if archived; None when it is not, or the local file is not there."""
    if isinstance(location, Path) and not (
        (location / name).exists() or (location / f"{name}.open").exists()
    ):
        return None
    for _ref, rec in iter_archive_file(location, name):
        if _conversion_of(rec) == response_id:
            body: bytes = rec.body
            return body.decode("utf-8", "replace")
    return None


NO_RENDERED = (
    'no rendered DOM in the archive for this page (source = "rendered" needs a '
    'render = "browser" rule; set source = "response" to parse the HTTP body)'
)


def read_captures(
    frontier: Frontier,
    crawl_id: int,
    spec: Spec,
    stored_spec: str,
    ps: ParseSpec,
    tables: Sequence[str],
    *,
    all_captures: bool,
    archive_dir: str,
) -> list[Capture]:
    """The captures that feed ``tables``, in archive order (see the module docstring)."""
    rules = _stored_rules(spec, stored_spec)
    names = [r.name for r in rules]
    browser = {r.name for r in rules if r.render == "browser" and r.name}
    responses: list[Capture] = []
    by_key: dict[int, Capture] = {}
    latest: set[str] = set()
    for r in frontier.captures(crawl_id):
        latest.add(r.latest_record_id or r.warc_record_id)
        rule = names[r.rule] if 0 <= r.rule < len(names) and names[r.rule] else None
        feeds = tuple(
            t
            for t in tables
            if _wanted(ps.tables[t], rule, r.kind) and (r.http_status or 0) in ps.tables[t].statuses
        )
        if not feeds:
            continue
        resp = _response_of(r, rule, feeds)
        responses.append(resp)
        by_key[r.url_key] = resp
    dom_files = {
        resp.file
        for resp in responses
        if any(_plan(ps, t, resp.rule, browser)[0] != "response" for t in resp.tables)
    }
    wants_dom = bool(dom_files)
    rendered = _Rendered({}, {})
    if all_captures or wants_dom:
        # Scanned whole: from S3 each file is downloaded once to a temporary file.
        location = archive_location(spec)
        files = (
            archive_files(location)
            if all_captures
            else sorted(dom_files)  # only the files holding pages that read their DOM
        )
        older = _scan(
            location, files, rendered, by_key if all_captures else None, ps, tables, spec, latest
        )
        responses.extend(older)
    return _captures(responses, rendered, ps, browser)


def _scan(
    location: Path | S3Location,
    files: Sequence[str],
    rendered: _Rendered,
    by_key: dict[int, Capture] | None,
    ps: ParseSpec,
    tables: Sequence[str],
    spec: Spec,
    latest: set[str] | None = None,
) -> list[Capture]:
    """Read ``files`` once: the rendered DOMs and frames by response, and (with ``by_key``) older responses.

    An older ``revisit`` record (a 304, an unchanged payload) is a capture at its
    own time of the payload it refers to. ``latest`` are the records of the
    latest captures the frontier gave (a revisit record where it resolved one to
    its payload, so that payload's own capture still counts as an older one).
    """
    strip = HostScope([], spec.scope.strip_query_params).strip
    known = {r.record_id for r in by_key.values()} if by_key is not None else set()
    if latest is not None:
        known = latest
    payloads: dict[str, tuple[WarcRef, int | None, str | None]] = {}
    revisits: list[Any] = []
    out: list[Capture] = []
    for name in files:
        if isinstance(location, Path) and not (
            (location / name).exists() or (location / f"{name}.open").exists()
        ):
            continue
        try:
            for ref, rec in iter_archive_file(location, name):
                refers = rec.warc_headers.get("WARC-Refers-To")
                ctype = rec.warc_headers.get("Content-Type") or ""
                dom_of = _conversion_of(rec)
                if dom_of is not None:
                    rendered.dom.setdefault(dom_of, (ref, ctype))
                    continue
                if rec.record_type == "resource" and refers:
                    if media_type(ctype) in ("text/html", "application/xhtml+xml"):
                        rendered.frames.setdefault(refers, []).append(
                            (rec.url, ref.file, ref.offset, ref.length, ref.record_id)
                        )
                    continue
                if by_key is not None and rec.record_type == "response":
                    payloads[ref.record_id] = (ref, rec.http_status, rec.header("content-type"))
                if by_key is not None and rec.record_type == "revisit":
                    if ref.record_id not in known:
                        revisits.append(rec)
                    continue
                if by_key is None or rec.record_type != "response" or ref.record_id in known:
                    continue
                try:
                    key = canonicalize(rec.url, strip=strip).url_key
                except URLError:
                    continue
                hit = by_key.get(key)
                if hit is None:
                    continue
                feeds = tuple(
                    t
                    for t in tables
                    if _wanted(ps.tables[t], hit.rule, hit.kind)
                    and (rec.http_status or 0) in ps.tables[t].statuses
                )
                if feeds:
                    out.append(
                        _reading(
                            hit,
                            ref,
                            rec.header("content-type"),
                            final_url=rec.url,
                            http_status=rec.http_status,
                            fetched_at=int(rec.date.timestamp() * 1000),
                            tables=feeds,
                        )
                    )
        except ArchiveError as exc:
            log.warning("stopped reading %s at a damaged record: %s", name, exc)
    for rec in revisits:
        target = payloads.get(rec.warc_headers.get("WARC-Refers-To") or "")
        if target is None or by_key is None:
            continue
        try:
            hit = by_key.get(canonicalize(rec.url, strip=strip).url_key)
        except URLError:
            continue
        pay_ref, status, pay_type = target
        if hit is None:
            continue
        feeds = tuple(
            t
            for t in tables
            if _wanted(ps.tables[t], hit.rule, hit.kind) and (status or 0) in ps.tables[t].statuses
        )
        if feeds:
            out.append(
                _reading(
                    hit,
                    pay_ref,
                    pay_type,
                    final_url=rec.url,
                    http_status=status,
                    fetched_at=int(rec.date.timestamp() * 1000),
                    tables=feeds,
                )
            )
    return out


def _captures(
    responses: list[Capture], rendered: _Rendered, ps: ParseSpec, browser: set[str]
) -> list[Capture]:
    """One capture per record to parse and the tables that read it, in archive order."""
    planned: list[tuple[WarcRef, str | None, tuple[Any, ...], Capture, tuple[str, ...]]] = []
    for resp in responses:
        groups: dict[tuple[Any, ...], list[str]] = {}
        refs: dict[tuple[Any, ...], tuple[WarcRef, str | None]] = {}
        for t in resp.tables:
            source, encoding = _plan(ps, t, resp.rule, browser)
            dom = rendered.dom.get(resp.record_id)
            frames: tuple[FrameRef, ...] = ()
            problem = None
            if source != "response" and dom is not None:
                frames = tuple(rendered.frames.get(resp.record_id, ()))
                key: tuple[Any, ...] = ("rendered", None, frames, None)
                refs[key] = dom
            else:
                if source == "rendered":
                    problem = NO_RENDERED
                key = ("response", encoding, (), problem)
                refs[key] = (_ref(resp), resp.content_type)
            groups.setdefault(key, []).append(t)
        for key, tables in groups.items():
            record, record_type = refs[key]
            planned.append((record, record_type, key, resp, tuple(tables)))
    planned.sort(key=lambda p: (p[0].file, p[0].offset))
    out: list[Capture] = []
    for record, record_type, (source, encoding, frames, problem), resp, names in planned:
        out.append(
            _reading(
                resp,
                record,
                record_type,
                seq=len(out),
                tables=names,
                source=source,
                encoding=encoding,
                frames=frames,
                problem=problem,
            )
        )
    return out


def read_assets(frontier: Frontier, crawl_id: int) -> dict[int, AssetRef]:
    """URL key → archive reference of every image the crawl fetched (for OCR)."""
    return {
        r.url_key: (r.warc_file, r.warc_offset, r.warc_length, r.warc_record_id)
        for r in frontier.captures(crawl_id, assets=True)
        if r.http_status is None or 200 <= r.http_status < 300
    }
