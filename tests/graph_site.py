"""A bounded link graph served on 127.0.0.1, with a request log, for multi-worker tests.

Page ``/p/{i}`` (0 <= i < n) links to a handful of other pages chosen
deterministically, so every page is reachable from ``/p/0``. The server can
listen on several loopback addresses at once (127.0.0.2, 127.0.0.3, ...),
each being a separate host for politeness; links stay on their own host.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["GraphSite"]


def links_of(i: int, n: int) -> list[int]:
    """The pages page ``i`` links to (always including i+1, so all are reachable)."""
    return sorted({(i + 1) % n, (i * 7 + 3) % n, (i * 13 + 5) % n, (i // 2), (i * 31 + 11) % n})


@dataclass
class GraphSite:
    """Serves the graph in a background thread; ``hits`` is [(monotonic time, host, path)].

    ``peers`` holds the client address of each hit, in the same order.
    """

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

    def start(self) -> GraphSite:
        """Start serving; returns self once every host listens."""
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("graph site did not start")
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve(ready))
        finally:
            self._loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._stop = asyncio.Event()
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
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        for h in self.hosts:
            site = web.TCPSite(runner, h, 0)
            await site.start()
            self.ports[h] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()
        await self._stop.wait()
        await runner.cleanup()
