"""Error classification: HTTP answers and exceptions into the DESIGN error classes.

:func:`decide` is the whole response decision, as a pure function of what came
back and the host's recent history: a page, a redirect to follow, or a failure
with its class, the Retry-After the server asked for and whether the host is
now to be paused as blocked. The worker only carries it out (archive, outcome,
host update, event), so every rule here is unit-tested without a server.
"""

from __future__ import annotations

import email.utils
import hashlib
import time
import traceback
from dataclasses import dataclass

from shoal.content import HTML_TYPES
from shoal.errors import ErrorClass

__all__ = [
    "Decision",
    "Response",
    "block_streak",
    "classify_status",
    "decide",
    "error_signature",
    "is_redirect",
    "parse_retry_after",
]

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


@dataclass(frozen=True, slots=True)
class Response:
    """What :func:`decide` needs of one fetched response (no body, only facts about it)."""

    status: int
    reason: str = ""
    truncated: str | None = None
    """Why the body is incomplete (``length``, ``unspecified``, ``time``, ``disconnect``), else None."""
    content_type: str = ""
    body_empty: bool = False
    rendered: bool = False
    """A browser rendered the page (its DOM is the document; codings do not matter)."""
    coding_problem: str | None = None
    """A content coding the fetcher could not undo (``x-unknown``), else None."""
    retry_after: str | None = None
    """The ``Retry-After`` header as received."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What becomes of one response.

    ``error_class`` None: the page is done (``redirect``: its Location is to be
    followed). Otherwise a failure of that class with ``detail``;
    ``retry_after`` is the delay the server asked for (seconds, uncapped), to
    push both the URL's retry and the host's next slot; ``blocked`` says the
    host answered 403/429 ``block_threshold`` times in a row and is to be paused.
    """

    error_class: ErrorClass | None = None
    detail: str = ""
    retry_after: float | None = None
    blocked: bool = False
    redirect: bool = False


def block_streak(streak: int, status: int) -> int:
    """The host's run of 403/429 answers after one more answer of ``status``.

    403 and 429 extend it, any other error leaves it, a success or redirect resets it.
    """
    if status in (403, 429):
        return streak + 1
    return 0 if status < 400 else streak


def decide(
    r: Response,
    *,
    streak: int,
    block_threshold: int,
    max_body_bytes: int,
    now: float | None = None,
) -> Decision:
    """The fate of one response; ``streak`` is the host's 403/429 run including this answer.

    - An error status keeps its class (:func:`classify_status`) whatever its
      body; 429 and 503 carry their ``Retry-After``; the answer that brings the
      streak to ``block_threshold`` is ``blocked`` instead.
    - A page whose body is incomplete fails: over the cap ``permanent``, broken
      transfer framing ``permanent``, cut short (time, disconnect) ``transient``.
    - A redirect is followed (its body does not matter).
    - A body in a content coding that could not be undone is ``permanent``.
    - An empty 200 HTML page is ``transient``: a server glitch (overload, a
      WAF) far more often than a real page.
    """
    status = r.status
    cls = classify_status(status)
    if cls is not None:
        retry_after = parse_retry_after(r.retry_after, now) if status in (429, 503) else None
        if streak >= block_threshold:
            return Decision(
                ErrorClass.BLOCKED, f"HTTP {status}; host paused", retry_after, blocked=True
            )
        return Decision(cls, f"HTTP {status} {r.reason}".strip(), retry_after)
    if is_redirect(status):
        return Decision(redirect=True)
    if r.truncated == "length":
        return Decision(ErrorClass.PERMANENT, f"body over the {max_body_bytes}-byte cap")
    if r.truncated == "unspecified":
        return Decision(ErrorClass.PERMANENT, "malformed response body (broken transfer framing)")
    if r.truncated is not None:
        return Decision(ErrorClass.TRANSIENT, f"body cut short ({r.truncated})")
    if not r.rendered:
        if r.coding_problem is not None:
            return Decision(ErrorClass.PERMANENT, f"unsupported content coding: {r.coding_problem}")
        if status == 200 and r.body_empty and r.content_type in HTML_TYPES:
            return Decision(ErrorClass.TRANSIENT, "HTTP 200 with an empty body")
    return Decision()
