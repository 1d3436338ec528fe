"""Benchmark the parse stage against a minimal reference loop on the same archive, and shoal's start-up.

Steps: generate the benchmark board site (``gen_site.py``; N posts of ~20 KB),
archive it straight from the generated files with :class:`shoal.archive.WarcWriter`
(the same gzip-per-record WARC files a crawl writes; no HTTP needed to measure
parsing), record each post as a ``done`` frontier row in a SQLite frontier,
then time, over the same records:

- ``reference``: a minimal loop written here: warcio's ``ArchiveIterator``
  over the WARC files, UTF-8 decoding, selectolax (lexbor) with the same CSS
  fields, rows in a list of dicts: no frontier, no pandas, no output;
- shoal's :func:`~shoal.parse.run_parse` with a typical blog table (title,
  date, author, body by CSS, tags as a list, plus url), without and with the
  main text and language (trafilatura, py3langid), with 1 and 2 processes,
  each run writing Parquet and the quality report;
- the CPU time of ``shoal version`` and ``shoal --help`` (a fresh interpreter each).

Imports happen before the timed runs (start-up has its own rows); a
2-process run includes its spawned worker's start-up. Besides pages/s (wall,
which on a shared machine depends on the idle cores) every row gives CPU ms per
page and pages per CPU-second, which stay true on a busy machine.

Rows printed: variant, processes, pages, seconds (wall, process start-up
included), pages/s, pages/s per process, CPU ms per page (this process and its
workers: the number that stays true on a busy machine), and shoal's share of
the reference's pages/s. On a machine shared with other work the wall-clock
figures of the 2-process row depend on the idle cores; the CPU column does not.

Usage (from the repository root)::

    .venv/bin/python bench/bench_parse.py [--pages 2000] [--keep DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import gen_site  # noqa: E402

FIELDS = {
    "title_text": "article h1.title",
    "published": "p.meta time",
    "author": "p.meta .author",
    "body": "article div.content",
}
"""The CSS fields of the typical blog table (``published`` reads the ``datetime`` attribute)."""
TAGS = "ul.related a"
"""The list field: every match's text."""

TABLE = """
[parse]
out = "{data}/tables"

[parse.tables.posts]
from = "post"
{builtins}

[parse.tables.posts.fields]
title_text = {{ css = "article h1.title", required = true }}
published = {{ css = "p.meta time", attr = "datetime", type = "date", required = true }}
author = {{ css = "p.meta .author", required = true }}
body = {{ css = "article div.content", required = true }}
tags = {{ css = "ul.related a", all = true }}
"""

NO_MAIN = 'builtins = ["url"]'
WITH_MAIN = 'builtins = ["url", "title", "main_text", "language"]'

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
    spec_path.write_text(
        text + TABLE.format(data=data.as_posix(), builtins=NO_MAIN), encoding="utf-8"
    )
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


def run(spec_path: Path, processes: int, builtins: str) -> dict[str, Any]:
    """One parse of the posts table with these built-in columns; returns the measured row."""
    from shoal.parse import run_parse

    text = spec_path.read_text(encoding="utf-8").replace(NO_MAIN, builtins, 1)
    variant = spec_path.with_name(f"bench-{processes}-{len(builtins)}.toml")
    variant.write_text(text, encoding="utf-8")
    cpu0 = _cpu()
    t0 = time.perf_counter()
    result = run_parse(variant, processes=processes, progress=False)
    elapsed = time.perf_counter() - t0
    cpu = _cpu() - cpu0
    pages = result.pages
    assert result.ok, result.failures
    assert result.rows["posts"] == pages
    return _row(
        "shoal, main text" if "main_text" in builtins else "shoal, no main text",
        processes,
        pages,
        elapsed,
        cpu,
    )


def reference(warc_dir: Path) -> dict[str, Any]:
    """The minimal loop: warcio + selectolax over every response record, the same CSS fields."""
    from selectolax.lexbor import LexborHTMLParser
    from warcio.archiveiterator import ArchiveIterator

    cpu0 = _cpu()
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for path in sorted(warc_dir.glob("*.warc.gz")):
        with open(path, "rb") as f:
            for record in ArchiveIterator(f):
                if record.rec_type != "response":
                    continue
                html = record.content_stream().read().decode("utf-8", "replace")
                tree = LexborHTMLParser(html)
                row: dict[str, Any] = {"url": record.rec_headers.get_header("WARC-Target-URI")}
                for name, css in FIELDS.items():
                    node = tree.css_first(css)
                    if node is None:
                        row[name] = None
                    elif name == "published":
                        row[name] = node.attributes.get("datetime")
                    else:
                        row[name] = node.text(separator="\n", strip=True)
                row["tags"] = [n.text(strip=True) for n in tree.css(TAGS)]
                rows.append(row)
    elapsed = time.perf_counter() - t0
    return _row("reference (warcio+lexbor)", 1, len(rows), elapsed, _cpu() - cpu0)


def _warm_up() -> None:
    """Import what both sides use before any timing: start-up is measured on its own (the start-up rows)."""
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import selectolax.lexbor  # noqa: F401
    import warcio.archiveiterator  # noqa: F401

    import shoal.parse.load
    import shoal.parse.run  # noqa: F401


def startup(command: list[str], runs: int = 5) -> dict[str, Any]:
    """The least CPU time of ``shoal COMMAND`` over ``runs`` fresh interpreters (user + system)."""
    best = float("inf")
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [sys.executable, "-m", "shoal", *command], check=True, capture_output=True, timeout=60
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        best = min(best, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return {"variant": f"start-up: shoal {' '.join(command)}", "cpu_s": round(best, 3)}


def _row(variant: str, processes: int, pages: int, elapsed: float, cpu: float) -> dict[str, Any]:
    return {
        "variant": variant,
        "processes": processes,
        "pages": pages,
        "seconds": round(elapsed, 2),
        "pages_per_s": round(pages / elapsed, 1),
        "pages_per_s_per_process": round(pages / elapsed / processes, 1),
        "cpu_ms_per_page": round(cpu / pages * 1000, 3),
        "pages_per_cpu_s": round(pages / cpu, 1),
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
        "--pages", type=int, default=2000, help="posts in the generated site (default 2000)"
    )
    ap.add_argument(
        "--keep", type=Path, help="build the site and archive in this folder and keep them"
    )
    ap.add_argument(
        "--only", choices=("all", "reference", "shoal"), default="all", help="what to run"
    )
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="shoal-bench-parse-"))
    rows: list[dict[str, Any]] = []
    try:
        site, data = work / "site", work / "data"
        if data.exists():
            shutil.rmtree(data)
        data.mkdir(parents=True)
        t0 = time.perf_counter()
        gen_site.generate(site, args.pages)
        spec_path = build_archive(site, data, args.pages)
        print(f"archived {args.pages} posts in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        _warm_up()
        if args.only in ("all", "reference"):
            rows.append(reference(data / "warc"))
        if args.only in ("all", "shoal"):
            rows.append(run(spec_path, 1, NO_MAIN))
            rows.append(run(spec_path, 2, NO_MAIN))
            rows.append(run(spec_path, 1, WITH_MAIN))
            rows.append(run(spec_path, 2, WITH_MAIN))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    ups = [startup(["version"]), startup(["--help"])]
    ref = next((r for r in rows if r["variant"].startswith("reference")), None)
    for r in rows:
        if ref is not None and r is not ref:
            r["share_of_reference"] = round(r["pages_per_s_per_process"] / ref["pages_per_s"], 3)
            r["cpu_share_of_reference"] = round(r["pages_per_cpu_s"] / ref["pages_per_cpu_s"], 3)
    one = {r["variant"]: r for r in rows if r["processes"] == 1}
    for r in rows:
        if r["processes"] == 2 and r["variant"] in one:
            r["speedup_vs_1"] = round(r["pages_per_s"] / one[r["variant"]]["pages_per_s"], 2)
    if args.json:
        print(json.dumps(rows + ups, indent=2))
        return 0
    header = (
        f"{'variant':<26} {'proc':>4} {'pages':>6} {'seconds':>8} {'pages/s':>8} {'pages/s/proc':>12}"
        f" {'CPU ms/page':>11} {'pages/CPU-s':>11} {'vs ref':>7} {'CPU vs ref':>10} {'x 1 proc':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        share = f"{r['share_of_reference']:.0%}" if "share_of_reference" in r else "-"
        cpu_share = f"{r['cpu_share_of_reference']:.0%}" if "cpu_share_of_reference" in r else "-"
        speed = f"{r['speedup_vs_1']:.2f}" if "speedup_vs_1" in r else "-"
        print(
            f"{r['variant']:<26} {r['processes']:>4} {r['pages']:>6} {r['seconds']:>8.2f} "
            f"{r['pages_per_s']:>8.1f} {r['pages_per_s_per_process']:>12.1f} {r['cpu_ms_per_page']:>11.3f}"
            f" {r['pages_per_cpu_s']:>11.1f} {share:>7} {cpu_share:>10} {speed:>8}"
        )
    for u in ups:
        print(
            f"{u['variant']:<26} CPU {u['cpu_s']:.3f} s (best of 5; os.cpu_count() = {os.cpu_count()})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
