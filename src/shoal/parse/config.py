"""The models of the ``[parse]`` section of a crawl spec: tables, their fields, OCR, redaction, dedup, thresholds.

The crawl spec keeps ``[parse]`` raw (:attr:`shoal.spec.Spec.parse`);
:func:`~shoal.parse.section.parse_config` validates it once, at the edge, into
a :class:`ParseSpec` or raises :class:`~shoal.errors.SpecError` naming each bad
key by its full path (``parse.tables.posts.fields.title.css``) and its value.
Each model checks itself: every selector, expression and charset label when it
is read (by :mod:`shoal.parse.checks`), and how the keys fit together. What
only the crawl spec can tell (rule names, importable functions) is checked by
:mod:`shoal.parse.section`. An example::

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

    [parse.tables.news]                   # an RSS feed: XML, rows by XPath
    from = "feed"
    content_types = ["xml"]
    rows_xpath = "//item"
    fields = { headline = { xpath = "title/text()" }, link = { xpath = "link/text()" } }

    [parse.rules.app]                     # per rule: which capture, which charset
    source = "response"
    encoding = "cp949"
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shoal.errors import ShoalError
from shoal.parse.checks import (
    NAME,
    check_css,
    check_encoding,
    check_function,
    check_jmespath,
    check_regex,
    check_xpath,
)
from shoal.parse.pii import KINDS

__all__ = [
    "BUILTINS",
    "BUILTIN_TYPES",
    "CONTENT_KINDS",
    "DEFAULT_BUILTINS",
    "PAGE_KINDS",
    "FieldSpec",
    "ParseError",
    "ParseSpec",
    "RuleParse",
    "TableSpec",
    "content_kind",
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

CONTENT_KINDS = ("html", "xml", "json")
"""What a table's ``content_types`` may name besides exact media types (``application/rss+xml``)."""


def content_kind(media: str) -> str | None:
    """``html``, ``xml`` or ``json`` for a media type (no parameters, lower case), else None.

    An empty type counts as HTML (servers that send none send pages); ``text/xml``,
    ``application/xml`` and every ``+xml`` type (RSS, Atom, sitemaps via their
    ``application/xml``) are XML; ``application/json``, ``text/json`` and every
    ``+json`` type are JSON.
    """
    if media in ("", "text/html", "application/xhtml+xml"):
        return "html"
    if media in ("text/xml", "application/xml") or media.endswith("+xml"):
        return "xml"
    if media in ("application/json", "text/json") or media.endswith("+json"):
        return "json"
    return None


FieldType = Literal["str", "int", "float", "bool", "date", "datetime"]
RedactKind = Literal["email", "rrn", "card", "phone", "ip"]
DedupKey = Literal["url", "content"]


class ParseError(ShoalError):
    """Parsing could not run or could not write its output (not a spec problem)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


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
    """XPath 1.0; in XML tables prefixes come from the table's ``namespaces``."""
    jmespath: str | None = None
    """A JMESPath expression, for JSON tables (``items[].name``)."""
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
        return None if v is None else check_css(v)

    @field_validator("xpath")
    @classmethod
    def _xpath(cls, v: str | None) -> str | None:
        return None if v is None else check_xpath(v)

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        return None if v is None else check_regex(v)

    @field_validator("jmespath")
    @classmethod
    def _jmespath(cls, v: str | None) -> str | None:
        return None if v is None else check_jmespath(v)

    @field_validator("function")
    @classmethod
    def _function(cls, v: str | None) -> str | None:
        return None if v is None else check_function(v)

    @model_validator(mode="after")
    def _coherent(self) -> FieldSpec:
        given = [
            k for k in ("css", "xpath", "jmespath", "function") if getattr(self, k) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of 'css', 'xpath', 'jmespath' or 'function' (got {given or 'none'})"
            )
        if self.jmespath is not None and (self.get is not None or self.attr is not None):
            raise ValueError("get and attr apply to elements; a jmespath field gives values")
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
    rows_jmespath: str | None = None
    """JSON tables: a JMESPath expression giving the row objects (fields relative to each)."""
    content_types: list[str] | None = None
    """What the table takes: ``html``, ``xml``, ``json`` or exact media types; default ``html``
    (``json`` when the table uses JMESPath). Captures of other types are counted, not parsed."""
    namespaces: dict[str, str] = Field(default_factory=dict)
    """XML namespace prefixes for XPath: ``{ atom = "http://www.w3.org/2005/Atom" }``."""
    source: Literal["auto", "response", "rendered"] = "auto"
    """Which capture: ``rendered`` (the browser's DOM), ``response`` (the HTTP body), or ``auto``:
    the rendered DOM for pages of ``render = "browser"`` rules, else the response (see ``[parse.rules]``)."""
    encoding: str | None = None
    """Decode every capture of the table with this charset, whatever the page declares."""
    max_empty: float | None = Field(default=None, ge=0, le=1)
    """Share of the table's pages that may give 0 rows (default: ``[parse] max_empty``)."""
    max_replacement: float | None = Field(default=None, ge=0, le=1)
    """Share of characters of text columns that may be U+FFFD (default: ``[parse] max_replacement``)."""
    function: str | None = None
    """``module:function`` called with the page; returns a dict (one row), a list of dicts, or None."""
    ocr: str | None = None
    """CSS selector of the images whose text (Tesseract) fills ``ocr_column``."""
    ocr_column: str = "ocr_text"
    ocr_lang: str = "kor+eng"
    redact: list[RedactKind] = Field(default_factory=list)
    """Kinds of personal data to redact (``true`` = every kind: email, rrn, card, phone, ip)."""
    redact_columns: list[str] | None = None
    """Columns to redact; default every text column but URLs."""
    dedup: list[DedupKey] = Field(default_factory=lambda: list[DedupKey](["url"]))
    """Drop rows with the same canonical URL and/or content hash, keeping the newest."""
    dedup_fields: list[str] | None = None
    """Columns hashed for content dedup; default every column but url, final_url, fetched_at, http_status, rule, warc_record_id."""
    max_missing: float | None = Field(default=None, ge=0, le=1)
    statuses: list[int] = Field(default_factory=lambda: list(range(200, 300)))
    """HTTP statuses of captures parsed into the table (2xx by default)."""

    @field_validator(
        "from_", "builtins", "redact_columns", "dedup_fields", "content_types", mode="before"
    )
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return _to_list(v)

    @field_validator("redact", mode="before")
    @classmethod
    def _redact(cls, v: Any) -> Any:
        if v is True:
            return list(KINDS)
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
            if not NAME.match(name):
                raise ValueError(
                    f"field name {name!r} must be letters, digits and _ (not starting with a digit)"
                )
        return v

    @field_validator("rows", "ocr")
    @classmethod
    def _css(cls, v: str | None) -> str | None:
        return None if v is None else check_css(v)

    @field_validator("rows_xpath")
    @classmethod
    def _xpath(cls, v: str | None) -> str | None:
        return None if v is None else check_xpath(v)

    @field_validator("rows_jmespath")
    @classmethod
    def _jmespath(cls, v: str | None) -> str | None:
        return None if v is None else check_jmespath(v)

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, v: str | None) -> str | None:
        return None if v is None else check_encoding(v)

    @field_validator("content_types")
    @classmethod
    def _types(cls, v: list[str] | None) -> list[str] | None:
        for t in v or ():
            if t not in CONTENT_KINDS and not re.fullmatch(r"[a-z0-9.+-]+/[a-z0-9.+-]+", t):
                raise ValueError(
                    f"{t!r} is neither html, xml, json nor a media type such as 'application/rss+xml'"
                )
        return v

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, v: dict[str, str]) -> dict[str, str]:
        for prefix in v:
            if not re.fullmatch(r"[A-Za-z_][\w.-]*", prefix):
                raise ValueError(f"namespace prefix {prefix!r} is not an XML name")
        return v

    @field_validator("function")
    @classmethod
    def _function(cls, v: str | None) -> str | None:
        return None if v is None else check_function(v)

    @model_validator(mode="after")
    def _coherent(self) -> TableSpec:
        rows = [k for k in ("rows", "rows_xpath", "rows_jmespath") if getattr(self, k) is not None]
        if len(rows) > 1:
            raise ValueError(
                f"give at most one of 'rows', 'rows_xpath' and 'rows_jmespath' (got {rows})"
            )
        uses_json = self.rows_jmespath is not None or any(
            f.jmespath is not None for f in self.fields.values()
        )
        if uses_json and "json" not in self.accepted_kinds():
            raise ValueError(
                "JMESPath (rows_jmespath or a jmespath field) needs content_types to include 'json'"
            )
        if not NAME.match(self.ocr_column):
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

    def accepted_kinds(self) -> list[str]:
        """The ``content_types`` given, or the default: ``json`` for a table using JMESPath, else ``html``."""
        if self.content_types is not None:
            return self.content_types
        if self.rows_jmespath is not None or any(
            f.jmespath is not None for f in self.fields.values()
        ):
            return ["json"]
        return ["html"]

    def accepts(self, media: str) -> bool:
        """Whether a capture of media type ``media`` (lower case, no parameters) feeds the table."""
        kinds = self.accepted_kinds()
        return media in kinds or content_kind(media) in kinds

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


class RuleParse(_Model):
    """``[parse.rules.NAME]``: how the pages of one crawl rule are read, for every table."""

    source: Literal["auto", "response", "rendered"] = "auto"
    """As a table's ``source``; a table's own setting other than ``auto`` wins."""
    encoding: str | None = None
    """Decode the rule's captures with this charset (a table's own ``encoding`` wins)."""

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, v: str | None) -> str | None:
        return None if v is None else check_encoding(v)


class ParseSpec(_Model):
    """The whole ``[parse]`` section."""

    tables: dict[str, TableSpec] = Field(default_factory=dict)
    rules: dict[str, RuleParse] = Field(default_factory=dict)
    """Per crawl rule (by name): ``source`` and ``encoding``."""
    out: str = "shoal-data/{name}/tables"
    """Default output folder of files and of the quality report (``{name}`` = the crawl)."""
    to: Literal["parquet", "csv", "jsonl", "sql"] = "parquet"
    sql_prefix: str = "{name}_"
    """Prefix of SQL table names (``{name}`` = the crawl): crawls sharing a database do not collide."""
    max_missing: float = Field(default=0.0, ge=0, le=1)
    """Default share of rows a required field may miss before ``shoal parse`` fails."""
    processes: int = Field(default=0, ge=0, le=256)
    """Worker processes; 0 = one per CPU."""
    max_empty: float = Field(default=0.5, ge=0, le=1)
    """Default share of a table's pages that may give 0 rows before ``shoal parse`` fails."""
    max_replacement: float = Field(default=0.001, ge=0, le=1)
    """Default share of the characters of a table's text columns that may be U+FFFD (undecodable bytes)."""

    @field_validator("tables")
    @classmethod
    def _table_names(cls, v: dict[str, TableSpec]) -> dict[str, TableSpec]:
        for name in v:
            if not NAME.match(name):
                raise ValueError(
                    f"table name {name!r} must be letters, digits and _ (not starting with a digit)"
                )
        return v

    def empty_threshold(self, table: str) -> float:
        """The share of ``table``'s pages that may give no row."""
        t = self.tables[table].max_empty
        return t if t is not None else self.max_empty

    def replacement_threshold(self, table: str) -> float:
        """The share of characters of ``table``'s text columns that may be U+FFFD."""
        t = self.tables[table].max_replacement
        return t if t is not None else self.max_replacement

    def threshold(self, table: str, field: str) -> float:
        """The share of rows ``field`` of ``table`` may be missing on."""
        t = self.tables[table]
        f = t.fields[field]
        if f.max_missing is not None:
            return f.max_missing
        return t.max_missing if t.max_missing is not None else self.max_missing
