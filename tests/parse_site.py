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
