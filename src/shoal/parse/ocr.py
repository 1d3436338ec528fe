"""Reading text out of archived images with Tesseract (through pytesseract).

The images were fetched into the archive during the crawl (a rule's
``images`` selector); the parse stage finds them by canonical URL and hands
their bytes to :func:`ocr_image`. :func:`check_tesseract` runs once before a
parse starts, so a machine without Tesseract or without the language data
fails at once with the command that installs them, not on the first image.
"""

from __future__ import annotations

import io
import re
from functools import lru_cache

from shoal.errors import ShoalError

__all__ = ["INSTALL_HINT", "OcrUnavailable", "check_tesseract", "normalize_ocr_text", "ocr_image"]

INSTALL_HINT = "apt-get install tesseract-ocr tesseract-ocr-kor tesseract-ocr-eng"
"""The Debian packages OCR needs (the ``tesseract`` binary and the Korean and English data)."""

MIN_HEIGHT = 48
"""Images lower than this many pixels are scaled up first: Tesseract reads tiny text badly."""


class OcrUnavailable(ShoalError):
    """Tesseract, pytesseract, Pillow or a language's data is missing; the message says what to install."""


@lru_cache(maxsize=8)
def check_tesseract(lang: str = "kor+eng") -> str:
    """Check that OCR can run for ``lang`` (``kor+eng``); returns Tesseract's version or raises OcrUnavailable."""
    try:
        import pytesseract
        from PIL import Image  # noqa: F401  (only checking that Pillow is there)
    except ImportError as exc:
        raise OcrUnavailable(
            f"OCR needs pytesseract and Pillow ({exc}): pip install 'shoal[parse]', and {INSTALL_HINT}"
        ) from None
    try:
        version = str(pytesseract.get_tesseract_version())
        have = set(pytesseract.get_languages(config=""))
    except pytesseract.TesseractNotFoundError:
        raise OcrUnavailable(
            f"the tesseract program is not installed or not on PATH: {INSTALL_HINT}"
        ) from None
    except (pytesseract.TesseractError, OSError) as exc:
        raise OcrUnavailable(f"tesseract does not run ({exc}): {INSTALL_HINT}") from None
    missing = [code for code in lang.split("+") if code and code not in have]
    if missing:
        raise OcrUnavailable(
            f"Tesseract has no language data for {', '.join(missing)} (it has {', '.join(sorted(have)) or 'none'}): "
            f"{INSTALL_HINT}"
        )
    return version


_SPACES = re.compile(r"[ \t\u00a0]+")


def normalize_ocr_text(text: str) -> str:
    """Tesseract's output with runs of spaces collapsed, lines stripped and blank lines dropped."""
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def ocr_image(
    data: bytes, lang: str = "kor+eng", *, psm: int | None = None, timeout: float = 60.0
) -> str:
    """The text Tesseract reads in an image (PNG, JPEG, GIF, WebP...), normalised; raises on unreadable bytes.

    Raises :class:`OcrUnavailable` when Tesseract cannot run, ``PIL.UnidentifiedImageError``
    (an ``OSError``) when the bytes are not an image, and ``RuntimeError`` when
    Tesseract takes longer than ``timeout`` seconds.
    """
    check_tesseract(lang)
    import pytesseract
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        opened.seek(0)  # first frame of an animation
        image = opened.convert("L")
    if 0 < image.height < MIN_HEIGHT:
        scale = MIN_HEIGHT / image.height * 2
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        )
    config = f"--psm {psm}" if psm is not None else ""
    try:
        text = pytesseract.image_to_string(image, lang=lang, config=config, timeout=timeout)
    except pytesseract.TesseractNotFoundError:
        raise OcrUnavailable(
            f"the tesseract program is not installed or not on PATH: {INSTALL_HINT}"
        ) from None
    return normalize_ocr_text(str(text))
