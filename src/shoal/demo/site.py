"""The demo site's server: the pages of :mod:`shoal.demo.pages` served by aiohttp on 127.0.0.1.

Routes:

- ``/``, ``/blog/`` (``?page=N``), ``/blog/posts/N``, ``/board/free/list?page=N``,
  ``/board/free/read?no=N``: UTF-8 pages;
- ``/euckr/list?page=N``, ``/euckr/read/N``: CP949 bytes with
  ``Content-Type: text/html`` and no charset parameter;
- ``/robots.txt`` disallows :data:`~shoal.demo.data.ROBOTS_DISALLOW`;
- ``/private/secret`` (disallowed by ``/robots.txt``), ``/slow`` (0.5 s),
  ``/too-slow`` (30 s), ``/error500``, ``/flaky`` (503 with ``Retry-After: 1``
  once per app, then 200), ``/gone`` (410), ``/redirect/1`` (302 → 301 → 302 →
  ``/blog/posts/1``), ``/img/notice.png``; any other path is a 404 page.

:func:`start_in_thread` serves it in a background thread with its own event
loop; every request is recorded in :attr:`DemoServer.log`.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from aiohttp import web

from shoal.demo import data
from shoal.demo.pages import (
    blog_post,
    board_post,
    render_blog_list,
    render_blog_post,
    render_board_list,
    render_board_post,
    render_euckr_list,
    render_euckr_post,
    render_home,
    render_simple,
)
from shoal.testing import ThreadedSite

__all__ = ["DemoServer", "Hit", "RequestLog", "make_app", "start_in_thread"]


class Hit(NamedTuple):
    """One request the demo server received."""

    time: float
    """``time.monotonic()`` when the request arrived."""
    method: str
    path_qs: str
    user_agent: str


class RequestLog(list[Hit]):
    """The requests a server received, oldest first; appends and reads are thread-safe.

    Read it from another thread through :meth:`snapshot` (or plain list
    operations, which are atomic in CPython).
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def append(self, hit: Hit) -> None:
        """Record one request."""
        with self._lock:
            super().append(hit)

    def snapshot(self) -> list[Hit]:
        """A copy of the log as it is now."""
        with self._lock:
            return list(self)

    def paths(self) -> list[str]:
        """The ``path_qs`` of every request, in order."""
        return [h.path_qs for h in self.snapshot()]

    def hits(self, path_qs: str) -> int:
        """How many requests were made for ``path_qs`` (path and query, e.g. ``/flaky``)."""
        return sum(1 for h in self.snapshot() if h.path_qs == path_qs)


LOG_KEY = web.AppKey("shoal_demo_log", RequestLog)
FLAKY_KEY = web.AppKey("shoal_demo_flaky_hits", list)

HTML_UTF8 = "text/html; charset=utf-8"


def _page_response(
    text: str, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    h = {"Content-Type": HTML_UTF8, **(headers or {})}
    return web.Response(body=text.encode("utf-8"), status=status, headers=h)


def _not_found() -> web.Response:
    return _page_response(
        render_simple("페이지를 찾을 수 없습니다", "요청하신 페이지가 없습니다. (404 Not Found)"),
        404,
    )


def _int_arg(value: str | None, low: int, high: int) -> int | None:
    if value is None or not value.isdigit():
        return None
    n = int(value)
    return n if low <= n <= high else None


@web.middleware
async def _log_and_404(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    log = request.app.get(LOG_KEY)
    if log is not None:
        log.append(
            Hit(
                time.monotonic(),
                request.method,
                request.path_qs,
                request.headers.get("User-Agent", ""),
            )
        )
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _not_found()


async def _home(request: web.Request) -> web.StreamResponse:
    return _page_response(render_home())


async def _robots(request: web.Request) -> web.StreamResponse:
    text = "User-agent: *\n" + "".join(f"Disallow: {p}\n" for p in data.ROBOTS_DISALLOW)
    return web.Response(
        body=text.encode("ascii"), headers={"Content-Type": "text/plain; charset=utf-8"}
    )


async def _blog_list(request: web.Request) -> web.StreamResponse:
    page = _int_arg(request.query.get("page", "1"), 1, data.BLOG_PAGES)
    return _not_found() if page is None else _page_response(render_blog_list(page))


async def _blog_post_handler(request: web.Request) -> web.StreamResponse:
    no = _int_arg(request.match_info["no"], 1, len(data.BLOG_POSTS))
    post = blog_post(no) if no is not None else None
    return _not_found() if post is None else _page_response(render_blog_post(post))


async def _board_list(request: web.Request) -> web.StreamResponse:
    page = _int_arg(request.query.get("page", "1"), 1, data.BOARD_PAGES)
    return _not_found() if page is None else _page_response(render_board_list(page))


async def _board_read(request: web.Request) -> web.StreamResponse:
    no = _int_arg(request.query.get("no"), 1, data.BOARD_POSTS)
    return _not_found() if no is None else _page_response(render_board_post(board_post(no)))


def _euckr_response(body: bytes) -> web.Response:
    # Deliberately no charset parameter: the crawler has to find the encoding itself.
    return web.Response(body=body, headers={"Content-Type": "text/html"})


async def _euckr_list(request: web.Request) -> web.StreamResponse:
    page = _int_arg(request.query.get("page", "1"), 1, data.EUCKR_PAGES)
    return _not_found() if page is None else _euckr_response(render_euckr_list(page))


async def _euckr_read(request: web.Request) -> web.StreamResponse:
    no = _int_arg(request.match_info["no"], 1, data.EUCKR_POSTS)
    return _not_found() if no is None else _euckr_response(render_euckr_post(no))


async def _redirect(request: web.Request) -> web.StreamResponse:
    hop = data.REDIRECTS.get(request.path)
    if hop is None:
        return _not_found()
    status, location = hop
    return web.Response(
        status=status,
        headers={"Location": location, "Content-Type": HTML_UTF8},
        body=f'<a href="{location}">{location}</a>'.encode(),
    )


def _special_handler(
    page: data.SpecialPage,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        if page.delay:
            await asyncio.sleep(page.delay)
        status = page.status
        headers: dict[str, str] = {}
        if page.first_status is not None:
            hits = request.app[FLAKY_KEY]
            hits.append(1)
            if len(hits) == 1:
                status = page.first_status
                headers["Retry-After"] = "1"
        message = {
            200: f"{page.label}: 정상 응답입니다.",
            410: "이 페이지는 삭제되었습니다. (410 Gone)",
            500: "서버에 문제가 생겼습니다. 잠시 후 다시 시도해 주세요. (500)",
            503: "잠시 서비스를 이용할 수 없습니다. (503)",
        }.get(status, page.label)
        return _page_response(render_simple(page.label, message), status, headers)

    return handler


@functools.cache
def _notice_bytes() -> bytes:
    from shoal.demo.images import notice_png  # Pillow is needed only for this picture

    return notice_png()


async def _notice_png(request: web.Request) -> web.StreamResponse:
    return web.Response(body=_notice_bytes(), content_type="image/png")


def make_app(log: RequestLog | None = None) -> web.Application:
    """The demo site as an aiohttp application; requests are recorded into ``log`` if given.

    State (the flaky page's counter) belongs to the application instance.
    """
    app = web.Application(middlewares=[_log_and_404])
    if log is not None:
        app[LOG_KEY] = log
    app[FLAKY_KEY] = []
    r = app.router
    r.add_get("/", _home)
    r.add_get("/robots.txt", _robots)
    r.add_get("/blog/", _blog_list)
    r.add_get("/blog/posts/{no}", _blog_post_handler)
    r.add_get("/board/free/list", _board_list)
    r.add_get("/board/free/read", _board_read)
    r.add_get("/euckr/list", _euckr_list)
    r.add_get("/euckr/read/{no}", _euckr_read)
    r.add_get("/redirect/{n}", _redirect)
    r.add_get(data.NOTICE_IMAGE, _notice_png)
    for page in data.SPECIAL_PAGES:
        if page.path not in data.REDIRECTS:
            r.add_get(page.path, _special_handler(page))
    return app


class DemoServer(ThreadedSite):
    """The demo site running in a background thread with its own event loop.

    Use :func:`start_in_thread`; call :meth:`stop` (or use it as a context manager).
    """

    thread_name = "shoal-demo-site"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.log = RequestLog()
        """Every request served, as :class:`Hit` tuples ``(monotonic_time, method, path_qs, user_agent)``."""

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the running server, without a trailing slash."""
        return f"http://{self.host}:{self.port}"

    async def _open(self) -> None:
        # handler_cancellation: a crawler that gives up on /too-slow frees the handler at once.
        runner = await self._runner(
            make_app(self.log), shutdown_timeout=0.5, handler_cancellation=True
        )
        self.port = await self._listen(runner, self.host, self.port)


def start_in_thread(host: str = "127.0.0.1", port: int = 0) -> DemoServer:
    """Start the demo site in a background thread; ``port=0`` picks a free port."""
    return DemoServer(host, port).start()
