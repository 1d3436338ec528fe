"""Page → rows: selectors (CSS and XPath through parsel, JMESPath), built-in columns, casts, user functions.

A :class:`Page` is one archived capture, decoded: its URLs, fetch time,
status, headers and text (HTML, XML or JSON), with lazily built views, each
built once per page and shared by every field of every table: a lexbor tree
(selectolax: CSS fields, title, images, language sample), an lxml tree
(parsel: XPath, parsel's ``::text``/``::attr()``, user functions, frames),
the parsed JSON, the main text through trafilatura (its fast mode), the
language through py3langid on a bounded sample. A table whose fields are all
plain CSS never builds the lxml tree; both trees give the same text. A rendered
capture's frames are grafted into their ``<iframe>`` elements, so selectors
reach into them. A :class:`TableExtractor` turns a page into the rows of one
table and says which required fields were missing and which values did not
cast; it never raises for a bad page, it reports it. The text and value
rules (element text on both trees, casts, main text, language) are in
:mod:`shoal.parse.values`.

User functions (``module:function``) receive the :class:`Page`. A field
function returns the field's value; a table function returns a dict (one
row, merged over the declared columns), a list of dicts (one row each), or
None (no row). In a table with a ``rows`` selector both are called once per
row element, which they find in ``page.row``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jmespath
from lxml import html as lxml_html
from parsel import Selector
from selectolax.lexbor import LexborHTMLParser, LexborNode

from shoal.errors import CastError
from shoal.parse.config import FieldSpec, TableSpec
from shoal.parse.section import load_function
from shoal.parse.values import (
    LANGUAGE_SAMPLE,
    cast_value,
    detect_language,
    element_text,
    is_missing,
    lexbor_can,
    lexbor_text,
    main_text,
)
from shoal.urls import resolve

if TYPE_CHECKING:
    from parsel import SelectorList

__all__ = [
    "ExtractResult",
    "ImageReader",
    "Page",
    "TableExtractor",
    "fetched_datetime",
]


@dataclass
class Page:
    """One archived capture, decoded, as extractors and user functions see it."""

    url: str
    """The URL as the frontier knows it (canonical)."""
    final_url: str
    """Where the content came from (after redirects followed within the fetch)."""
    fetched_at: datetime | None
    http_status: int | None
    content_type: str | None
    headers: list[tuple[str, str]]
    body: bytes
    """The response body, content-decoded (gzip/br removed) but not charset-decoded."""
    text: str
    """The body decoded to text (charset from header, BOM, meta or detection)."""
    encoding: str
    """The charset used, with the reason when it is not what the page declared."""
    rule: str | None = None
    kind: str = "detail"
    url_id: int | None = None
    warc_record_id: str | None = None
    row: Any = None
    """The current row in tables with rows: a parsel selector (a selectolax node in all-CSS
    tables, which have no functions), or a JSON value for ``rows_jmespath``."""
    doc_type: str = "html"
    """``html``, ``xml`` or ``json``: how the text is parsed."""
    source: str = "response"
    """``response`` (the HTTP body) or ``rendered`` (the browser's DOM)."""
    frames: list[tuple[str, str]] = field(default_factory=list)
    """A rendered page's frames: (frame URL, its DOM); grafted into the matching ``<iframe>``."""

    @cached_property
    def selector(self) -> Selector:
        """The page as a parsel selector (CSS and XPath): one tree, shared by every field and table."""
        if self.doc_type == "xml":
            return Selector(text=_strip_xml_declaration(self.text) or "<empty/>", type="xml")
        if self.doc_type == "json":
            return Selector(text="<html></html>", type="html")
        if self.frames:
            return Selector(root=self._grafted(), type="html", base_url=self.final_url)
        return Selector(text=self.text or "<html></html>", type="html", base_url=self.final_url)

    def _grafted(self) -> Any:
        """The main DOM with each frame's body moved into its ``<iframe>`` (by URL, else a trailing div)."""
        root = lxml_html.document_fromstring(self.text or "<html></html>")
        frames = {url: doc for url, doc in self.frames}
        for iframe in root.iter("iframe", "frame"):
            src = (iframe.get("src") or "").strip()
            try:
                url = str(resolve(src, self.final_url).href) if src else None
            except ValueError:
                url = None
            doc = frames.pop(url, None) if url else None
            if doc is not None:
                _graft(iframe, doc)
        body = root.find("body")
        for url, doc in frames.items():
            holder = lxml_html.Element("div", {"data-shoal-frame": url})
            _graft(holder, doc)
            (body if body is not None else root).append(holder)
        return root

    @cached_property
    def lexbor(self) -> LexborHTMLParser:
        """The HTML page as a selectolax (lexbor) tree: CSS fields and the built-in columns use it."""
        return LexborHTMLParser(self.text or "<html></html>")

    @cached_property
    def data(self) -> Any:
        """The JSON value of a JSON capture (None for other types); ValueError when it is not JSON."""
        if self.doc_type != "json":
            return None
        return json.loads(self.text)

    def css(self, query: str) -> SelectorList[Selector]:
        """Elements matching a CSS selector (parsel: ``::text`` and ``::attr(x)`` work)."""
        return self.selector.css(query)

    def xpath(self, query: str) -> SelectorList[Selector]:
        """Nodes matching an XPath expression."""
        return self.selector.xpath(query)

    def header(self, name: str) -> str | None:
        """The first response header of that name (case-insensitive), or None."""
        low = name.lower()
        return next((v for k, v in self.headers if k.lower() == low), None)

    @cached_property
    def base_url(self) -> str:
        """What relative links resolve against: ``<base href>`` if any, else the final URL."""
        base = self.lexbor.css_first("base[href]") if self.doc_type == "html" else None
        href = base.attributes.get("href") if base is not None else None
        if href:
            try:
                return str(resolve(href.strip(), self.final_url).href)
            except ValueError:
                pass
        return self.final_url

    def absolute(self, href: str) -> str | None:
        """``href`` resolved against the page, or None when it is not a valid http(s) URL."""
        try:
            u = resolve(href.strip(), self.base_url)
        except ValueError:
            return None
        return str(u.href) if u.protocol in ("http:", "https:") else None

    @cached_property
    def title(self) -> str | None:
        """The text of ``<title>`` (in XML the first ``title`` element of any namespace), or None."""
        if self.doc_type == "json":
            return None
        if self.doc_type == "html":
            node = self.lexbor.css_first("title")
            return (lexbor_text(node) or None) if node is not None else None
        nodes = self.selector.xpath("(//*[local-name()='title'])[1]")
        if not nodes:
            return None
        return element_text(nodes[0].root) or None

    @cached_property
    def main_text(self) -> str | None:
        """The main text of an HTML page (trafilatura, fast mode; on a copy of the lxml tree if built), or None."""
        if self.doc_type != "html" or not self.text:
            return None
        if "selector" in self.__dict__:  # the lxml tree exists: a copy is cheaper than a parse
            from copy import deepcopy

            return main_text(deepcopy(self.selector.root), self.final_url)
        return main_text(self.text, self.final_url)

    @cached_property
    def declared_language(self) -> str | None:
        """The ``lang`` attribute of ``<html>``, if any."""
        if self.doc_type != "html":
            return None
        root = self.lexbor.root
        lang = root.attributes.get("lang") if root is not None and root.tag == "html" else None
        return lang.strip() if lang and lang.strip() else None

    @cached_property
    def language(self) -> str | None:
        """The language of the main text (py3langid, on its first characters), else the declared one."""
        if self.doc_type == "json":
            return None
        text = self.main_text
        if not text and self.doc_type == "html":
            node = self.lexbor.body
            text = lexbor_text(node)[: LANGUAGE_SAMPLE * 2] if node is not None else None
        elif not text:
            root = self.selector.xpath("/*")
            text = element_text(root[0].root)[: LANGUAGE_SAMPLE * 2] if root else None
        return detect_language(text, self.declared_language)

    @cached_property
    def images(self) -> list[str]:
        """Absolute URLs of the page's ``<img src>``, in order, without repeats."""
        if self.doc_type != "html":
            return []
        seen: dict[str, None] = {}
        for img in self.lexbor.css("img[src]"):
            src = img.attributes.get("src") or ""
            if src.strip().startswith("data:"):
                continue
            u = self.absolute(src)
            if u is not None:
                seen.setdefault(u, None)
        return list(seen)

    def builtin(self, name: str) -> Any:
        """The value of a built-in column (see :data:`shoal.parse.config.BUILTINS`)."""
        match name:
            case "url":
                return self.url
            case "final_url":
                return self.final_url
            case "fetched_at":
                return self.fetched_at
            case "http_status":
                return self.http_status
            case "title":
                return self.title
            case "main_text":
                return self.main_text
            case "language":
                return self.language
            case "images":
                return self.images
            case "content_type":
                return self.content_type
            case "encoding":
                return self.encoding
            case "rule":
                return self.rule
            case "warc_record_id":
                return self.warc_record_id
            case "html":
                return self.text
        raise KeyError(name)


_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


def _strip_xml_declaration(text: str) -> str:
    """XML text without its declaration: the text is decoded already, its ``encoding=`` no longer true."""
    return _XML_DECLARATION.sub("", text, count=1)


def _graft(holder: Any, doc: str) -> None:
    """Move the children of ``doc``'s body (parsed as HTML) into ``holder``."""
    if not doc.strip():
        return
    frame_root = lxml_html.document_fromstring(doc)
    body = frame_root.find("body")
    for child in list(body if body is not None else frame_root):
        holder.append(child)


def fetched_datetime(ms: int | None) -> datetime | None:
    """A frontier time (ms since the epoch) as an aware UTC datetime."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


@dataclass
class ExtractResult:
    """The rows one page gave one table, and what went wrong on the way."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    """Required fields missing, once per row that misses them."""
    cast_errors: Counter[str] = field(default_factory=Counter)
    cast_samples: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    """Why the page gave no rows at all (an exception in a selector or a user function)."""


ImageReader = Callable[[str], str | None]
"""An absolute image URL → its OCR text ('' when unreadable), or None when the image is not archived."""


class TableExtractor:
    """Turns pages into the rows of one table, following its :class:`TableSpec`."""

    def __init__(
        self,
        name: str,
        spec: TableSpec,
        *,
        image_reader: ImageReader | None = None,
        base: str | Path | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.image_reader = image_reader
        self.field_functions: dict[str, Callable[..., Any]] = {
            n: load_function(f.function, f"parse.tables.{name}.fields.{n}.function", base)
            for n, f in spec.fields.items()
            if f.function is not None
        }
        self.table_function = (
            load_function(spec.function, f"parse.tables.{name}.function", base)
            if spec.function is not None
            else None
        )
        self.jmespaths = {
            n: jmespath.compile(f.jmespath)
            for n, f in spec.fields.items()
            if f.jmespath is not None
        }
        self.rows_jmespath = (
            jmespath.compile(spec.rows_jmespath) if spec.rows_jmespath is not None else None
        )
        self.namespaces = dict(spec.namespaces) or None
        self.fast = (
            spec.function is None
            and all(f.css is not None and lexbor_can(f.css) for f in spec.fields.values())
            and spec.rows_xpath is None
            and spec.rows_jmespath is None
            and (spec.rows is None or lexbor_can(spec.rows))
        )
        """Every selector is CSS that lexbor runs: HTML pages are read with lexbor alone (no lxml tree).

        cssselect's ``:contains()`` and parsel's ``::text``/``::attr()`` are not
        lexbor's: a table using them reads pages through parsel, as do XPath,
        JMESPath and function tables."""
        self.required = spec.required_fields()
        self.ocr_stats: Counter[str] = Counter()

    # -- one field -------------------------------------------------------

    def _json_values(self, name: str, f: FieldSpec, scope: Any, page: Page) -> list[Any]:
        found = self.jmespaths[name].search(page.data if scope is None else scope)
        items = found if isinstance(found, list) else [] if found is None else [found]
        if not f.all:
            items = items[:1]
        as_text = f.type == "str"
        return [
            v
            if isinstance(v, str)
            else json.dumps(v, ensure_ascii=False)
            if as_text or isinstance(v, (dict, list))
            else v
            for v in items
            if v is not None
        ]

    def _raw_values(self, f: FieldSpec, scope: Selector, page: Page) -> list[str]:
        nodes = (
            scope.css(f.css)
            if f.css is not None
            else scope.xpath(f.xpath or "", namespaces=self.namespaces)
        )
        if not f.all:
            nodes = nodes[:1]
        values: list[str] = []
        mode = f.mode
        for node in nodes:
            root = node.root
            if isinstance(root, str):  # a text or attribute node (XPath, ::text, ::attr)
                values.append(root.strip() if mode == "text" else root)
                continue
            if isinstance(root, (int, float, bool)):  # XPath count(), boolean()
                values.append(str(root))
                continue
            if mode == "text":
                values.append(element_text(root))
            elif mode == "attr":
                v = root.get(f.attr or "")
                if v is not None:
                    values.append(v.strip())
            elif mode == "html":
                values.append(node.get())
            else:  # inner_html
                inner = (root.text or "") + "".join(
                    lxml_html.tostring(c, encoding="unicode") for c in root
                )
                values.append(inner)
        return values

    def _lexbor_values(self, f: FieldSpec, scope: Any) -> list[str]:
        if f.all:
            nodes = scope.css(f.css)
        else:
            first = scope.css_first(f.css)
            nodes = [] if first is None else [first]
        mode = f.mode
        values: list[str] = []
        for node in nodes:
            if mode == "text":
                values.append(lexbor_text(node))
            elif mode == "attr":
                v = node.attributes.get(f.attr or "")
                if v is not None:
                    values.append(v.strip())
            elif mode == "html":
                values.append(node.html or "")
            else:
                values.append(node.inner_html or "")
        return values

    def _post(self, f: FieldSpec, values: list[Any], page: Page) -> list[Any]:
        if f.regex is not None:
            pattern = re.compile(f.regex)
            out = []
            for v in values:
                m = pattern.search(v if isinstance(v, str) else str(v))
                if m is not None:
                    out.append(m.group(1) if pattern.groups else m.group(0))
            values = out
        if f.absolute:
            values = [u for u in (page.absolute(v) for v in values) if u is not None]
        return values

    def _cast(self, name: str, f: FieldSpec, value: Any, result: ExtractResult) -> Any:
        try:
            return cast_value(value, f.type, f.date_format)
        except CastError:
            result.cast_errors[name] += 1
            samples = result.cast_samples.setdefault(name, [])
            if len(samples) < 5:
                samples.append(str(value)[:200])
            return None

    def field_value(
        self, name: str, f: FieldSpec, scope: Any, page: Page, result: ExtractResult
    ) -> Any:
        """The value of one field on one page (or row element)."""
        fn = self.field_functions.get(name)
        if fn is not None:
            value = fn(page)
            if f.type != "str" and not isinstance(value, list):
                value = self._cast(name, f, value, result)
            return value if not is_missing(value) else f.default
        if f.jmespath is not None:
            raw = self._json_values(name, f, page.row if self.rows_jmespath else None, page)
        elif isinstance(scope, (LexborHTMLParser, LexborNode)):
            raw = self._lexbor_values(f, scope)
        else:
            raw = self._raw_values(f, scope, page)
        values = self._post(f, raw, page)
        if f.all:
            cast = (
                [self._cast(name, f, v, result) for v in values]
                if f.type != "str"
                else list(values)
            )
            cast = [v for v in cast if v is not None]
            if f.join is not None:
                joined = f.join.join(str(v) for v in cast)
                return joined if joined else f.default
            return cast if cast or f.default is None else [f.default]
        if not values or values[0] == "":
            return None if f.default is None else self._cast(name, f, f.default, result)
        return self._cast(name, f, values[0], result)

    # -- OCR -------------------------------------------------------------

    def _ocr(self, page: Page) -> str | None:
        if self.spec.ocr is None or self.image_reader is None:
            return None
        texts: list[str] = []
        found = False
        if page.doc_type == "html" and lexbor_can(self.spec.ocr):
            nodes = page.lexbor.css(self.spec.ocr)
            sources = [n.attributes.get("src") or "" for n in nodes if "src" in n.attributes]
        else:  # XML, or a selector only parsel runs
            sources = page.css(self.spec.ocr).xpath("@src").getall()
        for src in sources:
            url = page.absolute(src)
            if url is None:
                continue
            self.ocr_stats["images"] += 1
            text = self.image_reader(url)
            if text is None:
                self.ocr_stats["not_archived"] += 1
                continue
            found = True
            if text:
                self.ocr_stats["read"] += 1
                texts.append(text)
            else:
                self.ocr_stats["no_text"] += 1
        if not found:
            return None
        return "\n".join(texts)

    # -- one page --------------------------------------------------------

    def _scopes(self, page: Page) -> list[Any]:
        if self.fast and page.doc_type == "html" and not page.frames:
            tree = page.lexbor
            return list(tree.css(self.spec.rows)) if self.spec.rows is not None else [tree]
        if self.spec.rows is not None:
            return list(page.css(self.spec.rows))
        if self.spec.rows_xpath is not None:
            return list(page.selector.xpath(self.spec.rows_xpath, namespaces=self.namespaces))
        if self.rows_jmespath is not None:
            found = self.rows_jmespath.search(page.data)
            return found if isinstance(found, list) else [] if found is None else [found]
        return [None]

    def extract(self, page: Page) -> ExtractResult:
        """The rows of ``page`` for this table; an exception becomes ``result.error``, never a raise."""
        result = ExtractResult()
        try:
            self._extract(page, result)
        except Exception as exc:
            result.rows = []
            result.missing = []
            result.error = f"{type(exc).__name__}: {exc}"[:500]
        finally:
            page.row = None
        return result

    def _extract(self, page: Page, result: ExtractResult) -> None:
        spec = self.spec
        base: dict[str, Any] = {b: page.builtin(b) for b in spec.builtins}
        if spec.ocr is not None:
            base[spec.ocr_column] = self._ocr(page)
        for scope in self._scopes(page):
            page.row = scope if not isinstance(scope, LexborHTMLParser) else None
            row = dict(base)
            context = (
                scope
                if isinstance(scope, (Selector, LexborHTMLParser, LexborNode))
                else page.selector
            )
            for name, f in spec.fields.items():
                row[name] = self.field_value(name, f, context, page, result)
            rows = [row]
            if self.table_function is not None:
                got = self.table_function(page)
                if got is None:
                    rows = []
                elif isinstance(got, dict):
                    rows = [{**row, **got}]
                elif isinstance(got, Iterable) and not isinstance(got, (str, bytes)):
                    rows = []
                    for item in got:
                        if not isinstance(item, dict):
                            raise TypeError(
                                f"{spec.function} returned a list holding {type(item).__name__}, not dicts"
                            )
                        rows.append({**row, **item})
                else:
                    raise TypeError(
                        f"{spec.function} returned {type(got).__name__}, not a dict, a list of dicts or None"
                    )
            for r in rows:
                for name in self.required:
                    if is_missing(r.get(name)):
                        result.missing.append(name)
                result.rows.append(r)
