"""The parse stage: offline, from the archive to tables, with OCR, redaction, dedup and a quality report.

Collect first, parse later: the crawl only archives; :func:`run_parse` (``shoal
parse``) reads the archived pages again as often as wanted and writes the
tables the spec's ``[parse]`` section declares (see :mod:`shoal.parse.config`).
From Python::

    import shoal.parse as sp

    result = sp.run_parse("demo.toml")           # write every table + quality report
    posts = sp.read_table("demo.toml", "posts")  # what was written, as a DataFrame
    draft = sp.parse_table("demo.toml", "posts") # parse now, write nothing

Modules: :mod:`~shoal.parse.config` (the section's models), :mod:`~shoal.parse.checks`
(selectors, expressions, labels checked), :mod:`~shoal.parse.section` (the section of a
crawl spec read and cross-checked, functions imported), :mod:`~shoal.parse.extract`
(page → rows), :mod:`~shoal.parse.values` (element text, casts, main text, language),
:mod:`~shoal.parse.ocr` (Tesseract), :mod:`~shoal.parse.pii` (personal data),
:mod:`~shoal.parse.measure` (a table's numbers), :mod:`~shoal.parse.quality` (the report
and its gate), :mod:`~shoal.parse.run` (processes, dedup, outputs).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.parse.config import FieldSpec, ParseError, ParseSpec, TableSpec
    from shoal.parse.extract import Page, TableExtractor
    from shoal.parse.ocr import OcrUnavailable, check_tesseract, ocr_image
    from shoal.parse.pii import Redactor, redact_text
    from shoal.parse.quality import QualityReport, load_report
    from shoal.parse.run import (
        FORMATS,
        QUALITY_EXIT_CODE,
        ParseResult,
        parse_table,
        read_table,
        run_parse,
        show_report,
    )
    from shoal.parse.section import parse_config

# Loaded on first use: a parse worker process imports shoal.parse.pool, which
# must not drag in the frontier, SQLAlchemy and pandas through this package.
_LAZY = {
    "FieldSpec": "config",
    "ParseError": "config",
    "ParseSpec": "config",
    "TableSpec": "config",
    "parse_config": "section",
    "Page": "extract",
    "TableExtractor": "extract",
    "OcrUnavailable": "ocr",
    "check_tesseract": "ocr",
    "ocr_image": "ocr",
    "Redactor": "pii",
    "redact_text": "pii",
    "QualityReport": "quality",
    "load_report": "quality",
    "FORMATS": "run",
    "QUALITY_EXIT_CODE": "run",
    "ParseResult": "run",
    "parse_table": "run",
    "read_table": "run",
    "run_parse": "run",
    "show_report": "run",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shoal.parse' has no attribute {name!r}")
    return getattr(importlib.import_module(f"shoal.parse.{module}"), name)


__all__ = [
    "FORMATS",
    "QUALITY_EXIT_CODE",
    "FieldSpec",
    "OcrUnavailable",
    "Page",
    "ParseError",
    "ParseResult",
    "ParseSpec",
    "QualityReport",
    "Redactor",
    "TableExtractor",
    "TableSpec",
    "check_tesseract",
    "load_report",
    "ocr_image",
    "parse_config",
    "parse_table",
    "read_table",
    "redact_text",
    "run_parse",
    "show_report",
]
