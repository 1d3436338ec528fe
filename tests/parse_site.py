"""A tiny site whose layout changes half-way, with a notice image: crawled for the parse tests.

Posts 1..``OLD_LAYOUT`` use the old layout (``h1.title``); the later ones the
new layout (``h2.post-title``), as if the site was redesigned during the
crawl. Post 2 shows ``/img/notice.png`` (Korean and English text) for OCR.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from shoal.demo.images import notice_png

POSTS = 10
OLD_LAYOUT = 6
IMAGE_POST = 2


def post_html(no: int) -> str:
    """Post ``no`` in the layout of its time."""
    img = '<img class="notice" src="/img/notice.png" alt="notice">' if no == IMAGE_POST else ""
    if no <= OLD_LAYOUT:
        head = f'<h1 class="title">Post {no}</h1>'
    else:
        head = f'<h2 class="post-title">Post {no}</h2>'
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Post {no}</title></head>'
        f'<body><article>{head}<div class="content"><p>Body of post {no}.</p>{img}</div></article></body></html>'
    )


def index_html() -> str:
    """The index: a link to every post."""
    links = "".join(f'<li><a href="/posts/{n}">post {n}</a></li>' for n in range(1, POSTS + 1))
    return f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>index</title></head><body><ul>{links}</ul></body></html>'


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path
        body: bytes
        ctype = "text/html; charset=utf-8"
        status = 200
        if path == "/":
            body = index_html().encode()
        elif path == "/img/notice.png":
            body, ctype = notice_png(), "image/png"
        elif path.startswith("/posts/") and path[7:].isdigit() and 1 <= int(path[7:]) <= POSTS:
            body = post_html(int(path[7:])).encode()
        else:
            status, body = 404, b"not found"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LayoutSite:
    """The site served on 127.0.0.1 in a thread; ``stop()`` ends it."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="parse-layout-site", daemon=True
        )
        self.thread.start()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def spec_text(base_url: str, data: str, parse: str) -> str:
    """A crawl spec for the site (posts archive their notice images) plus a ``[parse]`` section."""
    return f"""
[crawl]
name = "layout"
seeds = ["{base_url}/"]

[[rules]]
name = "index"
glob = "/"
kind = "list"

[[rules]]
name = "post"
regex = '/posts/\\d+$'
kind = "detail"
images = "img.notice"

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
    return (
        '<!DOCTYPE html><html lang="ko"><head><meta charset="gb2312">'
        f"<title>{LIAR_TITLE}</title></head><body><h1>{LIAR_TITLE}</h1>"
        "<p>오늘 서울은 맑고 북경은 흐립니다. 내일은 전국에 비가 내리겠습니다.</p></body></html>"
    ).encode()


def board_bytes(n: int) -> bytes:
    """A board page whose posts are in ``div.list``: a table that looks for ``table.posts tr`` finds nothing."""
    rows = "".join(f'<p class="row">post {n}-{i}</p>' for i in range(3))
    return f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>board {n}</title></head><body><div class="list">{rows}</div></body></html>'.encode()


def _feed_page(path: str) -> tuple[int, str, bytes]:
    import json

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


class _FeedHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, ctype, body = _feed_page(self.path)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FeedSite(LayoutSite):
    """RSS (EUC-KR/CP949), Atom, a JSON API, a page with a lying charset and two board pages, on 127.0.0.1."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _FeedHandler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="parse-feed-site", daemon=True
        )
        self.thread.start()


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
    return f"""
[crawl]
name = "feeds"
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
