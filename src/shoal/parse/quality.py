"""The data-quality report of a parse, and its gate: per table and field, what came out and what went missing.

For every column of every table: rows, null and empty rates, distinct count,
sample values (after redaction: no personal data reaches the report), values
that did not cast, U+FFFD characters (bytes the charset could not decode),
and for required fields the pages that missed them with their URLs, against
the spec's threshold. Per table: pages read, pages skipped by reason (a
content type the table does not take), pages that gave no row (with their
URLs), rows extracted and written, duplicates dropped (by URL, by content),
values redacted per column and kind, OCR counts, pages that failed.

The gate (:attr:`QualityReport.ok`) fails when a table got no row at all
from its pages (or had no page), when more than ``max_empty`` of its parsed
pages gave no row, when more than ``max_replacement`` of the characters of
its text columns are U+FFFD, or when a required field is missing on more
than its ``max_missing`` of rows. Each failure is one line naming the table,
the numbers and the threshold; its URLs are listed beside it.

The numbers are measured by :mod:`shoal.parse.measure`; this module holds
the report, its gate and its views. One :class:`QualityReport` is written as
JSON (the record) and as an HTML page; :meth:`QualityReport.render` draws it
in a terminal with rich.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

__all__ = [
    "REPORT_HTML",
    "REPORT_JSON",
    "FieldQuality",
    "QualityReport",
    "TableQuality",
    "load_report",
    "now_iso",
]

REPORT_JSON = "quality.json"
REPORT_HTML = "quality.html"
MAX_URLS = 50
"""URLs kept in each list of the report (pages that gave no row, rows missing a required field)."""


@dataclass
class FieldQuality:
    """What one column of a table looks like after parsing."""

    name: str
    kind: str
    """``builtin``, ``field``, ``function`` (a table function's column) or ``ocr``."""
    type: str
    rows: int
    nulls: int
    empties: int
    distinct: int
    samples: list[str]
    required: bool = False
    missing: int = 0
    """Rows (before dedup) on which a required field was missing."""
    missing_rate: float = 0.0
    threshold: float | None = None
    missing_urls: list[str] = field(default_factory=list)
    cast_errors: int = 0
    cast_samples: list[str] = field(default_factory=list)
    replacement_chars: int = 0
    """U+FFFD characters in the column's values (before dedup)."""

    @property
    def null_rate(self) -> float:
        """Share of rows whose value is null or empty."""
        return (self.nulls + self.empties) / self.rows if self.rows else 0.0

    @property
    def failed(self) -> bool:
        """A required field missing on more than its threshold of rows."""
        return self.required and self.threshold is not None and self.missing_rate > self.threshold


@dataclass
class TableQuality:
    """One table's numbers: pages in, rows out, what was dropped, redacted and missed."""

    name: str
    pages: int
    rows_extracted: int
    rows: int
    dedup_url: int
    dedup_content: int
    fields: list[FieldQuality]
    redacted: dict[str, dict[str, int]] = field(default_factory=dict)
    ocr: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    error_samples: list[dict[str, str]] = field(default_factory=list)
    pages_empty: int = 0
    """Pages parsed without error that gave no row."""
    empty_urls: list[str] = field(default_factory=list)
    max_empty: float = 1.0
    skipped: dict[str, int] = field(default_factory=dict)
    """Pages not parsed for this table, by reason (a content type it does not take)."""
    text_chars: int = 0
    replacement_chars: int = 0
    max_replacement: float = 1.0
    output: str = ""
    """Where the table went, for people (file path, or database and table)."""
    format: str = ""
    location: str = ""
    """Where the table went, for :func:`~shoal.parse.read_table`: an absolute path or a SQL table name."""
    generated_at: str = ""

    @property
    def redacted_total(self) -> int:
        """Values replaced by placeholders in the table, all columns and kinds."""
        return sum(sum(k.values()) for k in self.redacted.values())

    @property
    def pages_parsed(self) -> int:
        """Pages that reached the table's selectors (read, of a type it takes, without error)."""
        return self.pages - sum(self.skipped.values()) - self.errors

    @property
    def empty_rate(self) -> float:
        """Share of the parsed pages that gave no row."""
        return self.pages_empty / self.pages_parsed if self.pages_parsed > 0 else 0.0

    @property
    def replacement_rate(self) -> float:
        """Share of the characters of the text columns that are U+FFFD."""
        return self.replacement_chars / self.text_chars if self.text_chars else 0.0

    def problems(self) -> list[tuple[str, list[str]]]:
        """Each gate failure: one line, and the URLs that show it."""
        out: list[tuple[str, list[str]]] = []
        if self.rows_extracted == 0:
            why = [f"{self.pages} page(s) read"]
            why += [f"{n} skipped: {reason}" for reason, n in self.skipped.items()]
            if self.errors:
                why.append(f"{self.errors} failed")
            if self.pages_empty:
                why.append(f"{self.pages_empty} gave no row")
            out.append((f"{self.name}: 0 rows ({'; '.join(why)})", self.empty_urls))
        elif self.empty_rate > self.max_empty:
            out.append(
                (
                    f"{self.name}: {self.pages_empty} of {self.pages_parsed} pages gave no row "
                    f"({self.empty_rate:.1%} > max_empty {self.max_empty:.1%})",
                    self.empty_urls,
                )
            )
        if self.replacement_rate > self.max_replacement:
            cols = ", ".join(
                f"{f.name} {f.replacement_chars}" for f in self.fields if f.replacement_chars
            )
            out.append(
                (
                    f"{self.name}: {self.replacement_chars} of {self.text_chars} characters are U+FFFD "
                    f"({self.replacement_rate:.2%} > max_replacement {self.max_replacement:.2%}; {cols}): "
                    "set encoding on the table or rule",
                    [],
                )
            )
        out.extend(
            (
                f"{self.name}.{f.name}: required field missing on {f.missing} of {self.rows_extracted} rows "
                f"({f.missing_rate:.1%} > {f.threshold:.1%})",
                f.missing_urls,
            )
            for f in self.fields
            if f.failed and f.threshold is not None
        )
        return out

    def failures(self) -> list[str]:
        """One line per gate failure (see :meth:`problems`)."""
        return [line for line, _urls in self.problems()]


@dataclass
class QualityReport:
    """The quality report of the last parse of a crawl's tables."""

    crawl: str
    generated_at: str
    to: str
    tables: dict[str, TableQuality]
    archive: str = ""
    captures: str = "latest"

    @property
    def failures(self) -> list[str]:
        """Every gate failure of every table, one line each."""
        return [line for t in self.tables.values() for line in t.failures()]

    def problems(self) -> list[tuple[str, list[str]]]:
        """Every gate failure of every table with the URLs that show it."""
        return [p for t in self.tables.values() for p in t.problems()]

    @property
    def ok(self) -> bool:
        """Every table passed its gate."""
        return not self.failures

    def headline(self) -> str:
        """One line: rows per table, redactions, duplicates, and whether quality holds."""
        parts = [f"{t.name} {t.rows} rows" for t in self.tables.values()]
        redacted = sum(t.redacted_total for t in self.tables.values())
        dups = sum(t.dedup_url + t.dedup_content for t in self.tables.values())
        errors = sum(t.errors for t in self.tables.values())
        tail = f"{redacted} values redacted, {dups} duplicates dropped"
        if errors:
            tail += f", {errors} pages failed"
        skipped = sum(sum(t.skipped.values()) for t in self.tables.values())
        if skipped:
            tail += f", {skipped} pages of other types skipped"
        verdict = "quality ok" if self.ok else f"quality FAILED ({len(self.failures)} problem(s))"
        return f"{self.crawl}: {', '.join(parts) or 'no tables'}; {tail}; {verdict}"

    # -- JSON ------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able data (with the derived ``ok``, ``failures``, ``headline``)."""
        data = asdict(self)
        for name, t in self.tables.items():
            for fq, fd in zip(t.fields, data["tables"][name]["fields"], strict=True):
                fd["null_rate"] = round(fq.null_rate, 6)
                fd["failed"] = fq.failed
            data["tables"][name]["redacted_total"] = t.redacted_total
        data["ok"] = self.ok
        data["failures"] = self.failures
        data["headline"] = self.headline()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityReport:
        """Rebuild a report from :meth:`as_dict` output (derived keys are ignored)."""
        tables = {}
        for name, t in data.get("tables", {}).items():
            t = dict(t)
            t.pop("redacted_total", None)
            fields = []
            for f in t.pop("fields", []):
                f = {k: v for k, v in f.items() if k not in ("null_rate", "failed")}
                fields.append(FieldQuality(**f))
            tables[name] = TableQuality(fields=fields, **t)
        return cls(
            crawl=data["crawl"],
            generated_at=data["generated_at"],
            to=data.get("to", ""),
            tables=tables,
            archive=data.get("archive", ""),
            captures=data.get("captures", "latest"),
        )

    def write(self, directory: str | Path) -> tuple[Path, Path]:
        """Write ``quality.json`` and ``quality.html`` into ``directory``, each atomically."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        js = d / REPORT_JSON
        page = d / REPORT_HTML
        _atomic_write(js, json.dumps(self.as_dict(), ensure_ascii=False, indent=2, default=str))
        _atomic_write(page, self.html())
        return js, page

    # -- terminal --------------------------------------------------------

    def render(self, *, fields: bool = True) -> RenderableType:
        """The report for a rich console: a summary table, then one table of fields per table."""
        parts: list[RenderableType] = [
            Text(self.headline(), style="bold green" if self.ok else "bold red")
        ]
        summary = Table(
            title=f"parse of crawl {self.crawl} ({self.generated_at})", title_justify="left"
        )
        for col in (
            "table",
            "pages",
            "no row",
            "skipped",
            "rows",
            "dup url",
            "dup content",
            "redacted",
            "OCR read",
            "failed pages",
            "output",
        ):
            summary.add_column(col, justify="right" if col not in ("table", "output") else "left")
        for t in self.tables.values():
            ocr = f"{t.ocr.get('read', 0)}/{t.ocr.get('images', 0)}" if t.ocr else "-"
            summary.add_row(
                t.name,
                str(t.pages),
                str(t.pages_empty),
                str(sum(t.skipped.values())),
                str(t.rows),
                str(t.dedup_url),
                str(t.dedup_content),
                str(t.redacted_total),
                ocr,
                str(t.errors),
                t.output,
            )
        parts.append(summary)
        if fields:
            for t in self.tables.values():
                ft = Table(title=f"{t.name}: fields", title_justify="left")
                for col in ("field", "type", "null/empty", "distinct", "missing", "samples"):
                    ft.add_column(
                        col,
                        overflow="fold",
                        justify="right" if col in ("null/empty", "distinct") else "left",
                    )
                for f in t.fields:
                    missing = ""
                    if f.required:
                        style = "red" if f.failed else "green"
                        missing = f"[{style}]{f.missing} ({f.missing_rate:.0%} / max {f.threshold or 0:.0%})[/]"
                    if f.cast_errors:
                        missing += f" [yellow]{f.cast_errors} not {f.type}[/]"
                    if f.replacement_chars:
                        missing += f" [yellow]{f.replacement_chars} U+FFFD[/]"
                    ft.add_row(
                        f.name + (" *" if f.required else ""),
                        f.type,
                        f"{f.null_rate:.0%}",
                        str(f.distinct) if f.distinct >= 0 else "?",
                        missing or "-",
                        Text(" | ".join(_short(x, 40) for x in f.samples[:3])),
                    )
                parts.append(ft)
                if t.redacted:
                    red = ", ".join(
                        f"{col}: " + " ".join(f"{k} {n}" for k, n in kinds.items())
                        for col, kinds in t.redacted.items()
                    )
                    parts.append(Text(f"  redacted in {t.name}: {red}", style="dim"))
                for reason, n in t.skipped.items():
                    parts.append(Text(f"  skipped in {t.name}: {n} pages: {reason}", style="dim"))
        for line, urls in self.problems():
            parts.append(Text(f"FAILED {line}", style="red"))
            for u in urls[:10]:
                parts.append(Text(f"    {u}", style="red dim"))
        return Group(*parts)

    # -- HTML ------------------------------------------------------------

    def html(self) -> str:
        """A self-contained HTML page of the report."""
        e = html.escape
        out = [
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
            f"<title>shoal parse report: {e(self.crawl)}</title>",
            "<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
            "vertical-align:top;text-align:left}th{background:#f4f4f4}.bad{color:#b00}.ok{color:#070}"
            "td.n{text-align:right}.s{color:#555;font-size:12px;max-width:40em}</style></head><body>",
            f"<h1>Parse report: {e(self.crawl)}</h1>",
            f'<p class="{"ok" if self.ok else "bad"}"><b>{e(self.headline())}</b></p>',
            f"<p>Generated {e(self.generated_at)}; captures: {e(self.captures)}; output: {e(self.to)}.</p>",
        ]
        if self.failures:
            out.append('<h2 class="bad">Failures</h2><ul>')
            for line, url_list in self.problems():
                urls = "".join(f'<li><a href="{e(u)}">{e(u)}</a></li>' for u in url_list)
                out.append(f'<li class="bad">{e(line)}<ul>{urls}</ul></li>')
            out.append("</ul>")
        out.append(
            "<h2>Tables</h2><table><tr><th>table</th><th>pages</th><th>no row</th><th>skipped</th>"
            "<th>rows extracted</th><th>rows</th>"
            "<th>dup URL</th><th>dup content</th><th>redacted</th><th>OCR</th><th>failed pages</th><th>output</th></tr>"
        )
        for t in self.tables.values():
            ocr = ", ".join(f"{k} {v}" for k, v in t.ocr.items()) or "-"
            out.append(
                f"<tr><td>{e(t.name)}</td><td class=n>{t.pages}</td><td class=n>{t.pages_empty}</td>"
                f"<td class=n>{sum(t.skipped.values())}</td><td class=n>{t.rows_extracted}</td>"
                f"<td class=n>{t.rows}</td><td class=n>{t.dedup_url}</td><td class=n>{t.dedup_content}</td>"
                f"<td class=n>{t.redacted_total}</td><td>{e(ocr)}</td><td class=n>{t.errors}</td><td>{e(t.output)}</td></tr>"
            )
        out.append("</table>")
        for t in self.tables.values():
            out.append(
                f"<h2>{e(t.name)}</h2><table><tr><th>field</th><th>kind</th><th>type</th><th>null/empty</th>"
                "<th>distinct</th><th>required missing</th><th>cast errors</th><th>samples</th></tr>"
            )
            for f in t.fields:
                miss = "-"
                if f.required:
                    miss = (
                        f'<span class="{"bad" if f.failed else "ok"}">{f.missing} ({f.missing_rate:.1%}, '
                        f"max {(f.threshold or 0):.1%})</span>"
                    )
                    if f.missing_urls:
                        miss += (
                            "<ul>"
                            + "".join(f"<li>{e(u)}</li>" for u in f.missing_urls[:MAX_URLS])
                            + "</ul>"
                        )
                samples = "<br>".join(e(s) for s in f.samples)
                out.append(
                    f"<tr><td>{e(f.name)}</td><td>{e(f.kind)}</td><td>{e(f.type)}</td><td class=n>{f.null_rate:.1%}</td>"
                    f"<td class=n>{f.distinct}</td><td>{miss}</td><td class=n>{f.cast_errors}</td>"
                    f"<td class=s>{samples}</td></tr>"
                )
            out.append("</table>")
            if t.redacted:
                out.append(
                    "<p>Redacted: "
                    + e(
                        "; ".join(
                            f"{col}: " + ", ".join(f"{k} {n}" for k, n in kinds.items())
                            for col, kinds in t.redacted.items()
                        )
                    )
                    + "</p>"
                )
            if t.skipped:
                out.append(
                    "<p>Skipped: "
                    + e("; ".join(f"{n} pages: {reason}" for reason, n in t.skipped.items()))
                    + "</p>"
                )
            if t.error_samples:
                out.append(
                    "<p class=bad>Pages that failed:</p><ul>"
                    + "".join(
                        f"<li>{e(s.get('url', ''))}: {e(s.get('error', ''))}</li>"
                        for s in t.error_samples
                    )
                    + "</ul>"
                )
        out.append("</body></html>\n")
        return "".join(out)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    mask = os.umask(0)
    os.umask(mask)
    try:
        os.fchmod(fd, 0o666 & ~mask)  # what a plain open() gives, not mkstemp's 0600
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_report(path: str | Path) -> QualityReport:
    """Read a report written by :meth:`QualityReport.write` (the JSON file or its folder)."""
    p = Path(path)
    if p.is_dir():
        p = p / REPORT_JSON
    return QualityReport.from_dict(json.loads(p.read_text(encoding="utf-8")))
