"""What a capture is, and reading one back: archive record → content coding undone → charset decoded → :class:`Page`.

This is the part of the parse stage that runs in worker processes, kept free
of the frontier and of SQLAlchemy so that a worker starts fast.

:func:`load_page` reads one capture back, undoes the content coding and
decodes the charset into a :class:`~shoal.parse.extract.Page` of type
``html``, ``xml``, ``json`` (or ``other``: bytes only, for functions).
Charsets follow the WHATWG rules for HTML (header, BOM, ``<meta>``,
detection), the XML rules for XML (BOM, header, declaration) and UTF-8 for
JSON, with two exceptions recorded in the ``encoding`` column: an
``encoding`` set in the spec wins, and bytes that are valid UTF-8 are read
as UTF-8 whatever charset the page declares (a lying ``<meta charset>`` is
common; a real legacy-charset text that happens to be valid UTF-8 is not).
The rendered DOM of a browser capture is UTF-8 (shoal wrote it so).
A capture that cannot be parsed raises :class:`NotParsed` with a reason in
plain words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from shoal.archive import S3Location, WarcRef, read_record
from shoal.content.charset import bom_codec, sniff
from shoal.content.codings import content_decode
from shoal.content.encodings import lookup_label
from shoal.parse.config import content_kind
from shoal.parse.extract import Page, fetched_datetime

__all__ = [
    "AssetRef",
    "Capture",
    "FrameRef",
    "NotParsed",
    "decode_body",
    "load_page",
    "media_type",
]

AssetRef = tuple[str, int, int, str]
"""Where an archived record lives: (WARC file, offset, length, record id)."""

FrameRef = tuple[str, str, int, int, str]
"""A rendered frame: (frame URL, WARC file, offset, length, record id)."""


@dataclass(frozen=True, slots=True)
class Capture:
    """One archived response to parse, and the tables it feeds (picklable: it crosses processes)."""

    seq: int
    url_id: int
    url: str
    final_url: str
    rule: str | None
    kind: str
    http_status: int | None
    fetched_at: int | None
    """Milliseconds since the epoch (frontier time, or the WARC-Date of older captures)."""
    content_type: str | None
    file: str
    offset: int
    length: int
    record_id: str
    tables: tuple[str, ...]
    source: str = "response"
    """``response`` or ``rendered``: which record ``file``/``offset`` point at."""
    encoding: str | None = None
    """A charset set in the spec (table or rule), used instead of what the page declares."""
    frames: tuple[FrameRef, ...] = ()
    problem: str | None = None
    """Why this capture cannot give the tables what they asked for (it is counted, not parsed)."""


class NotParsed(Exception):
    """A capture that is not parsed; ``str(exc)`` is the reason in plain words, as the report shows it."""


def media_type(content_type: str | None) -> str:
    """``text/html`` of ``text/HTML; charset=utf-8``: the media type, lower case, without parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def load_page(cap: Capture, archive_dir: str | Path | S3Location, max_body: int) -> Page:
    """Read ``cap`` from the archive and decode it; raises NotParsed, ArchiveError or OSError."""
    if cap.problem is not None:
        raise NotParsed(cap.problem)
    rec = read_record(archive_dir, WarcRef(cap.file, cap.offset, cap.length, cap.record_id))
    frames: list[tuple[str, str]] = []
    if cap.source == "rendered":
        # The DOM as the browser built it, serialised by shoal as UTF-8 whatever the page declared.
        ctype: str | None = rec.warc_headers.get("Content-Type") or cap.content_type or "text/html"
        body = rec.body
        text, codec = body.decode("utf-8", "replace"), "utf-8"
        for url, *ref in cap.frames:
            frame = read_record(archive_dir, WarcRef(*ref))  # type: ignore[arg-type]
            frames.append((url, frame.body.decode("utf-8", "replace")))
        doc_type = "html"
        headers: list[tuple[str, str]] = []
    else:
        ctype = rec.header("content-type") or cap.content_type
        body, _truncated = content_decode(rec.body, rec.header("content-encoding"), max_body)
        doc_type = content_kind(media_type(ctype)) or "other"
        text, codec = decode_body(body, ctype, doc_type, cap.encoding)
        headers = list(rec.http_headers)
    return Page(
        url=cap.url,
        final_url=cap.final_url,
        fetched_at=fetched_datetime(cap.fetched_at),
        http_status=cap.http_status if cap.http_status is not None else rec.http_status,
        content_type=ctype,
        headers=headers,
        body=body,
        text=text,
        encoding=codec,
        rule=cap.rule,
        kind=cap.kind,
        url_id=cap.url_id,
        warc_record_id=rec.record_id,
        doc_type=doc_type,
        source=cap.source,
        frames=frames,
    )


_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
_WHERE = {"header": "the HTTP header", "meta": "the page's <meta>", "xml": "the XML declaration"}


def decode_body(
    body: bytes, content_type: str | None, doc_type: str, override: str | None = None
) -> tuple[str, str]:
    """Decode a capture's bytes: (text, the ``encoding`` column's value). Never raises.

    ``override`` (the spec's ``encoding``) wins. Otherwise HTML is decoded as
    the WHATWG rules say, XML by BOM, header charset, then its declaration,
    JSON by BOM, header charset, else UTF-8; and bytes that are valid UTF-8 but
    declared as another charset are read as UTF-8, with the reason in the
    returned encoding (``utf-8 (the page's <meta> says gb2312, ...)``).
    Undecodable bytes become U+FFFD.
    """
    if doc_type == "other":
        return "", ""
    if override is not None:
        codec = lookup_label(override) or override
        return body.decode(codec, "replace"), f"{codec} (set in the spec)"
    source: str
    if doc_type == "html":
        codec, source = sniff(body, content_type)
    else:
        codec, source = _sniff_data(body, content_type, doc_type)
    if source == "bom":
        body = body[3:] if codec == "utf-8" else body[2:]
    elif codec != "utf-8" and not codec.startswith("utf-16") and not body.isascii():
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            try:
                body.decode(codec)
                how = "but the bytes are valid UTF-8"
            except (UnicodeDecodeError, LookupError):
                how = "which does not decode the bytes; they are valid UTF-8"
            declared = _WHERE.get(source, "charset detection")
            verb = "says" if source in _WHERE else "guessed"
            return text, f"utf-8 ({declared} {verb} {codec}, {how})"
    try:
        return body.decode(codec, "replace"), codec
    except LookupError:  # pragma: no cover - every codec the label table names is registered
        return body.decode("utf-8", "replace"), "utf-8"


def _sniff_data(body: bytes, content_type: str | None, doc_type: str) -> tuple[str, str]:
    """(codec, where it came from) of an XML or JSON body."""
    codec = bom_codec(body)
    if codec is not None:
        return codec, "bom"
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            codec = lookup_label(value.strip().strip("\"'"))
            if codec is not None:
                return codec, "header"
    if doc_type == "xml":
        m = _XML_ENCODING.match(body[:1024])
        if m is not None:
            codec = lookup_label(m.group(1).decode("ascii"))
            if codec is not None:
                return codec, "xml"
    return "utf-8", "default"
