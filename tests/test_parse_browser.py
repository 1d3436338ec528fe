"""Browser rules parse the rendered DOM: a JavaScript-built quote list crawled with real Chromium, parsed into exact rows.

The list pages hold no quote in their HTML: a script inserts the quotes after
load and builds the "next" link, as quotes.toscrape.com's ``/js/`` pages do.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from shoal.parse import QUALITY_EXIT_CODE, run_parse
from tests.conftest import missing
from tests.parse_helpers import crawl

pytestmark = pytest.mark.browser

QUOTES = {
    1: [
        ("“The world as we have created it is a process of our thinking.”", "Albert Einstein", ["change", "thinking"]),
        ("“It is our choices, Harry, that show what we truly are.”", "J.K. Rowling", ["choices"]),
        ("“천 리 길도 한 걸음부터.”", "속담", ["시작", "proverb"]),
    ],
    2: [
        ("“Try not to become a man of success.”", "Albert Einstein", ["success"]),
        ("“A day without sunshine is like, you know, night.”", "Steve Martin", []),
    ],
}  # fmt: skip

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Quotes to Scrape</title></head>
<body><div class="container"><h1>Quotes</h1><div id="quotes"></div><nav><ul class="pager" id="pager"></ul></nav></div>
<script>
var data = %(data)s;
window.addEventListener('load', function () {
  setTimeout(function () {
    var box = document.getElementById('quotes');
    data.forEach(function (q) {
      var d = document.createElement('div'); d.className = 'quote';
      var t = document.createElement('span'); t.className = 'text'; t.textContent = q[0]; d.appendChild(t);
      var a = document.createElement('small'); a.className = 'author'; a.textContent = q[1]; d.appendChild(a);
      var tags = document.createElement('div'); tags.className = 'tags';
      q[2].forEach(function (x) { var e = document.createElement('a'); e.className = 'tag'; e.textContent = x; tags.appendChild(e); });
      d.appendChild(tags); box.appendChild(d);
    });
    %(next)s
  }, 200);
});
</script></body></html>"""

NEXT = """var li = document.createElement('li'); li.className = 'next';
    li.innerHTML = '<a href="/js/page/%d/">Next</a>'; document.getElementById('pager').appendChild(li);"""


def page_html(n: int) -> str:
    """List page ``n``: its quotes as script data, and a script-built link to page n+1 if there is one."""
    nxt = NEXT % (n + 1) if n + 1 in QUOTES else ""
    return PAGE % {"data": json.dumps(QUOTES[n], ensure_ascii=False), "next": nxt}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/")
        if (
            len(parts) == 3
            and parts[:2] == ["js", "page"]
            and parts[2].isdigit()
            and int(parts[2]) in QUOTES
        ):
            status, body = 200, page_html(int(parts[2])).encode()
        else:
            status, body = 404, b"not found"
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def quotes_crawl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Crawl the two JavaScript list pages with Chromium; yields (base URL, data folder)."""
    if not (shutil.which("chromedriver") or os.path.exists("/usr/bin/chromedriver")):
        missing(
            "chromedriver",
            "install Debian's chromium and chromium-driver (make test does it as root)",
        )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        data = tmp_path_factory.mktemp("quotes")
        crawl(spec_text(base, data, ""))
        yield base, data
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def spec_text(base: str, data: Path, parse: str) -> str:
    """A crawl of the list pages with a browser rule that follows the script-built pagination."""
    return f"""
[crawl]
name = "quotes"
seeds = ["{base}/js/page/1/"]

[[rules]]
name = "js-list"
glob = "/js/page/*"
kind = "list"
render = "browser"
wait_for = ".quote"
follow = ["li.next a"]

[scope]
allow_private = true

[politeness]
delay = 0.05

[limits]
fetch_timeout = 30

[storage]
frontier = "sqlite:///{data.as_posix()}/frontier.sqlite"
archive = "{data.as_posix()}/warc"
fsync = false

[worker]
concurrency = 2
browsers = 1

{parse}
"""


QUOTES_TABLE = """
[parse]
out = "OUT"
to = "jsonl"

[parse.tables.quotes]
from = "js-list"
rows = "div.quote"
builtins = ["url"]
fields.text = { css = "span.text", required = true }
fields.author = { css = "small.author", required = true }
fields.tags = { css = "a.tag", all = true }
"""


def _write(base: str, data: Path, folder: Path, parse: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "quotes.toml"
    path.write_text(
        spec_text(base, data, parse.replace("OUT", (folder / "out").as_posix())), encoding="utf-8"
    )
    return path


def _rows(folder: Path, table: str) -> list[dict[str, Any]]:
    text = (folder / "out" / f"{table}.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def test_browser_rule_pages_parse_from_the_rendered_dom_into_exact_rows(
    quotes_crawl: tuple[str, Path], tmp_path: Path
) -> None:
    """Quotes inserted by script on two script-paginated pages come out as exact rows, page order kept."""
    base, data = quotes_crawl
    result = run_parse(_write(base, data, tmp_path, QUOTES_TABLE), processes=1, progress=False)
    assert result.ok, result.failures
    want = [
        {"url": f"{base}/js/page/{n}/", "text": t, "author": a, "tags": tags}
        for n, quotes in QUOTES.items()
        for t, a, tags in quotes
    ]
    assert _rows(tmp_path, "quotes") == want
    table = result.report.tables["quotes"]
    assert table.pages == 2 and table.pages_empty == 0 and table.rows == 5


def test_source_response_reads_the_raw_html_and_the_gate_catches_it(
    quotes_crawl: tuple[str, Path], tmp_path: Path
) -> None:
    """``source = "response"`` parses the raw HTML, where no quote exists: 0 rows, exit 4, both URLs listed."""
    base, data = quotes_crawl
    parse = QUOTES_TABLE.replace('from = "js-list"', 'from = "js-list"\nsource = "response"')
    result = run_parse(_write(base, data, tmp_path, parse), processes=1, progress=False)
    assert result.exit_code == QUALITY_EXIT_CODE
    assert result.failures == ["quotes: 0 rows (2 page(s) read; 2 gave no row)"]
    assert result.report.tables["quotes"].empty_urls == [f"{base}/js/page/1/", f"{base}/js/page/2/"]


def test_rule_level_source_and_all_captures_read_the_rendered_dom(
    quotes_crawl: tuple[str, Path], tmp_path: Path
) -> None:
    """``[parse.rules.NAME] source`` applies to every table, a table's own source wins, ``--all-captures`` keeps the DOM."""
    base, data = quotes_crawl
    parse = QUOTES_TABLE + '\n[parse.rules.js-list]\nsource = "response"\n'
    raw = run_parse(_write(base, data, tmp_path / "a", parse), processes=1, progress=False)
    assert raw.rows == {"quotes": 0}
    own = parse.replace('from = "js-list"', 'from = "js-list"\nsource = "rendered"')
    rendered = run_parse(
        _write(base, data, tmp_path / "b", own), processes=2, progress=False, all_captures=True
    )
    assert rendered.ok and rendered.rows == {"quotes": 5}
    assert [r["author"] for r in _rows(tmp_path / "b", "quotes")][:2] == [
        "Albert Einstein",
        "J.K. Rowling",
    ]
