"""Rendered pages per second and memory of the browser fetcher, for pool sizes 1, 2 and 4.

A local site (aiohttp, in a child process so that it is not counted) serves
pages whose list of rows arrives by Ajax 100 ms after load; each page is
rendered with ``wait_for = ".row"``. For each pool size the fetcher starts its
browsers (timed apart), then renders the pages with as many in flight as there
are browsers. Peak memory is sampled every 100 ms over the worker process and
all its descendants (guards, chromedriver, every Chromium process): RSS summed
(counts shared pages once per process, so it overstates) and PSS summed
(shared pages divided among their users, closer to the real footprint).

Usage: python bench/bench_browser.py [--pages 60] [--pools 1,2,4] [--delay-ms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass

import psutil
from aiohttp import web

from shoal.exchange import FetchRequest
from shoal.fetch.address import AddressPolicy
from shoal.fetch.browser.fetcher import BrowserFetcher
from shoal.spec import Rule

PAGE = """<!doctype html><html><head><title>page %(n)d</title></head><body>
<h1>Page %(n)d</h1><ul id="list"></ul>
<p>%(filler)s</p>
<script>
setTimeout(function () {
  fetch('/api/rows/%(n)d').then(r => r.json()).then(function (rows) {
    const list = document.getElementById('list');
    for (const text of rows) {
      const li = document.createElement('li'); li.className = 'row'; li.textContent = text; list.appendChild(li);
    }
  });
}, %(delay)d);
</script></body></html>"""


def serve(port_queue: multiprocessing.Queue[int], delay_ms: int) -> None:
    """Run the bench site in this (child) process until killed."""

    async def page(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        filler = "본문 텍스트 " * 400
        return web.Response(
            text=PAGE % {"n": n, "delay": delay_ms, "filler": filler}, content_type="text/html"
        )

    async def rows(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        return web.json_response([f"row {n}-{i}" for i in range(30)])

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/page/{n}", page)
        app.router.add_get("/api/rows/{n}", rows)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_queue.put(int(runner.addresses[0][1]))
        await asyncio.Event().wait()

    asyncio.run(main())


@dataclass
class Peak:
    """Highest summed RSS and PSS seen over the process tree, in bytes."""

    rss: int = 0
    pss: int = 0


def sample(stop: threading.Event, exclude: set[int], peak: Peak) -> None:
    """Sample the memory of this process and its descendants until ``stop`` is set."""
    me = psutil.Process(os.getpid())
    tick = 0
    while not stop.wait(0.1):
        procs = [me, *(p for p in me.children(recursive=True) if p.pid not in exclude)]
        rss = pss = 0
        for p in procs:
            try:
                if tick % 5 == 0:
                    info = p.memory_full_info()
                    rss += info.rss
                    pss += getattr(info, "pss", info.rss)
                else:
                    rss += p.memory_info().rss
            except psutil.Error:
                continue
        peak.rss = max(peak.rss, rss)
        if tick % 5 == 0:
            peak.pss = max(peak.pss, pss)
        tick += 1


async def run(pool: int, base: str, pages: int) -> tuple[float, float, int]:
    """(startup seconds, render seconds, browsers started) for one pool size."""
    fetcher = BrowserFetcher(
        AddressPolicy(allow_cidrs=["127.0.0.1/32"]),
        scope_hosts=[base],
        pool_size=pool,
        recycle_pages=100,
        user_agent="shoal-bench",
    )
    rule = Rule(glob="*", render="browser", wait_for=".row", wait_timeout=10)
    try:
        t0 = time.monotonic()
        await asyncio.gather(
            *(
                fetcher.fetch(
                    FetchRequest(f"{base}/page/{10_000 + i}", rule, time.monotonic() + 60)
                )
                for i in range(pool)
            )
        )
        startup = time.monotonic() - t0
        t0 = time.monotonic()
        results = await asyncio.gather(
            *(
                fetcher.fetch(FetchRequest(f"{base}/page/{i}", rule, time.monotonic() + 120))
                for i in range(pages)
            )
        )
        took = time.monotonic() - t0
        assert all(
            r.rendered_html is not None and r.rendered_html.count('class="row"') == 30
            for r in results
        )
        return startup, took, fetcher.browsers_started
    finally:
        await fetcher.close()


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pages", type=int, default=60)
    parser.add_argument("--pools", default="1,2,4")
    parser.add_argument("--delay-ms", type=int, default=100)
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    ports: multiprocessing.Queue[int] = ctx.Queue()
    site = ctx.Process(target=serve, args=(ports, args.delay_ms), daemon=True)
    site.start()
    base = f"http://127.0.0.1:{ports.get(timeout=30)}"
    assert site.pid is not None
    exclude = {site.pid}

    print(
        f"{args.pages} pages, Ajax list after {args.delay_ms} ms, wait_for='.row'; cpus={os.cpu_count()}"
    )
    header = f"{'pool':>4} | {'startup s':>9} | {'render s':>8} | {'pages/s':>7} | {'peak RSS MiB':>12} | {'peak PSS MiB':>12}"
    print(header)
    print("-" * len(header))
    try:
        for pool in (int(x) for x in args.pools.split(",")):
            peak = Peak()
            stop = threading.Event()
            sampler = threading.Thread(target=sample, args=(stop, exclude, peak), daemon=True)
            sampler.start()
            startup, took, _started = asyncio.run(run(pool, base, args.pages))
            stop.set()
            sampler.join()
            print(
                f"{pool:>4} | {startup:>9.2f} | {took:>8.2f} | {args.pages / took:>7.1f} | "
                f"{peak.rss / 2**20:>12.0f} | {peak.pss / 2**20:>12.0f}"
            )
    finally:
        site.kill()
        site.join()


if __name__ == "__main__":
    main()
