"""Images the demo site serves, drawn in code so that every run serves the same bytes.

:func:`notice_png` renders lines of Korean and English text in NanumGothic
(Debian's ``fonts-nanum``) on a white background: the picture of a notice that
the parse stage reads back with Tesseract (``kor+eng``). :data:`NOTICE_LINES`
are the lines of the notice in blog post 3; the OCR test asserts them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

__all__ = ["FONT_CANDIDATES", "NOTICE_LINES", "find_font", "notice_png"]

NOTICE_LINES: tuple[str, ...] = ("공지사항: 서버 점검 안내", "Server maintenance notice")
"""The text of ``/img/notice.png``, one line each."""

FONT_CANDIDATES: tuple[str, ...] = (
    "/usr/share/fonts/truetype/nanum/NanumGothicBold.ttf",
    "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
    "/usr/share/fonts/truetype/nanum/NanumBarunGothic.ttf",
)
"""Korean-capable fonts from Debian's ``fonts-nanum``, the first found is used."""

FONT_SIZE = 44
MARGIN = 36
LINE_GAP = 22


def find_font() -> Path:
    """The first installed font of :data:`FONT_CANDIDATES`, or FileNotFoundError saying what to install."""
    for candidate in FONT_CANDIDATES:
        p = Path(candidate)
        if p.is_file():
            return p
    raise FileNotFoundError(
        "no Korean-capable font found (looked for NanumGothic in /usr/share/fonts/truetype/nanum): "
        "apt-get install fonts-nanum"
    )


def notice_png(lines: Sequence[str] = NOTICE_LINES) -> bytes:
    """A PNG of ``lines`` in black NanumGothic on white; the same lines always give the same bytes."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(find_font()), FONT_SIZE)
    boxes = [font.getbbox(line) for line in lines]
    width = int(max((b[2] for b in boxes), default=0)) + 2 * MARGIN
    ascent, descent = font.getmetrics()
    line_height = ascent + descent
    height = len(lines) * line_height + max(len(lines) - 1, 0) * LINE_GAP + 2 * MARGIN
    image = Image.new("L", (width, height), color=255)
    draw = ImageDraw.Draw(image)
    y = MARGIN
    for line in lines:
        draw.text((MARGIN, y), line, font=font, fill=0)
        y += line_height + LINE_GAP
    buf = io.BytesIO()
    # No metadata and a fixed compression level: identical input gives identical bytes.
    image.save(buf, format="PNG", optimize=False, compress_level=9)
    return buf.getvalue()
