"""The bundled demo: a small Korean/English community site and a crawl spec for it.

- :mod:`~shoal.demo.data`: the tables the site is generated from, and its URLs;
- :mod:`~shoal.demo.pages`: each page's content and HTML;
- :mod:`~shoal.demo.site`: the aiohttp server; ``start_in_thread()`` serves
  the site on 127.0.0.1 in a background thread;
- :mod:`~shoal.demo.expected`: ``demo_spec_text(server.base_url, data_dir)``
  is ``demo.toml`` ready to crawl it, and ``expected(server.base_url)`` what
  that crawl must end with;
- :mod:`~shoal.demo.images`: the notice picture the parse stage reads with OCR;
- :mod:`~shoal.demo.run`: ``shoal demo`` (serve, crawl, parse) and ``shoal serve-demo``.
"""

from __future__ import annotations

from shoal.demo.data import PLANTED_NUMBERS, PLANTED_PII
from shoal.demo.expected import expected, spec_text
from shoal.demo.site import DemoServer, Hit, RequestLog, make_app, start_in_thread

demo_spec_text = spec_text
"""``demo.toml`` with the live server's URL and the data folder filled in (see :func:`spec_text`)."""

__all__ = [
    "PLANTED_NUMBERS",
    "PLANTED_PII",
    "DemoServer",
    "Hit",
    "RequestLog",
    "demo_spec_text",
    "expected",
    "make_app",
    "spec_text",
    "start_in_thread",
]
