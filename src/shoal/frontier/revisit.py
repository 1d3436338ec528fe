"""Pure revisit policy: durations, due times, conditional requests and what a refetch found.

No database and no I/O here: the SQL frontier and the worker call these
functions, and unit tests call them directly.

Guarantees:

- A page of a rule with ``revisit`` is due again ``revisit`` after its last
  fetch, for as long as ``revisit_for`` (counted from its first fetch) allows;
  a page past that window, or of a rule without ``revisit``, is never due again.
- A refetch sends ``If-None-Match`` / ``If-Modified-Since`` only with validators
  its server gave for that URL, cleaned of line breaks and capped in length.
- :func:`verdict` tells a 304, an unchanged payload (same digest as the last
  full capture) and a changed or first capture apart; only a changed or first
  capture is archived in full.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "PayloadRef",
    "Previous",
    "Verdict",
    "conditional_headers",
    "format_duration",
    "next_revisit",
    "parse_duration",
    "validators",
    "verdict",
]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_MAX_SECONDS = 10 * 365 * 86400.0


def parse_duration(value: object) -> float:
    """Seconds in a duration such as ``"30m"``, ``"1h30m"``, ``"7d"``, ``"500ms"`` or a number of seconds.

    Units: ``ms``, ``s``, ``m``, ``h``, ``d``, ``w``. Raises :class:`ValueError`
    saying what was expected when it is not one, is not positive or is longer
    than ten years (the spec's error formatter adds the value).
    """
    expected = 'a duration such as "30m", "1h30m", "7d", "90s" or "500ms" (units ms, s, m, h, d, w)'
    if isinstance(value, bool):
        raise ValueError(f"expected {expected}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        pos, seconds = 0, 0.0
        for m in _PART.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if not text or pos != len(text):
            raise ValueError(f"expected {expected}")
    else:
        raise ValueError(f"expected {expected}")
    if not 0 < seconds <= _MAX_SECONDS:
        raise ValueError("a duration must be positive and at most 10 years")
    return seconds


def format_duration(seconds: float) -> str:
    """A short human form of a duration (``"90s"``, ``"30m"``, ``"2h5m"``, ``"3d"``)."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    s = round(seconds)
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            out.append(f"{s // size}{unit}")
            s %= size
    return "".join(out[:2])


@dataclass(frozen=True, slots=True)
class PayloadRef:
    """Where the payload of a full capture lives: its ``response`` record and payload digest.

    ``at`` is the capture's time (ms), written as ``WARC-Refers-To-Date`` by a
    ``revisit`` record that refers to it.
    """

    digest: str
    file: str
    offset: int
    length: int
    record_id: str
    at: int


@dataclass(frozen=True, slots=True)
class Previous:
    """What the frontier remembers of a URL's last fetch, handed to the worker with its claim.

    ``fetched_at`` is None for a URL never fetched (a first fetch). ``payload``
    is the last full capture, which a ``revisit`` record refers to and parse reads.
    """

    fetched_at: int | None = None
    first_fetched_at: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    payload: PayloadRef | None = None

    @property
    def is_revisit(self) -> bool:
        """True when the URL was fetched before."""
        return self.fetched_at is not None


class Verdict(StrEnum):
    """What a fetch found compared with the last full capture."""

    NOT_MODIFIED = "not_modified"
    """HTTP 304: archived as a ``server-not-modified`` revisit record."""
    IDENTICAL = "identical"
    """A 200 whose payload digest equals the last capture's: an ``identical-payload-digest`` revisit."""
    CHANGED = "changed"
    """Anything else: archived in full."""


def next_revisit(
    now: int, first_fetched_at: int | None, every_s: float | None, for_s: float | None
) -> int | None:
    """When a page fetched at ``now`` is due again (ms), or None when it is not revisited.

    ``every_s`` is the rule's ``revisit``; ``for_s`` its ``revisit_for``, counted
    from the first fetch (``now`` when this is the first). A due time past the
    window is None: the page was fetched for the last time.
    """
    if every_s is None:
        return None
    due = now + max(1, int(every_s * 1000))
    if for_s is not None:
        start = first_fetched_at if first_fetched_at is not None else now
        if due > start + int(for_s * 1000):
            return None
    return due


def _clean(value: str | None, cap: int) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > cap or any(ch in value for ch in "\r\n\0"):
        return None
    return value


def validators(headers: list[tuple[str, str]]) -> tuple[str | None, str | None]:
    """The ``ETag`` and ``Last-Modified`` of a response, or None for absent or unusable ones."""
    etag = last = None
    for k, v in headers:
        lk = k.lower()
        if lk == "etag" and etag is None:
            etag = _clean(v, 255)
        elif lk == "last-modified" and last is None:
            last = _clean(v, 64)
    return etag, last


def conditional_headers(prev: Previous | None) -> tuple[tuple[str, str], ...]:
    """The conditional request headers for a refetch: ``If-None-Match`` and ``If-Modified-Since``.

    Sent only when the last full capture is known (a 304 must have a payload to
    refer to); none on a first fetch.
    """
    if prev is None or prev.payload is None:
        return ()
    out: list[tuple[str, str]] = []
    etag = _clean(prev.etag, 255)
    if etag:
        out.append(("If-None-Match", etag))
    last = _clean(prev.last_modified, 64)
    if last:
        out.append(("If-Modified-Since", last))
    return tuple(out)


def verdict(prev: Previous | None, status: int, digest: str | None) -> Verdict:
    """Whether a fetch is a 304, an unchanged 200, or new content (to archive in full).

    A 304 counts as not modified only when a full capture is known to refer to;
    a 200 is identical when its payload digest equals that capture's.
    """
    if prev is None or prev.payload is None:
        return Verdict.CHANGED
    if status == 304:
        return Verdict.NOT_MODIFIED
    if status == 200 and digest is not None and digest == prev.payload.digest:
        return Verdict.IDENTICAL
    return Verdict.CHANGED
