"""Two tiny sites crawled for the parse tests, and their crawl specs.

:class:`LayoutSite`: a site whose layout changes half-way, with a notice
image. Posts 1..``OLD_LAYOUT`` use the old layout (``h1.title``); the later
ones the new layout (``h2.post-title``), as if the site was redesigned during
the crawl. Post 2 shows ``/img/notice.png`` (Korean and English text) for OCR.

:class:`FeedSite`: an RSS feed declared EUC-KR whose bytes need CP949, an Atom
feed, a JSON API answer, a UTF-8 page whose ``<meta charset>`` lies and two
board pages. Both sites start serving on 127.0.0.1 when created.
"""

from __future__ import annotations

import json

from aiohttp import web

from shoal.demo.images import notice_png
from shoal.testing import ThreadedSite

POSTS = 10
OLD_LAYOUT = 6
IMAGE_POST = 2


Answer = tuple[int, str, bytes]
"""What a site answers to a path: status, Content-Type and body."""


def html_page(title: str, body: str, *, lang: str = "", charset: str = "utf-8") -> str:
    """A whole HTML page: ``<meta charset>``, ``<title>``, ``body`` (``lang`` on ``<html>`` if given)."""
    lang_attr = f' lang="{lang}"' if lang else ""
    return (
        f'<!DOCTYPE html><html{lang_attr}><head><meta charset="{charset}"><title>{title}</title>'
        f"</head><body>{body}</body></html>"
    )


def post_html(no: int) -> str:
    """Post ``no`` in the layout of its time."""
    img = '<img class="notice" src="/img/notice.png" alt="notice">' if no == IMAGE_POST else ""
    if no <= OLD_LAYOUT:
        head = f'<h1 class="title">Post {no}</h1>'
    else:
        head = f'<h2 class="post-title">Post {no}</h2>'
    body = f'<article>{head}<div class="content"><p>Body of post {no}.</p>{img}</div></article>'
    return html_page(f"Post {no}", body, lang="en")


def index_html() -> str:
    """The index: a link to every post."""
    links = "".join(f'<li><a href="/posts/{n}">post {n}</a></li>' for n in range(1, POSTS + 1))
    return html_page("index", f"<ul>{links}</ul>")


def _layout_page(path: str) -> Answer:
    if path == "/":
        return 200, "text/html; charset=utf-8", index_html().encode()
    if path == "/img/notice.png":
        return 200, "image/png", notice_png()
    if path.startswith("/posts/") and path[7:].isdigit() and 1 <= int(path[7:]) <= POSTS:
        return 200, "text/html; charset=utf-8", post_html(int(path[7:])).encode()
    return 404, "text/html; charset=utf-8", b"not found"


class LayoutSite(ThreadedSite):
    """The layout site, served on 127.0.0.1 in a thread from its creation; ``stop()`` ends it."""

    thread_name = "parse-layout-site"

    def __init__(self) -> None:
        self.port = 0
        self.start()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def answer(path: str) -> Answer:
        """What the site answers to ``path`` (path and query)."""
        return _layout_page(path)

    async def _open(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self.port = await self._listen(await self._runner(app), "127.0.0.1")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        status, ctype, body = self.answer(request.path_qs)
        return web.Response(body=body, status=status, headers={"Content-Type": ctype})


def _spec(name: str, seeds: str, rules: str, data: str, parse: str) -> str:
    """A crawl spec of one of the sites: no delay, 4 fetches at a time, data in ``data``, then ``parse``."""
    return f"""
[crawl]
name = "{name}"
seeds = [{seeds}]
{rules}
[scope]
allow_private = true

[politeness]
delay = 0
jitter = 0
concurrency_per_host = 4

[limits]
fetch_timeout = 5
connect_timeout = 2
max_retries = 1
retry_base = 0.2

[storage]
frontier = "sqlite:///{data}/frontier.sqlite"
archive = "{data}/warc"
fsync = false

[worker]
concurrency = 4
flush_interval = 0.05

{parse}
"""


LAYOUT_RULES = """
[[rules]]
name = "index"
glob = "/"
kind = "list"

[[rules]]
name = "post"
regex = '/posts/\\d+$'
kind = "detail"
images = "img.notice"
"""


def spec_text(base_url: str, data: str, parse: str) -> str:
    """A crawl spec for the site (posts archive their notice images) plus a ``[parse]`` section."""
    return _spec("layout", f'"{base_url}/"', LAYOUT_RULES, data, parse)


# --------------------------------------------------------------------------- feeds, JSON, charsets

RSS_ITEMS = [
    ("똠방각하 뷁 소식", "/news/1", "Mon, 30 Nov 2026 09:00:00 +0900"),
    ("서울 날씨 맑음", "/news/2", "Mon, 30 Nov 2026 10:00:00 +0900"),
    ("쌰랄라 공지", "/news/3", "Mon, 30 Nov 2026 11:00:00 +0900"),
]
"""(title, path, pubDate) of the RSS items: the first and last need CP949 (not in EUC-KR proper)."""

ATOM_ENTRIES = [
    ("First entry", "/entries/1", "2026-11-29T08:00:00+00:00"),
    ("둘째 글", "/entries/2", "2026-11-30T08:00:00+00:00"),
]

API_ITEMS = [
    {"id": 1, "name": "사과", "price": 1200, "tags": ["fruit", "red"]},
    {"id": 2, "name": "배", "price": 2500, "tags": []},
    {"id": 3, "name": "Kiwi", "price": None, "tags": ["fruit"]},
]

LIAR_TITLE = "서울 날씨 — 北京 天气"


def rss_bytes() -> bytes:
    """An RSS 2.0 feed declared EUC-KR (XML declaration only; no charset in the header), encoded CP949."""
    items = "".join(
        f"<item><title>{t}</title><link>http://example.invalid{p}</link><pubDate>{d}</pubDate></item>"
        for t, p, d in RSS_ITEMS
    )
    text = (
        '<?xml version="1.0" encoding="EUC-KR"?>\n<rss version="2.0"><channel>'
        f"<title>한국 뉴스</title><link>http://example.invalid/</link>{items}</channel></rss>"
    )
    return text.encode("cp949")


def atom_bytes() -> bytes:
    """An Atom feed (default namespace), UTF-8."""
    entries = "".join(
        f'<entry><title>{t}</title><link href="http://example.invalid{p}"/><updated>{u}</updated></entry>'
        for t, p, u in ATOM_ENTRIES
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>atom</title>{entries}</feed>"
    ).encode()


def liar_bytes() -> bytes:
    """A page whose bytes are UTF-8 but whose ``<meta charset>`` says gb2312."""
    body = (
        f"<h1>{LIAR_TITLE}</h1>"
        "<p>오늘 서울은 맑고 북경은 흐립니다. 내일은 전국에 비가 내리겠습니다.</p>"
    )
    return html_page(LIAR_TITLE, body, lang="ko", charset="gb2312").encode()


def board_bytes(n: int) -> bytes:
    """A board page whose posts are in ``div.list``: a table that looks for ``table.posts tr`` finds nothing."""
    rows = "".join(f'<p class="row">post {n}-{i}</p>' for i in range(3))
    return html_page(f"board {n}", f'<div class="list">{rows}</div>').encode()


def _feed_page(path: str) -> Answer:
    if path == "/feed.rss":
        return 200, "application/rss+xml", rss_bytes()
    if path == "/atom.xml":
        return 200, "application/atom+xml", atom_bytes()
    if path == "/api/items.json":
        body = json.dumps({"items": API_ITEMS}, ensure_ascii=False).encode()
        return 200, "application/json", body
    if path == "/liar.html":
        return 200, "text/html", liar_bytes()
    if path in ("/board1.html", "/board2.html"):
        return 200, "text/html; charset=utf-8", board_bytes(int(path[6]))
    return 404, "text/plain", b"not found"


class FeedSite(LayoutSite):
    """RSS (EUC-KR/CP949), Atom, a JSON API, a page with a lying charset and two board pages, on 127.0.0.1."""

    thread_name = "parse-feed-site"

    @staticmethod
    def answer(path: str) -> Answer:
        """What the site answers to ``path`` (path and query)."""
        return _feed_page(path)


FEED_PATHS = {
    "rss": "/feed.rss",
    "atom": "/atom.xml",
    "api": "/api/items.json",
    "liar": "/liar.html",
    "board": "/board*.html",
}


def feed_spec_text(base_url: str, data: str, parse: str) -> str:
    """A crawl of every feed-site page (each its own rule, non-HTML archived) plus a ``[parse]`` section."""
    seeds = ", ".join(
        f'"{base_url}{p}"' for p in ("/feed.rss", "/atom.xml", "/api/items.json", "/liar.html")
    )
    seeds += f', "{base_url}/board1.html", "{base_url}/board2.html"'
    rules = "".join(
        f'\n[[rules]]\nname = "{name}"\nglob = "{glob}"\nkind = "detail"\n'
        for name, glob in FEED_PATHS.items()
    )
    return _spec("feeds", seeds, rules, data, parse)
