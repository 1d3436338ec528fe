"""Measuring a parsed table for its quality report: values in, :class:`~shoal.parse.quality.TableQuality` out.

:func:`field_quality` counts one column's values: rows, nulls (None, NaN,
pandas NA/NaT), empties (blank strings, empty lists and arrays), distinct
values (lists and dicts compared by content; -1 when values cannot be
compared) and the first few distinct values as short one-line samples.
:func:`table_quality` measures every column of a table from what the workers
extracted (:class:`~shoal.parse.pool.TablePart`) and the rows kept by dedup,
and adds what the part counted: required fields missed (with their URLs), casts
that failed, U+FFFD characters, pages empty or skipped, redactions, OCR, and
the spec's thresholds. Samples come from the rows after redaction, so no
personal data reaches the report. The report itself, its gate and its views
are :mod:`shoal.parse.quality`.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from shoal.parse.quality import MAX_URLS, FieldQuality, TableQuality, now_iso

if TYPE_CHECKING:
    from shoal.parse.config import ParseSpec, TableSpec
    from shoal.parse.pool import TablePart

__all__ = ["field_quality", "table_quality"]

MAX_SAMPLES = 5
SAMPLE_CHARS = 120


def _is_null(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, (str, list, int)):  # the common values: no pandas look-up
        return False
    if isinstance(v, float) and math.isnan(v):
        return True
    pd = sys.modules.get("pandas")  # NA and NaT only exist where pandas made the values
    return pd is not None and (v is pd.NA or v is pd.NaT)


def _is_empty(v: Any) -> bool:
    if isinstance(v, str):
        return not v.strip()
    if isinstance(v, (list, tuple)):
        return len(v) == 0
    if (
        hasattr(v, "__len__")
        and not isinstance(v, (bytes, dict))
        and type(v).__module__.startswith("numpy")
    ):
        return len(v) == 0
    return False


def _hashable(v: Any) -> Any:
    if isinstance(v, (list, tuple)) or (
        type(v).__module__.startswith("numpy") and hasattr(v, "tolist")
    ):
        seq = v.tolist() if hasattr(v, "tolist") else v
        if isinstance(seq, list):
            return tuple(_hashable(x) for x in seq)
        return seq
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True, default=str)
    return v


def _show(v: Any) -> str:
    if isinstance(v, (datetime, date)):
        s = v.isoformat()
    elif isinstance(v, (list, tuple)):
        s = json.dumps([_plain(x) for x in v], ensure_ascii=False, default=str)
    else:
        s = str(v)
    s = s.replace("\n", " ⏎ ")
    return s if len(s) <= SAMPLE_CHARS else s[: SAMPLE_CHARS - 1] + "…"


def _plain(v: Any) -> Any:
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if hasattr(v, "item") and type(v).__module__.startswith("numpy"):
        return v.item()
    return v


def field_quality(
    name: str, values: Iterable[Any], *, kind: str = "field", type_: str = "str"
) -> FieldQuality:
    """Counts, distinct values and samples of one column's values."""
    rows = nulls = empties = 0
    seen: set[Any] = set()
    samples: list[str] = []
    unhashable = False
    for v in values:
        rows += 1
        if _is_null(v):
            nulls += 1
            continue
        if _is_empty(v):
            empties += 1
            continue
        key = _hashable(v)
        try:
            fresh = key not in seen
            if fresh:
                seen.add(key)
        except TypeError:
            unhashable, fresh = True, len(samples) < MAX_SAMPLES
        if fresh and len(samples) < MAX_SAMPLES:
            samples.append(_show(v))
    distinct = len(seen) if not unhashable else -1
    return FieldQuality(name, kind, type_, rows, nulls, empties, distinct, samples)


def table_quality(
    name: str,
    table: TableSpec,
    ps: ParseSpec,
    part: TablePart,
    kept: list[int],
    columns: list[str],
    dedup_url: int,
    dedup_content: int,
) -> TableQuality:
    """The quality of one parsed table: ``part`` as extracted, ``kept`` the rows that survived dedup."""
    rows = [part.rows[i] for i in kept]
    fields: list[FieldQuality] = []
    missing_by: dict[str, list[str]] = {}
    for fname, url in part.missing:
        missing_by.setdefault(fname, []).append(url)
    for col in columns:
        kind, typ = table.column_type(col)
        fq = field_quality(col, (r.get(col) for r in rows), kind=kind, type_=typ)
        if kind == "field" and table.fields[col].required:
            fq.required = True
            urls = missing_by.get(col, [])
            fq.missing = len(urls)
            fq.missing_rate = len(urls) / len(part.rows) if part.rows else 0.0
            fq.threshold = ps.threshold(name, col)
            fq.missing_urls = sorted(set(urls))[:MAX_URLS]
        fq.cast_errors = part.cast_errors.get(col, 0)
        fq.cast_samples = part.cast_samples.get(col, [])[:MAX_SAMPLES]
        fq.replacement_chars = part.replacement.get(col, 0)
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
        pages_empty=part.empty_pages,
        empty_urls=sorted(set(part.empty))[:MAX_URLS],
        max_empty=ps.empty_threshold(name),
        skipped=dict(sorted(part.skipped.items())),
        text_chars=sum(part.characters.values()),
        replacement_chars=sum(part.replacement.values()),
        max_replacement=ps.replacement_threshold(name),
        generated_at=now_iso(),
    )
