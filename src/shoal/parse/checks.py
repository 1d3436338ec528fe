"""Checks of the strings a ``[parse]`` section holds, each by the engine that will run it.

CSS selectors compile in parsel's translator (cssselect), XPath in lxml,
regexes in :mod:`re`, JMESPath in :mod:`jmespath`; a charset label is a WHATWG
label or a Python codec; a function reference looks like ``module:function``
(whether it imports is :func:`shoal.parse.section.load_function`'s business).
Each check returns its argument or raises :class:`ValueError` saying what is
wrong; the pydantic validators of :mod:`shoal.parse.config` call them, so the
error reaches the user under the key's full path.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable

import jmespath
import jmespath.exceptions

from shoal.content.encodings import lookup_label

__all__ = [
    "NAME",
    "check_css",
    "check_encoding",
    "check_function",
    "check_jmespath",
    "check_regex",
    "check_xpath",
]

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")
"""A table, field or column name: letters, digits and ``_``, not starting with a digit."""

_FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _compiles(
    text: str,
    compile_: Callable[[str], object],
    errors: type[Exception] | tuple[type[Exception], ...],
    what: str,
) -> str:
    """``text`` if ``compile_`` takes it; its error (one of ``errors``) as ValueError led by ``what``."""
    try:
        compile_(text)
    except errors as exc:
        raise ValueError(f"{what}: {exc}") from None
    return text


def check_css(css: str) -> str:
    """``css`` if it compiles as a CSS selector in parsel's dialect (``::text``, ``::attr(x)``)."""
    from parsel.csstranslator import HTMLTranslator

    # cssselect raises SelectorSyntaxError / ExpressionError
    return _compiles(css, HTMLTranslator().css_to_xpath, Exception, "not a valid CSS selector")


def check_xpath(xpath: str) -> str:
    """``xpath`` if it compiles as an XPath 1.0 expression in lxml."""
    from lxml import etree

    return _compiles(xpath, etree.XPath, etree.XPathSyntaxError, "not a valid XPath expression")


def check_regex(regex: str) -> str:
    """``regex`` if it compiles in :mod:`re`."""
    return _compiles(regex, re.compile, re.error, "regex does not compile")


def check_jmespath(expr: str) -> str:
    """``expr`` if it compiles as a JMESPath expression."""
    return _compiles(
        expr,
        jmespath.compile,
        jmespath.exceptions.JMESPathError,
        "not a valid JMESPath expression",
    )


def check_encoding(label: str) -> str:
    """``label`` if it names a charset: a WHATWG label, else a Python codec."""
    if lookup_label(label) is None:
        try:
            codecs.lookup(label)
        except LookupError:
            raise ValueError(
                f"unknown encoding {label!r}: use a WHATWG label such as 'utf-8', 'euc-kr', 'shift_jis'"
            ) from None
    return label


def check_function(ref: str) -> str:
    """``ref`` if it has the form ``module:function`` (dotted names allowed on both sides)."""
    if not _FUNCTION.match(ref):
        raise ValueError("expected 'module:function', e.g. 'mypkg.fields:summary'")
    return ref
