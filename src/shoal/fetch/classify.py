"""Error classification: HTTP answers and exceptions into the DESIGN error classes."""

from __future__ import annotations

import email.utils
import hashlib
import time
import traceback

from shoal.errors import ErrorClass

__all__ = ["classify_status", "error_signature", "is_redirect", "parse_retry_after"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def is_redirect(status: int) -> bool:
    """A status whose Location the crawler follows."""
    return status in _REDIRECTS


def classify_status(status: int) -> ErrorClass | None:
    """The error class of an HTTP status, or None for a success (2xx, 3xx, 304).

    408, 425, 429 and 5xx are transient; 403 and other 4xx permanent (a host
    that keeps answering 403/429 is paused as blocked by the worker).
    """
    if status < 400:
        return None
    if status in (408, 425, 429) or status >= 500:
        return ErrorClass.TRANSIENT
    return ErrorClass.PERMANENT


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    # RFC 9110: delta-seconds is 1*DIGIT in ASCII ("²" or "١" pass str.isdigit but are not).
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_signature(exc: BaseException) -> str:
    """A short stable signature of an unexpected exception: its type and where it was raised.

    Line numbers are left out so the signature survives unrelated edits.
    """
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = ";".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.name}" for f in frames)
    text = f"{type(exc).__module__}.{type(exc).__qualname__}|{where}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]
