"""Running the parse: chunks of captures through worker processes, each with its own extractors.

A :class:`ParseContext` holds everything a worker needs (the ``[parse]``
spec, the tables, where the archive is, the images OCR may read); it is sent
to each worker process once, when the process starts. A worker builds one
:class:`ChunkParser` from it and parses the chunks it is handed into
:class:`TablePart` results, which the parent merges. With N processes the
parent is one of them (it parses while the N-1 workers start). No
state lives in module globals: a worker's parser is a local of its main function.

Worker processes are forked on Linux when the parent runs no other thread
(they start at once), else spawned: fork would copy another thread's locks
mid-state (a demo server, database pools). A worker that dies (killed, out of
memory) fails the run with :class:`~shoal.parse.config.ParseError` instead of
hanging it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import queue
import re
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from shoal.archive import S3Location, WarcRef, read_record
from shoal.content.codings import content_decode
from shoal.errors import ShoalError, URLError
from shoal.parse.config import URL_COLUMNS, ParseError, ParseSpec
from shoal.parse.extract import ExtractResult, TableExtractor
from shoal.parse.load import AssetRef, Capture, NotParsed, load_page, media_type
from shoal.parse.ocr import OcrUnavailable, ocr_image
from shoal.parse.pii import Redactor
from shoal.urls import HostScope, canonicalize

__all__ = ["ChunkParser", "ParseContext", "TablePart", "chunked", "run_chunks"]

log = logging.getLogger(__name__)

NOT_HASHED = frozenset(
    {"url", "final_url", "fetched_at", "http_status", "rule", "warc_record_id", "encoding"}
)
"""Columns left out of the content hash by default: they change between captures of the same content."""

MAX_SAMPLES = 20
MAX_URLS = 50


@dataclass(frozen=True)
class ParseContext:
    """What every worker process needs, sent once when it starts."""

    parse: ParseSpec
    tables: tuple[str, ...]
    archive_dir: Path | S3Location
    """The archive: a folder, or S3 with its endpoint (:func:`shoal.archive.archive_location`)."""
    assets: dict[int, AssetRef]
    strip_params: tuple[str, ...]
    max_body: int
    base: str | None = None
    """The spec file's folder: function modules are imported from it first."""


@dataclass
class TablePart:
    """One table's share of a chunk's output (merged by the parent into the whole table)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    meta: list[tuple[str, int, int, int, int, str | None]] = field(default_factory=list)
    """Per row: (url, capture seq, position in page, fetched ms, dedup URL key, content hash)."""
    pages: int = 0
    """Captures of the table's pages that were read (parsed, failed or of another type)."""
    empty_pages: int = 0
    """Pages parsed without error that gave no row."""
    empty: list[str] = field(default_factory=list)
    """The URLs of the first :data:`MAX_URLS` of them."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Pages not parsed for the table, by reason in plain words (another content type)."""
    replacement: Counter[str] = field(default_factory=Counter)
    """Per text column: U+FFFD characters in its values (bytes the charset could not decode)."""
    characters: Counter[str] = field(default_factory=Counter)
    """Per text column: characters in its values."""
    missing: list[tuple[str, str]] = field(default_factory=list)
    cast_errors: Counter[str] = field(default_factory=Counter)
    cast_samples: dict[str, list[str]] = field(default_factory=dict)
    errors: int = 0
    error_samples: list[dict[str, str]] = field(default_factory=list)
    redacted: dict[str, Counter[str]] = field(default_factory=dict)
    ocr: Counter[str] = field(default_factory=Counter)

    def merge(self, other: TablePart) -> None:
        """Add another part of the same table."""
        self.rows.extend(other.rows)
        self.meta.extend(other.meta)
        self.pages += other.pages
        self.empty_pages += other.empty_pages
        self.empty.extend(other.empty[: max(0, MAX_URLS - len(self.empty))])
        self.skipped.update(other.skipped)
        self.replacement.update(other.replacement)
        self.characters.update(other.characters)
        self.missing.extend(other.missing)
        self.cast_errors.update(other.cast_errors)
        for k, v in other.cast_samples.items():
            have = self.cast_samples.setdefault(k, [])
            have.extend(v[: max(0, 5 - len(have))])
        self.errors += other.errors
        self.error_samples.extend(
            other.error_samples[: max(0, MAX_SAMPLES - len(self.error_samples))]
        )
        for col, c in other.redacted.items():
            self.redacted.setdefault(col, Counter()).update(c)
        self.ocr.update(other.ocr)

    def failed(self, url: str, reason: str) -> None:
        """Count a page that gave the table nothing, with its reason."""
        self.errors += 1
        if len(self.error_samples) < MAX_SAMPLES:
            self.error_samples.append({"url": url, "error": reason[:300]})


def content_hash(row: dict[str, Any], columns: Sequence[str] | None) -> str:
    """A hash of a row's content columns (``columns``, default all but :data:`NOT_HASHED`)."""
    cols = columns if columns is not None else [c for c in row if c not in NOT_HASHED]
    blob = json.dumps([row.get(c) for c in cols], ensure_ascii=False, default=str, sort_keys=True)
    return hashlib.blake2b(blob.encode("utf-8"), digest_size=16).hexdigest()


class _ImageReader:
    """Reads archived images by URL with Tesseract, each (image, language) once per process."""

    def __init__(self, ctx: ParseContext, strip: re.Pattern[str] | None) -> None:
        self.ctx = ctx
        self.strip = strip
        self.cache: dict[tuple[int, str], str | None] = {}

    def for_lang(self, lang: str) -> Callable[[str], str | None]:
        return lambda url: self.read(url, lang)

    def read(self, url: str, lang: str) -> str | None:
        try:
            key = canonicalize(url, strip=self.strip).url_key
        except URLError:
            return None
        if (key, lang) in self.cache:
            return self.cache[(key, lang)]
        ref = self.ctx.assets.get(key)
        text: str | None
        if ref is None:
            text = None
        else:
            try:
                rec = read_record(self.ctx.archive_dir, WarcRef(*ref))
                body, _ = content_decode(
                    rec.body, rec.header("content-encoding"), self.ctx.max_body
                )
                text = ocr_image(body, lang)
            except OcrUnavailable:
                raise
            except (ShoalError, OSError, RuntimeError, ValueError) as exc:
                log.warning("OCR of %s failed: %s", url, exc)
                text = ""
        self.cache[(key, lang)] = text
        return text


class ChunkParser:
    """The extractors, redactors and image reader of every table; parses chunks of captures."""

    def __init__(self, ctx: ParseContext) -> None:
        logging.getLogger("trafilatura").setLevel(logging.ERROR)
        self.ctx = ctx
        self.strip = HostScope([], ctx.strip_params).strip
        images = _ImageReader(ctx, self.strip)
        self.extractors: dict[str, TableExtractor] = {}
        self.redactors: dict[str, Redactor] = {}
        for name in ctx.tables:
            t = ctx.parse.tables[name]
            self.extractors[name] = TableExtractor(
                name,
                t,
                image_reader=images.for_lang(t.ocr_lang) if t.ocr else None,
                base=ctx.base,
            )
            skip = set(URL_COLUMNS) | {n for n, f in t.fields.items() if not f.redact}
            self.redactors[name] = Redactor(
                tuple(t.redact),
                columns=frozenset(t.redact_columns) if t.redact_columns is not None else None,
                skip=frozenset(skip),
            )

    def parse(self, captures: list[Capture]) -> dict[str, TablePart]:
        """Parse a chunk of captures into each of their tables."""
        ctx = self.ctx
        out: dict[str, TablePart] = {}
        for cap in captures:
            parts = [out.setdefault(t, TablePart()) for t in cap.tables]
            for part in parts:
                part.pages += 1
            try:
                page = load_page(cap, ctx.archive_dir, ctx.max_body)
            except NotParsed as exc:
                for part in parts:
                    part.failed(cap.url, str(exc))
                continue
            except (ShoalError, OSError, ValueError) as exc:
                for part in parts:
                    part.failed(cap.url, f"{type(exc).__name__}: {exc}")
                continue
            try:
                dedup_key = canonicalize(cap.final_url or cap.url, strip=self.strip).url_key
            except URLError:
                dedup_key = cap.url_id
            media = media_type(page.content_type)
            for tname, part in zip(cap.tables, parts, strict=True):
                t = ctx.parse.tables[tname]
                if not t.accepts(media):
                    part.skipped[_other_type(media, t.accepted_kinds())] += 1
                    continue
                ex = self.extractors[tname]
                before = Counter(ex.ocr_stats)
                res: ExtractResult = ex.extract(page)
                part.ocr.update(ex.ocr_stats - before)
                if res.error is not None:
                    part.failed(cap.url, res.error)
                    continue
                if not res.rows:
                    part.empty_pages += 1
                    if len(part.empty) < MAX_URLS:
                        part.empty.append(cap.url)
                part.missing.extend((f, cap.url) for f in res.missing)
                part.cast_errors.update(res.cast_errors)
                for k, v in res.cast_samples.items():
                    have = part.cast_samples.setdefault(k, [])
                    have.extend(v[: max(0, 5 - len(have))])
                red = self.redactors[tname]
                hashed = "content" in t.dedup
                for pos, row in enumerate(res.rows):
                    _count_text(row, part)
                    red.row(row)
                    h = content_hash(row, t.dedup_fields) if hashed else None
                    part.rows.append(row)
                    part.meta.append((cap.url, cap.seq, pos, cap.fetched_at or 0, dedup_key, h))
        for tname, part in out.items():
            red = self.redactors[tname]
            for col, c in red.counts.items():
                if c:
                    part.redacted.setdefault(col, Counter()).update(c)
            red.counts.clear()
        return out


def _other_type(media: str, kinds: list[str]) -> str:
    """The report's reason for a page of a type the table does not take."""
    return f"content type {media or '(none)'} is not one the table takes ({', '.join(kinds)})"


def _count_text(row: dict[str, Any], part: TablePart) -> None:
    """Count characters and U+FFFD in the row's text values (URL and technical columns left out)."""
    for col, v in row.items():
        if col in URL_COLUMNS:
            continue
        if isinstance(v, str):
            part.characters[col] += len(v)
            if "\ufffd" in v:
                part.replacement[col] += v.count("\ufffd")
        elif isinstance(v, list):
            for x in v:
                if isinstance(x, str):
                    part.characters[col] += len(x)
                    part.replacement[col] += x.count("\ufffd")


def chunked(captures: list[Capture], processes: int) -> list[list[Capture]]:
    """Split captures (already in archive order) into chunks: about 8 per process, 4 to 200 each."""
    size = max(4, min(200, len(captures) // max(1, processes * 8) or 1))
    return [captures[i : i + size] for i in range(0, len(captures), size)]


# --------------------------------------------------------------------------- processes


def _worker_main(ctx: ParseContext, tasks: Any, results: Any) -> None:
    """A worker process: build the parser once, then parse chunks until told to stop (None)."""
    try:
        parser = ChunkParser(ctx)
    except BaseException as exc:  # reported to the parent, which raises
        results.put((-1, None, _describe(exc)))
        return
    for idx, chunk in iter(tasks.get, None):
        try:
            results.put((idx, parser.parse(chunk), None))
        except BaseException as exc:  # reported to the parent, which raises
            results.put((idx, None, _describe(exc)))
            return


def _describe(exc: BaseException) -> tuple[str, str, str]:
    return type(exc).__name__, str(exc), "".join(traceback.format_exception(exc))


def run_chunks(
    ctx: ParseContext,
    chunks: list[list[Capture]],
    processes: int,
    progress: bool,
    console: Console | None,
) -> dict[str, TablePart]:
    """Parse every chunk (in ``processes`` processes when more than one) and merge per table."""
    total = sum(len(c) for c in chunks)
    result: dict[str, TablePart] = {t: TablePart() for t in ctx.tables}
    # Workers start before the progress bar, whose refresh thread would rule out fork.
    workers = _Workers(ctx, processes - 1) if processes > 1 and len(chunks) > 1 else None
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
    try:
        with bar:
            task = bar.add_task("parse", total=total)

            def done(parts: dict[str, TablePart], n: int) -> None:
                for name, part in parts.items():
                    result[name].merge(part)
                bar.advance(task, n)

            if workers is None:
                parser = ChunkParser(ctx)
                for chunk in chunks:
                    done(parser.parse(chunk), len(chunk))
            else:
                workers.run(chunks, done)
    finally:
        if workers is not None:
            workers.close()
    return result


class _Workers:
    """``n`` worker processes beside this one, fed through two queues.

    Started with ``fork`` on Linux when this process runs no other thread
    (nothing to import again: a worker starts at once), else with ``spawn``:
    fork would copy another thread's locks mid-state (a demo server, a
    database pool).
    """

    def __init__(self, ctx: ParseContext, n: int) -> None:
        self.ctx = ctx
        single = sys.platform == "linux" and threading.active_count() == 1
        mp = multiprocessing.get_context("fork") if single else multiprocessing.get_context("spawn")
        self.tasks = mp.Queue()
        self.results = mp.Queue()
        with _single_threaded_children():
            self.procs = [
                mp.Process(target=_worker_main, args=(ctx, self.tasks, self.results), daemon=True)
                for _ in range(n)
            ]
            for w in self.procs:
                w.start()

    def run(
        self, chunks: list[list[Capture]], done: Callable[[dict[str, TablePart], int], None]
    ) -> None:
        """Parse ``chunks`` here and in the workers, merging as they finish.

        This process parses too: it is warm while a spawned worker still
        imports, so a small archive does not wait for start-ups and a large one
        uses every process. Each worker has at most two chunks queued; this
        process takes the rest in order.
        """
        parser = ChunkParser(self.ctx)
        sent = 0
        in_flight = 0
        for _ in range(min(len(chunks), len(self.procs) * 2)):
            self.tasks.put((sent, chunks[sent]))
            sent += 1
            in_flight += 1
        while in_flight or sent < len(chunks):
            while in_flight:
                try:
                    got = self.results.get(timeout=0 if sent < len(chunks) else 1.0)
                except queue.Empty:
                    if sent >= len(chunks):
                        _check_alive(self.procs)
                    break
                in_flight -= 1
                _merge(got, chunks, done)
                if sent < len(chunks):
                    self.tasks.put((sent, chunks[sent]))
                    sent += 1
                    in_flight += 1
            if sent < len(chunks):
                chunk = chunks[sent]
                sent += 1
                done(parser.parse(chunk), len(chunk))

    def close(self) -> None:
        """Tell every worker to stop, wait for it (terminate after 10 s), close the queues."""
        for _ in self.procs:
            self.tasks.put(None)
        for w in self.procs:
            w.join(timeout=10)
            if w.is_alive():
                w.terminate()
                w.join()
        self.tasks.close()
        self.results.close()
        self.tasks.cancel_join_thread()
        self.results.cancel_join_thread()


def _merge(
    got: tuple[int, dict[str, TablePart] | None, tuple[str, str, str] | None],
    chunks: list[list[Capture]],
    done: Callable[[dict[str, TablePart], int], None],
) -> None:
    """Merge one worker's answer, or raise what it failed with."""
    idx, parts, error = got
    if error is not None:
        name, message, trace = error
        log.debug("parse worker failed:\n%s", trace)
        if name == "OcrUnavailable":
            raise OcrUnavailable(message)
        raise ParseError(f"a parse worker failed: {name}: {message}")
    assert parts is not None
    done(parts, len(chunks[idx]))


def _check_alive(workers: list[Any]) -> None:
    """Raise ParseError when a worker died without answering (killed, out of memory)."""
    dead = [w for w in workers if not w.is_alive()]
    if dead:
        raise ParseError(
            f"a parse worker process died (exit code {dead[0].exitcode}). When the caller runs threads "
            "workers are started with 'spawn': a script that calls run_parse must then do so under "
            '`if __name__ == "__main__":`, or pass processes=1'
        )


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
