"""Revisit benchmark: what a second crawl cycle costs when 1 % of a board changed.

Generates the benchmark board (``gen_site.py``, 20,000 posts and 1,001 list
pages by default), adds a ``sitemap.xml`` whose ``<lastmod>`` is each post's
file time, serves it with nginx (which answers conditional requests with 304)
and crawls it in this process: list pages revisited every hour, posts not
revisited but refreshed by the sitemap's ``<lastmod>``. After the first cycle
1 % of the posts get a new comment (file and sitemap entry updated), the
crawl's clock is moved one hour on, and the second cycle is measured. Requests
and bytes come from nginx's access log.

Usage: ``python bench/bench_revisit.py [--pages N] [--change 0.01] [--workdir DIR]``.
Goal (issue 12): second-cycle requests <= list pages + changed pages (+ the
sitemap and robots.txt), bytes <= 5 % of the first cycle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import gen_site  # noqa: E402
from run import NGINX, Server, ensure_site, log  # noqa: E402

from shoal.crawl import run_async, start_crawl  # noqa: E402
from shoal.frontier import SqlFrontier  # noqa: E402
from shoal.spec import parse_spec  # noqa: E402

SPEC = """\
# Written by bench/bench_revisit.py.
[crawl]
name = "revisit"
seeds = ["{base}/", {{ sitemap = "{base}/sitemap.xml" }}]

[[rules]]
name = "home"
glob = "/"
kind = "list"
revisit = "1h"

[[rules]]
name = "list"
glob = "/list/*"
kind = "list"
revisit = "1h"

[[rules]]
name = "post"
glob = "/posts/*"
kind = "detail"

[scope]
allow_private = true

[politeness]
delay = 0
jitter = 0
concurrency_per_host = {concurrency}

[limits]
max_depth = 100000
fetch_timeout = 30

[storage]
frontier = "sqlite:///{run}/frontier.sqlite"
archive = "{run}/warc"

[worker]
concurrency = {concurrency}
"""

HOUR_MS = 3_600_000


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_sitemap(site: Path, n_posts: int, base: str) -> None:
    """``sitemap.xml`` listing every post with its file's modification time as ``<lastmod>``."""
    entries = [
        f"<url><loc>{base}/posts/{i}.html</loc>"
        f"<lastmod>{_iso((site / 'posts' / f'{i}.html').stat().st_mtime)}</lastmod></url>"
        for i in range(1, n_posts + 1)
    ]
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        + "".join(entries)
        + "</urlset>\n"
    )
    tmp = site / "sitemap.xml.tmp"
    tmp.write_text(body)
    os.replace(tmp, site / "sitemap.xml")


def change_posts(site: Path, n_posts: int, share: float) -> list[int]:
    """Add a comment to ``share`` of the posts (evenly spread); returns their numbers."""
    step = max(1, round(1 / share))
    changed = list(range(step, n_posts + 1, step))
    for i in changed:
        path = site / "posts" / f"{i}.html"
        html = path.read_bytes()
        cut = html.rfind(b"</body>")
        comment = f'<p class="comment">new comment on post {i}</p>'.encode()
        path.write_bytes(html[:cut] + comment + html[cut:])
    return changed


class Log:
    """nginx's access log (``URI STATUS BYTES`` per line), read in slices."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def next_slice(self) -> dict[str, int]:
        """Requests, statuses and body bytes logged since the last call."""
        time.sleep(2.0)  # nginx flushes its log buffer every second
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        out = {"requests": 0, "bytes": 0, "200": 0, "304": 0, "other": 0}
        for line in data.decode(errors="replace").splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue
            out["requests"] += 1
            out["bytes"] += int(parts[2]) if parts[2].isdigit() else 0
            out[parts[1] if parts[1] in ("200", "304") else "other"] += 1
        return out


async def settled(frontier: SqlFrontier, cid: int, timeout: float) -> float:
    """Wait until nothing is pending, leased or due; returns the seconds it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        counts = frontier.status_counts(cid)
        wake = frontier.wake_at(cid)
        idle = counts["pending"] == 0 and counts["leased"] == 0 and counts["done"] > 0
        if idle and (wake is None or wake > frontier.now_ms()):
            return time.monotonic() - t0
        await asyncio.sleep(0.2)
    raise SystemExit(
        f"the crawl did not settle within {timeout:.0f}s: {frontier.status_counts(cid)}"
    )


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--pages", type=int, default=20_000, help="posts of the site (default 20000)")
    ap.add_argument("--change", type=float, default=0.01, help="share of posts changed (0.01)")
    ap.add_argument("--concurrency", type=int, default=32, help="fetches in flight (32)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per cycle")
    ap.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "shoal-bench",
        help="where the site is cached and the run happens",
    )
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    if not os.path.exists(NGINX):
        raise SystemExit(f"{NGINX} not found: this benchmark needs nginx (it answers 304s)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    cached = ensure_site(args.workdir, args.pages)
    run = Path(tempfile.mkdtemp(prefix="revisit-", dir=args.workdir))
    os.chmod(run, 0o755)
    site = run / "site"
    shutil.copytree(cached, site)
    lists = gen_site.list_count(args.pages)
    try:
        with Server(site, run, "revisit", use_nginx=True) as server:
            write_sitemap(site, args.pages, server.base_url)
            text = SPEC.format(base=server.base_url, run=run, concurrency=args.concurrency)
            spec = parse_spec(text)
            frontier = SqlFrontier(spec.frontier_url())
            crawl = start_crawl(frontier, spec, text)
            access = Log(server.access_log)
            figures: dict[str, object] = {"posts": args.pages, "list_pages": lists + 1}

            async def cycles() -> None:
                stop = asyncio.Event()
                task = asyncio.create_task(
                    run_async(
                        spec, frontier, crawl, progress=False, install_signals=False, stop=stop
                    )
                )
                try:
                    t1 = await settled(frontier, crawl.id, args.timeout)
                    figures["cycle1"] = {**access.next_slice(), "seconds": round(t1, 1)}
                    log(f"cycle 1: {figures['cycle1']}")
                    changed = change_posts(site, args.pages, args.change)
                    write_sitemap(site, args.pages, server.base_url)
                    figures["changed_posts"] = len(changed)
                    frontier._offset_ms += HOUR_MS + 1000  # the crawl's clock moves one hour on
                    t2 = await settled(frontier, crawl.id, args.timeout)
                    figures["cycle2"] = {**access.next_slice(), "seconds": round(t2, 1)}
                    log(f"cycle 2: {figures['cycle2']}")
                finally:
                    stop.set()
                    await asyncio.wait_for(task, 120)

            try:
                asyncio.run(cycles())
            finally:
                frontier.close()
    finally:
        shutil.rmtree(run, ignore_errors=True)
    c1, c2 = figures["cycle1"], figures["cycle2"]
    assert isinstance(c1, dict) and isinstance(c2, dict)
    allowed = lists + 1 + int(figures["changed_posts"]) + 2  # type: ignore[call-overload]  # + sitemap.xml, robots.txt
    figures["requests_goal"] = allowed
    figures["requests_ok"] = c2["requests"] <= allowed
    figures["bytes_share"] = round(c2["bytes"] / max(1, c1["bytes"]), 4)
    figures["bytes_ok"] = figures["bytes_share"] <= 0.05  # type: ignore[operator]
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(
            f"{args.pages} posts, {lists + 1} list pages, {figures['changed_posts']} posts changed\n"
            f"cycle 1: {c1['requests']} requests ({c1['200']} x 200), {c1['bytes'] / 1e6:.1f} MB, {c1['seconds']} s\n"
            f"cycle 2: {c2['requests']} requests ({c2['200']} x 200, {c2['304']} x 304), "
            f"{c2['bytes'] / 1e6:.2f} MB, {c2['seconds']} s\n"
            f"goal: requests <= {allowed}: {'yes' if figures['requests_ok'] else 'NO'}; "
            f"bytes {figures['bytes_share']:.2%} of cycle 1 <= 5 %: {'yes' if figures['bytes_ok'] else 'NO'}"
        )
    return 0 if figures["requests_ok"] and figures["bytes_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
