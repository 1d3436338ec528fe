"""Tables from every content type a crawl archives, charsets that lie, the gate on empty tables, spec-relative functions.

One real crawl of tests/sites/parse.py's FeedSite on 127.0.0.1 (an RSS feed
declared EUC-KR whose bytes need CP949, an Atom feed, a JSON API answer, a
UTF-8 page whose ``<meta charset>`` says gb2312, two board pages) is parsed
with several ``[parse]`` sections.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shoal.parse import QUALITY_EXIT_CODE, read_table, run_parse
from shoal.parse.config import TableSpec
from shoal.parse.extract import TableExtractor
from shoal.parse.load import decode_body
from shoal.parse.values import main_text
from tests.parse_helpers import crawl, page_of
from tests.sites.parse import (
    API_ITEMS,
    ATOM_ENTRIES,
    LIAR_TITLE,
    RSS_ITEMS,
    FeedSite,
    feed_spec_text,
    liar_bytes,
    rss_bytes,
)

FEED_TABLES = """
[parse]
out = "{data}/tables"
to = "jsonl"

[parse.tables.news]
from = "rss"
content_types = ["xml"]
rows_xpath = "//item"
builtins = ["url", "encoding"]
fields.title = { xpath = "title/text()", required = true }
fields.link = { xpath = "link/text()" }
fields.published = { xpath = "pubDate/text()" }

[parse.tables.entries]
from = "atom"
content_types = ["application/atom+xml"]
namespaces = { a = "http://www.w3.org/2005/Atom" }
rows_xpath = "//a:entry"
builtins = ["url"]
fields.title = { xpath = "a:title/text()", required = true }
fields.link = { xpath = "a:link/@href" }
fields.updated = { xpath = "a:updated/text()", type = "datetime" }

[parse.tables.items]
from = "api"
rows_jmespath = "items"
builtins = ["url"]
fields.id = { jmespath = "id", type = "int", required = true }
fields.name = { jmespath = "name" }
fields.price = { jmespath = "price", type = "int" }
fields.tags = { jmespath = "tags", all = true }

[parse.tables.pages]
from = "liar"
builtins = ["url", "title", "encoding", "language"]
fields.heading = "h1"
"""


@dataclass
class Crawled:
    """The feed site's crawl: where its data is, and the site's URL."""

    data: Path
    base_url: str


@pytest.fixture(scope="module")
def feeds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crawled]:
    """Crawl the feed site once (every page archived, XML and JSON included)."""
    site = FeedSite()
    try:
        data = tmp_path_factory.mktemp("feeds")
        crawl(feed_spec_text(site.base_url, data.as_posix(), ""))
        yield Crawled(data, site.base_url)
    finally:
        site.stop()


def _spec(feeds: Crawled, folder: Path, parse: str) -> Path:
    """A spec file in ``folder`` for the crawled data with this ``[parse]`` section."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "feeds.toml"
    text = feed_spec_text(feeds.base_url, feeds.data.as_posix(), parse)
    path.write_text(text.replace("{data}", folder.as_posix()), encoding="utf-8")
    return path


def _rows(folder: Path, table: str) -> list[dict[str, object]]:
    lines = (folder / "tables" / f"{table}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _one_table(
    name: str, body: str, *, out: str = "{data}/tables", max_empty: float | None = None
) -> str:
    """A ``[parse]`` section writing JSON lines into ``out`` (with ``max_empty`` if given), one table ``name``."""
    gate = "" if max_empty is None else f"max_empty = {max_empty}\n"
    return f'\n[parse]\nout = "{out}"\nto = "jsonl"\n{gate}[parse.tables.{name}]\n{body}'


def _board_rows_finding_nothing(sources: str, subject: str) -> str:
    """A ``[parse]`` section whose table ``board`` (fed by ``sources``) looks for rows in a table the board pages lack."""
    return _one_table(
        "board",
        f"""from = {sources}
rows = "table.posts tr"
builtins = ["url"]
fields.subject = {subject}
""",
    )


def _shoal(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m shoal ARGS`` run in ``cwd``, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )


def _detail_table(fields: dict[str, Any]) -> TableExtractor:
    """The extractor of a table of ``detail`` pages with these fields and no builtins."""
    spec = TableSpec.model_validate({"from": "detail", "builtins": [], "fields": fields})
    return TableExtractor("t", spec)


def _demo_posts() -> list[str]:
    """Every demo blog post and the first 10 board posts, as the demo serves them."""
    from shoal.demo import pages as site

    posts = [site.blog_post(no) for no in range(1, 21)]
    pages = [site.render_blog_post(p) for p in posts if p is not None]
    return pages + [site.render_board_post(site.board_post(no)) for no in range(1, 11)]


def test_rss_atom_json_and_a_lying_charset_parse_into_exact_rows(
    feeds: Crawled, tmp_path: Path
) -> None:
    """RSS in EUC-KR needing CP949, Atom with a namespace, a JSON API and a gb2312-labelled UTF-8 page give exact rows."""
    spec = _spec(feeds, tmp_path, FEED_TABLES)
    result = run_parse(spec, processes=1, progress=False)
    assert result.ok, result.failures
    base = feeds.base_url
    news = _rows(tmp_path, "news")
    assert [(r["title"], r["link"], r["published"]) for r in news] == [
        (t, f"http://example.invalid{p}", d) for t, p, d in RSS_ITEMS
    ]
    assert {r["url"] for r in news} == {f"{base}/feed.rss"}
    assert {r["encoding"] for r in news} == {"cp949"}
    entries = _rows(tmp_path, "entries")
    assert [(r["title"], r["link"], r["updated"]) for r in entries] == [
        (t, f"http://example.invalid{p}", u) for t, p, u in ATOM_ENTRIES
    ]
    items = _rows(tmp_path, "items")
    assert [{k: r[k] for k in ("id", "name", "price", "tags")} for r in items] == API_ITEMS
    pages = _rows(tmp_path, "pages")
    assert len(pages) == 1
    page = pages[0]
    assert page["title"] == LIAR_TITLE and page["heading"] == LIAR_TITLE
    assert page["encoding"] == (
        "utf-8 (the page's <meta> says gb18030, which does not decode the bytes; they are valid UTF-8)"
    )
    assert page["language"] == "ko"
    report = result.report.tables
    assert report["news"].replacement_chars == 0 and report["pages"].replacement_chars == 0
    assert report["entries"].rows == 2 and report["entries"].pages_empty == 0


def test_a_table_says_which_types_it_takes_and_others_are_counted_in_plain_words(
    feeds: Crawled, tmp_path: Path
) -> None:
    """An HTML table fed by every rule parses the HTML pages and counts the feeds and JSON by a readable reason."""
    parse = _one_table(
        "any",
        """from = ["rss", "atom", "api", "liar"]
builtins = ["url", "title"]
""",
        max_empty=1.0,
    )
    result = run_parse(_spec(feeds, tmp_path, parse), processes=1, progress=False)
    t = result.report.tables["any"]
    assert t.pages == 4 and t.rows == 1 and t.errors == 0
    assert t.skipped == {
        "content type application/atom+xml is not one the table takes (html)": 1,
        "content type application/json is not one the table takes (html)": 1,
        "content type application/rss+xml is not one the table takes (html)": 1,
    }
    text = json.dumps(result.report.as_dict(), ensure_ascii=False) + result.report.html()
    assert "_Skip" not in text and "NotParsed" not in text
    assert "3 pages of other types skipped" in result.report.headline()


def test_a_rows_selector_that_matches_nothing_fails_the_run_with_the_urls(
    feeds: Crawled, tmp_path: Path
) -> None:
    """``rows`` matching nothing on every page: exit 4, a quality event, the page URLs in the report."""
    parse = _board_rows_finding_nothing('"board"', '{ css = "td.subject", required = true }')
    spec = _spec(feeds, tmp_path, parse)
    proc = _shoal(["parse", str(spec), "--processes", "1", "--no-progress"], tmp_path)
    assert proc.returncode == QUALITY_EXIT_CODE, proc.stdout + proc.stderr
    urls = [f"{feeds.base_url}/board1.html", f"{feeds.base_url}/board2.html"]
    assert "board: 0 rows (2 page(s) read; 2 gave no row)" in proc.stdout
    assert all(f"    {u}" in proc.stdout for u in urls)  # the URLs are printed under the failure
    report = json.loads((tmp_path / "tables" / "quality.json").read_text(encoding="utf-8"))
    assert report["ok"] is False
    assert report["tables"]["board"]["empty_urls"] == urls
    assert report["failures"] == ["board: 0 rows (2 page(s) read; 2 gave no row)"]
    assert all(u in (tmp_path / "tables" / "quality.html").read_text() for u in urls)
    from shoal.frontier import SqlFrontier

    frontier = SqlFrontier(f"sqlite:///{feeds.data}/frontier.sqlite", create=False)
    try:
        crawl_id = frontier.get_crawl("feeds").id
        events = frontier.pending_events(crawl_id, ["quality"])
    finally:
        frontier.close()
    assert any(urls[0] in e["message"] for e in events)


def test_too_many_empty_pages_fail_the_gate_by_the_spec_threshold(
    feeds: Crawled, tmp_path: Path
) -> None:
    """A table with rows from some pages but none from more than ``max_empty`` of them fails; a higher threshold passes."""
    mixed = """from = ["board", "liar"]
rows = "p.row"
builtins = ["url"]
fields.text = "p.row"
"""
    spec = _spec(feeds, tmp_path, _one_table("mixed", mixed, max_empty=0.3))
    result = run_parse(spec, processes=1, progress=False)
    assert result.exit_code == QUALITY_EXIT_CODE
    assert result.failures == ["mixed: 1 of 3 pages gave no row (33.3% > max_empty 30.0%)"]
    assert result.report.tables["mixed"].empty_urls == [f"{feeds.base_url}/liar.html"]
    relaxed = _one_table("mixed", mixed, max_empty=0.5)
    assert run_parse(_spec(feeds, tmp_path / "b", relaxed), processes=1, progress=False).ok


def test_replacement_characters_are_reported_and_gated(feeds: Crawled, tmp_path: Path) -> None:
    """Decoding the CP949 feed as UTF-8 (set in the spec) fills text with U+FFFD: the rate is reported and fails the gate."""
    parse = FEED_TABLES.replace(
        'content_types = ["xml"]', 'content_types = ["xml"]\nencoding = "utf-8"'
    )
    result = run_parse(_spec(feeds, tmp_path, parse), processes=1, progress=False)
    news = result.report.tables["news"]
    assert news.replacement_chars > 0 and news.replacement_rate > 0.1
    fields = {f.name: f for f in news.fields}
    assert fields["title"].replacement_chars > 0 and fields["link"].replacement_chars == 0
    assert any(
        line.startswith("news: ") and "U+FFFD" in line and "max_replacement" in line
        for line in result.failures
    )
    assert {r["encoding"] for r in _rows(tmp_path, "news")} == {"utf-8 (set in the spec)"}


def test_a_function_module_beside_the_spec_imports_from_any_directory(
    feeds: Crawled, tmp_path: Path
) -> None:
    """``function = "mod:fn"`` finds ``mod.py`` in the spec's folder when shoal runs elsewhere, no PYTHONPATH."""
    folder = tmp_path / "project"
    parse = _one_table(
        "shout",
        """from = "liar"
builtins = ["url"]
fields.loud = { function = "h5_shout_fields:loud", required = true }
""",
        out="tables",
    )
    spec = _spec(feeds, folder, parse)
    (folder / "h5_shout_fields.py").write_text(
        "def loud(page):\n    return (page.title or '').upper() + '!'\n", encoding="utf-8"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for args in (["validate", str(spec)], ["parse", str(spec), "--processes", "2"]):
        proc = _shoal(args, elsewhere, env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [r["loud"] for r in _rows(folder, "shout")] == [LIAR_TITLE.upper() + "!"]
    assert not (elsewhere / "tables").exists()


def test_outputs_follow_the_umask_and_csv_can_start_with_a_bom(
    feeds: Crawled, tmp_path: Path
) -> None:
    """Table files and reports get 0666 less the umask (not 0600); ``csv_bom`` writes a UTF-8 BOM Excel reads."""
    spec = _spec(feeds, tmp_path, FEED_TABLES.replace('to = "jsonl"', 'to = "csv"'))
    old = os.umask(0o022)
    try:
        run_parse(spec, processes=1, progress=False, csv_bom=True)
    finally:
        os.umask(old)
    out = tmp_path / "tables"
    for name in ("news.csv", "quality.json", "quality.html"):
        assert (out / name).stat().st_mode & 0o777 == 0o644, name
    raw = (out / "news.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and "똠방각하" in raw.decode("utf-8-sig")
    df = read_table(spec, "news")
    assert list(df["title"]) == [t for t, _p, _d in RSS_ITEMS]


def test_decode_body_prefers_valid_utf8_to_a_lying_label_and_keeps_real_legacy_text() -> None:
    """Valid UTF-8 under a false label is read as UTF-8 with the reason; real EUC-KR stays CP949; an override wins."""
    text, enc = decode_body(liar_bytes(), "text/html", "html")
    assert LIAR_TITLE in text
    assert (
        enc
        == "utf-8 (the page's <meta> says gb18030, which does not decode the bytes; they are valid UTF-8)"
    )
    legacy = '<meta charset="euc-kr"><p>똠방각하 뷁</p>'.encode("cp949")
    text, enc = decode_body(legacy, "text/html", "html")
    assert "똠방각하 뷁" in text and enc == "cp949"
    text, enc = decode_body("<p>Привет</p>".encode(), "text/html; charset=windows-1251", "html")
    assert "Привет" in text
    assert enc == "utf-8 (the HTTP header says cp1251, but the bytes are valid UTF-8)"
    text, enc = decode_body(rss_bytes(), "application/rss+xml", "xml")
    assert RSS_ITEMS[0][0] in text and enc == "cp949"
    text, enc = decode_body(legacy, "text/html", "html", "utf-8")
    assert "\ufffd" in text and enc == "utf-8 (set in the spec)"
    text, enc = decode_body('{"a": "가"}'.encode(), "application/json", "json")
    assert text == '{"a": "가"}' and enc == "utf-8"


def test_main_text_fast_mode_gives_the_same_text_on_the_demo_pages() -> None:
    """trafilatura's fast mode (no readability/justext fallback) extracts the same main text on the demo's posts."""
    pages = _demo_posts()
    assert len(pages) > 20
    for html in pages:
        assert main_text(html, fast=True) == main_text(html, fast=False)


def test_fetched_datetime_is_aware() -> None:
    """Built-in ``fetched_at`` values are aware UTC datetimes (a sanity check of the shared helper)."""
    from shoal.parse.extract import fetched_datetime

    assert fetched_datetime(0) == datetime(1970, 1, 1, tzinfo=UTC)


def test_rendered_frames_are_grafted_into_their_iframes() -> None:
    """A rendered page's frame DOMs are placed inside the matching ``<iframe>`` (others at the end), so selectors reach them."""
    page = page_of(
        '<html><body><h1>wrapper</h1><iframe id="mainFrame" src="/PostView?no=7"></iframe></body></html>',
        "http://blog.test/post",
        rule=None,
        source="rendered",
        frames=[
            (
                "http://blog.test/PostView?no=7",
                '<html><body><div id="post">본문 7</div></body></html>',
            ),
            ("http://ads.test/x", '<html><body><p class="ad">ad</p></body></html>'),
        ],
    )
    table = _detail_table(
        {"body": "iframe#mainFrame #post", "ad": {"css": "div[data-shoal-frame] p.ad"}}
    )
    res = table.extract(page)
    assert res.error is None and res.rows == [{"body": "본문 7", "ad": "ad"}]


def test_a_worker_process_that_dies_fails_the_parse_instead_of_hanging(
    feeds: Crawled, tmp_path: Path
) -> None:
    """A parse worker killed mid-run (here: a field function exits in worker processes) raises ParseError."""
    from shoal.parse import ParseError

    folder = tmp_path / "p"
    parse = _one_table(
        "doomed",
        """from = ["board", "liar", "rss", "atom", "api"]
content_types = ["html", "xml", "json"]
builtins = ["url"]
fields.x = { function = "h5_doom_fields:boom" }
""",
        out="tables",
        max_empty=1.0,
    )
    spec = _spec(feeds, folder, parse)
    (folder / "h5_doom_fields.py").write_text(
        "import multiprocessing, os\n\n\ndef boom(page):\n"
        "    if multiprocessing.parent_process() is not None:\n        os._exit(3)\n"
        "    return 'x'\n",
        encoding="utf-8",
    )
    with pytest.raises(ParseError, match="worker process died"):
        run_parse(spec, processes=2, progress=False)


def test_lexbor_and_lxml_give_the_same_text_on_the_demo_pages() -> None:
    """The all-CSS path (lexbor) and the parsel path (lxml) extract identical text from every demo page element."""
    from parsel import Selector
    from selectolax.lexbor import LexborHTMLParser

    from shoal.demo import pages as site
    from shoal.parse.values import element_text, lexbor_text

    pages = _demo_posts()
    pages += [site.render_home(), site.render_blog_list(1), site.render_board_list(1)]
    pages.append(
        "<div><b>서울</b>시 <table><tr><td>a</td><td>b</td></tr></table>"
        "<script>x()</script>\u200bend<br>next<!-- note --></div>"
    )
    compared = 0
    for html in pages:
        lx, lb = Selector(text=html, type="html"), LexborHTMLParser(html)
        for css in ("title", "h1", "article", "main", "div", "p", "li", "td", "body", "a"):
            a, b = lx.css(css), lb.css(css)
            assert len(a) == len(b), css
            for x, y in zip(a, b, strict=True):
                assert element_text(x.root) == lexbor_text(y), (css, html[:80])
                compared += 1
    assert compared > 500


def test_selectors_lexbor_cannot_run_go_through_parsel() -> None:
    """A field using cssselect's :contains() or parsel's ::text still works: the table reads the page with parsel."""
    from shoal.parse.values import lexbor_can

    assert lexbor_can("ul.tags li.tag") and not lexbor_can('li:contains("b")')
    assert not lexbor_can("p::text")
    page = page_of("<ul><li>a</li><li>b c</li></ul><p> hi </p>", "http://x.test/", rule=None)
    ex = _detail_table({"b": 'li:contains("b")', "p": {"css": "p::text"}, "all": "li"})
    assert not ex.fast
    res = ex.extract(page)
    assert res.error is None and res.rows == [{"b": "b c", "p": "hi", "all": "a"}]
    plain = TableExtractor("u", TableSpec.model_validate({"from": "detail", "fields": {"x": "li"}}))
    assert plain.fast


def test_shoal_report_shows_skipped_pages_empty_pages_and_failing_urls(
    feeds: Crawled, tmp_path: Path
) -> None:
    """``shoal report`` (terminal and HTML) lists skipped types, pages without rows and the URLs under each failure."""
    from rich.console import Console

    from shoal.parse import show_report

    parse = _board_rows_finding_nothing('["board", "api"]', '"td.subject"')
    spec = _spec(feeds, tmp_path, parse)
    assert run_parse(spec, processes=1, progress=False).exit_code == QUALITY_EXIT_CODE
    console = Console(record=True, width=200)
    report = show_report(spec, console=console, html=tmp_path / "r.html")
    text = console.export_text()
    assert "FAILED board: 0 rows (3 page(s) read; 1 skipped: content type application/json" in text
    assert f"    {feeds.base_url}/board1.html" in text and "skipped in board: 1 pages" in text
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert f"{feeds.base_url}/board2.html" in page and "Skipped: 1 pages" in page
    assert not report.ok and report.tables["board"].pages_empty == 2


def test_rule_level_encoding_applies_to_every_table_and_a_table_setting_wins(
    feeds: Crawled, tmp_path: Path
) -> None:
    """``[parse.rules.rss] encoding`` decodes the rule's pages for every table; a table's own ``encoding`` wins."""
    parse = FEED_TABLES + '\n[parse.rules.rss]\nencoding = "utf-8"\n'
    parse += """
[parse.tables.news_own]
from = "rss"
content_types = ["xml"]
encoding = "euc-kr"
rows_xpath = "//item"
builtins = ["encoding"]
fields.title = { xpath = "title/text()" }
"""
    result = run_parse(_spec(feeds, tmp_path, parse), processes=1, progress=False)
    assert {r["encoding"] for r in _rows(tmp_path, "news")} == {"utf-8 (set in the spec)"}
    assert result.report.tables["news"].replacement_chars > 0
    own = _rows(tmp_path, "news_own")
    assert [r["title"] for r in own] == [t for t, _p, _d in RSS_ITEMS]
    assert {r["encoding"] for r in own} == {"cp949 (set in the spec)"}


def test_normalize_text_equals_the_plain_split_rule_on_every_kind_of_space() -> None:
    """The fast path of normalize_text gives what splitting every line on whitespace gives, for every Unicode space."""
    import sys

    from shoal.parse.values import normalize_text

    def plain(text: str) -> str:
        text = text.replace("\u200b", " ")
        lines = (" ".join(line.split()) for line in text.split("\n"))
        return "\n".join(line for line in lines if line)

    spaces = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()] + ["\u200b"]
    for sp in spaces:
        for text in (
            f"a{sp}b",
            f"{sp}a",
            f"a{sp}",
            f"a {sp}b\nc",
            f"\n{sp}\n",
            f"가{sp}{sp}나\n다 라",
        ):
            assert normalize_text(text) == plain(text), repr(text)
    assert normalize_text("a\u200eb  c") == "a\u200eb c"
