"""What a selected element gives: its text (the same rules on the lxml and the lexbor tree), casts, main text, language.

:func:`element_text` (lxml, for parsel selections) and :func:`lexbor_text`
(selectolax, for tables whose selectors are all plain CSS) turn an element
into text by one rule: block elements become line breaks, table cells
spaces, inline markup nothing (``<b>서울</b>시`` is ``서울시``), scripts and
styles are left out, runs of whitespace collapse; the tests compare both on
every element of the demo pages. :func:`cast_value` converts a value to a
field's type (``12,000원`` → 12000) or raises
:class:`~shoal.errors.CastError`. :func:`main_text` runs trafilatura in its
fast mode, :func:`detect_language` py3langid on a bounded sample.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from selectolax.lexbor import LexborHTMLParser, LexborNode

from shoal.errors import CastError

__all__ = [
    "BLOCK_TAGS",
    "CELL_TAGS",
    "LANGUAGE_SAMPLE",
    "SKIP_TAGS",
    "cast_value",
    "detect_language",
    "element_text",
    "is_missing",
    "lexbor_can",
    "lexbor_text",
    "main_text",
    "normalize_text",
]

BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "body", "br", "caption", "dd", "details", "dialog", "div",
    "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
    "header", "hr", "html", "legend", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table",
    "tbody", "tfoot", "thead", "tr", "ul",
})  # fmt: skip
CELL_TAGS = frozenset({"td", "th"})
SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "head"})


def normalize_text(text: str) -> str:
    """Runs of whitespace collapsed to one space, lines stripped, blank lines dropped."""
    if "\u200b" in text:
        text = text.replace("\u200b", " ")
    if "\n" not in text:  # one line (a name, a link, a cell): the common case
        return " ".join(text.split())
    out = []
    for line in text.split("\n"):
        if not line:
            continue
        # A printable line holds no whitespace but " " (every other kind is a separator or a
        # control character): without doubled or edge spaces it is already normal.
        if line.isprintable() and "  " not in line and line[0] != " " and line[-1] != " ":
            out.append(line)
        elif not line.isspace():
            out.append(" ".join(line.split()))
    return "\n".join(out)


def element_text(el: Any) -> str:
    """The visible text of an lxml element: block elements become line breaks, cells spaces.

    Inline markup adds nothing (``<b>서울</b>시`` is ``서울시``); scripts and
    styles are left out; the element's own tail is not part of it.
    """
    parts: list[str] = []

    def walk(e: Any) -> None:
        tag = e.tag if isinstance(e.tag, str) else None
        if tag is not None:
            tag = tag.lower()
            if tag in SKIP_TAGS:
                return
            sep = "\n" if tag in BLOCK_TAGS else " " if tag in CELL_TAGS else ""
            parts.append(sep)
            if e.text:
                parts.append(e.text)
        for child in e:
            walk(child)
            if child.tail:
                parts.append(child.tail)
        if tag is not None:
            parts.append(sep)

    walk(el)
    return normalize_text("".join(parts))


def lexbor_text(node: LexborNode) -> str:
    """:func:`element_text` for a selectolax (lexbor) node: the same rules, the same result."""
    child = node.child
    if child is not None and child.next is None and child.tag == "-text":
        # One text child (a link, a cell, a name): nothing to walk.
        tag = node.tag
        if tag is not None and tag not in SKIP_TAGS:
            return normalize_text(child.text_content or "")
    parts: list[str] = []
    _lexbor_walk(node, parts)
    return normalize_text("".join(parts))


def _lexbor_walk(node: LexborNode, parts: list[str]) -> None:
    tag = node.tag
    if tag == "-text":
        parts.append(node.text_content or "")
        return
    if tag is None or tag[0] == "-" or tag in SKIP_TAGS:  # comments, doctype
        return
    sep = "\n" if tag in BLOCK_TAGS else " " if tag in CELL_TAGS else ""
    if sep:
        parts.append(sep)
    child = node.child
    while child is not None:
        _lexbor_walk(child, parts)
        child = child.next
    if sep:
        parts.append(sep)


_PROBE = LexborHTMLParser("<p></p>")


def lexbor_can(css: str) -> bool:
    """Whether lexbor (selectolax) runs this CSS selector (parsel/cssselect extensions it does not)."""
    if "::" in css or ":contains(" in css:
        return False
    try:
        _PROBE.css(css)
    except Exception:  # selectolax raises SelectolaxError (a ValueError subclass in some versions)
        return False
    return True


def is_missing(value: Any) -> bool:
    """True for None, empty or blank strings and empty lists: what a required field must not be."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple)):
        return len(value) == 0
    return False


_INT = re.compile(r"[-+]?\d+")
_FLOAT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_THOUSANDS = re.compile(r"(?<=\d)[,_ '\u00a0\u202f](?=\d{3}(?!\d))")
_TRUE = frozenset({"true", "yes", "y", "1", "on", "t", "예", "네", "참"})
_FALSE = frozenset({"false", "no", "n", "0", "off", "f", "아니오", "아니요", "거짓"})


def cast_value(value: Any, type_: str, date_format: str | None = None) -> Any:
    """Convert one extracted value to ``type_``; raises CastError when it does not convert.

    Numbers lose their thousands separators (``12,000원`` → 12000) and the first
    number in the text is taken; dates use ``date_format`` (``strptime``) or ISO 8601.
    """
    if value is None or type_ == "str":
        return value if value is None or isinstance(value, str) else str(value)
    if isinstance(value, bool) and type_ == "bool":
        return value
    if (
        type_ in ("int", "float")
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    ):
        return int(value) if type_ == "int" else float(value)
    text = str(value).strip()
    if type_ == "int":
        m = _INT.search(_THOUSANDS.sub("", text))
        if m is None:
            raise CastError(f"no integer in {text[:60]!r}")
        return int(m.group(0))
    if type_ == "float":
        m = _FLOAT.search(_THOUSANDS.sub("", text))
        if m is None:
            raise CastError(f"no number in {text[:60]!r}")
        return float(m.group(0))
    if type_ == "bool":
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise CastError(f"not a yes/no value: {text[:60]!r}")
    if type_ in ("date", "datetime"):
        try:
            dt = datetime.strptime(text, date_format) if date_format else _iso(text)
        except ValueError as exc:
            raise CastError(
                f"not a date ({date_format or 'ISO 8601'}): {text[:60]!r}: {exc}"
            ) from None
        return dt.date() if type_ == "date" else dt
    raise CastError(f"unknown type {type_!r}")  # pragma: no cover - the spec forbids it


def _iso(text: str) -> datetime:
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), datetime.min.time())
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def main_text(html: str | Any, url: str | None = None, *, fast: bool = True) -> str | None:
    """The main text of a page (trafilatura: boilerplate, navigation and footers removed), or None.

    ``html`` is the page's text or an lxml tree (which trafilatura changes:
    pass a copy). ``fast`` skips trafilatura's second-opinion extractors
    (readability and justext), which on ordinary article pages give the same
    text at several times the cost (the tests compare both on the demo pages).
    """
    import trafilatura

    text = trafilatura.extract(
        html,
        url=url,
        fast=fast,
        include_comments=False,
        include_tables=True,
        include_images=False,
        include_links=False,
        deduplicate=False,
        with_metadata=False,
        output_format="txt",
    )
    if not text:
        return None
    return normalize_text(str(text)) or None


_HANGUL = re.compile(r"[\uac00-\ud7a3]")
LANGUAGE_SAMPLE = 1000
"""Characters of the text the language is detected on (more costs time and changes nothing)."""


def detect_language(text: str | None, declared: str | None = None) -> str | None:
    """ISO 639-1 code of ``text`` (py3langid); falls back to the page's declared ``lang`` on short text."""
    sample = (text or "").strip()
    if len(sample) >= 20:
        try:
            import py3langid
        except ImportError:  # pragma: no cover - py3langid is in shoal[parse]
            py3langid = None
        if py3langid is not None:
            code, _score = py3langid.classify(sample[:LANGUAGE_SAMPLE])
            return str(code)
        if len(_HANGUL.findall(sample)) > len(sample) / 5:
            return "ko"
    if declared:
        return declared.split("-")[0].strip().lower() or None
    return None
