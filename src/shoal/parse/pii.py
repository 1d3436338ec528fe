"""Personal-data redaction: typed placeholders in place of e-mail addresses, phone numbers, ids, cards.

Each kind is a pattern plus, where the digits allow it, a validation, tuned so
that the ordinary numbers of Korean pages stay untouched: dates (2026-01-24,
2026.01.24), times (12:30), prices (12,000원, $129.99), counts and post ids.

====================  ===============  ==============================================
kind                  placeholder      what it matches
====================  ===============  ==============================================
``email``             ``[EMAIL]``      ``name@domain.tld``
``rrn``               ``[RRN]``        resident registration numbers ``YYMMDD-GNNNNNN`` (a
                                       valid date, G in 1-8; the separator is required:
                                       a bare 13-digit run is an EAN-13 barcode as often)
``card``              ``[CARD]``       13-19 digits, bare or in groups of 4 (Amex 4-6-5),
                                       that pass the Luhn check
``phone``             ``[PHONE]``      Korean mobile (010-1234-5678, 01012345678), landline
                                       (02-312-4567, (031) 123-4567, 070/050x/080) and
                                       international numbers starting with ``+``
``ip``                ``[IP]``         IPv4 addresses
====================  ===============  ==============================================

Kinds are applied in the order e-mail, RRN, card, phone, IP, so that a
resident number is never half-eaten as a phone number.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_KINDS",
    "KINDS",
    "PLACEHOLDERS",
    "Redactor",
    "luhn_ok",
    "redact_text",
]

PLACEHOLDERS: dict[str, str] = {
    "email": "[EMAIL]",
    "rrn": "[RRN]",
    "card": "[CARD]",
    "phone": "[PHONE]",
    "ip": "[IP]",
}
"""kind → the placeholder that replaces a match."""

KINDS: tuple[str, ...] = tuple(PLACEHOLDERS)
"""Every kind, in the order they are applied."""

DEFAULT_KINDS: tuple[str, ...] = KINDS
"""What ``redact = true`` means: every kind, ``ip`` included."""

_EMAIL = re.compile(
    r"[A-Za-z0-9](?<![\w.+-][A-Za-z0-9])[A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)

# Every number pattern starts by consuming its first character and then looks behind it: that
# character must not continue another number (a digit, or a digit and a separator before it).
# Starting with the literal lets the regex engine skip straight to candidate characters; a
# pattern that starts with a look-behind is tried at every position (ten times slower).
_START = r"(?<!\d\d)(?<!\d[-.]\d)"
_RIGHT = r"(?!\d)(?![-.]\d)"

_RRN = re.compile(r"\d" + _START + r"\d(\d{2})(\d{2})\s?[-–]\s?([1-8])\d{6}" + _RIGHT)

_CARD = re.compile(
    r"\d"
    + _START
    + r"(?:\d{3}([ -])\d{4}\1\d{4}\1\d{1,7}"  # 4-4-4-N, one kind of separator
    + r"|\d{3}([ -])\d{6}\2\d{4,5}"  # Amex / Diners 4-6-5, 4-6-4
    + r"|\d{12,18})"  # bare, 13 to 19 digits
    + _RIGHT
)

_SEP = r"[-. ]"
_ZERO = r"0(?<!\d0)(?<!\d[-.]0)"
_AREA = r"(?:2|[3-6][1-5]|70|50[2-8]|80)"
_PHONE = re.compile(
    "|".join(
        (
            # International: +CC then groups of digits, 8 to 15 digits in all (checked below).
            r"\+(?<![\w+]\+)\d{1,3}(?:[-. ]?\(?\d{1,4}\)?){2,5}" + _RIGHT,
            # Korean mobile: 010, 011, 016-019; separators optional for 010.
            _ZERO + r"1[016789]" + _SEP + r"\d{3,4}" + _SEP + r"\d{4}" + _RIGHT,
            _ZERO + r"10\d{8}" + _RIGHT,
            # Korean landline and special prefixes, separators required: 02, 031-064, 070, 050x, 080.
            _ZERO + _AREA + _SEP + r"\d{3,4}" + _SEP + r"\d{4}" + _RIGHT,
            r"\(0" + _AREA + r"\)\s?\d{3,4}" + _SEP + r"\d{4}" + _RIGHT,
        )
    )
)

_IP = re.compile(r"\d(?<![\d.]\d)\d{0,2}(?:\.\d{1,3}){3}(?!\.?\d)")

_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def luhn_ok(digits: str) -> bool:
    """True when the string of digits passes the Luhn (mod 10) check of card numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _rrn_ok(m: re.Match[str]) -> bool:
    month, day = int(m.group(1)), int(m.group(2))
    return 1 <= month <= 12 and 1 <= day <= _DAYS_IN_MONTH[month - 1]


def _card_ok(m: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", m.group(0))
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    return luhn_ok(digits)


def _phone_ok(m: re.Match[str]) -> bool:
    text = m.group(0)
    if text.startswith("+"):
        return 8 <= sum(c.isdigit() for c in text) <= 15
    return True


def _ip_ok(m: re.Match[str]) -> bool:
    return all(int(part) <= 255 for part in m.group(0).split("."))


def _always(m: re.Match[str]) -> bool:
    return True


_PATTERNS: dict[str, tuple[re.Pattern[str], Callable[[re.Match[str]], bool]]] = {
    "email": (_EMAIL, _always),
    "rrn": (_RRN, _rrn_ok),
    "card": (_CARD, _card_ok),
    "phone": (_PHONE, _phone_ok),
    "ip": (_IP, _ip_ok),
}


def redact_text(
    text: str, kinds: Iterable[str] = DEFAULT_KINDS, counts: Counter[str] | None = None
) -> str:
    """``text`` with every match of ``kinds`` replaced by its placeholder; ``counts`` gains one per match."""
    wanted = set(kinds)
    for kind in KINDS:
        if kind not in wanted:
            continue
        if kind == "email" and "@" not in text:
            continue
        pattern, valid = _PATTERNS[kind]
        placeholder = PLACEHOLDERS[kind]
        n = 0

        def sub(
            m: re.Match[str], valid: Callable[[re.Match[str]], bool] = valid, ph: str = placeholder
        ) -> str:
            nonlocal n
            if not valid(m):
                return m.group(0)
            n += 1
            return ph

        text = pattern.sub(sub, text)
        if n and counts is not None:
            counts[kind] += n
    return text


@dataclass
class Redactor:
    """Redacts the text columns of rows and counts what it replaced, per column and kind."""

    kinds: tuple[str, ...] = DEFAULT_KINDS
    columns: frozenset[str] | None = None
    """Columns to redact; None means every column holding text."""
    skip: frozenset[str] = frozenset()
    """Columns never redacted (URLs)."""

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(
                f"unknown redaction kinds {sorted(unknown)}; known: {', '.join(KINDS)}"
            )
        self.counts: dict[str, Counter[str]] = {}

    def _value(self, value: Any, counter: Counter[str]) -> Any:
        if isinstance(value, str):
            return redact_text(value, self.kinds, counter) if value else value
        if isinstance(value, list):
            return [self._value(v, counter) for v in value]
        return value

    def row(self, row: dict[str, Any]) -> dict[str, Any]:
        """Redact ``row`` in place (and return it)."""
        if not self.kinds:
            return row
        for col, value in row.items():
            if col in self.skip or (self.columns is not None and col not in self.columns):
                continue
            if not isinstance(value, (str, list)):
                continue
            counter = self.counts.setdefault(col, Counter())
            row[col] = self._value(value, counter)
        return row

    def summary(self) -> dict[str, dict[str, int]]:
        """``{column: {kind: count}}`` of every replacement made, columns with none left out."""
        return {col: dict(sorted(c.items())) for col, c in sorted(self.counts.items()) if c}
