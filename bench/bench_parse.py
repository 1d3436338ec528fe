"""Benchmark the parse stage: parsed pages per second, with 1 and 2 processes, on the benchmark site.

Steps: generate the benchmark board site (``gen_site.py``; N posts of ~20 KB),
archive it straight from the generated files with :class:`shoal.archive.WarcWriter`
(the same gzip-per-record WARC files a crawl writes; no HTTP needed to measure
parsing), record each post as a ``done`` frontier row in a SQLite frontier,
then run :func:`shoal.parse.run_parse` with a typical blog table: title,
author, date, post id, price, body, related links, plus the built-in columns
(trafilatura main text and py3langid language included), redaction and dedup.

Rows printed: processes, pages, seconds (wall, from the first frontier read
to the last file written, process start-up included), pages/s, pages/s per
process, and CPU milliseconds per page (this process and its workers: the
number that stays true on a busy machine). A third row without main text and
language shows what trafilatura and language detection cost.

Usage (from the repository root)::

    .venv/bin/python bench/bench_parse.py [--pages 5000] [--keep DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import gen_site  # noqa: E402

TABLE = """
[parse]
out = "{data}/tables"

[parse.tables.posts]
from = "post"
redact = true
dedup = ["url", "content"]
{builtins}

[parse.tables.posts.fields]
title_text = {{ css = "article h1.title", required = true }}
author = {{ css = "p.meta .author", required = true }}
published = {{ css = "p.meta time", attr = "datetime", type = "date", required = true }}
post_id = {{ css = "p.meta", regex = '글번호 (\\d+)', type = "int", required = true }}
price = {{ css = "p.meta", regex = '가격 ([\\d,]+)원', type = "int" }}
body = {{ css = "article div.content", required = true }}
related = {{ css = "ul.related a", attr = "href", all = true, absolute = true }}
"""

SPEC = """
[crawl]
name = "bench"
seeds = ["{base}/"]

[[rules]]
name = "home"
glob = "/"
kind = "list"

[[rules]]
name = "list"
regex = '/list/\\d+\\.html$'
kind = "list"

[[rules]]
name = "post"
regex = '/posts/\\d+\\.html$'
kind = "detail"

[storage]
frontier = "sqlite:///{data}/frontier.sqlite"
archive = "{data}/warc"
fsync = false
"""

BASE = "http://bench.test"


def build_archive(site: Path, data: Path, n_posts: int) -> Path:
    """Archive every post of the generated site and record it as done; returns the spec file."""
    from sqlalchemy import insert

    from shoal.archive import WarcWriter
    from shoal.crawl import start_crawl
    from shoal.exchange import FetchResult
    from shoal.frontier.sql import SqlFrontier
    from shoal.frontier.tables import urls
    from shoal.spec import parse_spec
    from shoal.urls import canonicalize

    text = SPEC.format(base=BASE, data=data.as_posix())
    spec_path = data / "bench.toml"
    spec_path.write_text(text + TABLE.format(data=data.as_posix(), builtins=""), encoding="utf-8")
    spec = parse_spec(text)
    frontier = SqlFrontier(spec.frontier_url())
    try:
        crawl = start_crawl(frontier, spec, text)
        rows: list[dict[str, Any]] = []
        now = int(time.time() * 1000)
        with WarcWriter(spec.archive_dir(), prefix="bench", fsync=False) as w:
            for i in range(1, n_posts + 1):
                c = canonicalize(f"{BASE}/posts/{i}.html")
                body = (site / "posts" / f"{i}.html").read_bytes()
                res = FetchResult(
                    url=c.url,
                    status=200,
                    reason="OK",
                    http_version="1.1",
                    headers=[
                        ("Content-Type", "text/html; charset=utf-8"),
                        ("Content-Length", str(len(body))),
                    ],
                    body=body,
                    request_headers=[("User-Agent", "bench")],
                )
                ref = w.write_exchange(res, fetched_at=now / 1000 + i / 1000)
                rows.append(
                    {
                        "crawl_id": crawl.id,
                        "url_key": c.url_key,
                        "url": c.url,
                        "host_key": c.host_key,
                        "status": "done",
                        "rule": 2,
                        "kind": "detail",
                        "depth": 2,
                        "priority": 0,
                        "discovered_at": now,
                        "next_attempt_at": now,
                        "attempts": 1,
                        "http_status": 200,
                        "final_url": c.url,
                        "content_type": "text/html; charset=utf-8",
                        "body_bytes": len(body),
                        "fetched_at": now + i,
                        "warc_file": ref.file,
                        "warc_offset": ref.offset,
                        "warc_length": ref.length,
                        "warc_record_id": ref.record_id,
                    }
                )
        with frontier.engine.begin() as conn:
            for k in range(0, len(rows), 1000):
                conn.execute(insert(urls), rows[k : k + 1000])
    finally:
        frontier.close()
    return spec_path


def run(spec_path: Path, processes: int, *, builtins: str = "") -> dict[str, Any]:
    """One parse of the posts table; returns the measured row."""
    from shoal.parse import run_parse

    if builtins:
        text = spec_path.read_text(encoding="utf-8").replace(
            'dedup = ["url", "content"]\n', f'dedup = ["url", "content"]\n{builtins}\n', 1
        )
        spec_path = spec_path.with_name("bench-nomain.toml")
        spec_path.write_text(text, encoding="utf-8")
    cpu0 = _cpu()
    t0 = time.perf_counter()
    result = run_parse(spec_path, processes=processes, progress=False)
    elapsed = time.perf_counter() - t0
    cpu = _cpu() - cpu0
    pages = result.pages
    assert result.ok, result.failures
    return {
        "variant": "no main text/language" if builtins else "typical blog table",
        "processes": processes,
        "pages": pages,
        "rows": result.rows["posts"],
        "seconds": round(elapsed, 2),
        "pages_per_s": round(pages / elapsed, 1),
        "pages_per_s_per_process": round(pages / elapsed / processes, 1),
        "cpu_ms_per_page": round(cpu / pages * 1000, 2),
    }


def _cpu() -> float:
    """User + system CPU seconds of this process and of its children that ended."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument(
        "--pages", type=int, default=5000, help="posts in the generated site (default 5000)"
    )
    ap.add_argument(
        "--keep", type=Path, help="build the site and archive in this folder and keep them"
    )
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="shoal-bench-parse-"))
    try:
        site, data = work / "site", work / "data"
        if data.exists():
            shutil.rmtree(data)
        data.mkdir(parents=True)
        t0 = time.perf_counter()
        gen_site.generate(site, args.pages)
        spec_path = build_archive(site, data, args.pages)
        print(f"archived {args.pages} posts in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        rows = [
            run(spec_path, 1),
            run(spec_path, 2),
            run(
                spec_path,
                1,
                builtins='builtins = ["url", "fetched_at", "http_status", "title", "images"]',
            ),
        ]
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = (
        f"{'table':<24} {'processes':>9} {'pages':>7} {'seconds':>8} {'pages/s':>8} {'pages/s/process':>16}"
        f" {'CPU ms/page':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['variant']:<24} {r['processes']:>9} {r['pages']:>7} {r['seconds']:>8.2f} "
            f"{r['pages_per_s']:>8.1f} {r['pages_per_s_per_process']:>16.1f} {r['cpu_ms_per_page']:>12.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
