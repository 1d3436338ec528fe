"""``shoal parse``: from the archive to tables, in parallel, written atomically, with a quality report.

The steps of :func:`run_parse`:

1. read the frontier: the ``done`` captures of the pages each table takes
   (its ``from`` rules or kinds), with their WARC references; with
   ``all_captures`` also every older capture found in the WARC files;
2. split the captures into chunks, grouped by WARC file, and parse them in
   worker processes (each opens the archive itself): read the record, undo
   the content coding, decode the charset, extract each table's rows, read
   images with Tesseract, redact personal data;
3. in this process: drop duplicates (same canonical URL, same content hash;
   the newest capture wins), build one DataFrame per table, write it (Parquet,
   CSV, JSON lines, or a SQL table), each output replaced atomically;
4. write the quality report (``quality.json`` + ``quality.html``); when a
   required field is missing beyond its threshold, record a ``quality`` event
   in the frontier and say so in the result, whose ``exit_code`` is then
   :data:`QUALITY_EXIT_CODE`.

All rows of a table are held in memory until they are written (a table of a
million 5 KB pages needs some 5 GB); pass ``tables=`` to parse a few at a time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from shoal.errors import ShoalError, SpecError
from shoal.parse.extract import ExtractResult, Page, TableExtractor, fetched_datetime
from shoal.parse.quality import (
    REPORT_JSON,
    FieldQuality,
    QualityReport,
    TableQuality,
    field_quality,
    load_report,
    now_iso,
)
from shoal.parse.redact import Redactor
from shoal.parse.spec import URL_COLUMNS, ParseError, ParseSpec, TableSpec, parse_config
from shoal.spec import Spec, load_spec, parse_spec

if TYPE_CHECKING:
    import pandas as pd

    from shoal.frontier.sql import SqlFrontier

__all__ = [
    "FORMATS",
    "QUALITY_EXIT_CODE",
    "ParseResult",
    "parse_table",
    "read_table",
    "run_parse",
    "show_report",
]

log = logging.getLogger(__name__)

FORMATS = ("parquet", "csv", "jsonl", "sql")
QUALITY_EXIT_CODE = 4
"""What ``shoal parse`` exits with when a required field is missing beyond its threshold."""

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", ""})
FRONTIER_TABLES = frozenset({"crawls", "urls", "hosts", "workers", "events", "alembic_version"})
_NOT_HASHED = frozenset(
    {"url", "final_url", "fetched_at", "http_status", "rule", "warc_record_id", "encoding"}
)
_BUILTIN_TYPES = {
    "url": "str", "final_url": "str", "fetched_at": "datetime", "http_status": "int", "title": "str",
    "main_text": "str", "language": "str", "images": "list[str]", "content_type": "str", "encoding": "str",
    "rule": "str", "warc_record_id": "str", "html": "str",
}  # fmt: skip


# --------------------------------------------------------------------------- what is parsed


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


@dataclass(frozen=True)
class _Context:
    """What every worker process needs, sent once when it starts."""

    parse: ParseSpec
    tables: tuple[str, ...]
    archive_dir: str
    assets: dict[int, tuple[str, int, int, str]]
    strip_params: tuple[str, ...]
    max_body: int


@dataclass
class _TablePart:
    """One table's share of a chunk's output."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    meta: list[tuple[str, int, int, int, int, str | None]] = field(default_factory=list)
    """Per row: (url, capture seq, position in page, fetched ms, dedup URL key, content hash)."""
    pages: int = 0
    missing: list[tuple[str, str]] = field(default_factory=list)
    cast_errors: Counter[str] = field(default_factory=Counter)
    cast_samples: dict[str, list[str]] = field(default_factory=dict)
    errors: int = 0
    error_samples: list[dict[str, str]] = field(default_factory=list)
    redacted: dict[str, Counter[str]] = field(default_factory=dict)
    ocr: Counter[str] = field(default_factory=Counter)

    def merge(self, other: _TablePart) -> None:
        """Add another part of the same table."""
        self.rows.extend(other.rows)
        self.meta.extend(other.meta)
        self.pages += other.pages
        self.missing.extend(other.missing)
        self.cast_errors.update(other.cast_errors)
        for k, v in other.cast_samples.items():
            self.cast_samples.setdefault(k, []).extend(
                v[: max(0, 5 - len(self.cast_samples.get(k, [])))]
            )
        self.errors += other.errors
        self.error_samples.extend(other.error_samples[: max(0, 20 - len(self.error_samples))])
        for col, c in other.redacted.items():
            self.redacted.setdefault(col, Counter()).update(c)
        self.ocr.update(other.ocr)


# --------------------------------------------------------------------------- worker side

_STATE: dict[str, Any] = {}


def _init_worker(ctx: _Context) -> None:
    """Set up a worker process: the extractors, redactors and image reader of every table."""
    import logging as _logging

    _logging.getLogger("trafilatura").setLevel(_logging.ERROR)
    from shoal.urls import HostScope

    strip = HostScope([], ctx.strip_params).strip
    ocr_cache: dict[tuple[int, str], str | None] = {}

    def image_reader(lang: str) -> Any:
        def read(url: str) -> str | None:
            from shoal.archive import WarcRef, content_decode, read_record
            from shoal.parse.ocr import OcrUnavailable, ocr_image
            from shoal.urls import URLError, canonicalize

            try:
                key = canonicalize(url, strip=strip).url_key
            except URLError:
                return None
            if (key, lang) in ocr_cache:
                return ocr_cache[(key, lang)]
            ref = ctx.assets.get(key)
            text: str | None
            if ref is None:
                text = None
            else:
                try:
                    rec = read_record(ctx.archive_dir, WarcRef(*ref))
                    body, _ = content_decode(rec.body, rec.header("content-encoding"), ctx.max_body)
                    text = ocr_image(body, lang)
                except OcrUnavailable:
                    raise
                except (ShoalError, OSError, RuntimeError, ValueError) as exc:
                    log.warning("OCR of %s failed: %s", url, exc)
                    text = ""
            ocr_cache[(key, lang)] = text
            return text

        return read

    extractors: dict[str, TableExtractor] = {}
    redactors: dict[str, Redactor] = {}
    for name in ctx.tables:
        t = ctx.parse.tables[name]
        extractors[name] = TableExtractor(
            name, t, image_reader=image_reader(t.ocr_lang) if t.ocr else None
        )
        skip = set(URL_COLUMNS) | {n for n, f in t.fields.items() if not f.redact}
        redactors[name] = Redactor(
            tuple(t.redact),
            columns=frozenset(t.redact_columns) if t.redact_columns is not None else None,
            skip=frozenset(skip),
        )
    _STATE.clear()
    _STATE.update(ctx=ctx, extractors=extractors, redactors=redactors, strip=strip)


class _Skip(Exception):
    """A capture that is not parsed (not HTML); counted as a failed page with the reason."""


def _load_page(cap: Capture, ctx: _Context) -> Page:
    from shoal.archive import WarcRef, content_decode, read_record
    from shoal.fetch.charset import decode_html

    rec = read_record(ctx.archive_dir, WarcRef(cap.file, cap.offset, cap.length, cap.record_id))
    ctype = rec.header("content-type") or cap.content_type
    media = (ctype or "").split(";", 1)[0].strip().lower()
    if media not in HTML_TYPES:
        raise _Skip(f"not HTML ({media})")
    body, _truncated = content_decode(rec.body, rec.header("content-encoding"), ctx.max_body)
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


def _content_hash(row: dict[str, Any], columns: Sequence[str] | None) -> str:
    import hashlib

    cols = columns if columns is not None else [c for c in row if c not in _NOT_HASHED]
    blob = json.dumps([row.get(c) for c in cols], ensure_ascii=False, default=str, sort_keys=True)
    return hashlib.blake2b(blob.encode("utf-8"), digest_size=16).hexdigest()


def _parse_chunk(captures: list[Capture]) -> dict[str, _TablePart]:
    """Parse a chunk of captures into each of their tables (runs in a worker process)."""
    from shoal.urls import URLError, canonicalize

    ctx: _Context = _STATE["ctx"]
    extractors: dict[str, TableExtractor] = _STATE["extractors"]
    redactors: dict[str, Redactor] = _STATE["redactors"]
    out: dict[str, _TablePart] = {}
    for cap in captures:
        parts = [out.setdefault(t, _TablePart()) for t in cap.tables]
        for part in parts:
            part.pages += 1
        try:
            page = _load_page(cap, ctx)
        except (ShoalError, _Skip, OSError, ValueError) as exc:
            for part in parts:
                part.errors += 1
                if len(part.error_samples) < 20:
                    part.error_samples.append(
                        {"url": cap.url, "error": f"{type(exc).__name__}: {exc}"[:300]}
                    )
            continue
        try:
            dedup_key = canonicalize(cap.final_url or cap.url, strip=_STATE["strip"]).url_key
        except URLError:
            dedup_key = cap.url_id
        for tname, part in zip(cap.tables, parts, strict=True):
            ex = extractors[tname]
            before = Counter(ex.ocr_stats)
            res: ExtractResult = ex.extract(page)
            part.ocr.update(ex.ocr_stats - before)
            if res.error is not None:
                part.errors += 1
                if len(part.error_samples) < 20:
                    part.error_samples.append({"url": cap.url, "error": res.error})
                continue
            part.missing.extend((f, cap.url) for f in res.missing)
            part.cast_errors.update(res.cast_errors)
            for k, v in res.cast_samples.items():
                have = part.cast_samples.setdefault(k, [])
                have.extend(v[: max(0, 5 - len(have))])
            t = ctx.parse.tables[tname]
            red = redactors[tname]
            hashed = "content" in t.dedup
            for pos, row in enumerate(res.rows):
                red.row(row)
                h = _content_hash(row, t.dedup_fields) if hashed else None
                part.rows.append(row)
                part.meta.append((cap.url, cap.seq, pos, cap.fetched_at or 0, dedup_key, h))
    for tname, part in out.items():
        red = redactors[tname]
        for col, c in red.counts.items():
            if c:
                part.redacted.setdefault(col, Counter()).update(c)
        red.counts.clear()
    return out


# --------------------------------------------------------------------------- reading the frontier


def _open_frontier(url: str) -> SqlFrontier:
    from shoal.frontier.sql import SqlFrontier

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


def _captures(
    frontier: SqlFrontier,
    crawl_id: int,
    spec: Spec,
    stored_spec: str,
    ps: ParseSpec,
    tables: Sequence[str],
    *,
    all_captures: bool,
    archive_dir: str,
) -> list[Capture]:
    from sqlalchemy import select

    from shoal.frontier.tables import urls

    u = urls.c
    names = _rule_names(spec, stored_spec)
    q = (
        select(
            u.id,
            u.url,
            u.final_url,
            u.rule,
            u.kind,
            u.http_status,
            u.fetched_at,
            u.content_type,
            u.warc_file,
            u.warc_offset,
            u.warc_length,
            u.warc_record_id,
            u.url_key,
        )
        .where(
            u.crawl_id == crawl_id, u.status == "done", u.warc_file.is_not(None), u.kind != "asset"
        )
        .order_by(u.warc_file, u.warc_offset)
    )
    rows = frontier.query(q)
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
    from shoal.archive import iter_records
    from shoal.errors import ArchiveError
    from shoal.urls import HostScope, URLError, canonicalize

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


def _assets(frontier: SqlFrontier, crawl_id: int) -> dict[int, tuple[str, int, int, str]]:
    from sqlalchemy import select

    from shoal.frontier.tables import urls

    u = urls.c
    q = select(
        u.url_key, u.warc_file, u.warc_offset, u.warc_length, u.warc_record_id, u.http_status
    ).where(u.crawl_id == crawl_id, u.kind == "asset", u.status == "done", u.warc_file.is_not(None))
    return {
        r.url_key: (r.warc_file, r.warc_offset, r.warc_length, r.warc_record_id)
        for r in frontier.query(q)
        if r.http_status is None or 200 <= r.http_status < 300
    }


def _chunks(captures: list[Capture], processes: int) -> list[list[Capture]]:
    size = max(4, min(200, len(captures) // max(1, processes * 8) or 1))
    return [captures[i : i + size] for i in range(0, len(captures), size)]


# --------------------------------------------------------------------------- running the workers


def _run_chunks(
    ctx: _Context,
    chunks: list[list[Capture]],
    processes: int,
    progress: bool,
    console: Console | None,
) -> dict[str, _TablePart]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    total = sum(len(c) for c in chunks)
    result: dict[str, _TablePart] = {t: _TablePart() for t in ctx.tables}
    bar = Progress(
        TextColumn("parsing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("pages"),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=False,
        disable=not progress,
    )
    with bar:
        task = bar.add_task("parse", total=total)
        if processes <= 1 or len(chunks) <= 1:
            _init_worker(ctx)
            try:
                for chunk in chunks:
                    for name, part in _parse_chunk(chunk).items():
                        result[name].merge(part)
                    bar.advance(task, len(chunk))
            finally:
                _STATE.clear()
            return result
        try:
            _run_pool(ctx, chunks, processes, result, bar, task)
        except BrokenProcessPool as exc:
            raise ParseError(
                f"a parse worker process died ({exc}). Worker processes are started with 'spawn': a script "
                'that calls run_parse must do so under `if __name__ == "__main__":`, or pass processes=1'
            ) from exc
    return result


def _run_pool(
    ctx: _Context,
    chunks: list[list[Capture]],
    processes: int,
    result: dict[str, _TablePart],
    bar: Any,
    task: Any,
) -> None:
    """Parse ``chunks`` in a pool of spawned processes, merging into ``result`` as they finish."""
    # spawn, not fork: the parent may run threads (a demo server, database pools) that fork would copy mid-state.
    mp = multiprocessing.get_context("spawn")
    with (
        _single_threaded_children(),
        ProcessPoolExecutor(
            max_workers=processes, mp_context=mp, initializer=_init_worker, initargs=(ctx,)
        ) as pool,
    ):
        pending: dict[Future[dict[str, _TablePart]], int] = {}
        it = iter(chunks)
        # Keep a bounded number of chunks in flight so results stream back in order of completion.
        for chunk in it:
            pending[pool.submit(_parse_chunk, chunk)] = len(chunk)
            if len(pending) >= processes * 3:
                break
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                n = pending.pop(fut)
                for name, part in fut.result().items():
                    result[name].merge(part)
                bar.advance(task, n)
                nxt = next(it, None)
                if nxt is not None:
                    pending[pool.submit(_parse_chunk, nxt)] = len(nxt)


@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Start worker processes with one BLAS/OpenMP thread each (numpy in py3langid).

    N processes that each start a thread per core fight over the cores; one
    thread per process is what a process pool wants. Variables the user set win.
    """
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {n: os.environ.get(n) for n in names}
    for n in names:
        os.environ.setdefault(n, "1")
    try:
        yield
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)


# --------------------------------------------------------------------------- dedup, frames, quality


def _dedup(part: _TablePart, keys: Sequence[str], all_captures: bool) -> tuple[list[int], int, int]:
    """Indices of the rows kept, rows dropped as the same URL, rows dropped as the same content."""
    idx = list(range(len(part.rows)))
    by_url = by_content = 0
    if "url" in keys and not all_captures:
        newest: dict[int, tuple[int, int]] = {}
        for i in idx:
            _u, seq, _p, ms, key, _h = part.meta[i]
            cand = (ms, seq)
            if key not in newest or cand > newest[key]:
                newest[key] = cand
        kept = [i for i in idx if (part.meta[i][3], part.meta[i][1]) == newest[part.meta[i][4]]]
        by_url = len(idx) - len(kept)
        idx = kept
    if "content" in keys:
        best: dict[str, tuple[int, int, int]] = {}
        for i in idx:
            _u, seq, pos, ms, _k, h = part.meta[i]
            assert h is not None
            cand3 = (ms, seq, -pos)
            if h not in best or cand3 > best[h]:
                best[h] = cand3
        kept = [
            i
            for i in idx
            if best[part.meta[i][5] or ""] == (part.meta[i][3], part.meta[i][1], -part.meta[i][2])
        ]
        by_content = len(idx) - len(kept)
        idx = kept
    idx.sort(key=lambda i: (_natural(part.meta[i][0]), part.meta[i][3], part.meta[i][2]))
    return idx, by_url, by_content


_DIGITS = re.compile(r"(\d+)")


def _natural(url: str) -> list[Any]:
    """A sort key that orders ``/posts/2`` before ``/posts/10`` (digit runs compare as numbers)."""
    return [int(p) if i % 2 else p for i, p in enumerate(_DIGITS.split(url))]


def _columns(table: TableSpec, rows: Iterable[dict[str, Any]]) -> list[str]:
    cols = table.columns()
    seen = set(cols)
    for r in rows:
        for c in r:
            if c not in seen:
                seen.add(c)
                cols.append(c)
    return cols


def _column_type(table: TableSpec, col: str) -> tuple[str, str]:
    """(kind, type) of a column for the report and the DataFrame."""
    if col in table.builtins:
        return "builtin", _BUILTIN_TYPES.get(col, "str")
    if col in table.fields:
        f = table.fields[col]
        return "field", f"list[{f.type}]" if f.is_list else f.type
    if table.ocr is not None and col == table.ocr_column:
        return "ocr", "str"
    return "function", "any"


def _frame(table: TableSpec, rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    data: dict[str, Any] = {}
    for col in columns:
        values = [r.get(col) for r in rows]
        _kind, typ = _column_type(table, col)
        if typ == "int":
            data[col] = pd.array(values, dtype="Int64")
        elif typ == "float":
            data[col] = pd.array(values, dtype="Float64")
        elif typ == "bool":
            data[col] = pd.array(values, dtype="boolean")
        elif typ == "datetime":
            aware = any(isinstance(v, datetime) and v.tzinfo is not None for v in values)
            data[col] = pd.to_datetime(pd.Series(values, dtype=object), utc=aware)
        else:
            data[col] = (
                pd.Series(values, dtype=object)
                if typ.startswith("list") or typ in ("date", "any")
                else values
            )
    return pd.DataFrame(data, columns=columns)


def _quality(
    name: str,
    table: TableSpec,
    ps: ParseSpec,
    part: _TablePart,
    kept: list[int],
    columns: list[str],
    dedup_url: int,
    dedup_content: int,
) -> TableQuality:
    rows = [part.rows[i] for i in kept]
    fields: list[FieldQuality] = []
    missing_by: dict[str, list[str]] = {}
    for fname, url in part.missing:
        missing_by.setdefault(fname, []).append(url)
    for col in columns:
        kind, typ = _column_type(table, col)
        fq = field_quality(col, (r.get(col) for r in rows), kind=kind, type_=typ)
        if kind == "field" and table.fields[col].required:
            fq.required = True
            urls = missing_by.get(col, [])
            fq.missing = len(urls)
            fq.missing_rate = len(urls) / len(part.rows) if part.rows else 0.0
            fq.threshold = ps.threshold(name, col)
            fq.missing_urls = sorted(set(urls))[:50]
        fq.cast_errors = part.cast_errors.get(col, 0)
        fq.cast_samples = part.cast_samples.get(col, [])[:5]
        fields.append(fq)
    return TableQuality(
        name=name,
        pages=part.pages,
        rows_extracted=len(part.rows),
        rows=len(rows),
        dedup_url=dedup_url,
        dedup_content=dedup_content,
        fields=fields,
        redacted={col: dict(sorted(c.items())) for col, c in sorted(part.redacted.items()) if c},
        ocr=dict(sorted(part.ocr.items())),
        errors=part.errors,
        error_samples=part.error_samples[:20],
        generated_at=now_iso(),
    )


# --------------------------------------------------------------------------- writing


def _json_default(v: Any) -> Any:
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return str(v)


def _flatten(df: pd.DataFrame) -> pd.DataFrame:
    """Lists and dicts as JSON text, for CSV and SQL, which have no list type."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object and any(isinstance(v, (list, dict, tuple)) for v in out[col]):
            out[col] = [
                json.dumps(
                    list(v) if isinstance(v, tuple) else v,
                    ensure_ascii=False,
                    default=_json_default,
                )
                if isinstance(v, (list, dict, tuple))
                else v
                for v in out[col]
            ]
    return out


def _tmp_path(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _write_file(
    fmt: str, df: pd.DataFrame, rows: list[dict[str, Any]], columns: list[str], path: Path
) -> None:
    """Write one table file atomically: a temporary file in the same folder, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        if fmt == "parquet":
            df.to_parquet(tmp, index=False)
        elif fmt == "csv":
            _flatten(df).to_csv(tmp, index=False)
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                for r in rows:
                    f.write(
                        json.dumps(
                            {c: r.get(c) for c in columns},
                            ensure_ascii=False,
                            default=_json_default,
                        )
                    )
                    f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sql_table_name(ps: ParseSpec, crawl: str, table: str) -> str:
    """The SQL table a parse table is written to: ``sql_prefix`` (``{name}_``) + table, as an identifier."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", ps.sql_prefix.replace("{name}", crawl) + table)
    if name[0].isdigit():
        name = "t_" + name
    return name[:50]


def _write_sql(df: pd.DataFrame, engine: Any, name: str) -> None:
    """Write ``df`` as table ``name``: into a staging table first, then swapped in atomically.

    PostgreSQL and SQLite have transactional DDL: the old table is dropped and
    the staging table renamed in one transaction, so readers see the old table
    or the new one, never none. MySQL/MariaDB commit each DDL statement, but
    one ``RENAME TABLE a TO b, c TO a`` statement is atomic, so the swap goes
    through a third name there. The staging name is fixed per table
    (``NAME__shoal_new``): run one parse of a table into a database at a time.
    """
    from sqlalchemy import DateTime, Text, inspect, text
    from sqlalchemy.dialects import mysql

    dialect = engine.dialect.name
    prep = engine.dialect.identifier_preparer
    new, old = f"{name}__shoal_new", f"{name}__shoal_old"
    flat = _flatten(df)
    dtypes: dict[str, Any] = {}
    for col in flat.columns:
        s = flat[col]
        if hasattr(s.dtype, "tz") and s.dtype.tz is not None:
            if dialect != "postgresql":  # only PostgreSQL keeps a time zone; store UTC without one
                flat[col] = s.dt.tz_convert("UTC").dt.tz_localize(None)
                dtypes[col] = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")
            else:
                dtypes[col] = DateTime(timezone=True)
        elif str(s.dtype).startswith("datetime64"):
            dtypes[col] = DateTime().with_variant(
                mysql.DATETIME(fsp=6), "mysql"
            )  # MySQL drops fractions otherwise
        elif (s.dtype == object or str(s.dtype) in ("str", "string")) and not any(
            isinstance(v, (date, datetime)) for v in s.head(50)
        ):
            dtypes[col] = Text().with_variant(mysql.LONGTEXT(), "mysql")
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {prep.quote(new)}"))
    try:
        flat.to_sql(new, engine, index=False, chunksize=1000, dtype=dtypes)
        if dialect == "mysql":
            exists = inspect(engine).has_table(name)
            with engine.begin() as conn:
                conn.execute(text(f"DROP TABLE IF EXISTS {prep.quote(old)}"))
                if exists:
                    conn.execute(
                        text(
                            f"RENAME TABLE {prep.quote(name)} TO {prep.quote(old)}, {prep.quote(new)} TO {prep.quote(name)}"
                        )
                    )
                    conn.execute(text(f"DROP TABLE {prep.quote(old)}"))
                else:
                    conn.execute(text(f"RENAME TABLE {prep.quote(new)} TO {prep.quote(name)}"))
        else:
            with engine.begin() as conn:
                conn.execute(text(f"DROP TABLE IF EXISTS {prep.quote(name)}"))
                conn.execute(text(f"ALTER TABLE {prep.quote(new)} RENAME TO {prep.quote(name)}"))
    except BaseException:
        try:
            with engine.begin() as conn:
                conn.execute(text(f"DROP TABLE IF EXISTS {prep.quote(new)}"))
        except Exception:  # pragma: no cover - best effort cleanup after a failure already raised
            pass
        raise


# --------------------------------------------------------------------------- the entry points


@dataclass
class ParseResult:
    """What a parse produced: rows per table, where they went, and the quality verdict."""

    crawl: str
    rows: dict[str, int]
    outputs: dict[str, str]
    report: QualityReport
    report_path: Path
    html_path: Path
    pages: int
    elapsed: float
    processes: int

    @property
    def ok(self) -> bool:
        """No required field missing beyond its threshold."""
        return self.report.ok

    @property
    def failures(self) -> list[str]:
        """The quality failures, one line each."""
        return self.report.failures

    @property
    def exit_code(self) -> int:
        """0, or :data:`QUALITY_EXIT_CODE` when the quality gate failed: what ``shoal parse`` exits with."""
        return 0 if self.ok else QUALITY_EXIT_CODE

    def summary_lines(self) -> list[str]:
        """What ``shoal parse`` (and ``shoal demo``) print: each table and where it went, the report, the headline."""
        lines = [
            f"parsed {self.pages} pages of crawl {self.crawl} in {self.elapsed:.1f}s with {self.processes} process(es)"
        ]
        width = max((len(n) for n in self.rows), default=0)
        for name, n in self.rows.items():
            lines.append(f"  {name:<{width}}  {n:>7} rows  → {self.outputs[name]}")
        lines.append(
            f"  quality report → {self.report_path} (and {self.html_path.name}); `shoal report` shows it"
        )
        lines.append(self.report.headline())
        lines.extend(f"  FAILED {line}" for line in self.failures)
        return lines


def _as_spec(spec: Spec | str | os.PathLike[str]) -> Spec:
    return spec if isinstance(spec, Spec) else load_spec(Path(spec))


def _select_tables(ps: ParseSpec, tables: Sequence[str] | None) -> list[str]:
    if not ps.tables:
        raise ParseError(
            "the spec declares no tables: add [parse.tables.NAME] sections (see the README)"
        )
    if not tables:
        return list(ps.tables)
    unknown = [t for t in tables if t not in ps.tables]
    if unknown:
        raise ParseError(
            f"no table {', '.join(map(repr, unknown))} in [parse]; the spec has {', '.join(ps.tables)}"
        )
    return list(dict.fromkeys(tables))


def _default_processes(ps: ParseSpec) -> int:
    return ps.processes or max(1, os.cpu_count() or 1)


def _prepare(
    spec: Spec,
    ps: ParseSpec,
    names: list[str],
    frontier: SqlFrontier,
    all_captures: bool,
    processes: int,
) -> tuple[Any, _Context, list[Capture]]:
    info = frontier.get_crawl(spec.name)
    if any(ps.tables[t].ocr for t in names):
        from shoal.parse.ocr import check_tesseract

        for lang in sorted({ps.tables[t].ocr_lang for t in names if ps.tables[t].ocr}):
            check_tesseract(lang)
    archive_dir = spec.archive_dir()
    if not Path(archive_dir).is_dir():
        raise ParseError(
            f"no archive folder at {archive_dir}: run the parse where the crawl's WARC files are"
        )
    captures = _captures(
        frontier,
        info.id,
        spec,
        info.spec,
        ps,
        names,
        all_captures=all_captures,
        archive_dir=archive_dir,
    )
    assets = _assets(frontier, info.id) if any(ps.tables[t].ocr for t in names) else {}
    ctx = _Context(
        ps,
        tuple(names),
        archive_dir,
        assets,
        tuple(spec.scope.strip_query_params),
        spec.limits.max_body_bytes,
    )
    return info, ctx, captures


def run_parse(
    spec: Spec | str | os.PathLike[str],
    *,
    db_url: str | None = None,
    tables: Sequence[str] | None = None,
    to: str | None = None,
    out: str | os.PathLike[str] | None = None,
    all_captures: bool = False,
    processes: int | None = None,
    progress: bool = True,
    console: Console | None = None,
    record_events: bool = True,
) -> ParseResult:
    """Parse the crawl's archive into its tables, write them and the quality report.

    ``spec`` is a :class:`~shoal.spec.Spec` or a spec file; ``db_url`` the
    frontier (default: the spec's); ``tables`` a subset of the spec's tables;
    ``to`` one of :data:`FORMATS` (default: ``[parse] to``, else parquet);
    ``out`` a folder for files, or for ``sql`` a database URL (default: the
    frontier's database); ``all_captures`` parses every capture found in the
    archive instead of the latest of each URL (URL dedup is then off, content
    dedup still drops unchanged captures); ``processes`` worker processes
    (default: ``[parse] processes``, else one per CPU).

    Raises SpecError (bad ``[parse]``), ParseError (nothing to parse, no
    archive), OcrUnavailable (Tesseract missing) or FrontierError. A quality
    failure does not raise: it is in the result (``ok``, ``exit_code``), in
    the report, and recorded as a ``quality`` event in the frontier.
    """
    started = time.monotonic()
    spec = _as_spec(spec)
    ps = parse_config(spec)
    names = _select_tables(ps, tables)
    fmt = to or ps.to
    if fmt not in FORMATS:
        raise ParseError(f"unknown output format {fmt!r}: use one of {', '.join(FORMATS)}")
    nproc = processes if processes is not None else _default_processes(ps)
    frontier_url = db_url or spec.frontier_url()
    report_dir = Path(ps.out.replace("{name}", spec.name))
    if fmt != "sql" and out is not None:
        report_dir = Path(out)
    sql_url = (str(out) if out is not None else frontier_url) if fmt == "sql" else None
    if sql_url is not None and "://" not in sql_url:
        raise ParseError(f"--to sql needs a database URL in --out (got {sql_url!r})")
    frontier = _open_frontier(frontier_url)
    try:
        info, ctx, captures = _prepare(spec, ps, names, frontier, all_captures, nproc)
        parts = _run_chunks(
            ctx, _chunks(captures, nproc), min(nproc, max(1, len(captures))), progress, console
        )
        engine = None
        if sql_url is not None:
            from shoal.frontier.dialects import make_engine

            engine = make_engine(sql_url)
        outputs: dict[str, str] = {}
        rows_out: dict[str, int] = {}
        tq: dict[str, TableQuality] = {}
        try:
            for name in names:
                table = ps.tables[name]
                part = parts[name]
                kept, by_url, by_content = _dedup(part, table.dedup, all_captures)
                rows = [part.rows[i] for i in kept]
                columns = _columns(table, rows)
                df = _frame(table, rows, columns)
                if engine is not None:
                    target = sql_table_name(ps, spec.name, name)
                    if target in FRONTIER_TABLES:
                        raise ParseError(
                            f"table {name!r} would overwrite the frontier's table {target!r}: set [parse] sql_prefix"
                        )
                    _write_sql(df, engine, target)
                    from shoal.frontier.dialects import redact_url

                    outputs[name] = f"{redact_url(sql_url or '')} table {target}"
                    location = target
                else:
                    ext = {"parquet": ".parquet", "csv": ".csv", "jsonl": ".jsonl"}[fmt]
                    path = report_dir / f"{name}{ext}"
                    _write_file(fmt, df, rows, columns, path)
                    outputs[name] = str(path)
                    location = str(path.resolve())
                q = _quality(name, table, ps, part, kept, columns, by_url, by_content)
                q.output = outputs[name]
                q.format = fmt
                q.location = location
                tq[name] = q
                rows_out[name] = len(rows)
        finally:
            if engine is not None:
                engine.dispose()
        report = _merge_report(report_dir, spec.name, fmt, tq, ps, all_captures, ctx.archive_dir)
        js, page = report.write(report_dir)
        if not report.ok and record_events:
            message = f"parse of {spec.name}: " + "; ".join(report.failures)
            frontier.record_event(info.id, "quality", message, severity="warning")
    finally:
        frontier.close()
    pages = len({c.seq for c in captures})
    return ParseResult(
        spec.name, rows_out, outputs, report, js, page, pages, time.monotonic() - started, nproc
    )


def _merge_report(
    report_dir: Path,
    crawl: str,
    fmt: str,
    fresh: dict[str, TableQuality],
    ps: ParseSpec,
    all_captures: bool,
    archive_dir: str,
) -> QualityReport:
    """This run's tables over the previous report's others (a ``--table`` run keeps the rest)."""
    tables: dict[str, TableQuality] = {}
    old = report_dir / REPORT_JSON
    if old.exists():
        try:
            prev = load_report(old)
            tables = {n: t for n, t in prev.tables.items() if n in ps.tables and n not in fresh}
        except (ValueError, KeyError, TypeError):
            tables = {}
    tables.update(fresh)
    ordered = {n: tables[n] for n in ps.tables if n in tables}
    return QualityReport(
        crawl=crawl,
        generated_at=now_iso(),
        to=fmt,
        tables=ordered,
        archive=archive_dir,
        captures="all" if all_captures else "latest",
    )


def parse_table(
    spec: Spec | str | os.PathLike[str],
    table: str,
    *,
    db_url: str | None = None,
    all_captures: bool = False,
    processes: int = 1,
) -> pd.DataFrame:
    """Parse one table straight into a DataFrame, writing nothing (for notebooks and experiments)."""
    spec = _as_spec(spec)
    ps = parse_config(spec)
    names = _select_tables(ps, [table])
    frontier = _open_frontier(db_url or spec.frontier_url())
    try:
        _info, ctx, captures = _prepare(spec, ps, names, frontier, all_captures, processes)
    finally:
        frontier.close()
    parts = _run_chunks(ctx, _chunks(captures, processes), processes, False, None)
    t = ps.tables[table]
    kept, _u, _c = _dedup(parts[table], t.dedup, all_captures)
    rows = [parts[table].rows[i] for i in kept]
    return _frame(t, rows, _columns(t, rows))


def _report_dir(spec: Spec, out: str | os.PathLike[str] | None) -> Path:
    if out is not None and "://" not in str(out):
        return Path(out)
    ps = parse_config(spec, import_functions=False)
    return Path(ps.out.replace("{name}", spec.name))


def read_table(
    spec_or_path: Spec | str | os.PathLike[str],
    table: str,
    *,
    out: str | os.PathLike[str] | None = None,
    db_url: str | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """A table written by ``shoal parse`` as a pandas DataFrame.

    ``spec_or_path`` is a spec (object or file) or the output folder itself.
    The last parse's report says where the table went (a file in the output
    folder, or a SQL table); ``db_url`` reads the SQL table from that database
    instead (default for SQL outputs: the spec's frontier).
    """
    import pandas as pd

    spec: Spec | None = None
    p = Path(spec_or_path) if not isinstance(spec_or_path, Spec) else None
    if isinstance(spec_or_path, Spec) or (p is not None and p.is_file() and p.suffix == ".toml"):
        spec = _as_spec(spec_or_path)
        folder = _report_dir(spec, out)
    else:
        assert p is not None
        folder = p.parent if p.suffix == ".json" else p
    fmt, location = "", ""
    if (folder / REPORT_JSON).exists():
        rep = load_report(folder)
        t = rep.tables.get(table)
        if t is not None:
            fmt, location = t.format, t.location
    if db_url is not None or fmt == "sql":
        url = db_url or (spec.frontier_url() if spec is not None else None)
        if url is None:
            raise ParseError(
                f"table {table!r} was written to SQL: pass db_url= (or the spec) to read it"
            )
        name = location or (
            sql_table_name(parse_config(spec, import_functions=False), spec.name, table)
            if spec
            else table
        )
        from shoal.frontier.dialects import make_engine

        engine = make_engine(url)
        try:
            return pd.read_sql_table(name, engine, columns=list(columns) if columns else None)
        finally:
            engine.dispose()
    candidates = [Path(location)] if location else []
    candidates += [folder / f"{table}{ext}" for ext in (".parquet", ".csv", ".jsonl")]
    for c in candidates:
        if not c.exists():
            continue
        cols = list(columns) if columns else None
        if c.suffix == ".parquet":
            return pd.read_parquet(c, columns=cols)
        if c.suffix == ".csv":
            return pd.read_csv(c, usecols=cols)
        df = pd.read_json(c, lines=True, dtype=False)
        return df[cols] if cols else df
    raise ParseError(f"no output of table {table!r} in {folder}: run `shoal parse SPEC` first")


def show_report(
    target: Spec | str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    console: Console | None = None,
    as_json: bool = False,
    html: str | os.PathLike[str] | None = None,
    fields: bool = True,
) -> QualityReport:
    """Print the last parse's quality report (``shoal report``): a spec, its output folder, or the JSON file.

    ``as_json`` prints the JSON instead of tables; ``html`` also writes the HTML page there.
    """
    if isinstance(target, Spec) or str(target).endswith(".toml"):
        folder = _report_dir(_as_spec(target), out)
    else:
        folder = Path(target)
    path = folder if folder.suffix == ".json" else folder / REPORT_JSON
    if not path.exists():
        raise ParseError(f"no parse report at {path}: run `shoal parse SPEC` first")
    report = load_report(path)
    con = console or Console()
    if as_json:
        con.print_json(json.dumps(report.as_dict(), ensure_ascii=False, default=str))
    else:
        con.print(report.render(fields=fields))
    if html is not None:
        Path(html).write_text(report.html(), encoding="utf-8")
    return report
