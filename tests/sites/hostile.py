"""A hostile web site for tests: one route per misbehaviour, served on 127.0.0.1 from a background thread.

:class:`HostileSite` runs, on one event loop in its own thread:

- an aiohttp application on two ports (:attr:`~HostileSite.base_url` and
  :attr:`~HostileSite.alt_url`: two hosts for politeness and cross-site tests),
  also bound on 127.0.0.2 at the first port so that a test can prove no
  request ever reached that address (:meth:`~HostileSite.hits_on`);
- a raw asyncio server (:attr:`~HostileSite.raw_url`) for breakage below HTTP
  that aiohttp will not produce: duplicate Content-Length, bad chunked framing,
  invalid header lines, a reset in the middle of a body, an empty 200;
- a port with nothing listening (:attr:`~HostileSite.refused_url`).

Routes of the application (all answer on any Host name; robots.txt depends on it):

=============================  ==========================================================
``/hub/{name}``                a list page linking to ``site.hubs[name]`` (placeholders
                               ``{base}``, ``{alt}``, ``{raw}``, ``{refused}``)
``/ok/{any}``                  a small HTML page
``/status/{code}``             that status with a small body
``/z/{sample}[?status=N]``     a file of ``testdata/compression-samples`` with its
                               Content-Encoding (``bomb-gzip``, ``html-br``, ...);
                               ``/z/mislabelled`` (plain HTML called gzip),
                               ``/z/unknown-coding`` (``Content-Encoding: utf-8``)
``/slow/drip``                 100 bytes promised, one sent every 0.5 s
``/slow/hang-headers``         headers, then nothing for a minute
``/slow/hang-before``          nothing for a minute
``/redir/loop/a``, ``/b``      a → b → a
``/redir/chain/{n}``           n → n+1 → ... forever
``/redir/rel|abs|proto``       relative, absolute and protocol-relative Locations
``/redir/file|ftp``            Locations with ``file:`` and ``ftp:`` schemes
``/redir/to?u=URL``            302 to any URL
``/files/doc.pdf|pic.png``     non-HTML bodies (the PDF holds an ``<a href>``)
``/html/malformed|nested|      broken HTML, 50,000 nested ``<div>``, invalid EUC-KR bytes
bad-bytes|options``            under a declared charset, a ``<select>`` of 100,000
                               options; each links to ``/ok/m1..m4``
``/board?page=N``              a board: pages 1..:data:`BOARD_PAGES` link a post and the
                               next :data:`BOARD_WINDOW` pages; past the end, the list is
                               empty but the pagination goes on forever
``/post/{n}``                  a board post (robots.txt disallows ``/post/``: never fetched)
``/blog/``, ``/blog/page/{n}/``  a blog of :data:`BLOG_PAGES` list pages, each linking two
                               posts ``/blog/post/{n}-{i}`` and the older page
``/quotes/page/{n}/``          :data:`QUOTE_PAGES` pages of quotes (the data is on the list
                               page), each linking its author and the next page in
                               ``<li class="next">``
``/flood?n=N``                 a page of N links ``/post/f{i}`` (:data:`FLOOD_LINKS` by
                               default: about 18.8 MB; robots.txt keeps them unfetched)
``/cal/{YYYY-MM}``             an empty calendar linking the months before and after
``/events/{YYYY-MM}``          a calendar linking the next month and one event a month
``/ping/{n}``, ``/pong/{n}``   a chain of list pages of two alternating rules
``/rep/...``                   links ``a/b/`` relative: ``/rep/a/b/a/b/...``
``/seg/...``                   links 8 new path segments deeper
``/long/{n}``                  links a URL 700 characters longer
``/auth/basic[/...]``          needs Basic ``crawler:`` :data:`PASSWORD`
``/auth/header[/...]``         needs ``Authorization: Bearer`` :data:`TOKEN` and cookie
                               ``session=`` :data:`COOKIE`
``/auth/.../hop``              302 to ``{alt}/echo`` (another site)
``/echo``                      200; the request headers are in :attr:`HostileSite.log`
``/ra/{503|429}``              first request per host: that status with Retry-After: 2
``/blocked/{n}``               403
``/page/{name}``               ``site.pages[name]``: HTML and response headers (placeholders
                               filled), for ``<base>``, ``<area>``, refresh and ``Link`` cases
``/redir/code/{code}?u=URL``   that redirect status (301, 302, 303, 307, 308) to any URL
``/z/bomb-gzip2``              a two-layer bomb: 64 MiB of zeros, gzip inside gzip
``/endless/plain|gzip``        a chunked body that never ends (zeros; gzip-coded or not);
                               ``?pause=S`` sleeps S seconds between 64 KiB chunks
=============================  ==========================================================

robots.txt by host name (:data:`ROBOTS`): ``r404.test`` 404, ``r503.test`` 503,
``rlater.test`` 503 once then allow-all, ``rhang.test`` no answer,
``rredir5.test``/``rredir6.test`` 5 or 6 redirects to rules that disallow
``/ok/private``, ``rdelay.test`` Crawl-delay 100, ``rbig.test`` 600 KiB that
disallows ``/ok/before-mark`` at its start and ``/ok/after-mark`` past 500 KiB,
``r10m.test`` the same in 10 MB, ``rbomb.test`` the gzip bomb as robots.txt,
``rtobad.test``/``rtoevil.test`` a redirect to ``127.0.0.2`` / ``evil.test`` (same port),
``ronly.test`` a group that disallows ``/ok/`` to shoal only; any other host gets
:data:`DEFAULT_ROBOTS`.

Raw routes (:data:`RAW_ROUTES`) also include ``/cl-larger-hold`` (Content-Length 1000, 30
bytes, then silence), ``/cl-overflow`` (Content-Length 99999999999999999999),
``/big-header`` (one 1 MiB header), ``/many-headers`` (10,000 headers) and ``/header-drip``
(the head sent a byte every 0.2 s).

:func:`run_crawl` runs one crawl against it the way ``shoal crawl`` does, with
a static resolver (names such as ``evil.test``) and a short robots.txt retry.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import socket
import struct
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from aiohttp import web

from shoal.testing import ThreadedSite
from tests.vectors import TESTDATA

SAMPLES = TESTDATA / "compression-samples"

PASSWORD = "Pl4nted-Passw0rd"
TOKEN = "Pl4nted-T0ken"
COOKIE = "Pl4nted-C00kie"
SECRETS = (PASSWORD, TOKEN, COOKIE, base64.b64encode(f"crawler:{PASSWORD}".encode()).decode())
"""Every secret the auth routes use, including the Basic header's base64 form."""

BOARD_PAGES = 5000
BOARD_WINDOW = 10

DEFAULT_ROBOTS = "User-agent: *\nDisallow: /post/\nDisallow: /event/\nDisallow: /private/\n"

CODINGS = {
    "bomb-gzip": "gzip",
    "bomb-deflate": "deflate",
    "bomb-br": "br",
    "bomb-zstd": "zstd",
    "html-gzip": "gzip",
    "html-rawdeflate": "deflate",
    "html-zlibdeflate": "deflate",
    "html-br": "br",
    "html-zstd-static-content-size": "zstd",
    "html-zstd-static-no-content-size": "zstd",
    "html-zstd-streaming-no-content-size": "zstd",
    "html-gzip-deflate": "gzip, deflate",
    "html-gzip-deflate-gzip": "gzip, deflate, gzip",
    "truncated-crc-error": "gzip",
    "unexpected-eof": "gzip",
}
"""Sample name → the Content-Encoding it is served with (``.bin``/``.gz`` files of the samples)."""


class Hit(NamedTuple):
    """One request the site answered."""

    at: float
    local_ip: str
    port: int
    host: str
    path_qs: str
    headers: dict[str, str]


def _page(
    title: str, body: str = "", status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    text = f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head><body>{body}</body></html>'
    return web.Response(text=text, status=status, content_type="text/html", headers=headers)


def _links(paths: list[str]) -> str:
    return "<ul>" + "".join(f'<li><a href="{p}">{p}</a></li>' for p in paths) + "</ul>"


def _months(ym: str, delta: int) -> str:
    y, m = (int(x) for x in ym.split("-"))
    n = y * 12 + (m - 1) + delta
    return f"{n // 12:04d}-{n % 12 + 1:02d}"


def _big_robots(size: int = 600 * 1024) -> str:
    head = "User-agent: *\nDisallow: /ok/before-mark\n"
    pad = "# padding line to push the next rule past the 500 KiB that RFC 9309 asks a crawler to read\n"
    body = head + pad * (size // len(pad))
    return body + "Disallow: /ok/after-mark\n"


@dataclass
class _Robots:
    status: int = 200
    body: str = DEFAULT_ROBOTS
    redirects: int = 0
    hang: bool = False
    first_status: int | None = None
    location: str | None = None
    """A redirect of robots.txt to this URL (``{port}``: the site's first port)."""
    sample: str | None = None
    """Serve this compression sample (with its Content-Encoding) as the body."""
    size: int = 0
    """Serve :func:`_big_robots` of this many bytes as the body."""


_BIG_ROBOTS: dict[int, bytes] = {}

ROBOTS: dict[str, _Robots] = {
    "r404.test": _Robots(status=404, body="not here"),
    "r503.test": _Robots(status=503, body="down"),
    "rlater.test": _Robots(first_status=503, body="User-agent: *\nAllow: /\n"),
    "rhang.test": _Robots(hang=True),
    "rredir5.test": _Robots(redirects=5, body="User-agent: *\nDisallow: /ok/private\n"),
    "rredir6.test": _Robots(redirects=6, body="User-agent: *\nDisallow: /ok/private\n"),
    "rdelay.test": _Robots(body="User-agent: *\nCrawl-delay: 100\nDisallow: /private/\n"),
    "rbig.test": _Robots(body=_big_robots()),
    "r10m.test": _Robots(size=10 * 1024 * 1024),
    "rbomb.test": _Robots(sample="bomb-gzip"),
    "rtobad.test": _Robots(location="http://127.0.0.2:{port}/robots.txt"),
    "rtoevil.test": _Robots(location="http://evil.test:{port}/robots.txt"),
    "ronly.test": _Robots(
        body="User-agent: otherbot\nDisallow:\n\nUser-agent: shoal\nDisallow: /ok/\n\n"
        "User-agent: *\nAllow: /\n"
    ),
}
"""robots.txt behaviour per host name; other names get :data:`DEFAULT_ROBOTS`."""


@dataclass
class HostileSite(ThreadedSite):
    """The hostile site in a background thread; use :func:`start_hostile_site` and :meth:`stop`."""

    thread_name = "hostile-site"

    hubs: dict[str, list[str]] = field(default_factory=dict)
    """``/hub/{name}`` links these (placeholders ``{base}``, ``{alt}``, ``{raw}``, ``{refused}``)."""
    pages: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    """``/page/{name}`` serves this HTML with these response headers (placeholders filled)."""
    log: list[Hit] = field(default_factory=list)
    cut: list[str] = field(default_factory=list)
    """``path_qs`` of each request whose handler was still running when its client went away
    (or the site stopped): the site had not finished answering."""
    port: int = 0
    alt_port: int = 0
    raw_port: int = 0
    refused_port: int = 0
    _raw: asyncio.Server | None = None
    _refusing: socket.socket | None = None
    _counts: dict[tuple[str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- addresses -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: the main host."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def alt_url(self) -> str:
        """The same application on a second port: another host for politeness and credentials."""
        return f"http://127.0.0.1:{self.alt_port}"

    @property
    def raw_url(self) -> str:
        """The raw protocol server (routes ``/dup-cl``, ``/bad-chunk``, ... ; see :data:`RAW_ROUTES`)."""
        return f"http://127.0.0.1:{self.raw_port}"

    @property
    def refused_url(self) -> str:
        """A port on 127.0.0.1 with nothing listening: connections are refused."""
        return f"http://127.0.0.1:{self.refused_port}"

    def fill(self, text: str) -> str:
        """``text`` with ``{base}``, ``{alt}``, ``{raw}``, ``{refused}`` and ``{port}`` filled in."""
        return text.format(
            base=self.base_url,
            alt=self.alt_url,
            raw=self.raw_url,
            refused=self.refused_url,
            port=self.port,
        )

    def hits(self, path_prefix: str = "", *, host: str | None = None) -> list[Hit]:
        """Requests whose path starts with ``path_prefix`` (and whose Host name is ``host``)."""
        with self._lock:
            snapshot = list(self.log)
        return [
            h
            for h in snapshot
            if h.path_qs.startswith(path_prefix) and (host is None or h.host == host)
        ]

    def hits_on(self, ip: str) -> list[Hit]:
        """Requests that arrived on local address ``ip`` (127.0.0.2 must see none)."""
        with self._lock:
            return [h for h in self.log if h.local_ip == ip]

    # -- running ---------------------------------------------------------------------------------

    async def _open(self) -> None:
        # Bound and never listening: a connection is refused, and while the site runs no other
        # server (another test worker's, say) can take the port.
        self._refusing = socket.socket()
        self._refusing.bind(("127.0.0.1", 0))
        self.refused_port = self._refusing.getsockname()[1]
        app = web.Application(middlewares=[self._record])
        self._routes(app)
        runner = await self._runner(app, shutdown_timeout=0.2, handler_cancellation=True)
        self.port = await self._listen(runner, "127.0.0.1")
        self.alt_port = await self._listen(runner, "127.0.0.1")
        # A second loopback address, to prove nothing connects there.
        with contextlib.suppress(OSError):
            await self._listen(runner, "127.0.0.2", self.port)
        self._raw = await asyncio.start_server(self._raw_handler, "127.0.0.1", 0)
        self.raw_port = self._raw.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._raw is not None:
            self._raw.close()
        if self._refusing is not None:
            self._refusing.close()
        await super()._close()

    def count(self, request: web.Request) -> int:
        """How many times this host name asked for this path before (0 the first time)."""
        key = (request.host.rsplit(":", 1)[0], request.path)
        with self._lock:
            n = self._counts.get(key, 0)
            self._counts[key] = n + 1
        return n

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        hit = Hit(
            time.monotonic(),
            str(sock[0]) if sock else "",
            int(sock[1]) if sock else 0,
            request.host.rsplit(":", 1)[0],
            request.path_qs,
            dict(request.headers),
        )
        with self._lock:
            self.log.append(hit)
        try:
            return await handler(request)
        except (asyncio.CancelledError, ConnectionResetError):
            with self._lock:
                self.cut.append(request.path_qs)
            raise

    # -- the application -----------------------------------------------------------------------

    def _routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/robots.txt", self._robots)
        r.add_get("/robots-hop/{n}", self._robots_hop)
        r.add_get("/robots-final.txt", self._robots_final)
        r.add_get("/hub/{name}", self._hub)
        r.add_get("/ok/{rest:.*}", _ok)
        r.add_get("/status/{code}", _status)
        r.add_get("/z/{name}", _compressed)
        r.add_get("/slow/drip", _drip)
        r.add_get("/slow/hang-headers", _hang_headers)
        r.add_get("/slow/hang-before", _hang_before)
        r.add_get("/redir/{rest:.*}", _redirect)
        r.add_get("/files/{name}", _files)
        r.add_get("/html/{name}", _html)
        r.add_get("/board", _board)
        r.add_get("/post/{n}", _ok)
        r.add_get("/blog/", _blog)
        r.add_get("/blog/page/{n}/", _blog)
        r.add_get("/blog/post/{n}", _ok)
        r.add_get("/quotes/page/{n}/", _quotes)
        r.add_get("/author/{name}", _ok)
        r.add_get("/flood", _flood)
        r.add_get("/cal/{ym}", _calendar)
        r.add_get("/events/{ym}", _events)
        r.add_get("/event/{day}", _ok)
        r.add_get("/ping/{n}", _pingpong)
        r.add_get("/pong/{n}", _pingpong)
        r.add_get("/rep/{rest:.*}", _repeat)
        r.add_get("/seg/{rest:.*}", _segments)
        r.add_get("/long/{n}", _long)
        r.add_get("/auth/{rest:.*}", _auth)
        r.add_get("/echo", _ok)
        r.add_get("/ra/{code}", self._retry_after)
        r.add_get("/blocked/{n}", _blocked)
        r.add_get("/page/{name}", self._page_route)
        r.add_get("/endless/{kind}", _endless)

    async def _hub(self, request: web.Request) -> web.StreamResponse:
        links = self.hubs.get(request.match_info["name"])
        if links is None:
            return _page("no such hub", status=404)
        return _page("hub", _links([self.fill(p) for p in links]))

    async def _page_route(self, request: web.Request) -> web.StreamResponse:
        page = self.pages.get(request.match_info["name"])
        if page is None:
            return _page("no such page", status=404)
        html, headers = page
        return web.Response(
            text=self.fill(html),
            content_type="text/html",
            headers={k: self.fill(v) for k, v in headers.items()},
        )

    def _robots_of(self, request: web.Request) -> _Robots:
        return ROBOTS.get(request.host.rsplit(":", 1)[0].lower(), _Robots())

    async def _robots(self, request: web.Request) -> web.StreamResponse:
        rb = self._robots_of(request)
        if rb.hang:
            await asyncio.sleep(60)
        if rb.location is not None:
            raise web.HTTPMovedPermanently(rb.location.format(port=self.port))
        if rb.sample is not None:
            return web.Response(
                body=(SAMPLES / f"{rb.sample}.bin").read_bytes(),
                headers={"Content-Type": "text/plain", "Content-Encoding": CODINGS[rb.sample]},
            )
        if rb.size:
            body = _BIG_ROBOTS.get(rb.size)
            if body is None:
                body = _BIG_ROBOTS[rb.size] = _big_robots(rb.size).encode()
            return web.Response(body=body, content_type="text/plain")
        if rb.redirects:
            raise web.HTTPMovedPermanently(
                "/robots-hop/1" if rb.redirects > 1 else "/robots-final.txt"
            )
        status = rb.status
        if rb.first_status is not None and self.count(request) == 0:
            status = rb.first_status
        return web.Response(text=rb.body, status=status, content_type="text/plain")

    async def _robots_hop(self, request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])
        rb = self._robots_of(request)
        raise web.HTTPFound(f"/robots-hop/{n + 1}" if n + 1 < rb.redirects else "/robots-final.txt")

    async def _robots_final(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=self._robots_of(request).body, content_type="text/plain")

    async def _retry_after(self, request: web.Request) -> web.StreamResponse:
        if self.count(request) == 0:
            return _page(
                "slow down", status=int(request.match_info["code"]), headers={"Retry-After": "2"}
            )
        return _page("fine now")

    # -- the raw server --------------------------------------------------------------------------

    async def _raw_handler(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            async with asyncio.timeout(30):
                line = await reader.readline()
                headers: dict[str, str] = {}
                for _ in range(100):
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip()] = v.strip()
                parts = line.decode("latin-1").split()
                path = parts[1] if len(parts) > 1 else "/"
                sock = writer.get_extra_info("sockname")
                with self._lock:
                    self.log.append(
                        Hit(
                            time.monotonic(),
                            sock[0],
                            sock[1],
                            headers.get("Host", "").rsplit(":", 1)[0],
                            path,
                            headers,
                        )
                    )
                await RAW_ROUTES.get(path, _raw_404)(writer)
        except (OSError, TimeoutError, asyncio.CancelledError):  # the site stopping ends it quietly
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()


# -- handlers ------------------------------------------------------------------------------------


async def _ok(request: web.Request) -> web.StreamResponse:
    return _page(f"ok {request.path}", f"<p>fine page at {request.path}</p>")


async def _status(request: web.Request) -> web.StreamResponse:
    code = int(request.match_info["code"])
    return _page(f"status {code}", status=code)


async def _compressed(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name == "mislabelled":
        return web.Response(
            body=b'<html><body><a href="/ok/after-mislabel">x</a></body></html>',
            headers={"Content-Type": "text/html", "Content-Encoding": "gzip"},
        )
    if name == "bomb-gzip2":
        return web.Response(
            body=gzip2_bomb(),
            headers={"Content-Type": "text/html", "Content-Encoding": "gzip, gzip"},
        )
    if name == "unknown-coding":
        return web.Response(
            body=b"<html><body>plain</body></html>",
            headers={"Content-Type": "text/html", "Content-Encoding": "utf-8"},
        )
    coding = CODINGS.get(name)
    if coding is None:
        return _page("unknown sample", status=404)
    path = next(p for p in (SAMPLES / f"{name}.bin", SAMPLES / f"{name}.gz") if p.exists())
    return web.Response(
        body=path.read_bytes(),
        status=int(request.query.get("status", "200")),
        headers={"Content-Type": "text/html", "Content-Encoding": coding},
    )


GZIP2_BOMB_BYTES = 64 * 1024 * 1024
"""What the two-layer bomb ``/z/bomb-gzip2`` expands to (zeros)."""
_GZIP2: list[bytes] = []


def gzip2_bomb() -> bytes:
    if not _GZIP2:
        inner = zlib.compressobj(9, zlib.DEFLATED, 31)
        block = bytes(1024 * 1024)
        layer = b"".join(inner.compress(block) for _ in range(GZIP2_BOMB_BYTES // len(block)))
        _GZIP2.append(gzip.compress(layer + inner.flush(), 9))
    return _GZIP2[0]


async def _endless(request: web.Request) -> web.StreamResponse:
    kind = request.match_info["kind"]
    pause = float(request.query.get("pause", "0"))
    headers = {"Content-Type": "text/html"}
    packer = None
    if kind == "gzip":
        headers["Content-Encoding"] = "gzip"
        packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    resp = web.StreamResponse(headers=headers)
    await resp.prepare(request)
    chunk = b"<p>" + b"0" * (64 * 1024 - 3)
    with contextlib.suppress(ConnectionError):
        while True:  # ends when the client goes away (or the site stops)
            data = (
                chunk
                if packer is None
                else packer.compress(chunk) + packer.flush(zlib.Z_SYNC_FLUSH)
            )
            await resp.write(data)
            await asyncio.sleep(pause)
    return resp


async def _drip(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/html", "Content-Length": "100"})
    await resp.prepare(request)
    for _ in range(100):
        await resp.write(b"x")
        await asyncio.sleep(0.5)
    return resp


async def _hang_headers(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/html", "Content-Length": "100"})
    await resp.prepare(request)
    await asyncio.sleep(60)
    return resp


async def _hang_before(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(60)
    return _page("too late")


async def _redirect(request: web.Request) -> web.StreamResponse:
    rest = request.match_info["rest"]
    base = f"http://{request.host}"
    targets = {
        "loop/a": "/redir/loop/b",
        "loop/b": "/redir/loop/a",
        "rel": "target-rel",
        "abs": f"{base}/redir/target-abs",
        "proto": f"//{request.host}/redir/target-proto",
        "file": "file:///etc/passwd",
        "ftp": f"ftp://{request.host.rsplit(':', 1)[0]}/pub/file",
        "to": request.query.get("u", "/"),
    }
    if rest.startswith("code/"):
        return web.Response(
            status=int(rest.split("/")[1]),
            headers={"Location": request.query.get("u", "/")},
            text="moved",
        )
    if rest.startswith("chain/"):
        raise web.HTTPFound(f"/redir/chain/{int(rest.split('/')[1]) + 1}")
    if rest.startswith("target-"):
        return _page(rest)
    target = targets.get(rest)
    if target is None:
        return _page("no redirect", status=404)
    return web.Response(status=302, headers={"Location": target}, text="moved")


async def _files(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name == "doc.pdf":
        body = b'%PDF-1.4\n<html><a href="/ok/from-pdf">never followed</a></html>\n%%EOF\n'
        return web.Response(body=body, content_type="application/pdf")
    if name == "pic.png":
        return web.Response(body=b"\x89PNG\r\n\x1a\n" + b"\0" * 64, content_type="image/png")
    return _page("no file", status=404)


async def _html(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name == "malformed":
        body = (
            '<html><head><title>broken</title><body><table><tr><td><a href="/ok/m1" <b>one</a>'
            "<div><p><span>never closed<a href='/ok/m1b'>x<<<>>></a></table></td>&bogus;&#xFFFFFFF;"
            '<a href=/ok/m1c title="unterminated>c</a></html></html><a href="/ok/m1d">after the end</a>'
        )
        return web.Response(text=body, content_type="text/html")
    if name == "nested":
        depth = 50_000
        body = (
            "<html><body>"
            + "<div>" * depth
            + '<a href="/ok/m2">deep</a>'
            + "</div>" * depth
            + "</body></html>"
        )
        return web.Response(text=body, content_type="text/html")
    if name == "options":
        body = (
            "<html><body><select>"
            + "<option>x" * 100_000
            + '</select><a href="/ok/m4">after</a></body></html>'
        )
        return web.Response(text=body, content_type="text/html")
    if name == "bad-bytes":
        raw = (
            b'<html><head><meta charset="euc-kr"></head><body>\xc7\xd1\xb1\xb9 \xff\xfe\x80\x81 \xc7'
            b'<a href="/ok/m3">\xb1\xdb \xff</a></body></html>'
        )
        return web.Response(body=raw, headers={"Content-Type": "text/html; charset=euc-kr"})
    return _page("no html", status=404)


async def _board(request: web.Request) -> web.StreamResponse:
    try:
        page = int(request.query.get("page", "1"))
    except ValueError:
        return _page("bad page", status=400)
    posts = (
        f'<a class="post" href="/post/{page}">post {page}</a>'
        if page <= BOARD_PAGES
        else "<p>no posts</p>"
    )
    nav = "".join(
        f'<a href="/board?page={n}">{n}</a> ' for n in range(page + 1, page + 1 + BOARD_WINDOW)
    )
    return web.Response(
        text=f"<html><body>{posts}<div class=paging>{nav}</div></body></html>",
        content_type="text/html",
    )


BLOG_PAGES = 25
QUOTE_PAGES = 10
FLOOD_LINKS = 560_000
_FLOODS: dict[int, bytes] = {}


async def _blog(request: web.Request) -> web.StreamResponse:
    page = int(request.match_info.get("n", "1"))
    if not 1 <= page <= BLOG_PAGES:
        return _page("no such page", status=404)
    posts = "".join(f'<a href="/blog/post/{page}-{i}">post {page}-{i}</a> ' for i in range(2))
    older = f'<a href="/blog/page/{page + 1}/">older posts</a>' if page < BLOG_PAGES else ""
    return _page(f"blog page {page}", posts + older)


_WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
]


async def _quotes(request: web.Request) -> web.StreamResponse:
    page = int(request.match_info["n"])
    if not 1 <= page <= QUOTE_PAGES:
        return _page("no such page", status=404)
    quote = " ".join(_WORDS[(page * k) % len(_WORDS)] for k in range(1, 8))
    author = _WORDS[page % len(_WORDS)]
    nxt = (
        f'<ul class="pager"><li class="next"><a href="/quotes/page/{page + 1}/">Next</a></li></ul>'
        if page < QUOTE_PAGES
        else ""
    )
    body = f'<div class="quote"><span>{quote}</span> by <a href="/author/{author}">{author}</a></div>{nxt}'
    return _page(f"quotes {page}", body)


async def _flood(request: web.Request) -> web.StreamResponse:
    n = int(request.query.get("n", str(FLOOD_LINKS)))
    body = _FLOODS.get(n)
    if body is None:
        links = "".join(f'<a href="/post/f{i}">{i}</a>\n' for i in range(n))
        body = _FLOODS[n] = f"<!doctype html><html><body>{links}</body></html>".encode()
    return web.Response(body=body, content_type="text/html")


async def _calendar(request: web.Request) -> web.StreamResponse:
    ym = request.match_info["ym"]
    return _page(
        ym,
        f'<a href="/cal/{_months(ym, -1)}">prev</a> <a href="/cal/{_months(ym, 1)}">next</a> no events',
    )


async def _events(request: web.Request) -> web.StreamResponse:
    ym = request.match_info["ym"]
    return _page(
        ym, f'<a href="/events/{_months(ym, 1)}">next</a> <a href="/event/{ym}-01">an event</a>'
    )


async def _pingpong(request: web.Request) -> web.StreamResponse:
    n = int(request.match_info["n"])
    nxt = f"/pong/{n + 1}" if request.path.startswith("/ping/") else f"/ping/{n + 1}"
    return _page(f"hop {n}", f'<a href="{nxt}">next</a>')


async def _repeat(request: web.Request) -> web.StreamResponse:
    return _page("repeat", '<a href="a/b/">deeper</a>')


async def _segments(request: web.Request) -> web.StreamResponse:
    level = request.path.count("/")
    rel = "".join(f"s{level}x{i}/" for i in range(8))
    return _page("segments", f'<a href="{rel}">deeper</a>')


async def _long(request: web.Request) -> web.StreamResponse:
    n = int(request.match_info["n"])
    return _page("long", f'<a href="/long/{n + 1}?pad={"x" * (700 * (n + 1))}">longer</a>')


async def _auth(request: web.Request) -> web.StreamResponse:
    rest = request.match_info["rest"]
    if rest.startswith("basic"):
        want = "Basic " + base64.b64encode(f"crawler:{PASSWORD}".encode()).decode()
        ok = request.headers.get("Authorization") == want
    else:
        ok = (
            request.headers.get("Authorization") == f"Bearer {TOKEN}"
            and request.cookies.get("session") == COOKIE
        )
    if not ok:
        return _page(
            "who are you", status=401, headers={"WWW-Authenticate": 'Basic realm="hostile"'}
        )
    if rest.endswith("/hop"):
        raise web.HTTPFound(
            f"http://127.0.0.1:{request.query.get('alt', '0')}/echo?from={rest.split('/')[0]}"
        )
    if rest.endswith("/missing"):
        return _page("no such page", status=404)
    kind = rest.split("/")[0]
    alt = request.query.get("alt", "0")
    return _page(
        f"welcome {kind}",
        _links([f"/auth/{kind}/page2", f"/auth/{kind}/missing", f"/auth/{kind}/hop?alt={alt}"]),
    )


async def _blocked(request: web.Request) -> web.StreamResponse:
    return _page("forbidden", status=403)


# -- raw routes ----------------------------------------------------------------------------------


RawRoute = Callable[[asyncio.StreamWriter], Awaitable[None]]


async def _raw_send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


def _canned(*steps: bytes | float) -> RawRoute:
    """A raw route that sends each ``bytes`` step and sleeps each number of seconds, in order."""

    async def route(writer: asyncio.StreamWriter) -> None:
        for step in steps:
            if isinstance(step, bytes):
                await _raw_send(writer, step)
            else:
                await asyncio.sleep(step)

    return route


_HTML_200 = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
"""The status line and Content-Type of every raw 200; the misbehaviour follows."""

_CHUNKED_HELLO = _HTML_200 + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"

_raw_404 = _canned(
    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n"
    b"Connection: close\r\n\r\nnot found"
)


async def _raw_reset(writer: asyncio.StreamWriter) -> None:
    await _raw_send(
        writer,
        _HTML_200 + b"Content-Length: 100000\r\n\r\n" + b"<html><body>" + b"x" * 2000,
    )
    await asyncio.sleep(0.1)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _raw_header_drip(writer: asyncio.StreamWriter) -> None:
    head = _HTML_200 + b"X-Slow: " + b"d" * 200
    for i in range(len(head)):
        await _raw_send(writer, head[i : i + 1])
        await asyncio.sleep(0.2)


RAW_ROUTES: dict[str, RawRoute] = {
    "/dup-cl": _canned(_HTML_200 + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    "/bad-chunk": _canned(_CHUNKED_HELLO + b"zz\r\nworld\r\n0\r\n\r\n"),
    "/bad-chunk-late": _canned(_CHUNKED_HELLO, 0.2, b"zz\r\nworld\r\n0\r\n\r\n", 5),
    "/invalid-header": _canned(
        _HTML_200 + b"This line is no header\r\nContent-Length: 5\r\n\r\nhello"
    ),
    "/garbage": _canned(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"),
    "/reset": _raw_reset,
    "/short": _canned(_HTML_200 + b"Content-Length: 1000\r\n\r\n<html><body>only the beginning"),
    "/empty-200": _canned(_HTML_200 + b"Content-Length: 0\r\n\r\n"),
    "/cl-larger-hold": _canned(
        _HTML_200 + b"Content-Length: 1000\r\n\r\n<html><body>thirty bytes only", 30
    ),
    "/cl-overflow": _canned(
        _HTML_200 + b"Content-Length: 99999999999999999999\r\n\r\n<html><body>overflow", 5
    ),
    "/big-header": _canned(
        _HTML_200 + b"X-Big: " + b"a" * (1024 * 1024) + b"\r\nContent-Length: 5\r\n\r\nhello"
    ),
    "/many-headers": _canned(
        _HTML_200
        + b"".join(b"X-H%d: v\r\n" % i for i in range(10_000))
        + b"Content-Length: 5\r\n\r\nhello"
    ),
    "/header-drip": _raw_header_drip,
}
"""Raw-server path → misbehaviour; any other path (robots.txt too) is a 404."""


def start_hostile_site() -> HostileSite:
    """Start a :class:`HostileSite` on free ports of 127.0.0.1."""
    return HostileSite().start()


# -- running a crawl against it -----------------------------------------------------------------


def toml_value(v: Any) -> str:
    """A TOML literal for a str, bool, number or list of them."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {v!r}")


def spec_text(
    name: str,
    data: Path,
    seeds: list[str],
    rules: list[dict[str, Any]],
    sections: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """A crawl spec as TOML: storage under ``data``, quick politeness, robots on, loopback allowed.

    ``sections`` override or add keys per table (``{"limits": {"max_depth": 3}}``);
    a nested mapping becomes a sub-table (``scope.headers."host"``).
    """
    base: dict[str, dict[str, Any]] = {
        "scope": {"allow_private": True},
        "politeness": {
            "delay": 0.0,
            "jitter": 0.0,
            "concurrency_per_host": 8,
            "robots": True,
            "max_retry_after": 3.0,
        },
        "limits": {
            "fetch_timeout": 1.5,
            "connect_timeout": 1.0,
            "max_retries": 1,
            "retry_base": 0.1,
            "retry_max": 0.5,
            "max_body_bytes": 1024 * 1024,
        },
        "storage": {
            "frontier": f"sqlite:///{data}/frontier.sqlite",
            "archive": f"{data}/warc",
            "fsync": False,
        },
        "worker": {"concurrency": 16, "lease_seconds": 30, "flush_interval": 0.02},
    }
    for section, values in (sections or {}).items():
        base.setdefault(section, {}).update(values)
    lines = ["[crawl]", f"name = {toml_value(name)}", f"seeds = {toml_value(seeds)}", ""]
    for rule in rules:
        lines.append("[[rules]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in rule.items()]
        lines.append("")
    for section, values in base.items():
        lines.append(f"[{section}]")
        tables = {k: v for k, v in values.items() if isinstance(v, Mapping)}
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items() if not isinstance(v, Mapping)]
        lines.append("")
        for key, table in tables.items():
            for sub, inner in table.items():
                lines.append(f"[{section}.{key}.{toml_value(sub)}]")
                lines += [f"{toml_value(k)} = {toml_value(v)}" for k, v in inner.items()]
                lines.append("")
    return "\n".join(lines)


def run_crawl(
    text: str, *, hosts: Mapping[str, list[str]] | None = None, robots_ttl: float = 0.3
) -> tuple[Any, Any]:
    """Run the crawl of spec ``text`` to its end in this process, as ``shoal crawl`` does.

    ``hosts`` is a static DNS table (``{"evil.test": ["127.0.0.2"]}``, other
    names resolve normally) behind the same address policy as in production;
    ``robots_ttl`` is how soon an unreadable robots.txt is asked again.
    Returns ``(spec, worker stats)``.
    """
    from shoal.archive import WarcWriter
    from shoal.crawl import robots_getter, run_loop, start_crawl
    from shoal.fetch.address import AddressPolicy
    from shoal.fetch.http import HttpFetcher, StaticResolver
    from shoal.fetch.robots import RobotsCache
    from shoal.frontier import SqlFrontier
    from shoal.spec import parse_spec
    from shoal.worker import Worker

    spec = parse_spec(text)
    frontier = SqlFrontier(spec.frontier_url())

    async def go() -> Any:
        crawl = start_crawl(frontier, spec, text)
        policy = AddressPolicy(spec.scope.allow_private, spec.scope.allow_cidrs)
        http = HttpFetcher(
            policy,
            user_agent=spec.politeness.user_agent,
            max_body_bytes=spec.limits.max_body_bytes,
            connect_timeout=spec.limits.connect_timeout,
            concurrency=spec.worker.concurrency,
            resolver=StaticResolver(hosts) if hosts else None,
        )
        holder: list[Worker] = []

        async def before(url: str) -> None:
            if holder:
                await holder[0].wait_host_slot(url)

        robots = (
            RobotsCache(
                robots_getter(http, min(30.0, spec.limits.fetch_timeout), before),
                spec.politeness.user_agent,
                temporary_ttl=robots_ttl,
            )
            if spec.politeness.robots
            else None
        )
        archive = WarcWriter(
            spec.archive_dir(),
            prefix=spec.name,
            max_bytes=spec.storage.warc_max_bytes,
            fsync=spec.storage.fsync,
            operator_info={"crawl": spec.name},
        )
        worker = Worker(
            spec=spec,
            frontier=frontier,
            crawl_id=crawl.id,
            fetchers={"http": http},
            archive=archive,
            robots=robots,
            address_check=http.check_address,
        )
        holder.append(worker)
        try:
            async with asyncio.timeout(120):
                return await worker.run()
        finally:
            await http.close()

    try:
        Path(spec.archive_dir()).mkdir(parents=True, exist_ok=True)
        stats = run_loop(go())
    finally:
        frontier.close()
    return spec, stats
