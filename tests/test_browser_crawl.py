"""A crawl whose rules render with the browser: links from the rendered DOM, rendered records in the WARC."""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select

from shoal.archive import iter_records
from shoal.crawl import run_async, run_loop, start_crawl
from shoal.frontier import SqlFrontier
from shoal.frontier.tables import urls
from shoal.spec import parse_spec
from tests.conftest import missing

pytestmark = pytest.mark.browser

# The list page builds its links with JavaScript; plain HTTP sees none of them.
LIST = """<!doctype html><html><head><title>js board</title></head><body><ul id="posts"></ul>
<script>
setTimeout(function () {
  const ul = document.getElementById('posts');
  for (let i = 1; i <= 3; i++) {
    const li = document.createElement('li');
    li.innerHTML = '<a class="post" href="/post/' + i + '">글 ' + i + '</a>';
    ul.appendChild(li);
  }
}, 300);
</script></body></html>"""

POST = """<!doctype html><html><head><title>post %d</title></head><body><h1>글 %d</h1><div id="c"></div>
<script>setTimeout(function () {
  const d = document.createElement('p'); d.className = 'comment'; d.textContent = '댓글 %d'; document.getElementById('c').appendChild(d);
}, 300);</script></body></html>"""


class JsSite:
    """A tiny JavaScript-built board on 127.0.0.1, in a background thread."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.cookies: dict[str, str | None] = {}
        self.port = 0
        self._ready = threading.Event()

    def __enter__(self) -> JsSite:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()

        async def page(request: web.Request) -> web.Response:
            self.log.append(request.path)
            self.cookies[request.path] = request.headers.get("Cookie")
            if request.path == "/robots.txt":
                return web.Response(text="User-agent: *\nAllow: /\n")
            if request.path == "/":
                return web.Response(text=LIST, content_type="text/html")
            n = int(request.match_info.get("n", "0"))
            return web.Response(text=POST % (n, n, n), content_type="text/html")

        app = web.Application()
        app.router.add_get("/", page)
        app.router.add_get("/robots.txt", page)
        app.router.add_get("/post/{n}", page)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()


@pytest.fixture
def js_site() -> Iterator[JsSite]:
    if not (shutil.which("chromedriver") or os.path.exists("/usr/bin/chromedriver")):
        missing(
            "chromedriver",
            "install Debian's chromium and chromium-driver (make test does it as root)",
        )
    with JsSite() as s:
        yield s


def test_browser_rules_follow_rendered_links_and_archive_the_dom(
    js_site: JsSite, tmp_path: Path
) -> None:
    """A JS-built list page is rendered, its links followed, the DOMs archived, [scope.headers] sent and redacted."""
    base = f"http://127.0.0.1:{js_site.port}"
    text = f"""
[crawl]
name = "js"
seeds = ["{base}/"]

[[rules]]
name = "list"
glob = "/"
kind = "list"
render = "browser"
wait_for = "a.post"
follow = ["a.post"]

[[rules]]
name = "post"
glob = "/post/*"
kind = "detail"
render = "browser"
wait_for = ".comment"

[scope]
allow_private = true

[scope.headers."127.0.0.1:{js_site.port}"]
Cookie = "board=s3cret-session"

[politeness]
delay = 0.05

[limits]
fetch_timeout = 30

[storage]
frontier = "sqlite:///{tmp_path}/f.sqlite"
archive = "{tmp_path}/warc"

[worker]
concurrency = 2
browsers = 1
"""
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
