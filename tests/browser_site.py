"""A small local site for the browser tests, served by aiohttp on a background thread.

Pages imitate what rendered crawls meet: an Ajax comment board, an infinite
scroll list, a Naver-blog style ``iframe#mainFrame`` post, a "more comments"
button, a page whose script never returns, and a page pointing at a refused
address. Every request is logged so a test can prove what was (not) fetched.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
import threading
from collections.abc import Awaitable, Callable

from aiohttp import web

__all__ = ["SiteServer"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _html(body: str, *, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


AJAX_BOARD = """<!doctype html><html><head><title>board</title></head><body>
<h1>글 제목</h1><div id="comments"></div>
<script>
setTimeout(function () {
  fetch('/api/comments').then(r => r.json()).then(function (items) {
    const box = document.getElementById('comments');
    for (const text of items) {
      const d = document.createElement('div'); d.className = 'comment'; d.textContent = text; box.appendChild(d);
    }
  });
}, %(delay)d);
</script></body></html>"""

SCROLL_LIST = """<!doctype html><html><head><title>feed</title>
<style>.item { height: 300px; border-bottom: 1px solid #ccc; }</style></head><body>
<div id="list"></div>
<script>
let page = 0, loading = false;
function more() {
  if (loading || page >= 8) return;
  loading = true;
  fetch('/api/items?page=' + page).then(r => r.json()).then(function (items) {
    const list = document.getElementById('list');
    for (const text of items) {
      const d = document.createElement('div'); d.className = 'item'; d.textContent = text; list.appendChild(d);
    }
    page += 1; loading = false;
  });
}
window.addEventListener('scroll', function () {
  if (window.innerHeight + window.scrollY >= document.body.scrollHeight - 50) more();
});
more();
</script></body></html>"""

NAVER_OUTER = """<!doctype html><html><head><title>blog</title></head><body>
<div id="header">블로그</div>
<iframe id="mainFrame" name="mainFrame" src="/PostView.naver?blogId=shoal&logNo=1" width="800" height="600"></iframe>
</body></html>"""

NAVER_POST = """<!doctype html><html><head><title>post</title></head><body>
<div class="se-main-container"><p>오늘의 크롤링 일기: 프레임 안의 본문</p></div>
</body></html>"""

MORE_COMMENTS = """<!doctype html><html><head><title>more</title></head><body>
<div id="comments"><div class="comment">c0</div></div>
<button class="more" type="button">댓글 더보기</button>
<script>
let next = 1;
document.querySelector('.more').addEventListener('click', function () {
  fetch('/api/more?page=' + next).then(r => r.json()).then(function (items) {
    const box = document.getElementById('comments');
    for (const text of items) {
      const d = document.createElement('div'); d.className = 'comment'; d.textContent = text; box.appendChild(d);
    }
    next += 1;
    if (next > 3) document.querySelector('.more').remove();
  });
});
</script></body></html>"""

HANG = """<!doctype html><html><head><title>hang</title></head><body><p>spinning</p>
<script>while (true) {}</script></body></html>"""

HANG_LATER = """<!doctype html><html><head><title>hang later</title></head><body><p>fine at first</p>
<script>setTimeout(function () { while (true) {} }, 200);</script></body></html>"""

NEVER = """<!doctype html><html><head><title>never</title></head><body><p class="other">x</p></body></html>"""

SSRF = """<!doctype html><html><head><title>ssrf</title></head><body>
<p id="ok">visible</p>
<img src="http://%(refused)s/x.png">
<iframe src="http://%(refused)s/frame"></iframe>
<script src="http://%(refused)s/x.js"></script>
<img src="/to-refused">
<script>fetch('http://%(refused)s/xhr').catch(function () {});</script>
</body></html>"""


class SiteServer:
    """Serves the test pages on ``host`` (port chosen by the OS) from a daemon thread.

    ``log`` lists the path (with query) of every request received, in order.
    ``refused`` is the ``host:port`` the SSRF page points at.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        refused: str = "127.0.0.2:9",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.refused = refused
        self.ssl_context = ssl_context
        self.port = 0
        self.log: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="browser-site", daemon=True
        )

    @property
    def base(self) -> str:
        """``http://host:port`` (``https`` when served with TLS)."""
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        """The absolute URL of ``path``."""
        return self.base + path

    def start(self) -> SiteServer:
        """Start serving; returns self."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        """Stop serving and end the thread."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application(middlewares=[self._logger])
        routes: dict[str, Handler] = {
            "/ajax": self._ajax,
            "/slow-ajax": self._slow_ajax,
            "/api/comments": self._comments,
            "/scroll": self._static(SCROLL_LIST),
            "/api/items": self._items,
            "/blog": self._static(NAVER_OUTER),
            "/PostView.naver": self._static(NAVER_POST),
            "/more": self._static(MORE_COMMENTS),
            "/api/more": self._more,
            "/hang": self._static(HANG),
            "/hang-later": self._static(HANG_LATER),
            "/never": self._static(NEVER),
            "/ssrf": self._ssrf,
            "/to-refused": self._to_refused,
            "/redirect": self._redirect,
            "/gzip": self._gzip,
            "/missing": self._missing,
            "/plain": self._static("<!doctype html><p id=plain>plain page</p>"),
            "/x.png": self._png,
            "/frame": self._static("<p>frame</p>"),
            "/x.js": self._static("console.log(1)"),
            "/xhr": self._static("{}"),
            "/": self._static("<p>root</p>"),
        }
        for path, handler in routes.items():
            app.router.add_get(path, handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    @web.middleware
    async def _logger(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.log.append(request.path_qs)
        return await handler(request)

    @staticmethod
    def _static(body: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return _html(body)

        return handler

    async def _ajax(self, request: web.Request) -> web.StreamResponse:
        return _html(AJAX_BOARD % {"delay": 500})

    async def _slow_ajax(self, request: web.Request) -> web.StreamResponse:
        return _html(AJAX_BOARD % {"delay": int(request.query.get("delay", "1000"))})

    async def _comments(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(["첫 댓글", "second comment", "third comment"])

    async def _items(self, request: web.Request) -> web.StreamResponse:
        page = int(request.query.get("page", "0"))
        await asyncio.sleep(0.05)
        return web.json_response([f"item {page * 10 + i}" for i in range(10)])

    async def _more(self, request: web.Request) -> web.StreamResponse:
        page = int(request.query.get("page", "1"))
        await asyncio.sleep(0.05)
        return web.json_response([f"c{page}-{i}" for i in range(2)])

    async def _ssrf(self, request: web.Request) -> web.StreamResponse:
        return _html(SSRF % {"refused": self.refused})

    async def _to_refused(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"http://{self.refused}/redirected.png")

    async def _redirect(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/plain")

    async def _gzip(self, request: web.Request) -> web.StreamResponse:
        body = gzip.compress("<!doctype html><p id=z>압축된 페이지</p>".encode())
        return web.Response(
            body=body,
            headers={"Content-Type": "text/html; charset=utf-8", "Content-Encoding": "gzip"},
        )

    async def _missing(self, request: web.Request) -> web.StreamResponse:
        return _html("<!doctype html><h1>not here</h1>", status=404)

    async def _png(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"\x89PNG\r\n\x1a\n", content_type="image/png")
