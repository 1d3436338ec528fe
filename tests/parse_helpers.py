"""Helpers of the parse tests: run a real crawl in this process, copy a crawled folder."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from shoal.crawl import run_async, run_loop, start_crawl
from shoal.frontier.sql import SqlFrontier
from shoal.parse.extract import Page
from shoal.spec import Spec, parse_spec

DEMO_TOML = Path(__file__).resolve().parents[1] / "src" / "shoal" / "demo" / "demo.toml"


def demo_parse_section(data: str | Path) -> str:
    """The ``[parse]`` part of demo.toml (it is the file's last part) with its data folder filled in."""
    text = DEMO_TOML.read_text(encoding="utf-8")
    return text[text.index("\n[parse]\n") + 1 :].replace("{data}", Path(data).as_posix())


def demo_spec(base_url: str, data: str | Path) -> str:
    """``demo.toml`` for a live server and a data folder, with the demo's ``[parse]`` section."""
    from shoal.demo.expected import spec_text

    return spec_text(base_url, data)


def crawl(text: str, db_url: str | None = None) -> Spec:
    """Run the crawl of spec ``text`` to its end with one in-process worker; returns the spec."""
    spec = parse_spec(text)
    frontier = SqlFrontier(db_url or spec.frontier_url())
    try:
        info = start_crawl(frontier, spec, text)
        _stats, finished = run_loop(
            run_async(spec, frontier, info, progress=False, install_signals=False)
        )
        assert finished, "the crawl did not finish"
    finally:
        frontier.close()
    return spec


def clone(src: Path, dst: Path, base_url: str, *, parse: str | None = None) -> Path:
    """Copy a crawled demo folder (frontier + archive) to ``dst``; returns the path of its spec there."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("tables", "*.toml"))
    text = demo_spec(base_url, dst)
    if parse is not None:
        text = text.split("\n[parse]", 1)[0] + "\n" + parse
    path = dst / "demo.toml"
    path.write_text(text, encoding="utf-8")
    return path


def copy_frontier(src_url: str, dst_url: str) -> None:
    """Copy the crawls and URLs of one frontier database into another (empty) one, ids kept.

    The archive stays where it is: the copy is the same crawl, now on another
    backend, as if it had been crawled there.
    """
    from sqlalchemy import insert, select

    from shoal.frontier.tables import crawls, urls

    src = SqlFrontier(src_url, create=False)
    dst = SqlFrontier(dst_url, create=True)
    try:
        for table in (crawls, urls):
            rows = [dict(r._mapping) for r in src.query(select(table).order_by(table.c.id))]
            with dst.engine.begin() as conn:
                for i in range(0, len(rows), 500):
                    conn.execute(insert(table), rows[i : i + 500])
    finally:
        src.close()
        dst.close()


def page_of(html: str, url: str = "http://example.test/posts/1", **more: Any) -> Page:
    """A 200 ``text/html`` page built from HTML text, as parse reads it when fetched from ``url``.

    ``more`` sets other fields (``rule``, default ``post``; ``source``; ``frames``).
    """
    fields: dict[str, Any] = {"rule": "post", **more}
    return Page(
        url=url,
        final_url=url,
        fetched_at=None,
        http_status=200,
        content_type="text/html",
        headers=[],
        body=html.encode(),
        text=html,
        encoding="utf-8",
        **fields,
    )
