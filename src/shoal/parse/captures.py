"""What is parsed: the captures of a crawl read from the frontier, and each one loaded from the archive.

:func:`read_captures` lists the ``done`` captures of the pages each table
takes (its ``from`` rules or kinds, its ``statuses``), with their WARC
references, in archive order; with ``all_captures`` also every older capture
of those URLs found in the WARC files. :func:`load_page` reads one capture
back, undoes the content coding and decodes the charset into a
:class:`~shoal.parse.extract.Page`. A capture that cannot be parsed raises
:class:`NotParsed` with a reason in plain words.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.archive import WarcRef, iter_records, read_record
from shoal.content import HTML_TYPES
from shoal.content.charset import decode_html
from shoal.content.codings import content_decode
from shoal.errors import ArchiveError, SpecError
from shoal.frontier.contract import Frontier
from shoal.frontier.sql import SqlFrontier
from shoal.parse.config import ParseError, ParseSpec, TableSpec
from shoal.parse.extract import Page, fetched_datetime
from shoal.spec import Spec, parse_spec
from shoal.urls import HostScope, URLError, canonicalize

__all__ = [
    "HTML_TYPES",
    "AssetRef",
    "Capture",
    "NotParsed",
    "load_page",
    "open_frontier",
    "read_assets",
    "read_captures",
]

log = logging.getLogger(__name__)


AssetRef = tuple[str, int, int, str]
"""Where an archived image lives: (WARC file, offset, length, record id)."""


@dataclass(frozen=True, slots=True)
class Capture:
    """One archived response to parse, and the tables it feeds (picklable: it crosses processes)."""

    seq: int
    url_id: int
    url: str
    final_url: str
    rule: str | None
    kind: str
    http_status: int | None
    fetched_at: int | None
    """Milliseconds since the epoch (frontier time, or the WARC-Date of older captures)."""
    content_type: str | None
    file: str
    offset: int
    length: int
    record_id: str
    tables: tuple[str, ...]


class NotParsed(Exception):
    """A capture that is not parsed; ``str(exc)`` is the reason in plain words, as the report shows it."""


def open_frontier(url: str) -> SqlFrontier:
    """The crawl's frontier, or ParseError when a SQLite file is not there (the crawl never ran)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:" and not Path(path).exists():
            raise ParseError(
                f"no frontier database at {url}: has the crawl been run? (`shoal crawl SPEC`)"
            )
    return SqlFrontier(url, create=False)


def _rule_names(spec: Spec, stored_spec: str) -> list[str]:
    """Rule index → name, from the spec the crawl ran with (the frontier's ``rule`` column indexes it)."""
    try:
        rules = parse_spec(stored_spec, "stored crawl spec").rules
    except SpecError:
        rules = spec.rules
    return [r.name for r in rules]


def _wanted(table: TableSpec, rule: str | None, kind: str) -> bool:
    return (rule is not None and rule in table.from_) or kind in table.from_


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
    names = _rule_names(spec, stored_spec)
    rows = frontier.captures(crawl_id)
    out: list[Capture] = []
    by_key: dict[int, Any] = {}
    for r in rows:
        rule = names[r.rule] if 0 <= r.rule < len(names) and names[r.rule] else None
        feeds = tuple(
            t
            for t in tables
            if _wanted(ps.tables[t], rule, r.kind) and (r.http_status or 0) in ps.tables[t].statuses
        )
        if not feeds:
            continue
        by_key[r.url_key] = (r, rule)
        out.append(
            Capture(
                len(out),
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
                r.warc_record_id,
                feeds,
            )
        )
    if all_captures:
        out.extend(
            _older_captures(
                by_key, {c.record_id for c in out}, ps, tables, archive_dir, spec, len(out)
            )
        )
    return out


def _older_captures(
    by_key: dict[int, Any],
    known: set[str],
    ps: ParseSpec,
    tables: Sequence[str],
    archive_dir: str,
    spec: Spec,
    start: int,
) -> list[Capture]:
    """Every other response record in the archive of a URL the frontier holds (earlier fetches)."""
    strip = HostScope([], spec.scope.strip_query_params).strip
    out: list[Capture] = []
    files = sorted(
        p for p in Path(archive_dir).glob("*.warc*") if p.name.endswith((".warc", ".warc.gz"))
    )
    for path in files:
        try:
            for ref, rec in iter_records(path):
                if rec.record_type != "response" or ref.record_id in known:
                    continue
                try:
                    key = canonicalize(rec.url, strip=strip).url_key
                except URLError:
                    continue
                hit = by_key.get(key)
                if hit is None:
                    continue
                r, rule = hit
                feeds = tuple(
                    t
                    for t in tables
                    if _wanted(ps.tables[t], rule, r.kind)
                    and (rec.http_status or 0) in ps.tables[t].statuses
                )
                if not feeds:
                    continue
                ms = int(rec.date.timestamp() * 1000)
                out.append(
                    Capture(
                        start + len(out),
                        r.id,
                        r.url,
                        rec.url,
                        rule,
                        r.kind,
                        rec.http_status,
                        ms,
                        rec.header("content-type"),
                        ref.file,
                        ref.offset,
                        ref.length,
                        ref.record_id,
                        feeds,
                    )
                )
        except ArchiveError as exc:
            log.warning("stopped reading %s at a damaged record: %s", path.name, exc)
    return out


def read_assets(frontier: Frontier, crawl_id: int) -> dict[int, AssetRef]:
    """URL key → archive reference of every image the crawl fetched (for OCR)."""
    return {
        r.url_key: (r.warc_file, r.warc_offset, r.warc_length, r.warc_record_id)
        for r in frontier.captures(crawl_id, assets=True)
        if r.http_status is None or 200 <= r.http_status < 300
    }


def load_page(cap: Capture, archive_dir: str, max_body: int) -> Page:
    """Read ``cap`` from the archive and decode it; raises NotParsed, ArchiveError or OSError."""
    rec = read_record(archive_dir, WarcRef(cap.file, cap.offset, cap.length, cap.record_id))
    ctype = rec.header("content-type") or cap.content_type
    media = (ctype or "").split(";", 1)[0].strip().lower()
    if media not in HTML_TYPES:
        raise NotParsed(f"not HTML ({media})")
    body, _truncated = content_decode(rec.body, rec.header("content-encoding"), max_body)
    text, codec = decode_html(body, ctype)
    return Page(
        url=cap.url,
        final_url=cap.final_url,
        fetched_at=fetched_datetime(cap.fetched_at),
        http_status=cap.http_status if cap.http_status is not None else rec.http_status,
        content_type=ctype,
        headers=list(rec.http_headers),
        body=body,
        text=text,
        encoding=codec,
        rule=cap.rule,
        kind=cap.kind,
        url_id=cap.url_id,
        warc_record_id=rec.record_id,
    )
