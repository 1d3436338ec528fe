"""What is parsed: the captures of a crawl read from the frontier, and each one loaded from the archive.

:func:`read_captures` lists the ``done`` captures of the pages each table
takes (its ``from`` rules or kinds, its ``statuses``) in archive order; with
``all_captures`` also every older capture of those URLs found in the WARC
files. Each table reads the capture its ``source`` names: for pages of
``render = "browser"`` rules the rendered DOM (the ``conversion`` record the
crawl archived beside the response, with its frames) unless the table or
``[parse.rules.NAME]`` says ``source = "response"``.

:func:`load_page` reads one capture back, undoes the content coding and
decodes the charset into a :class:`~shoal.parse.extract.Page` of type
``html``, ``xml``, ``json`` (or ``other``: bytes only, for functions).
Charsets follow the WHATWG rules for HTML (header, BOM, ``<meta>``,
detection), the XML rules for XML (BOM, header, declaration) and UTF-8 for
JSON, with two exceptions recorded in the ``encoding`` column: an
``encoding`` set in the spec wins, and bytes that are valid UTF-8 are read
as UTF-8 whatever charset the page declares (a lying ``<meta charset>`` is
common; a real legacy-charset text that happens to be valid UTF-8 is not).
A capture that cannot be parsed raises :class:`NotParsed` with a reason in
plain words.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shoal.archive import WarcRef, iter_records, read_record
from shoal.content.charset import lookup_label, sniff
from shoal.content.codings import content_decode
from shoal.errors import ArchiveError, SpecError, URLError
from shoal.frontier.contract import Frontier
from shoal.frontier.sql import SqlFrontier
from shoal.parse.config import ParseError, ParseSpec, TableSpec, content_kind
from shoal.parse.extract import Page, fetched_datetime
from shoal.spec import Rule, Spec, parse_spec
from shoal.urls import HostScope, canonicalize

__all__ = [
    "AssetRef",
    "Capture",
    "FrameRef",
    "NotParsed",
    "decode_body",
    "load_page",
    "media_type",
    "open_frontier",
    "read_assets",
    "read_captures",
]

log = logging.getLogger(__name__)

AssetRef = tuple[str, int, int, str]
"""Where an archived record lives: (WARC file, offset, length, record id)."""

FrameRef = tuple[str, str, int, int, str]
"""A rendered frame: (frame URL, WARC file, offset, length, record id)."""


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
    source: str = "response"
    """``response`` or ``rendered``: which record ``file``/``offset`` point at."""
    encoding: str | None = None
    """A charset set in the spec (table or rule), used instead of what the page declares."""
    frames: tuple[FrameRef, ...] = ()
    problem: str | None = None
    """Why this capture cannot give the tables what they asked for (it is counted, not parsed)."""


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


@dataclass(frozen=True, slots=True)
class _Response:
    """One archived response of a URL the tables want, before it becomes captures."""

    url_id: int
    url: str
    final_url: str
    rule: str | None
    kind: str
    http_status: int | None
    fetched_at: int | None
    content_type: str | None
    ref: WarcRef
    feeds: tuple[str, ...]


@dataclass
class _Rendered:
    """What a browser fetch archived beside a response: its DOM and its frames."""

    dom: dict[str, tuple[WarcRef, str]]
    """Response record id → (conversion record, its content type)."""
    frames: dict[str, list[FrameRef]]
    """Response record id → the frames' HTML records."""


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
    responses: list[_Response] = []
    by_key: dict[int, _Response] = {}
    for r in frontier.captures(crawl_id):
        rule = names[r.rule] if 0 <= r.rule < len(names) and names[r.rule] else None
        feeds = tuple(
            t
            for t in tables
            if _wanted(ps.tables[t], rule, r.kind) and (r.http_status or 0) in ps.tables[t].statuses
        )
        if not feeds:
            continue
        resp = _Response(
            r.id,
            r.url,
            r.final_url or r.url,
            rule,
            r.kind,
            r.http_status,
            r.fetched_at,
            r.content_type,
            WarcRef(r.warc_file, r.warc_offset, r.warc_length, r.warc_record_id),
            feeds,
        )
        responses.append(resp)
        by_key[r.url_key] = resp
    wants_dom = any(
        _plan(ps, t, resp.rule, browser)[0] != "response" for resp in responses for t in resp.feeds
    )
    rendered = _Rendered({}, {})
    if all_captures or wants_dom:
        files = (
            _warc_files(archive_dir)
            if all_captures
            else sorted({Path(archive_dir) / r.ref.file for r in responses})
        )
        older = _scan(files, rendered, by_key if all_captures else None, ps, tables, spec)
        responses.extend(older)
    return _captures(responses, rendered, ps, browser)


def _warc_files(archive_dir: str) -> list[Path]:
    return sorted(
        p for p in Path(archive_dir).glob("*.warc*") if p.name.endswith((".warc", ".warc.gz"))
    )


def _scan(
    files: Sequence[Path],
    rendered: _Rendered,
    by_key: dict[int, _Response] | None,
    ps: ParseSpec,
    tables: Sequence[str],
    spec: Spec,
) -> list[_Response]:
    """Read ``files`` once: the rendered DOMs and frames by response, and (with ``by_key``) older responses."""
    strip = HostScope([], spec.scope.strip_query_params).strip
    known = {r.ref.record_id for r in by_key.values()} if by_key is not None else set()
    out: list[_Response] = []
    for path in files:
        if not path.exists() and not Path(str(path) + ".open").exists():
            continue
        try:
            for ref, rec in iter_records(path):
                refers = rec.warc_headers.get("WARC-Refers-To")
                ctype = rec.warc_headers.get("Content-Type") or ""
                if rec.record_type == "conversion" and refers:
                    rendered.dom.setdefault(refers, (ref, ctype))
                    continue
                if rec.record_type == "resource" and refers:
                    if media_type(ctype) in ("text/html", "application/xhtml+xml"):
                        rendered.frames.setdefault(refers, []).append(
                            (rec.url, ref.file, ref.offset, ref.length, ref.record_id)
                        )
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
                        replace(
                            hit,
                            final_url=rec.url,
                            http_status=rec.http_status,
                            fetched_at=int(rec.date.timestamp() * 1000),
                            content_type=rec.header("content-type"),
                            ref=ref,
                            feeds=feeds,
                        )
                    )
        except ArchiveError as exc:
            log.warning("stopped reading %s at a damaged record: %s", path.name, exc)
    return out


def _captures(
    responses: list[_Response], rendered: _Rendered, ps: ParseSpec, browser: set[str]
) -> list[Capture]:
    """One capture per record to parse and the tables that read it, in archive order."""
    planned: list[tuple[WarcRef, str | None, tuple[Any, ...], _Response, tuple[str, ...]]] = []
    for resp in responses:
        groups: dict[tuple[Any, ...], list[str]] = {}
        refs: dict[tuple[Any, ...], tuple[WarcRef, str | None]] = {}
        for t in resp.feeds:
            source, encoding = _plan(ps, t, resp.rule, browser)
            dom = rendered.dom.get(resp.ref.record_id)
            frames: tuple[FrameRef, ...] = ()
            problem = None
            if source != "response" and dom is not None:
                frames = tuple(rendered.frames.get(resp.ref.record_id, ()))
                key: tuple[Any, ...] = ("rendered", None, frames, None)
                refs[key] = dom
            else:
                if source == "rendered":
                    problem = NO_RENDERED
                key = ("response", encoding, (), problem)
                refs[key] = (resp.ref, resp.content_type)
            groups.setdefault(key, []).append(t)
        for key, tables in groups.items():
            record, record_type = refs[key]
            planned.append((record, record_type, key, resp, tuple(tables)))
    planned.sort(key=lambda p: (p[0].file, p[0].offset))
    out: list[Capture] = []
    for record, record_type, (source, encoding, frames, problem), resp, names in planned:
        out.append(
            Capture(
                len(out),
                resp.url_id,
                resp.url,
                resp.final_url,
                resp.rule,
                resp.kind,
                resp.http_status,
                resp.fetched_at,
                record_type,
                record.file,
                record.offset,
                record.length,
                record.record_id,
                names,
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


# --------------------------------------------------------------------------- loading and decoding


def media_type(content_type: str | None) -> str:
    """``text/html`` of ``text/HTML; charset=utf-8``: the media type, lower case, without parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def load_page(cap: Capture, archive_dir: str, max_body: int) -> Page:
    """Read ``cap`` from the archive and decode it; raises NotParsed, ArchiveError or OSError."""
    if cap.problem is not None:
        raise NotParsed(cap.problem)
    rec = read_record(archive_dir, WarcRef(cap.file, cap.offset, cap.length, cap.record_id))
    frames: list[tuple[str, str]] = []
    if cap.source == "rendered":
        # The DOM as the browser built it, serialised by shoal as UTF-8 whatever the page declared.
        ctype: str | None = rec.warc_headers.get("Content-Type") or cap.content_type or "text/html"
        body = rec.body
        text, codec = body.decode("utf-8", "replace"), "utf-8"
        for url, *ref in cap.frames:
            frame = read_record(archive_dir, WarcRef(*ref))  # type: ignore[arg-type]
            frames.append((url, frame.body.decode("utf-8", "replace")))
        doc_type = "html"
        headers: list[tuple[str, str]] = []
    else:
        ctype = rec.header("content-type") or cap.content_type
        body, _truncated = content_decode(rec.body, rec.header("content-encoding"), max_body)
        doc_type = content_kind(media_type(ctype)) or "other"
        text, codec = decode_body(body, ctype, doc_type, cap.encoding)
        headers = list(rec.http_headers)
    return Page(
        url=cap.url,
        final_url=cap.final_url,
        fetched_at=fetched_datetime(cap.fetched_at),
        http_status=cap.http_status if cap.http_status is not None else rec.http_status,
        content_type=ctype,
        headers=headers,
        body=body,
        text=text,
        encoding=codec,
        rule=cap.rule,
        kind=cap.kind,
        url_id=cap.url_id,
        warc_record_id=rec.record_id,
        doc_type=doc_type,
        source=cap.source,
        frames=frames,
    )


_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
_WHERE = {"header": "the HTTP header", "meta": "the page's <meta>", "xml": "the XML declaration"}


def decode_body(
    body: bytes, content_type: str | None, doc_type: str, override: str | None = None
) -> tuple[str, str]:
    """Decode a capture's bytes: (text, the ``encoding`` column's value). Never raises.

    ``override`` (the spec's ``encoding``) wins. Otherwise HTML is decoded as
    the WHATWG rules say, XML by BOM, header charset, then its declaration,
    JSON by BOM, header charset, else UTF-8; and bytes that are valid UTF-8 but
    declared as another charset are read as UTF-8, with the reason in the
    returned encoding (``utf-8 (the page's <meta> says gb2312, ...)``).
    Undecodable bytes become U+FFFD.
    """
    if doc_type == "other":
        return "", ""
    if override is not None:
        codec = lookup_label(override) or override
        return body.decode(codec, "replace"), f"{codec} (set in the spec)"
    source: str
    if doc_type == "html":
        codec, source = sniff(body, content_type)
    else:
        codec, source = _sniff_data(body, content_type, doc_type)
    if source == "bom":
        body = body[3:] if codec == "utf-8" else body[2:]
    elif codec != "utf-8" and not codec.startswith("utf-16") and not body.isascii():
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            try:
                body.decode(codec)
                how = "but the bytes are valid UTF-8"
            except (UnicodeDecodeError, LookupError):
                how = "which does not decode the bytes; they are valid UTF-8"
            declared = _WHERE.get(source, "charset detection")
            verb = "says" if source in _WHERE else "guessed"
            return text, f"utf-8 ({declared} {verb} {codec}, {how})"
    try:
        return body.decode(codec, "replace"), codec
    except LookupError:  # pragma: no cover - every codec the label table names is registered
        return body.decode("utf-8", "replace"), "utf-8"


def _sniff_data(body: bytes, content_type: str | None, doc_type: str) -> tuple[str, str]:
    """(codec, where it came from) of an XML or JSON body."""
    if body.startswith(b"\xef\xbb\xbf"):
        return "utf-8", "bom"
    if body.startswith(b"\xfe\xff"):
        return "utf-16-be", "bom"
    if body.startswith(b"\xff\xfe"):
        return "utf-16-le", "bom"
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            codec = lookup_label(value.strip().strip("\"'"))
            if codec is not None:
                return codec, "header"
    if doc_type == "xml":
        m = _XML_ENCODING.match(body[:1024])
        if m is not None:
            codec = lookup_label(m.group(1).decode("ascii"))
            if codec is not None:
                return codec, "xml"
    return "utf-8", "default"
