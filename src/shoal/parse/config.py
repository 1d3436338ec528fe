"""The ``[parse]`` section of a crawl spec: tables, their fields, OCR, redaction, dedup, thresholds.

The crawl spec keeps ``[parse]`` raw (:attr:`shoal.spec.Spec.parse`);
:func:`parse_config` validates it once, at the edge, into a :class:`ParseSpec`
or raises :class:`~shoal.errors.SpecError` naming each bad key by its full
path (``parse.tables.posts.fields.title.css``) and its value. An example::

    [parse]
    out = "shoal-data/{name}/tables"      # default output folder
    max_missing = 0.0                     # share of rows a required field may miss

    [parse.tables.posts]
    from = "blog-post"                    # rule name(s), or a page kind: "detail", "list"
    redact = ["email", "phone", "rrn", "card"]
    ocr = "img.notice"                    # images whose text goes into column ocr_text
    dedup = ["url", "content"]

    [parse.tables.posts.fields]
    headline = { css = "h1.title", required = true }
    date = { css = "time.date", attr = "datetime", type = "date", date_format = "%Y-%m-%d" }
    tags = { css = "li.tag", all = true, regex = '#(.+)' }
    post_id = { xpath = "//span[@class='post-id']/text()", regex = '\\d+', type = "int" }
    summary = { function = "mypkg.fields:summary" }   # f(page) -> value
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shoal.errors import ShoalError, SpecError
from shoal.parse.pii import DEFAULT_KINDS
from shoal.spec import Spec, format_validation_error

__all__ = [
    "BUILTINS",
    "BUILTIN_TYPES",
    "DEFAULT_BUILTINS",
    "PAGE_KINDS",
    "FieldSpec",
    "ParseError",
    "ParseSpec",
    "TableSpec",
    "load_function",
    "parse_config",
]

BUILTINS: tuple[str, ...] = (
    "url",
    "final_url",
    "fetched_at",
    "http_status",
    "title",
    "main_text",
    "language",
    "images",
    "content_type",
    "encoding",
    "rule",
    "warc_record_id",
    "html",
)
"""Columns shoal can fill without a selector (see :mod:`shoal.parse.extract`)."""

BUILTIN_TYPES: dict[str, str] = {
    "url": "str", "final_url": "str", "fetched_at": "datetime", "http_status": "int", "title": "str",
    "main_text": "str", "language": "str", "images": "list[str]", "content_type": "str", "encoding": "str",
    "rule": "str", "warc_record_id": "str", "html": "str",
}  # fmt: skip
"""The type of each built-in column."""

DEFAULT_BUILTINS: tuple[str, ...] = BUILTINS[:8]
"""The built-in columns of a table that does not list its own ``builtins``."""

URL_COLUMNS = frozenset(
    {"url", "final_url", "images", "warc_record_id", "content_type", "encoding", "rule"}
)
"""Built-in columns never redacted: URLs and technical values."""

PAGE_KINDS = ("list", "detail")
"""Page kinds a table's ``from`` may name instead of rules."""

OUTPUT_FORMATS = ("parquet", "csv", "jsonl", "sql")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")
_FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

FieldType = Literal["str", "int", "float", "bool", "date", "datetime"]
RedactKind = Literal["email", "rrn", "card", "phone", "ip"]
DedupKey = Literal["url", "content"]


class ParseError(ShoalError):
    """Parsing could not run or could not write its output (not a spec problem)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _check_css(css: str) -> str:
    from parsel.csstranslator import HTMLTranslator

    try:
        HTMLTranslator().css_to_xpath(css)
    except Exception as exc:  # cssselect raises SelectorSyntaxError / ExpressionError
        raise ValueError(f"not a valid CSS selector: {exc}") from None
    return css


def _check_xpath(xpath: str) -> str:
    from lxml import etree

    try:
        etree.XPath(xpath)
    except etree.XPathSyntaxError as exc:
        raise ValueError(f"not a valid XPath expression: {exc}") from None
    return xpath


def _check_regex(regex: str) -> str:
    try:
        re.compile(regex)
    except re.error as exc:
        raise ValueError(f"regex does not compile: {exc}") from None
    return regex


def _check_function(ref: str) -> str:
    if not _FUNCTION.match(ref):
        raise ValueError("expected 'module:function', e.g. 'mypkg.fields:summary'")
    return ref


class FieldSpec(_Model):
    """One column filled from the page: a CSS or XPath selector, or a Python function.

    A selector's first match is taken (``all = true``: every match, as a list);
    ``get`` says what of the element: its ``text`` (block elements become line
    breaks, runs of spaces collapse), its outer ``html``, its ``inner_html``, or
    an attribute (``attr = "href"``). XPath expressions that select text or
    attribute nodes (``//a/@href``) give those values directly, as do parsel's
    ``::text`` and ``::attr(x)`` in CSS. Then ``regex`` keeps the first group
    (or the whole match) of each value, and ``type`` casts it; a value that
    does not cast becomes null and is counted in the quality report.
    """

    css: str | None = None
    xpath: str | None = None
    function: str | None = None
    """``module:function`` called with the :class:`~shoal.parse.extract.Page`; returns the value."""
    get: Literal["text", "html", "inner_html", "attr"] | None = None
    attr: str | None = None
    all: bool = False
    join: str | None = None
    """With ``all``: join the values into one string with this separator."""
    regex: str | None = None
    type: FieldType = "str"
    date_format: str | None = None
    """``strptime`` format for ``date``/``datetime``; without it ISO 8601 is expected."""
    absolute: bool = False
    """Resolve the values as URLs against the page's final URL."""
    default: str | int | float | bool | None = None
    required: bool = False
    """A row missing this field counts against the table's ``max_missing``."""
    max_missing: float | None = Field(default=None, ge=0, le=1)
    """Share of rows that may miss this required field (default: the table's)."""
    redact: bool = True
    """False keeps this column out of personal-data redaction."""

    @field_validator("css")
    @classmethod
    def _css(cls, v: str | None) -> str | None:
        return None if v is None else _check_css(v)

    @field_validator("xpath")
    @classmethod
    def _xpath(cls, v: str | None) -> str | None:
        return None if v is None else _check_xpath(v)

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        return None if v is None else _check_regex(v)

    @field_validator("function")
    @classmethod
    def _function(cls, v: str | None) -> str | None:
        return None if v is None else _check_function(v)

    @model_validator(mode="after")
    def _coherent(self) -> FieldSpec:
        given = [k for k in ("css", "xpath", "function") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of 'css', 'xpath' or 'function' (got {given or 'none'})"
            )
        if self.get == "attr" and not self.attr:
            raise ValueError("get = 'attr' needs attr = 'name'")
        if self.attr and self.get not in (None, "attr"):
            raise ValueError(
                f"attr is given but get = {self.get!r}; leave get out or set it to 'attr'"
            )
        if self.date_format is not None and self.type not in ("date", "datetime"):
            raise ValueError("date_format is only used with type = 'date' or 'datetime'")
        if self.join is not None and not self.all:
            raise ValueError("join needs all = true")
        return self

    @property
    def mode(self) -> str:
        """What is taken of each element: ``text``, ``html``, ``inner_html`` or ``attr``."""
        if self.get is not None:
            return self.get
        return "attr" if self.attr else "text"

    @property
    def is_list(self) -> bool:
        """True when the column holds a list of values."""
        return self.all and self.join is None


def _to_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class TableSpec(_Model):
    """One output table: which pages feed it and how a page becomes rows."""

    from_: list[str] = Field(alias="from", min_length=1)
    """Rule names and/or page kinds (``detail``, ``list``) whose pages feed the table."""
    fields: dict[str, FieldSpec] = Field(default_factory=dict)
    builtins: list[Literal[BUILTINS]] = Field(default_factory=lambda: list(DEFAULT_BUILTINS))  # type: ignore[valid-type]
    rows: str | None = None
    """CSS selector of row elements (one row each, fields relative to it); default one row per page."""
    rows_xpath: str | None = None
    function: str | None = None
    """``module:function`` called with the page; returns a dict (one row), a list of dicts, or None."""
    ocr: str | None = None
    """CSS selector of the images whose text (Tesseract) fills ``ocr_column``."""
    ocr_column: str = "ocr_text"
    ocr_lang: str = "kor+eng"
    redact: list[RedactKind] = Field(default_factory=list)
    """Kinds of personal data to redact (``true`` = email, rrn, card, phone)."""
    redact_columns: list[str] | None = None
    """Columns to redact; default every text column but URLs."""
    dedup: list[DedupKey] = Field(default_factory=lambda: list[DedupKey](["url"]))
    """Drop rows with the same canonical URL and/or content hash, keeping the newest."""
    dedup_fields: list[str] | None = None
    """Columns hashed for content dedup; default every column but url, final_url, fetched_at, http_status, rule, warc_record_id."""
    max_missing: float | None = Field(default=None, ge=0, le=1)
    statuses: list[int] = Field(default_factory=lambda: list(range(200, 300)))
    """HTTP statuses of captures parsed into the table (2xx by default)."""

    @field_validator("from_", "builtins", "redact_columns", "dedup_fields", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return _to_list(v)

    @field_validator("redact", mode="before")
    @classmethod
    def _redact(cls, v: Any) -> Any:
        if v is True:
            return list(DEFAULT_KINDS)
        if v is False or v is None:
            return []
        return _to_list(v)

    @field_validator("dedup", mode="before")
    @classmethod
    def _dedup(cls, v: Any) -> Any:
        if v is False or v == "none" or v is None:
            return []
        if v is True:
            return ["url", "content"]
        return _to_list(v)

    @field_validator("fields", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: {"css": f} if isinstance(f, str) else f for k, f in v.items()}
        return v

    @field_validator("fields")
    @classmethod
    def _field_names(cls, v: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        for name in v:
            if not _NAME.match(name):
                raise ValueError(
                    f"field name {name!r} must be letters, digits and _ (not starting with a digit)"
                )
        return v

    @field_validator("rows", "ocr")
    @classmethod
    def _css(cls, v: str | None) -> str | None:
        return None if v is None else _check_css(v)

    @field_validator("rows_xpath")
    @classmethod
    def _xpath(cls, v: str | None) -> str | None:
        return None if v is None else _check_xpath(v)

    @field_validator("function")
    @classmethod
    def _function(cls, v: str | None) -> str | None:
        return None if v is None else _check_function(v)

    @model_validator(mode="after")
    def _coherent(self) -> TableSpec:
        if self.rows is not None and self.rows_xpath is not None:
            raise ValueError("give at most one of 'rows' and 'rows_xpath'")
        if not _NAME.match(self.ocr_column):
            raise ValueError(f"ocr_column {self.ocr_column!r} must be letters, digits and _")
        if not re.fullmatch(r"[a-z_]+(\+[a-z_]+)*", self.ocr_lang):
            raise ValueError(f"ocr_lang {self.ocr_lang!r} must look like 'kor+eng'")
        clash = set(self.fields) & set(self.builtins)
        if clash:
            raise ValueError(
                f"fields {sorted(clash)} have the names of built-in columns; rename them or drop them from builtins"
            )
        if self.ocr is not None and (
            self.ocr_column in self.fields or self.ocr_column in self.builtins
        ):
            raise ValueError(f"ocr_column {self.ocr_column!r} is also a field or built-in column")
        if not self.fields and not self.builtins and self.function is None and self.ocr is None:
            raise ValueError("the table has no columns: give fields, builtins or a function")
        if self.function is None:
            known = self.columns()
            for key in ("redact_columns", "dedup_fields"):
                cols = getattr(self, key)
                unknown = [c for c in cols or () if c not in known]
                if unknown:
                    raise ValueError(
                        f"{key} names unknown columns {unknown}; the table has {sorted(known)}"
                    )
        return self

    def columns(self) -> list[str]:
        """The declared columns, in output order: built-ins, fields, then the OCR column."""
        cols = [str(b) for b in self.builtins] + list(self.fields)
        if self.ocr is not None:
            cols.append(self.ocr_column)
        return cols

    def column_type(self, col: str) -> tuple[str, str]:
        """(kind, type) of a column: ``builtin``/``field``/``ocr``/``function`` and ``str``, ``int``, ``list[str]``..."""
        if col in self.builtins:
            return "builtin", BUILTIN_TYPES.get(col, "str")
        if col in self.fields:
            f = self.fields[col]
            return "field", f"list[{f.type}]" if f.is_list else f.type
        if self.ocr is not None and col == self.ocr_column:
            return "ocr", "str"
        return "function", "any"

    def required_fields(self) -> list[str]:
        """Names of the fields marked ``required``."""
        return [n for n, f in self.fields.items() if f.required]


class ParseSpec(_Model):
    """The whole ``[parse]`` section."""

    tables: dict[str, TableSpec] = Field(default_factory=dict)
    out: str = "shoal-data/{name}/tables"
    """Default output folder of files and of the quality report (``{name}`` = the crawl)."""
    to: Literal["parquet", "csv", "jsonl", "sql"] = "parquet"
    sql_prefix: str = "{name}_"
    """Prefix of SQL table names (``{name}`` = the crawl): crawls sharing a database do not collide."""
    max_missing: float = Field(default=0.0, ge=0, le=1)
    """Default share of rows a required field may miss before ``shoal parse`` fails."""
    processes: int = Field(default=0, ge=0, le=256)
    """Worker processes; 0 = one per CPU."""

    @field_validator("tables")
    @classmethod
    def _table_names(cls, v: dict[str, TableSpec]) -> dict[str, TableSpec]:
        for name in v:
            if not _NAME.match(name):
                raise ValueError(
                    f"table name {name!r} must be letters, digits and _ (not starting with a digit)"
                )
        return v

    def threshold(self, table: str, field: str) -> float:
        """The share of rows ``field`` of ``table`` may be missing on."""
        t = self.tables[table]
        f = t.fields[field]
        if f.max_missing is not None:
            return f.max_missing
        return t.max_missing if t.max_missing is not None else self.max_missing


def _format(exc: ValidationError, source: str) -> str:
    return format_validation_error(exc, source, what="[parse] section", prefix=("parse",))


def load_function(ref: str, key: str = "function") -> Callable[..., Any]:
    """Import ``module:function``; raises SpecError naming ``key`` when it cannot."""
    module_name, _, attr = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except ImportError as exc:
        raise SpecError(
            f"{key}: cannot import module {module_name!r} ({exc}) (got {ref!r})"
        ) from None
    except AttributeError:
        raise SpecError(f"{key}: module {module_name!r} has no {attr!r} (got {ref!r})") from None
    if not callable(obj):
        raise SpecError(f"{key}: {ref!r} is not callable")
    return obj  # type: ignore[no-any-return]


def parse_config(spec: Spec, *, source: str = "spec", import_functions: bool = True) -> ParseSpec:
    """Validate ``spec.parse`` into a :class:`ParseSpec`, or raise SpecError naming every bad key.

    Table sources (``from``) must name rules of the spec or page kinds, and
    ``module:function`` references must import (unless ``import_functions`` is false).
    """
    try:
        ps = ParseSpec.model_validate(spec.parse)
    except ValidationError as exc:
        raise SpecError(_format(exc, source)) from None
    problems: list[str] = []
    rule_names = {r.name for r in spec.rules if r.name}
    for tname, table in ps.tables.items():
        for i, src in enumerate(table.from_):
            if src not in rule_names and src not in PAGE_KINDS:
                known = ", ".join(sorted(rule_names)) or "none"
                problems.append(
                    f"  - parse.tables.{tname}.from.{i}: not a rule name nor a page kind (rules: {known}; "
                    f"kinds: list, detail) (got {src!r})"
                )
        if import_functions:
            refs = [(f"parse.tables.{tname}.function", table.function)]
            refs += [
                (f"parse.tables.{tname}.fields.{n}.function", f.function)
                for n, f in table.fields.items()
            ]
            for key, ref in refs:
                if ref is None:
                    continue
                try:
                    load_function(ref, key)
                except SpecError as exc:
                    problems.append(f"  - {exc}")
    if problems:
        raise SpecError(
            f"{source}: the [parse] section is invalid ({len(problems)} problem(s)):\n"
            + "\n".join(problems)
        )
    return ps
