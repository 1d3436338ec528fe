"""Decoding HTML bytes the way a browser would, fast enough for the crawl's hot path.

The order follows the HTML standard's encoding sniffing algorithm:

1. a byte order mark (UTF-8, UTF-16BE, UTF-16LE);
2. the ``charset`` parameter of the HTTP ``Content-Type`` header;
3. the meta prescan of the first 1024 bytes (``<meta charset>`` and
   ``<meta http-equiv="Content-Type" content="...; charset=...">``), then the
   same scan up to ``<body`` (64 KiB at most), which stands in for the
   parser's late "change the encoding" when a ``<meta>`` ends a long head;
4. detection, only when the bytes are not plain ASCII: valid UTF-8 first, then
   Korean (cp949) by a strict decode and its share of Hangul syllables, then
   charset-normalizer on a bounded sample;
5. windows-1252, the WHATWG default.

The WHATWG labels and their codecs are :mod:`shoal.content.encodings`.

Detection is charset-normalizer's. ``w3lib.encoding`` is not used for the
rest because it does not do the same thing: its ``html_to_unicode`` agrees
with html5lib on 43 of the 82 sniffing cases (this module: 82), its
``resolve_encoding`` maps 155 of the 228 WHATWG labels to the same codec
(:mod:`shoal.content.encodings`: 228), and its ``read_bom`` reads ``FF FE 00 00`` as UTF-32,
which the HTML standard reads as UTF-16LE.

Known differences from the WHATWG decoders: Python's windows-125x codecs turn
the few bytes they leave undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D in cp1252)
into U+FFFD where WHATWG maps them to C1 controls, and ``euc_jp`` lacks the NEC
row 13 characters (①, ㍉, ...) of WHATWG's EUC-JP.
"""

from __future__ import annotations

import codecs
import re
from typing import Final, Literal

import charset_normalizer

from shoal.content.encodings import CODECS, lookup_label

__all__ = ["Source", "bom_codec", "decode_html", "prescan", "sniff"]

Source = Literal["bom", "header", "meta", "detected", "default"]
"""Where the encoding came from, in the order they are tried."""

# --------------------------------------------------------------------------- prescan

_WS_BYTES: Final = b"\t\n\x0c\r "
_SKIP_WS: Final = re.compile(rb"[\t\n\x0c\r ]*")
_SKIP_WS_SLASH: Final = re.compile(rb"[\t\n\x0c\r /]*")
_ATTR_NAME: Final = re.compile(rb"[^\t\n\x0c\r />][^\t\n\x0c\r /=>]*")
_UNQUOTED_VALUE: Final = re.compile(rb"[^\t\n\x0c\r >]*")
_TAG_NAME: Final = re.compile(rb"[^\t\n\x0c\r >]*")
_META_START: Final = re.compile(rb"<[mM][eE][tT][aA][\t\n\x0c\r /]")
_ANY_META: Final = _META_START.search
_ASCII_LETTERS: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_UTF16: Final = frozenset({"utf-16-le", "utf-16-be"})
_CHARSET_WORD: Final = b"charset"


def _skip(pattern: re.Pattern[bytes], data: bytes, pos: int) -> int:
    """The position after what ``pattern`` (which may match nothing) matches at ``pos``."""
    m = pattern.match(data, pos)
    return pos if m is None else m.end()


class _EndOfInput(Exception):
    """The prescan ran out of bytes inside a construct: it fails."""


def _get_attribute(data: bytes, pos: int) -> tuple[bytes, bytes, int] | None:
    """The HTML standard's "get an attribute": (name, value, new position), or None at ``>``."""
    n = len(data)
    pos = _skip(_SKIP_WS_SLASH, data, pos)
    if pos >= n:
        raise _EndOfInput
    if data[pos] == 0x3E:  # '>'
        return None
    m = _ATTR_NAME.match(data, pos)
    assert m is not None  # the byte at pos is neither whitespace, '/' nor '>'
    name = m.group().lower()
    pos = m.end()
    if pos >= n:
        raise _EndOfInput
    c = data[pos]
    if c in _WS_BYTES:
        pos = _skip(_SKIP_WS, data, pos)
        if pos >= n:
            raise _EndOfInput
        c = data[pos]
    if c != 0x3D:  # not '=': an attribute without a value, position left on this byte
        return name, b"", pos
    pos = _skip(_SKIP_WS, data, pos + 1)
    if pos >= n:
        raise _EndOfInput
    c = data[pos]
    if c in (0x22, 0x27):  # '"' or "'"
        end = data.find(bytes((c,)), pos + 1)
        if end < 0:
            raise _EndOfInput
        return name, data[pos + 1 : end].lower(), end + 1
    if c == 0x3E:
        return name, b"", pos
    m = _UNQUOTED_VALUE.match(data, pos)
    assert m is not None
    if m.end() >= n:
        raise _EndOfInput
    return name, m.group().lower(), m.end()


def _charset_from_content(value: bytes) -> str | None:
    """The HTML standard's "extracting a character encoding from a meta element"."""
    pos = 0
    n = len(value)
    while True:
        i = value.find(_CHARSET_WORD, pos)
        if i < 0:
            return None
        j = _skip(_SKIP_WS, value, i + 7)
        if j < n and value[j] == 0x3D:
            break
        pos = j
    j = _skip(_SKIP_WS, value, j + 1)
    if j >= n:
        return None
    c = value[j]
    if c in (0x22, 0x27):
        end = value.find(bytes((c,)), j + 1)
        if end < 0:
            return None
        label = value[j + 1 : end]
    else:
        end = j
        while end < n and value[end] not in b"\t\n\x0c\r ;":
            end += 1
        label = value[j:end]
    return lookup_label(label.decode("latin-1"))


def _meta(data: bytes, pos: int) -> tuple[str | None, int]:
    """Process the attributes of one ``<meta``: (encoding or None, position after them)."""
    seen: set[bytes] = set()
    got_pragma = False
    need_pragma: bool | None = None
    charset: str | None = None
    failed = False  # a charset attribute whose label is unknown
    while True:
        attr = _get_attribute(data, pos)
        if attr is None:
            break
        name, value, pos = attr
        if name in seen:
            continue
        seen.add(name)
        if name == b"http-equiv":
            if value == b"content-type":
                got_pragma = True
        elif name == b"content":
            found = _charset_from_content(value)
            if found is not None and charset is None and not failed:
                charset = found
                need_pragma = True
        elif name == b"charset":
            charset = lookup_label(value.decode("latin-1"))
            failed = charset is None
            need_pragma = False
    if need_pragma is None or (need_pragma and not got_pragma) or charset is None:
        return None, pos
    if charset in _UTF16:
        return "utf-8", pos
    if charset == "x-user-defined":
        return "cp1252", pos
    return charset, pos


def prescan(data: bytes, limit: int = 1024) -> str | None:
    """The HTML standard's "prescan a byte stream to determine its encoding" over ``data[:limit]``.

    Returns the Python codec of the first ``<meta>`` that declares a known
    encoding (UTF-16 declarations become UTF-8, x-user-defined becomes
    windows-1252), or None when there is none or the bytes end inside a tag,
    a comment or an attribute. Comments are skipped, and attribute values of
    other tags are stepped over so that a quoted ``>`` does not end a tag.
    """
    data = data[:limit]
    if data.startswith(b"<\x00?\x00x\x00"):
        return "utf-16-le"
    if data.startswith(b"\x00<\x00?\x00x"):
        return "utf-16-be"
    if _ANY_META(data) is None:  # only a <meta> can declare anything
        return None
    n = len(data)
    pos = 0
    try:
        while True:
            lt = data.find(b"<", pos)
            if lt < 0 or lt + 1 >= n:
                return None
            if data.startswith(b"<!--", lt):
                end = data.find(b"-->", lt + 2)
                if end < 0:
                    return None
                pos = end + 3
                continue
            if _META_START.match(data, lt):
                found, pos = _meta(data, lt + 5)
                if found is not None:
                    return found
                pos += 1
                continue
            c = data[lt + 1]
            if c in _ASCII_LETTERS or (c == 0x2F and lt + 2 < n and data[lt + 2] in _ASCII_LETTERS):
                pos = _skip(_TAG_NAME, data, lt + 1)
                if pos >= n:
                    return None
                while (attr := _get_attribute(data, pos)) is not None:
                    pos = attr[2]
                pos += 1
                continue
            if c in (0x21, 0x2F, 0x3F):  # "<!", "</", "<?"
                gt = data.find(b">", lt + 1)
                if gt < 0:
                    return None
                pos = gt + 1
                continue
            pos = lt + 1
    except _EndOfInput:
        return None


# --------------------------------------------------------------------------- sniff

_HEADER_CHARSET: Final = re.compile(
    r"""(?i)(?:^|;)[\t ]*charset[\t ]*=[\t ]*(?:"([^"]*)"?|([^;\t ]*))"""
)
_LATE_META_LIMIT: Final = 64 * 1024
_BODY_START: Final = re.compile(rb"<[bB][oO][dD][yY][\t\n\x0c\r />]")
_DETECT_SAMPLE: Final = 64 * 1024
_NORMALIZER_SAMPLE: Final = 32 * 1024
_NON_ASCII: Final = re.compile(rb"[\x80-\xff]")
_HANGUL_RUNS: Final = re.compile("[\uac00-\ud7a3]+")
_KOREAN_SHARE: Final = 0.5

# charset-normalizer's names for encodings a WHATWG label also covers.
_DETECTED: Final[dict[str, str]] = {
    "ascii": "cp1252",
    "latin_1": "cp1252",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
    "euc_kr": "cp949",
    "big5": "big5hkscs",
    "cp950": "big5hkscs",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "shift_jis": "cp932",
    "shift_jis_2004": "cp932",
    "shift_jisx0213": "cp932",
    "euc_jis_2004": "euc_jp",
    "euc_jisx0213": "euc_jp",
    "iso2022_jp_1": "iso2022_jp",
    "iso2022_jp_2": "iso2022_jp",
    "iso2022_jp_ext": "iso2022_jp",
}


def _header_charset(content_type: str) -> str | None:
    m = _HEADER_CHARSET.search(content_type)
    if m is None:
        return None
    label = m.group(1) if m.group(1) is not None else m.group(2)
    return lookup_label(label)


def _decodes(sample: bytes, codec: str) -> str | None:
    """``sample`` decoded strictly, tolerating a character cut at its end; None if invalid."""
    try:
        return codecs.getincrementaldecoder(codec)("strict").decode(sample, final=False)
    except UnicodeDecodeError:
        return None


def _looks_korean(sample: bytes) -> bool:
    text = _decodes(sample, "cp949")
    if text is None:
        return False
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    hangul = sum(map(len, _HANGUL_RUNS.findall(text)))
    return non_ascii > 0 and hangul >= _KOREAN_SHARE * non_ascii


def _normalize_detected(name: str) -> str | None:
    try:
        canonical = codecs.lookup(name).name
    except LookupError:
        return None
    codec = _DETECTED.get(canonical, canonical)
    return codec if codec in CODECS else None


def _detect(body: bytes) -> str | None:
    """A codec for bytes with no declared encoding, or None to use the default."""
    if body.isascii():
        if b"\x1b$" in body and _decodes(body[:_DETECT_SAMPLE], "iso2022_jp") is not None:
            return "iso2022_jp"
        return None
    first = _NON_ASCII.search(body)
    start = first.start() if first is not None else 0
    # Everything before the first non-ASCII byte is ASCII, so the sample starts on a character.
    sample = body[start : start + _DETECT_SAMPLE]
    if _decodes(sample, "utf-8") is not None:
        return "utf-8"
    if _looks_korean(sample):
        return "cp949"
    head = max(0, start - 1024)
    matches = charset_normalizer.from_bytes(body[head : head + _NORMALIZER_SAMPLE])
    for match in matches:
        codec = _normalize_detected(match.encoding)
        if codec is not None:
            return codec
    return None


def _late_meta(body: bytes) -> str | None:
    """A ``<meta>`` past the first 1024 bytes but before ``<body`` (and within 64 KiB).

    The HTML parser changes the encoding when it meets such a ``<meta>`` in the
    head; one quoted in the page's content (a pasted snippet) must not count.
    """
    end = _BODY_START.search(body, 0, _LATE_META_LIMIT)
    return prescan(body, end.start() if end is not None else _LATE_META_LIMIT)


def bom_codec(body: bytes) -> str | None:
    """The codec a byte order mark at the start of ``body`` names (UTF-8, UTF-16BE, UTF-16LE), else None.

    ``FF FE 00 00`` is UTF-16LE, as the HTML standard reads it (not UTF-32).
    """
    if body.startswith(b"\xef\xbb\xbf"):
        return "utf-8"
    if body.startswith(b"\xfe\xff"):
        return "utf-16-be"
    if body.startswith(b"\xff\xfe"):
        return "utf-16-le"
    return None


def sniff(body: bytes, content_type: str | None) -> tuple[str, Source]:
    """The Python codec to decode an HTML ``body`` with, and where it came from.

    ``content_type`` is the HTTP ``Content-Type`` header value (or None). The
    codec is always one that :data:`~shoal.content.encodings.LABELS` maps some WHATWG label to. The
    detector runs only when neither a BOM, the header nor a ``<meta>`` decides
    and the body is not plain ASCII.
    """
    codec = bom_codec(body)
    if codec is not None:
        return codec, "bom"
    if content_type:
        codec = _header_charset(content_type)
        if codec is not None:
            return codec, "header"
    codec = prescan(body)
    if codec is None and len(body) > 1024:
        codec = _late_meta(body)
    if codec is not None:
        return codec, "meta"
    codec = _detect(body)
    if codec is not None:
        return codec, "detected"
    return "cp1252", "default"


def decode_html(body: bytes, content_type: str | None) -> tuple[str, str]:
    """Decode an HTML ``body`` as :func:`sniff` decides: (text, Python codec used).

    Undecodable bytes become U+FFFD and a BOM is dropped; this never raises.
    """
    codec, source = sniff(body, content_type)
    if source == "bom":
        body = body[3:] if codec == "utf-8" else body[2:]
    try:
        return body.decode(codec, "replace"), codec
    except (LookupError, UnicodeError):  # pragma: no cover - every codec here is registered
        return body.decode("cp1252", "replace"), "cp1252"
