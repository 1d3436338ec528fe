"""A bounded link graph served on 127.0.0.1, with a request log, for multi-worker tests.

Page ``/p/{i}`` (0 <= i < n) links to a handful of other pages chosen
deterministically, so every page is reachable from ``/p/0``. The server can
listen on several loopback addresses at once (127.0.0.2, 127.0.0.3, ...),
each being a separate host for politeness; links stay on their own host.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiohttp import web

from shoal.testing import ThreadedSite

__all__ = ["GraphSite"]


def links_of(i: int, n: int) -> list[int]:
    """The pages page ``i`` links to (always including i+1, so all are reachable)."""
    return sorted({(i + 1) % n, (i * 7 + 3) % n, (i * 13 + 5) % n, (i // 2), (i * 31 + 11) % n})


@dataclass
class GraphSite(ThreadedSite):
    """Serves the graph in a background thread; ``hits`` is [(monotonic time, host, path)].

    ``peers`` holds the client address of each hit, in the same order.
    """

    thread_name = "graph-site"

    n: int = 1000
    hosts: tuple[str, ...] = ("127.0.0.1",)
    padding: int = 2000
    hits: list[tuple[float, str, str]] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    peers: list[str] = field(default_factory=list)

    def url(self, host: str | None = None, path: str = "/p/0") -> str:
        """An absolute URL on one of the site's hosts."""
        h = host or self.hosts[0]
        return f"http://{h}:{self.ports[h]}{path}"

    async def _open(self) -> None:
        pad = "x" * self.padding

        async def page(request: web.Request) -> web.Response:
            self.hits.append((time.monotonic(), request.host.split(":")[0], request.path))
            self.peers.append(request.remote or "")
            i = int(request.match_info["i"])
            if not 0 <= i < self.n:
                raise web.HTTPNotFound()
            body = "".join(f'<a href="/p/{j}">page {j}</a> ' for j in links_of(i, self.n))
            return web.Response(
                text=f"<html><body><h1>page {i}</h1>{body}<p>{pad}</p></body></html>",
                content_type="text/html",
            )

        async def robots(request: web.Request) -> web.Response:
            self.hits.append((time.monotonic(), request.host.split(":")[0], request.path))
            self.peers.append(request.remote or "")
            return web.Response(text="User-agent: *\nAllow: /\n")

        app = web.Application()
        app.router.add_get("/p/{i}", page)
        app.router.add_get("/robots.txt", robots)
        runner = await self._runner(app)
        for h in self.hosts:
            self.ports[h] = await self._listen(runner, h)
