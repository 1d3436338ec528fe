"""Page content as bytes become text: content codings undone, character sets decided.

:mod:`shoal.content.codings` undoes ``Content-Encoding`` layers incrementally
under a hard size cap (the fetcher while a body streams in, the parse stage
from the archive); :mod:`shoal.content.charset` decodes HTML the way a browser
would. :data:`HTML_TYPES` says which media types are read as HTML.
"""

from __future__ import annotations

from typing import Final

__all__ = ["HTML_TYPES"]

HTML_TYPES: Final = frozenset({"text/html", "application/xhtml+xml", ""})
"""Media types read as HTML (``""``: no ``Content-Type`` at all, which browsers sniff as HTML)."""
