"""Peak memory and time of a crawl whose one page is a link flood (issue #9 item 4).

A local aiohttp site (in a child process, so it is not measured) serves one
page of ``--links`` links (560,000 by default: about 19 MB, under the default
20 MiB body cap) to ``/post/f{i}``, which robots.txt disallows, so the crawl
fetches that page only. ``shoal crawl`` runs in its own process with the
default limits (``max_links_per_page = 5000``); its peak RSS is the kernel's
``ru_maxrss`` for that process (``wait4``), and the URL rows it stored are
counted afterwards. Goal: peak RSS under 300 MB.

Usage: python bench/bench_links.py [--links 560000] [--max-links-per-page 5000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web


def _serve(port: int, links: int) -> None:
    body = (
        "<!doctype html><html><body>"
        + "".join(f'<a href="/post/f{i}">{i}</a>\n' for i in range(links))
        + "</body></html>"
    ).encode()

    async def flood(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/html")

    async def robots(request: web.Request) -> web.Response:
        return web.Response(text="User-agent: *\nDisallow: /post/\n")

    app = web.Application()
    app.router.add_get("/flood", flood)
    app.router.add_get("/robots.txt", robots)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit("the flood site did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--links", type=int, default=560_000)
    ap.add_argument("--max-links-per-page", type=int, default=None)
    args = ap.parse_args()
    port = _free_port()
    server = multiprocessing.Process(target=_serve, args=(port, args.links), daemon=True)
    server.start()
    try:
        _wait_port(port)
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp)
            extra = (
                f"max_links_per_page = {args.max_links_per_page}\n"
                if args.max_links_per_page
                else ""
            )
            spec = data / "flood.toml"
            spec.write_text(
                "[crawl]\n"
                'name = "flood"\n'
                f'seeds = ["http://127.0.0.1:{port}/flood"]\n'
                "[scope]\nallow_private = true\n"
                "[politeness]\ndelay = 0.0\n"
                f"[limits]\n{extra}"
                f'[storage]\nfrontier = "sqlite:///{data}/frontier.sqlite"\n'
                f'archive = "{data}/warc"\nfsync = false\n'
            )
            t0 = time.monotonic()
            proc = subprocess.Popen(
                [sys.executable, "-m", "shoal", "crawl", str(spec), "--no-progress"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            _, status, usage = os.wait4(proc.pid, 0)
            elapsed = time.monotonic() - t0
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                err = proc.stderr.read().decode() if proc.stderr is not None else ""
                raise SystemExit(f"shoal crawl exited {code}: {err[-2000:]}")
            with sqlite3.connect(data / "frontier.sqlite") as db:
                stored = db.execute("SELECT count(*) FROM urls").fetchone()[0]
                cut = db.execute(
                    "SELECT count(*) FROM urls WHERE skip_reason = 'max_links'"
                ).fetchone()[0]
            size = sum(len(f'<a href="/post/f{i}">{i}</a>\n') for i in range(args.links))
    finally:
        server.terminate()
        server.join(10)
    peak_mb = usage.ru_maxrss / 1024  # Linux: kilobytes
    print(f"page: {args.links:,} links, {size / 1e6:.1f} MB")
    print(f"crawl: {elapsed:.1f} s, exit 0, {stored:,} URL rows stored ({cut} max_links marker)")
    print(f"peak RSS of the shoal process: {peak_mb:.0f} MB (goal < 300 MB)")


if __name__ == "__main__":
    main()
