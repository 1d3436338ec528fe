"""A crawl whose rules render with the browser: links from the rendered DOM, rendered records in the WARC."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from shoal.archive import iter_records
from shoal.crawl import run_async, run_loop, start_crawl
from shoal.frontier import SqlFrontier
from shoal.frontier.tables import urls
from shoal.spec import parse_spec
from tests.sites.browser import JsSite, js_board_spec, js_site

pytestmark = pytest.mark.browser

__all__ = ["js_site"]


def test_browser_rules_follow_rendered_links_and_archive_the_dom(
    js_site: JsSite, tmp_path: Path
) -> None:
    """A JS-built list page is rendered, its links followed, the DOMs archived, [scope.headers] sent and redacted."""
    base = js_site.base
    more = f"""
[scope.headers."127.0.0.1:{js_site.port}"]
Cookie = "board=s3cret-session"

[politeness]
delay = 0.05

[worker]
concurrency = 2
browsers = 1
"""
    text = js_board_spec(js_site, tmp_path, more)
    spec = parse_spec(text)
    frontier = SqlFrontier(spec.frontier_url())
    try:
        crawl = start_crawl(frontier, spec, text)
        _, finished = run_loop(
            run_async(spec, frontier, crawl, progress=False, install_signals=False)
        )
        rows = {r.url: r for r in frontier.query(select(urls))}
    finally:
        frontier.close()
    assert finished
    assert {u: r.status for u, r in rows.items()} == {
        f"{base}/": "done",
        f"{base}/post/1": "done",
        f"{base}/post/2": "done",
        f"{base}/post/3": "done",
    }
    records: dict[str, list[Any]] = {}
    for f in Path(spec.archive_dir()).glob("*.warc.gz"):
        for _ref, rec in iter_records(f):
            records.setdefault(rec.record_type, []).append(rec)
    responses = {r.url: r for r in records["response"]}
    conversions = {r.url: r for r in records["conversion"]}
    assert set(conversions) == set(responses) == set(rows)
    post = conversions[f"{base}/post/2"]
    assert "댓글 2" in post.body.decode("utf-8")  # the Ajax comment is in the rendered DOM ...
    assert (
        "댓글 2" not in responses[f"{base}/post/2"].body.decode("utf-8").split("<script>")[0]
    )  # ... not in the raw page
    assert post.warc_headers.get("WARC-Refers-To") == responses[f"{base}/post/2"].record_id
    # [scope.headers] reached every browser-rendered page of their host, and no WARC record keeps the secret.
    for path in ("/", "/post/1", "/post/2", "/post/3"):
        assert js_site.cookies[path] == "board=s3cret-session", path
    raw = b"".join(
        gzip.decompress(f.read_bytes()) for f in Path(spec.archive_dir()).glob("*.warc.gz")
    )
    assert b"WARC-Type: request" in raw and b"\r\nCookie: " in raw
    assert b"s3cret-session" not in raw
