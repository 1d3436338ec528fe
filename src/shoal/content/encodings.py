"""The WHATWG Encoding Standard's labels, each mapped to a Python codec, and the two codecs Python lacks.

Every label of the WHATWG Encoding Standard maps to a Python codec that
:func:`codecs.lookup` accepts: EUC-KR and its labels map to ``cp949`` (the
Windows superset every Korean site means, which decodes '똠'), GBK to
``gb18030``, Big5 to ``big5hkscs``, Shift_JIS to ``cp932``, and the two
encodings Python lacks, ``x-user-defined`` and ``replacement``, are registered
here as small codecs when the module is imported.

Guarantee: :func:`lookup_label` resolves every one of the 228 WHATWG labels
the way the standard's "get an encoding" does (ASCII whitespace trimmed,
ASCII case-insensitive). The HTML sniffing that uses it is
:mod:`shoal.content.charset`.
"""

from __future__ import annotations

import codecs
from typing import Final

__all__ = ["CODECS", "LABELS", "WHATWG_ENCODINGS", "lookup_label"]

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

CODECS: Final[frozenset[str]] = frozenset(LABELS.values())
"""Every Python codec some WHATWG label maps to."""

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
