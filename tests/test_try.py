"""``shoal try``: one page through the spec (rule, links followed or dropped, table values, step times)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shoal.spec import parse_spec
from shoal.trial import TrialError, try_page
from tests.parse_helpers import crawl, demo_spec
from tests.sites.browser import JsSite, js_board_spec, js_site

__all__ = ["js_site"]


def _spec(base: str, data: Path) -> Any:
    return parse_spec(demo_spec(base, data))


def test_list_page_shows_the_exact_links_and_what_a_crawl_does(
    demo_server: Any, tmp_path: Path
) -> None:
    """The blog's first list page: its rule, the 6 links `follow` keeps in page order, and the repeat dropped."""
    base = demo_server.base_url
    r = try_page(_spec(base, tmp_path), f"{base}/blog/")
    assert (r.rule, r.kind, r.render, r.http_status, r.source) == (
        "blog-list",
        "list",
        "http",
        200,
        "fetch",
    )
    assert r.followed == [
        f"{base}/blog/posts/12",
        f"{base}/blog/posts/11",
        f"{base}/blog/posts/10",
        f"{base}/blog/posts/9",
        f"{base}/blog/?page=2",
        f"{base}/blog/?page=3",
    ]
    assert [(v.rule, v.kind) for v in r.links if v.kept] == [("blog-post", "detail")] * 4 + [
        ("blog-list", "list")
    ] * 2
    dropped = [(v.url, v.reason) for v in r.links if not v.kept]
    assert dropped == [(f"{base}/blog/?page=2", "repeated on the page")]
    assert r.tables == []
    assert [s.name for s in r.steps] == [
        "address policy",
        "robots.txt",
        "fetch (http)",
        "decode",
        "links",
    ]
    assert all(s.seconds >= 0 for s in r.steps)


def test_home_page_drops_links_no_rule_takes_and_robots_is_obeyed(
    demo_server: Any, tmp_path: Path
) -> None:
    """The home page follows every link; /private/secret is refused by robots.txt when tried directly."""
    base = demo_server.base_url
    spec = _spec(base, tmp_path)
    r = try_page(spec, f"{base}/")
    assert r.rule == "home"
    assert f"{base}/blog/" in r.followed and f"{base}/board/free/list?page=1" in r.followed
    with pytest.raises(TrialError, match=r"robots\.txt .* does not let"):
        try_page(spec, f"{base}/private/secret")
    assert "/private/secret" not in [h.path_qs for h in demo_server.log]


def test_detail_page_shows_each_field_value(demo_server: Any, tmp_path: Path) -> None:
    """Blog post 3 gives the posts table its exact fields and the notice image to archive."""
    base = demo_server.base_url
    r = try_page(_spec(base, tmp_path), f"{base}/blog/posts/3")
    assert (r.rule, r.kind) == ("blog-post", "detail")
    assert [v.url for v in r.images] == [f"{base}/img/notice.png"]
    assert [t.table for t in r.tables] == ["posts"]
    t = r.tables[0]
    assert t.error is None and t.missing == [] and t.cast_errors == {}
    (row,) = t.rows
    assert row["headline"] == "제주도 3박 4일 여행 경비 정리"
    assert row["author"] == "이서연"
    assert row["published"].isoformat() == "2026-01-07"
    assert row["post_id"] == 3
    assert row["tags"] == ["여행", "제주"]
    assert row["body"].startswith("항공권 왕복 89,000원, 숙소 3박 285,000원")
    assert row["url"] == f"{base}/blog/posts/3"
    assert "table posts" in [s.name for s in r.steps]


def test_no_rule_and_refused_address_are_explained(demo_server: Any, tmp_path: Path) -> None:
    """A URL no rule takes is refused with the rules named; a loopback page without allow_private names the setting."""
    base = demo_server.base_url
    text = demo_spec(base, tmp_path).replace('glob = "*"', 'glob = "/nothing-else"')
    with pytest.raises(TrialError, match=r"no rule matches .* home, blog-list"):
        try_page(parse_spec(text), f"{base}/gone")
    closed = demo_spec(base, tmp_path).replace("allow_private = true", "allow_private = false")
    before = len(demo_server.log)
    with pytest.raises(TrialError, match="allow_private"):
        try_page(parse_spec(closed), f"{base}/blog/")
    assert len(demo_server.log) == before  # nothing was sent


def test_page_outcome_says_what_a_crawl_records(demo_server: Any, tmp_path: Path) -> None:
    """A 410 is a permanent failure, a 302 a done redirect whose target is a URL of its own."""
    base = demo_server.base_url
    spec = _spec(base, tmp_path)
    gone = try_page(spec, f"{base}/gone")
    assert (gone.http_status, gone.outcome) == (410, "failed (permanent), no retry")
    hop = try_page(spec, f"{base}/redirect/1")
    assert hop.http_status == 302
    assert hop.outcome == "done (a redirect to /redirect/2: the target is a URL of its own)"


def test_hosts_of_sitemaps_and_feeds_are_in_scope_as_in_a_crawl(
    demo_server: Any, tmp_path: Path
) -> None:
    """A link to the host of a `[crawl]` sitemap is followed, as the crawl follows it; other hosts are not."""
    base = demo_server.base_url
    port = base.rsplit(":", 1)[1]
    seeds = f'seeds = ["{base}/"]'
    text = demo_spec(base, tmp_path)
    assert seeds in text
    on_localhost = text.replace(seeds, f'seeds = ["http://localhost:{port}/"]')
    with_sitemap = text.replace(
        seeds, f'seeds = ["http://localhost:{port}/", {{ sitemap = "{base}/sitemap.xml" }}]'
    )
    out = try_page(parse_spec(on_localhost), f"{base}/blog/")
    assert out.followed == []
    assert f"host 127.0.0.1:{port} out of scope" in {v.reason for v in out.links}
    assert not any(v.kept for v in out.links)
    r = try_page(parse_spec(with_sitemap), f"{base}/blog/")
    assert r.followed[:4] == [f"{base}/blog/posts/{n}" for n in (12, 11, 10, 9)]


@pytest.mark.browser
def test_browser_rule_links_and_fields_come_from_the_rendered_dom(
    js_site: JsSite, tmp_path: Path
) -> None:
    """A browser list rule finds the script-built links and a detail field the Ajax comment, live and from the archive."""
    base = js_site.base
    more = """
[parse.tables.posts]
from = "post"

[parse.tables.posts.fields]
heading = { css = "h1", required = true }
comment = { css = "p.comment", required = true }
"""
    text = js_board_spec(js_site, tmp_path, more)
    spec = parse_spec(text)
    r = try_page(spec, f"{base}/")
    assert (r.rule, r.render) == ("list", "browser")
    assert r.followed == [f"{base}/post/1", f"{base}/post/2", f"{base}/post/3"]
    d = try_page(spec, f"{base}/post/2")
    (row,) = d.tables[0].rows
    assert (row["heading"], row["comment"]) == ("글 2", "댓글 2")
    assert "fetch (browser)" in [s.name for s in d.steps]
    crawl(text)
    before = list(js_site.log)
    archived = try_page(spec, f"{base}/post/2", from_archive=True)
    (row,) = archived.tables[0].rows
    assert (row["heading"], row["comment"]) == (
        "글 2",
        "댓글 2",
    )  # the rendered DOM, as parse reads it
    listed = try_page(spec, f"{base}/", from_archive=True)
    assert listed.followed == [f"{base}/post/1", f"{base}/post/2", f"{base}/post/3"]
    assert js_site.log == before  # nothing fetched from the archive


@pytest.mark.slow
def test_from_archive_reads_the_capture_and_cli_prints_json(
    demo_server: Any, tmp_path: Path
) -> None:
    """After a crawl, `shoal try --from-archive --json` reads board post 7 from the archive, sending no request."""
    base = demo_server.base_url
    text = demo_spec(base, tmp_path)
    crawl(text)
    spec_path = tmp_path / "demo.toml"
    spec_path.write_text(text, encoding="utf-8")
    url = f"{base}/board/free/read?no=7"
    before = len(demo_server.log)
    res = subprocess.run(
        [sys.executable, "-m", "shoal", "try", str(spec_path), url, "--from-archive", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert len(demo_server.log) == before
    assert (out["source"], out["rule"], out["kind"], out["http_status"]) == (
        "archive",
        "board-post",
        "detail",
        200,
    )
    (table,) = out["tables"]
    assert table["table"] == "board" and table["missing"] == []
    (row,) = table["rows"]
    fresh = try_page(parse_spec(text), url).tables[0].rows[0]
    for k in ("subject", "writer", "views", "body", "comment_count", "comments"):
        assert row[k] == fresh[k], k
    assert [s["name"] for s in out["steps"]][:2] == ["find capture", "read archive"]
