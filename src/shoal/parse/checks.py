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


def check_css(css: str) -> str:
    """``css`` if it compiles as a CSS selector in parsel's dialect (``::text``, ``::attr(x)``)."""
    from parsel.csstranslator import HTMLTranslator

    try:
        HTMLTranslator().css_to_xpath(css)
    except Exception as exc:  # cssselect raises SelectorSyntaxError / ExpressionError
        raise ValueError(f"not a valid CSS selector: {exc}") from None
    return css


def check_xpath(xpath: str) -> str:
    """``xpath`` if it compiles as an XPath 1.0 expression in lxml."""
    from lxml import etree

    try:
        etree.XPath(xpath)
    except etree.XPathSyntaxError as exc:
        raise ValueError(f"not a valid XPath expression: {exc}") from None
    return xpath


def check_regex(regex: str) -> str:
    """``regex`` if it compiles in :mod:`re`."""
    try:
        re.compile(regex)
    except re.error as exc:
        raise ValueError(f"regex does not compile: {exc}") from None
    return regex


def check_jmespath(expr: str) -> str:
    """``expr`` if it compiles as a JMESPath expression."""
    try:
        jmespath.compile(expr)
    except jmespath.exceptions.JMESPathError as exc:
        raise ValueError(f"not a valid JMESPath expression: {exc}") from None
    return expr


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
