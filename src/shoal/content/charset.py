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

Every label of the WHATWG Encoding Standard maps to a Python codec that
:func:`codecs.lookup` accepts: EUC-KR and its labels map to ``cp949`` (the
Windows superset every Korean site means, which decodes '똠'), GBK to
``gb18030``, Big5 to ``big5hkscs``, Shift_JIS to ``cp932``, and the two
encodings Python lacks, ``x-user-defined`` and ``replacement``, are registered
here as small codecs when the module is imported.

Detection is charset-normalizer's. ``w3lib.encoding`` is not used for the
rest because it does not do the same thing: its ``html_to_unicode`` agrees
with html5lib on 43 of the 82 sniffing cases (this module: 82), its
``resolve_encoding`` maps 155 of the 228 WHATWG labels to the same codec
(this module: 228), and its ``read_bom`` reads ``FF FE 00 00`` as UTF-32,
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

__all__ = [
    "LABELS",
    "WHATWG_ENCODINGS",
    "Source",
    "decode_html",
    "lookup_label",
    "prescan",
    "sniff",
]

Source = Literal["bom", "header", "meta", "detected", "default"]
"""Where the encoding came from, in the order they are tried."""

WHATWG_ENCODINGS: Final[tuple[tuple[str, str, tuple[str, ...]], ...]] = (
    # (WHATWG name, Python codec as codecs.lookup(...).name spells it, labels),
    # from the WHATWG Encoding Standard's encodings.json.
    (
        "UTF-8",
        "utf-8",
        ("unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "utf-8", "utf8", "x-unicode20utf8"),
    ),
    ("IBM866", "cp866", ("866", "cp866", "csibm866", "ibm866")),
    (
        "ISO-8859-2",
        "iso8859-2",
        (
            "csisolatin2",
            "iso-8859-2",
            "iso-ir-101",
            "iso8859-2",
            "iso88592",
            "iso_8859-2",
            "iso_8859-2:1987",
            "l2",
            "latin2",
        ),
    ),
    (
        "ISO-8859-3",
        "iso8859-3",
        (
            "csisolatin3",
            "iso-8859-3",
            "iso-ir-109",
            "iso8859-3",
            "iso88593",
            "iso_8859-3",
            "iso_8859-3:1988",
            "l3",
            "latin3",
        ),
    ),
    (
        "ISO-8859-4",
        "iso8859-4",
        (
            "csisolatin4",
            "iso-8859-4",
            "iso-ir-110",
            "iso8859-4",
            "iso88594",
            "iso_8859-4",
            "iso_8859-4:1988",
            "l4",
            "latin4",
        ),
    ),
    (
        "ISO-8859-5",
        "iso8859-5",
        (
            "csisolatincyrillic",
            "cyrillic",
            "iso-8859-5",
            "iso-ir-144",
            "iso8859-5",
            "iso88595",
            "iso_8859-5",
            "iso_8859-5:1988",
        ),
    ),
    (
        "ISO-8859-6",
        "iso8859-6",
        (
            "arabic",
            "asmo-708",
            "csiso88596e",
            "csiso88596i",
            "csisolatinarabic",
            "ecma-114",
            "iso-8859-6",
            "iso-8859-6-e",
            "iso-8859-6-i",
            "iso-ir-127",
            "iso8859-6",
            "iso88596",
            "iso_8859-6",
            "iso_8859-6:1987",
        ),
    ),
    (
        "ISO-8859-7",
        "iso8859-7",
        (
            "csisolatingreek",
            "ecma-118",
            "elot_928",
            "greek",
            "greek8",
            "iso-8859-7",
            "iso-ir-126",
            "iso8859-7",
            "iso88597",
            "iso_8859-7",
            "iso_8859-7:1987",
            "sun_eu_greek",
        ),
    ),
    (
        "ISO-8859-8",
        "iso8859-8",
        (
            "csiso88598e",
            "csisolatinhebrew",
            "hebrew",
            "iso-8859-8",
            "iso-8859-8-e",
            "iso-ir-138",
            "iso8859-8",
            "iso88598",
            "iso_8859-8",
            "iso_8859-8:1988",
            "visual",
        ),
    ),
    # Logical order differs from visual only in how text is displayed, not in its bytes.
    ("ISO-8859-8-I", "iso8859-8", ("csiso88598i", "iso-8859-8-i", "logical")),
    (
        "ISO-8859-10",
        "iso8859-10",
        ("csisolatin6", "iso-8859-10", "iso-ir-157", "iso8859-10", "iso885910", "l6", "latin6"),
    ),
    ("ISO-8859-13", "iso8859-13", ("iso-8859-13", "iso8859-13", "iso885913")),
    ("ISO-8859-14", "iso8859-14", ("iso-8859-14", "iso8859-14", "iso885914")),
    (
        "ISO-8859-15",
        "iso8859-15",
        ("csisolatin9", "iso-8859-15", "iso8859-15", "iso885915", "iso_8859-15", "l9"),
    ),
    ("ISO-8859-16", "iso8859-16", ("iso-8859-16",)),
    ("KOI8-R", "koi8-r", ("cskoi8r", "koi", "koi8", "koi8-r", "koi8_r")),
    ("KOI8-U", "koi8-u", ("koi8-ru", "koi8-u")),
    ("macintosh", "mac-roman", ("csmacintosh", "mac", "macintosh", "x-mac-roman")),
    (
        "windows-874",
        "cp874",
        ("dos-874", "iso-8859-11", "iso8859-11", "iso885911", "tis-620", "windows-874"),
    ),
    ("windows-1250", "cp1250", ("cp1250", "windows-1250", "x-cp1250")),
    ("windows-1251", "cp1251", ("cp1251", "windows-1251", "x-cp1251")),
    (
        "windows-1252",
        "cp1252",
        (
            "ansi_x3.4-1968",
            "ascii",
            "cp1252",
            "cp819",
            "csisolatin1",
            "ibm819",
            "iso-8859-1",
            "iso-ir-100",
            "iso8859-1",
            "iso88591",
            "iso_8859-1",
            "iso_8859-1:1987",
            "l1",
            "latin1",
            "us-ascii",
            "windows-1252",
            "x-cp1252",
        ),
    ),
    ("windows-1253", "cp1253", ("cp1253", "windows-1253", "x-cp1253")),
    (
        "windows-1254",
        "cp1254",
        (
            "cp1254",
            "csisolatin5",
            "iso-8859-9",
            "iso-ir-148",
            "iso8859-9",
            "iso88599",
            "iso_8859-9",
            "iso_8859-9:1989",
            "l5",
            "latin5",
            "windows-1254",
            "x-cp1254",
        ),
    ),
    ("windows-1255", "cp1255", ("cp1255", "windows-1255", "x-cp1255")),
    ("windows-1256", "cp1256", ("cp1256", "windows-1256", "x-cp1256")),
    ("windows-1257", "cp1257", ("cp1257", "windows-1257", "x-cp1257")),
    ("windows-1258", "cp1258", ("cp1258", "windows-1258", "x-cp1258")),
    ("x-mac-cyrillic", "mac-cyrillic", ("x-mac-cyrillic", "x-mac-ukrainian")),
    # WHATWG decodes GBK with the gb18030 decoder.
    (
        "GBK",
        "gb18030",
        (
            "chinese",
            "csgb2312",
            "csiso58gb231280",
            "gb2312",
            "gb_2312",
            "gb_2312-80",
            "gbk",
            "iso-ir-58",
            "x-gbk",
        ),
    ),
    ("gb18030", "gb18030", ("gb18030",)),
    # WHATWG's Big5 index includes the HKSCS extension.
    ("Big5", "big5hkscs", ("big5", "big5-hkscs", "cn-big5", "csbig5", "x-x-big5")),
    ("EUC-JP", "euc_jp", ("cseucpkdfmtjapanese", "euc-jp", "x-euc-jp")),
    ("ISO-2022-JP", "iso2022_jp", ("csiso2022jp", "iso-2022-jp")),
    # WHATWG's Shift_JIS is Windows-31J (NEC and IBM extensions included).
    (
        "Shift_JIS",
        "cp932",
        (
            "csshiftjis",
            "ms932",
            "ms_kanji",
            "shift-jis",
            "shift_jis",
            "sjis",
            "windows-31j",
            "x-sjis",
        ),
    ),
    # Unified Hangul Code: strict euc_kr cannot decode 8,822 syllables that Korean sites use.
    (
        "EUC-KR",
        "cp949",
        (
            "cseuckr",
            "csksc56011987",
            "euc-kr",
            "iso-ir-149",
            "korean",
            "ks_c_5601-1987",
            "ks_c_5601-1989",
            "ksc5601",
            "ksc_5601",
            "windows-949",
        ),
    ),
    (
        "replacement",
        "replacement",
        (
            "csiso2022kr",
            "hz-gb-2312",
            "iso-2022-cn",
            "iso-2022-cn-ext",
            "iso-2022-kr",
            "replacement",
        ),
    ),
    ("UTF-16BE", "utf-16-be", ("unicodefffe", "utf-16be")),
    (
        "UTF-16LE",
        "utf-16-le",
        ("csunicode", "iso-10646-ucs-2", "ucs-2", "unicode", "unicodefeff", "utf-16", "utf-16le"),
    ),
    ("x-user-defined", "x-user-defined", ("x-user-defined",)),
)
"""Every WHATWG encoding with the Python codec that decodes it and its labels."""

LABELS: Final[dict[str, str]] = {
    label: codec for _, codec, labels in WHATWG_ENCODINGS for label in labels
}
"""WHATWG label (lower case) -> Python codec name."""

_CODECS: Final[frozenset[str]] = frozenset(LABELS.values())

# --------------------------------------------------------------------------- codecs

_X_USER_DEFINED_TABLE: Final[str] = "".join(chr(b) for b in range(0x80)) + "".join(
    chr(0xF780 + b) for b in range(0x80)
)
_X_USER_DEFINED_ENCODING: Final = codecs.charmap_build(_X_USER_DEFINED_TABLE)


def _xud_encode(text: str, errors: str = "strict") -> tuple[bytes, int]:
    return codecs.charmap_encode(text, errors, _X_USER_DEFINED_ENCODING)


def _xud_decode(data: bytes, errors: str = "strict") -> tuple[str, int]:
    return codecs.charmap_decode(data, errors, _X_USER_DEFINED_TABLE)


class _XudIncrementalEncoder(codecs.IncrementalEncoder):
    def encode(self, input: str, final: bool = False) -> bytes:
        return _xud_encode(input, self.errors)[0]


class _XudIncrementalDecoder(codecs.IncrementalDecoder):
    def decode(self, input: bytes, final: bool = False) -> str:  # type: ignore[override]
        return _xud_decode(input, self.errors)[0]


class _XudStreamWriter(codecs.StreamWriter):
    def encode(self, input: str, errors: str = "strict") -> tuple[bytes, int]:
        return _xud_encode(input, errors)


class _XudStreamReader(codecs.StreamReader):
    def decode(self, input: bytes, errors: str = "strict") -> tuple[str, int]:
        return _xud_decode(input, errors)


def _replacement_decode(data: bytes, errors: str = "strict") -> tuple[str, int]:
    # WHATWG: the whole stream decodes to one error (a single U+FFFD), because
    # these encodings (ISO-2022-KR, HZ, ...) let attackers smuggle markup.
    if not data:
        return "", 0
    if errors == "strict":
        raise UnicodeDecodeError(
            "replacement", bytes(data), 0, len(data), "the replacement encoding decodes nothing"
        )
    return "\ufffd", len(data)


def _replacement_encode(text: str, errors: str = "strict") -> tuple[bytes, int]:
    # Its output encoding is UTF-8.
    return text.encode("utf-8", errors), len(text)


class _ReplIncrementalEncoder(codecs.IncrementalEncoder):
    def encode(self, input: str, final: bool = False) -> bytes:
        return input.encode("utf-8", self.errors)


class _ReplIncrementalDecoder(codecs.IncrementalDecoder):
    def __init__(self, errors: str = "strict") -> None:
        super().__init__(errors)
        self._done = False

    def decode(self, input: bytes, final: bool = False) -> str:  # type: ignore[override]
        if self._done or not input:
            return ""
        self._done = True
        return _replacement_decode(input, self.errors)[0]

    def reset(self) -> None:
        self._done = False

    def getstate(self) -> tuple[bytes, int]:
        return b"", int(self._done)

    def setstate(self, state: tuple[bytes, int]) -> None:
        self._done = bool(state[1])


class _ReplStreamWriter(codecs.StreamWriter):
    def encode(self, input: str, errors: str = "strict") -> tuple[bytes, int]:
        return _replacement_encode(input, errors)


class _ReplStreamReader(codecs.StreamReader):
    def decode(self, input: bytes, errors: str = "strict") -> tuple[str, int]:
        return _replacement_decode(input, errors)


_EXTRA_CODECS: Final[dict[str, codecs.CodecInfo]] = {
    "x_user_defined": codecs.CodecInfo(
        name="x-user-defined",
        encode=_xud_encode,
        decode=_xud_decode,  # type: ignore[arg-type]
        incrementalencoder=_XudIncrementalEncoder,
        incrementaldecoder=_XudIncrementalDecoder,
        streamwriter=_XudStreamWriter,
        streamreader=_XudStreamReader,
    ),
    "replacement": codecs.CodecInfo(
        name="replacement",
        encode=_replacement_encode,
        decode=_replacement_decode,  # type: ignore[arg-type]
        incrementalencoder=_ReplIncrementalEncoder,
        incrementaldecoder=_ReplIncrementalDecoder,
        streamwriter=_ReplStreamWriter,
        streamreader=_ReplStreamReader,
    ),
}


def _search(name: str) -> codecs.CodecInfo | None:
    return _EXTRA_CODECS.get(name.replace("-", "_"))


codecs.register(_search)

# --------------------------------------------------------------------------- labels

_ASCII_WS: Final = "\t\n\x0c\r "


def lookup_label(label: str) -> str | None:
    """The Python codec for a WHATWG encoding label, or None when the label is unknown.

    Leading and trailing ASCII whitespace is ignored and matching is ASCII
    case-insensitive, as in the Encoding Standard's "get an encoding".
    """
    label = label.strip(_ASCII_WS)
    if not label.isascii():
        return None
    return LABELS.get(label.lower())


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
    return codec if codec in _CODECS else None


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


def sniff(body: bytes, content_type: str | None) -> tuple[str, Source]:
    """The Python codec to decode an HTML ``body`` with, and where it came from.

    ``content_type`` is the HTTP ``Content-Type`` header value (or None). The
    codec is always one that :data:`LABELS` maps some WHATWG label to. The
    detector runs only when neither a BOM, the header nor a ``<meta>`` decides
    and the body is not plain ASCII.
    """
    if body.startswith(b"\xef\xbb\xbf"):
        return "utf-8", "bom"
    if body.startswith(b"\xfe\xff"):
        return "utf-16-be", "bom"
    if body.startswith(b"\xff\xfe"):
        return "utf-16-le", "bom"
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
