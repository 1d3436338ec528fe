"""User functions for the parse tests: ``module:function`` references in ``[parse]`` sections."""

from __future__ import annotations

from typing import Any

from shoal.parse.extract import Page


def word_count(page: Page) -> int:
    """A field function: the number of words in the paragraphs of the page's ``div.content``."""
    text = " ".join(page.css("div.content p ::text").getall())
    return len(text.split())


def comment_rows(page: Page) -> list[dict[str, Any]]:
    """A table function: one row per comment of a board post."""
    rows = []
    for i, li in enumerate(page.css("ul.comments li.comment")):
        rows.append(
            {"n": i + 1, "who": li.css(".writer::text").get(), "said": li.css("p::text").get()}
        )
    return rows


def row_upper(page: Page) -> dict[str, Any]:
    """A table function for tables with a ``rows`` selector: reads the current row element."""
    assert page.row is not None
    return {"upper": (page.row.css("::text").get() or "").upper()}


def broken(page: Page) -> dict[str, Any]:
    """A table function that fails, to show failures are reported, not raised."""
    raise RuntimeError("this layout is not supported")
