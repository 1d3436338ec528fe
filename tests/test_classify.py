"""The response decision (fetch/classify.py): pure rules, checked without a server."""

from __future__ import annotations

import pytest

from shoal.errors import ErrorClass
from shoal.fetch.classify import (
    Decision,
    Response,
    block_streak,
    classify_status,
    decide,
    parse_retry_after,
)


def _decide(r: Response, streak: int = 0) -> Decision:
    return decide(r, streak=streak, block_threshold=3, max_body_bytes=1000, now=1_000_000.0)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (200, None),
        (304, None),
        (404, ErrorClass.PERMANENT),
        (403, ErrorClass.PERMANENT),
        (408, ErrorClass.TRANSIENT),
        (429, ErrorClass.TRANSIENT),
        (503, ErrorClass.TRANSIENT),
    ],
)
def test_status_classes(status: int, cls: ErrorClass | None) -> None:
    """Each HTTP status maps to the DESIGN error class."""
    assert classify_status(status) is cls
    d = _decide(Response(status, "R", content_type="text/html"))
    assert d.error_class is cls


def test_a_page_is_done_and_a_redirect_followed() -> None:
    """A complete 200 page is done; a 301 is a redirect to follow whatever its body."""
    assert _decide(Response(200, content_type="text/html")) == Decision()
    assert _decide(Response(301, truncated="length")) == Decision(redirect=True)


@pytest.mark.parametrize(
    ("truncated", "cls", "words"),
    [
        ("length", ErrorClass.PERMANENT, "1000-byte cap"),
        ("unspecified", ErrorClass.PERMANENT, "broken transfer framing"),
        ("time", ErrorClass.TRANSIENT, "cut short (time)"),
        ("disconnect", ErrorClass.TRANSIENT, "cut short (disconnect)"),
    ],
)
def test_an_incomplete_page_fails_by_why(truncated: str, cls: ErrorClass, words: str) -> None:
    """A cut body fails the page: over the cap or broken framing permanent, time or disconnect transient."""
    d = _decide(Response(200, content_type="text/html", truncated=truncated))
    assert d.error_class is cls and words in d.detail


def test_an_error_status_keeps_its_class_when_its_body_is_cut() -> None:
    """A 500 with a truncated body is a transient HTTP 500, not a body failure."""
    d = _decide(Response(500, "Internal Server Error", truncated="length"))
    assert d == Decision(ErrorClass.TRANSIENT, "HTTP 500 Internal Server Error")


def test_empty_200_html_is_transient_but_not_when_rendered_or_not_html() -> None:
    """An empty 200 HTML page is a transient glitch; an empty image or a rendered page is fine."""
    d = _decide(Response(200, content_type="text/html", body_empty=True))
    assert d.error_class is ErrorClass.TRANSIENT and "empty body" in d.detail
    assert _decide(Response(200, content_type="image/png", body_empty=True)) == Decision()
    assert (
        _decide(Response(200, content_type="text/html", body_empty=True, rendered=True))
        == Decision()
    )


def test_an_unknown_content_coding_is_permanent() -> None:
    """A body in a coding that could not be undone fails permanently, naming the coding."""
    d = _decide(Response(200, content_type="text/html", coding_problem="x-snappy"))
    assert d.error_class is ErrorClass.PERMANENT and "x-snappy" in d.detail


def test_retry_after_is_carried_for_429_and_503_only() -> None:
    """429 and 503 carry their Retry-After (seconds or an HTTP date); a 500's header is ignored."""
    assert _decide(Response(429, retry_after="120")).retry_after == 120.0
    date = "Thu, 01 Jan 1970 11:46:40 GMT"  # 42,400 s after the epoch; now is 1,000,000
    assert _decide(Response(503, retry_after=date)).retry_after == 0.0
    assert _decide(Response(500, retry_after="120")).retry_after is None
    assert _decide(Response(429, retry_after="²")).retry_after is None
    assert parse_retry_after("Thu, 12 Jan 1970 13:46:40 GMT", now=1_000_000.0) == 0.0


def test_the_answer_reaching_the_block_threshold_pauses_the_host() -> None:
    """403/429 extend the host's streak, other errors keep it, a success resets it; at the threshold the answer is blocked."""
    streak = 0
    for status in (403, 429, 404):
        streak = block_streak(streak, status)
    assert streak == 2
    assert not _decide(Response(403), streak=streak).blocked
    streak = block_streak(streak, 403)
    d = _decide(Response(403), streak=streak)
    assert d.blocked and d.error_class is ErrorClass.BLOCKED and "host paused" in d.detail
    assert block_streak(streak, 200) == 0
