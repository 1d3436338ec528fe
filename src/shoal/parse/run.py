"""``shoal parse``: from the archive to tables, in parallel, written atomically, with a quality report.

The steps of :func:`run_parse`:

1. read the frontier (:mod:`~shoal.parse.captures`): the ``done`` captures of
   the pages each table takes, with their WARC references;
2. split them into chunks, grouped by WARC file, and parse them in worker
   processes (:mod:`~shoal.parse.pool`): read the record, undo the content
   coding, decode the charset, extract each table's rows
   (:mod:`~shoal.parse.extract`), read images with Tesseract
   (:mod:`~shoal.parse.ocr`), redact personal data (:mod:`~shoal.parse.pii`);
3. in this process: drop duplicates (same canonical URL, same content hash;
   the newest capture wins), build one DataFrame per table and write it
   (:mod:`~shoal.parse.output`), each output replaced atomically;
4. write the quality report (:mod:`~shoal.parse.quality`); when a table fails
   its gate, record a ``quality`` event in the frontier and say so in the
   result, whose ``exit_code`` is then :data:`QUALITY_EXIT_CODE`.

All rows of a table are held in memory until they are written (a table of a
million 5 KB pages needs some 5 GB); pass ``tables=`` to parse a few at a time.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from shoal.archive.reader import archive_location
from shoal.frontier.dialects import make_engine
from shoal.parse.captures import open_frontier, read_assets, read_captures
from shoal.parse.config import ParseError, ParseSpec
from shoal.parse.incremental import incremental_parts
from shoal.parse.measure import table_quality
from shoal.parse.ocr import check_tesseract
from shoal.parse.output import (
    FORMATS,
    FRONTIER_TABLES,
    as_spec,
    columns_of,
    dedup,
    frame,
    out_folder,
    read_table,
    report_dir,
    spec_folder,
    sql_table_name,
    write_file,
    write_sql,
)
from shoal.parse.pool import ParseContext, chunked, run_chunks
from shoal.parse.quality import (
    REPORT_JSON,
    QualityReport,
    TableQuality,
    load_report,
    now_iso,
)
from shoal.parse.section import parse_config
from shoal.secrets import redact_url
from shoal.spec import Spec

if TYPE_CHECKING:
    import pandas as pd

    from shoal.frontier.contract import Frontier
    from shoal.parse.captures import Capture

__all__ = [
    "FORMATS",
    "QUALITY_EXIT_CODE",
    "ParseResult",
    "parse_table",
    "read_table",
    "run_parse",
    "show_report",
]

QUALITY_EXIT_CODE = 4
"""What ``shoal parse`` exits with when a table fails its quality gate."""

log = logging.getLogger(__name__)


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
        """Every table passed its quality gate (see :mod:`shoal.parse.quality`)."""
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
            t = self.report.tables.get(name)
            fed = f" from {t.pages} pages ({t.pages_empty} gave none)" if t is not None else ""
            lines.append(f"  {name:<{width}}  {n:>7} rows{fed}  → {self.outputs[name]}")
        lines.append(
            f"  quality report → {self.report_path} (and {self.html_path.name}); `shoal report` shows it"
        )
        lines.append(self.report.headline())
        for line, urls in self.report.problems():
            lines.append(f"  FAILED {line}")
            lines.extend(f"    {u}" for u in urls[:10])
        return lines


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
    frontier: Frontier,
    all_captures: bool,
    base: Path | None,
) -> tuple[Any, ParseContext, list[Capture]]:
    info = frontier.get_crawl(spec.name)
    if any(ps.tables[t].ocr for t in names):
        for lang in sorted({ps.tables[t].ocr_lang for t in names if ps.tables[t].ocr}):
            check_tesseract(lang)
    archive_dir = spec.archive_dir()
    if not archive_dir.startswith("s3://") and not Path(archive_dir).is_dir():
        raise ParseError(
            f"no archive folder at {archive_dir}: run the parse where the crawl's WARC files are"
        )
    captures = read_captures(
        frontier,
        info.id,
        spec,
        info.spec,
        ps,
        names,
        all_captures=all_captures,
        archive_dir=archive_dir,
    )
    assets = read_assets(frontier, info.id) if any(ps.tables[t].ocr for t in names) else {}
    ctx = ParseContext(
        ps,
        tuple(names),
        archive_location(spec),  # an s3:// archive is read on the spec's endpoint and region
        assets,
        tuple(spec.scope.strip_query_params),
        spec.limits.max_body_bytes,
        str(base) if base is not None else None,
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
    csv_bom: bool = False,
    base: str | os.PathLike[str] | None = None,
    incremental: bool = False,
) -> ParseResult:
    """Parse the crawl's archive into its tables, write them and the quality report.

    ``spec`` is a :class:`~shoal.spec.Spec` or a spec file; ``db_url`` the
    frontier (default: the spec's); ``tables`` a subset of the spec's tables;
    ``to`` one of :data:`FORMATS` (default: ``[parse] to``, else parquet);
    ``out`` a folder for files, or for ``sql`` a database URL (default: the
    frontier's database); ``all_captures`` parses every capture found in the
    archive instead of the latest of each URL (URL dedup is then off, content
    dedup still drops unchanged captures); ``processes`` worker processes
    (default: ``[parse] processes``, else one per CPU); ``csv_bom`` starts
    CSV files with a UTF-8 byte order mark (for Excel); ``base`` the folder
    relative paths and function modules are found in (default: the spec
    file's folder); ``incremental`` parses only the captures not parsed by the
    previous incremental run and merges them with the cached rest (see
    :mod:`shoal.parse.incremental`): the tables come out as a full parse's.

    Raises SpecError (bad ``[parse]``), ParseError (nothing to parse, no
    archive), OcrUnavailable (Tesseract missing) or FrontierError. A quality
    failure does not raise: it is in the result (``ok``, ``exit_code``), in
    the report, and recorded as a ``quality`` event in the frontier.
    """
    started = time.monotonic()
    folder_of_spec = spec_folder(spec, base)
    spec = as_spec(spec)
    ps = parse_config(spec, base=folder_of_spec)
    names = _select_tables(ps, tables)
    fmt = to or ps.to
    if fmt not in FORMATS:
        raise ParseError(f"unknown output format {fmt!r}: use one of {', '.join(FORMATS)}")
    nproc = processes if processes is not None else _default_processes(ps)
    frontier_url = db_url or spec.frontier_url()
    folder = out_folder(ps, spec, folder_of_spec)
    if fmt != "sql" and out is not None:
        folder = Path(out)
    sql_url = (str(out) if out is not None else frontier_url) if fmt == "sql" else None
    if sql_url is not None and "://" not in sql_url:
        raise ParseError(f"--to sql needs a database URL in --out (got {sql_url!r})")
    frontier = open_frontier(frontier_url)
    try:
        info, ctx, captures = _prepare(spec, ps, names, frontier, all_captures, folder_of_spec)
        save_cache = None
        if incremental:
            parts, parsed_now, save_cache = incremental_parts(ctx, captures, folder)
            log.info("incremental parse: %d of %d capture(s) parsed now", parsed_now, len(captures))
        else:
            parts = run_chunks(
                ctx, chunked(captures, nproc), min(nproc, max(1, len(captures))), progress, console
            )
        engine = None
        if sql_url is not None:
            engine = make_engine(sql_url)
        outputs: dict[str, str] = {}
        rows_out: dict[str, int] = {}
        tq: dict[str, TableQuality] = {}
        try:
            for name in names:
                table = ps.tables[name]
                part = parts[name]
                kept, by_url, by_content = dedup(part, table.dedup, all_captures)
                rows = [part.rows[i] for i in kept]
                columns = columns_of(table, rows)
                df = frame(table, rows, columns)
                if engine is not None:
                    target = sql_table_name(ps, spec.name, name)
                    if target in FRONTIER_TABLES:
                        raise ParseError(
                            f"table {name!r} would overwrite the frontier's table {target!r}: set [parse] sql_prefix"
                        )
                    write_sql(df, engine, target)
                    outputs[name] = f"{redact_url(sql_url or '')} table {target}"
                    location = target
                else:
                    ext = {"parquet": ".parquet", "csv": ".csv", "jsonl": ".jsonl"}[fmt]
                    path = folder / f"{name}{ext}"
                    write_file(fmt, df, rows, columns, path, csv_bom=csv_bom)
                    outputs[name] = str(path)
                    location = str(path.resolve())
                q = table_quality(name, table, ps, part, kept, columns, by_url, by_content)
                q.output = outputs[name]
                q.format = fmt
                q.location = location
                tq[name] = q
                rows_out[name] = len(rows)
        finally:
            if engine is not None:
                engine.dispose()
        report = _merge_report(folder, spec.name, fmt, tq, ps, all_captures, spec.archive_dir())
        js, page = report.write(folder)
        if save_cache is not None:
            save_cache()
        if not report.ok and record_events:
            message = f"parse of {spec.name}: " + "; ".join(
                line + (f" (e.g. {', '.join(urls[:3])})" if urls else "")
                for line, urls in report.problems()
            )
            frontier.record_event(info.id, "quality", message, severity="warning")
    finally:
        frontier.close()
    pages = len({(c.url_id, c.fetched_at) for c in captures})
    return ParseResult(
        spec.name, rows_out, outputs, report, js, page, pages, time.monotonic() - started, nproc
    )


def _merge_report(
    folder: Path,
    crawl: str,
    fmt: str,
    fresh: dict[str, TableQuality],
    ps: ParseSpec,
    all_captures: bool,
    archive_dir: str,
) -> QualityReport:
    """This run's tables over the previous report's others (a ``--table`` run keeps the rest)."""
    tables: dict[str, TableQuality] = {}
    old = folder / REPORT_JSON
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
    base: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Parse one table straight into a DataFrame, writing nothing (for notebooks and experiments)."""
    folder_of_spec = spec_folder(spec, base)
    spec = as_spec(spec)
    ps = parse_config(spec, base=folder_of_spec)
    names = _select_tables(ps, [table])
    frontier = open_frontier(db_url or spec.frontier_url())
    try:
        _info, ctx, captures = _prepare(spec, ps, names, frontier, all_captures, folder_of_spec)
    finally:
        frontier.close()
    parts = run_chunks(ctx, chunked(captures, processes), processes, False, None)
    t = ps.tables[table]
    kept, _u, _c = dedup(parts[table], t.dedup, all_captures)
    rows = [parts[table].rows[i] for i in kept]
    return frame(t, rows, columns_of(t, rows))


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
        folder = report_dir(as_spec(target), out, spec_folder(target))
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
