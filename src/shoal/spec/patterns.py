"""URL patterns and CSS selectors of a spec, each checked by the engine that runs it.

- A rule's ``regex`` compiles in RE2 (:func:`compile_regex`), whose matching time
  is linear in the URL's length; the constructs RE2 refuses are named in the error.
- ``follow`` and ``images`` selectors compile in cssselect and in lexbor
  (:func:`check_link_css`); ``wait_for`` and ``click`` are standard CSS, which
  Chromium runs (:func:`check_browser_css`).
- A failed check raises :class:`ValueError` with the selector or pattern and what
  to write instead; pydantic turns it into the spec error for its key.
"""

from __future__ import annotations

import re
from typing import Protocol, cast

import re2

__all__ = ["UrlPattern", "check_browser_css", "check_link_css", "compile_regex", "lexbor_css"]


class UrlPattern(Protocol):
    """What a compiled URL pattern offers (both :mod:`re` and RE2 patterns do)."""

    def search(self, text: str) -> object | None: ...
    def match(self, text: str) -> object | None: ...


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False

# Constructs RE2 refuses, recognised in the pattern so the error can name them.
_UNSUPPORTED = (
    (re.compile(r"\\[1-9]|\(\?P="), "a back-reference (\\1, (?P=name))"),
    (re.compile(r"\(\?<?[=!]"), "a lookaround ((?=...), (?!...), (?<=...), (?<!...))"),
    (re.compile(r"\(\?>"), "an atomic group ((?>...))"),
    (re.compile(r"[*+?}][+]"), "a possessive quantifier (*+, ++, ?+)"),
    (re.compile(r"\\Z"), "\\Z (write \\z or $ instead)"),
)


def compile_regex(pattern: str) -> UrlPattern:
    """Compile a spec regex with RE2, whose matching time is linear in the URL's length.

    A rule's regex runs on every link a crawl meets, so a backtracking engine would
    let one pattern such as ``(a+)+$`` and one long URL hang a worker. RE2 refuses
    the few constructs that need backtracking; the :class:`ValueError` raised then
    names the construct and how to do without it.
    """
    try:
        return cast(UrlPattern, re2.compile(pattern, _RE2_OPTIONS))
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        for probe, construct in _UNSUPPORTED:
            if probe.search(pattern):
                raise ValueError(
                    f"regex {pattern!r} uses {construct}, which shoal's linear-time regex engine"
                    f" (RE2) does not support ({detail}); rewrite the pattern without it"
                ) from None
        raise ValueError(f"regex {pattern!r} does not compile: {detail}") from None


_CONTAINS = re.compile(r":contains\(")


def lexbor_css(selector: str) -> str:
    """A selector of the spec's CSS dialect as the link extractor's engine (lexbor) reads it.

    The dialect is that of cssselect (what ``[parse]`` fields use through parsel):
    standard CSS plus ``:contains("text")``, which lexbor spells ``:lexbor-contains``.
    """
    return selector.replace(":contains(", ":lexbor-contains(")


def check_link_css(selector: str) -> None:
    """Raise :class:`ValueError` unless ``selector`` works for ``follow`` and ``images``.

    It must compile in cssselect (the dialect shared with ``[parse]`` fields) and in
    lexbor (the engine that runs it on every crawled page), so a selector that
    works in a field works in ``follow`` and the other way round.
    """
    from cssselect import HTMLTranslator, SelectorError
    from selectolax.lexbor import LexborHTMLParser, SelectolaxError

    if not selector.strip():
        raise ValueError("an empty CSS selector")
    try:
        HTMLTranslator().css_to_xpath(selector)
    except SelectorError as exc:
        raise ValueError(f"CSS selector {selector!r} does not compile: {exc}") from None
    try:
        LexborHTMLParser("<p></p>").css(lexbor_css(selector))
    except SelectolaxError:
        raise ValueError(
            f"CSS selector {selector!r} uses syntax the link extractor (lexbor) does not support;"
            ' use standard CSS (plus :contains("text"))'
        ) from None


def check_browser_css(selector: str) -> None:
    """Raise :class:`ValueError` unless ``selector`` is standard CSS: Chromium runs ``wait_for`` and ``click``."""
    from selectolax.lexbor import LexborHTMLParser, SelectolaxError

    if not selector.strip():
        raise ValueError("an empty CSS selector")
    if _CONTAINS.search(selector) or "::" in selector:
        raise ValueError(
            f"CSS selector {selector!r} is not standard CSS (:contains() and ::text/::attr() are"
            " parsel extensions); wait_for and click run in the browser, which knows standard CSS only"
        )
    try:
        LexborHTMLParser("<p></p>").css(selector)
    except SelectolaxError:
        raise ValueError(f"CSS selector {selector!r} is not valid CSS") from None
