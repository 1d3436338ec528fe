"""Secrets out of everything a person or a file may see: logs, status output, WARC metadata.

Credentials reach a crawler in four ways: in URLs (``http://user:pass@host/``,
``?access_token=...``), in proxy URLs, in the frontier's database URL, and in
request headers a spec adds (``Authorization``, ``Cookie``). The helpers here replace the secret part with
``***`` and keep the rest, so a redacted line still says which host, user or
header it was about:

- :func:`redact_url`: ``http://user:pass@host/?token=abc`` →
  ``http://user:***@host/?token=***`` (a user name alone, often a token, is
  hidden entirely: ``https://***@host/``);
- :func:`redact_text`: the same for every URL inside free text (exception
  messages, error details), plus ``Authorization: ...``-style fragments;
- :func:`redact_headers`: header values of :data:`SECRET_HEADERS` (the auth
  scheme and cookie names are kept: ``Basic ***``, ``session=***``);
- :class:`RedactingFilter`: a logging filter that applies :func:`redact_text`
  to a record's message and traceback; add it to a handler to cover every logger.

Redaction is for what is shown or stored as metadata; the secrets themselves
stay where the crawl needs them (the spec, the request being sent).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

__all__ = [
    "MASK",
    "SECRET_HEADERS",
    "SECRET_PARAMS",
    "RedactingFilter",
    "redact_headers",
    "redact_text",
    "redact_url",
]

MASK = "***"

SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "x-auth-token",
        "x-csrf-token",
        "x-xsrf-token",
    }
)
"""Header names (lower case) whose values are secrets."""

SECRET_PARAMS = frozenset(
    {
        "access_token",
        "api_key",
        "apikey",
        "auth",
        "client_secret",
        "key",
        "passwd",
        "password",
        "pwd",
        "secret",
        "session",
        "sessionid",
        "sid",
        "sig",
        "signature",
        "token",
    }
)
"""Query parameter names (lower case) whose values are secrets."""

# scheme://user[:password]@ : no "/", "?", "#" or whitespace in the userinfo; a password may
# hold "@" (a database password often does), so it runs to the authority's last "@".
_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/?#\s]*)(?::(?P<password>[^/?#\s]*))?@"
)
_PARAM = re.compile(r"(?P<lead>[?&;](?P<name>[A-Za-z0-9_.-]+)=)(?P<value>[^&;#\s\"'<>]*)")
_HEADER_IN_TEXT = re.compile(
    r"(?P<name>\b(?:proxy-)?authorization|\bcookie|\bx-api-key)(?P<sep>[\"']?\s*[:=]\s*[\"']?)"
    r"(?P<value>(?:(?:basic|bearer|digest|token)\s+)?)[^\s\"',;]+",
    re.IGNORECASE,
)


def _userinfo(m: re.Match[str]) -> str:
    if m.group("password") is None:
        return f"{m.group('scheme')}{MASK}@" if m.group("user") else m.group(0)
    return f"{m.group('scheme')}{m.group('user')}:{MASK}@"


def _param(m: re.Match[str]) -> str:
    if m.group("name").lower() in SECRET_PARAMS and m.group("value"):
        return m.group("lead") + MASK
    return m.group(0)


def redact_url(url: str) -> str:
    """``url`` with its password (or a lone user name) and secret query values replaced by ``***``.

    The one redaction of URLs in shoal: crawled URLs, proxy URLs and database URLs
    (``postgresql://shoal:p@ss@db/x`` → ``postgresql://shoal:***@db/x``), even malformed ones.
    """
    if "@" in url:
        url = _USERINFO.sub(_userinfo, url)
    if "=" in url:
        url = _PARAM.sub(_param, url)
    return url


def redact_text(text: str) -> str:
    """``text`` with the secrets of every URL and header fragment in it replaced by ``***``."""
    text = redact_url(text)
    if ":" in text or "=" in text:
        text = _HEADER_IN_TEXT.sub(
            lambda m: f"{m.group('name')}{m.group('sep')}{m.group('value')}{MASK}", text
        )
    return text


def _header_value(name: str, value: str) -> str:
    lname = name.lower()
    if lname in ("cookie", "set-cookie"):
        parts = []
        for part in value.split(";"):
            key, eq, _ = part.partition("=")
            parts.append(f"{key}={MASK}" if eq and key.strip() else part)
        return ";".join(parts)
    scheme, space, _ = value.strip().partition(" ")
    return f"{scheme} {MASK}" if space and lname.endswith("authorization") else MASK


def redact_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers with the values of :data:`SECRET_HEADERS` redacted (names and order kept)."""
    return [(k, _header_value(k, v) if k.lower() in SECRET_HEADERS else v) for k, v in headers]


class RedactingFilter(logging.Filter):
    """A logging filter that redacts secrets in each record's message and traceback.

    Attach it to a *handler* (``handler.addFilter(RedactingFilter())``): a
    handler filter sees the records of every logger, a logger filter only those
    logged on that very logger.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops it."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a broken format string: keep the record as it is
            return True
        record.msg, record.args = redact_text(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True
