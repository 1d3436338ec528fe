"""Many worker processes, one database: exactly-once fetching and fleet-wide politeness on every backend."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shoal.frontier import SqlFrontier
from shoal.frontier.tables import urls, workers
from tests.sites.graph import GraphSite
from tests.test_status_truth import assert_status_is_true


def graph_spec(
    site: GraphSite,
    data: Path,
    *,
    name: str = "graph",
    delay: float = 0.0,
    per_host: int = 64,
    concurrency: int = 8,
    max_pages: int | None = None,
) -> str:
    seeds = ", ".join(f'"{site.url(h)}"' for h in site.hosts)
    return f"""
[crawl]
name = "{name}"
seeds = [{seeds}]

[scope]
allowed_hosts = [{", ".join(f'"{h}:{site.ports[h]}"' for h in site.hosts)}]
allow_private = true

[politeness]
delay = {delay}
jitter = 0.1
concurrency_per_host = {per_host}

[limits]
max_depth = 100000
fetch_timeout = 20
{"" if max_pages is None else f"max_pages = {max_pages}"}

[storage]
archive = "{data}/warc"
fsync = false

[worker]
concurrency = {concurrency}
lease_seconds = 30
flush_interval = 0.1
"""


def shoal(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def count_warc_responses(folder: Path) -> Counter[str]:
    from warcio.archiveiterator import ArchiveIterator

    seen: Counter[str] = Counter()
    for f in folder.glob("*.warc.gz"):
        with f.open("rb") as fh:
            for rec in ArchiveIterator(fh):
                if rec.rec_type == "response":
                    seen[rec.rec_headers.get_header("WARC-Target-URI")] += 1
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 4, 16])
def test_every_page_is_fetched_exactly_once(db_url: str, tmp_path: Path, processes: int) -> None:
    """N worker processes crawl a link graph: server log, archive and frontier agree that each page was fetched once."""
    n = 2000
    site = GraphSite(n=n).start()
    try:
        spec = tmp_path / "graph.toml"
        spec.write_text(graph_spec(site, tmp_path, concurrency=4))
        sub = shoal("submit", str(spec), "--db", db_url)
        assert sub.returncode == 0, sub.stderr
        res = shoal("work", "--db", db_url, "--processes", str(processes), timeout=600)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    finally:
        site.stop()
    pages = Counter(p for _, _, p in site.hits if p.startswith("/p/"))
    assert len(pages) == n
    dupes = {p: c for p, c in pages.items() if c > 1}
    assert dupes == {}, f"{len(dupes)} pages fetched more than once"
    f = SqlFrontier(db_url, create=False)
    try:
        statuses = dict(f.query(select(urls.c.status, func.count()).group_by(urls.c.status)))
        lost = f.query(select(func.sum(urls.c.lease_lost)))[0][0]
        nworkers = f.query(select(func.count()).select_from(workers))[0][0]
    finally:
        f.close()
    assert statuses == {"done": n}
    assert lost == 0
    assert nworkers == processes
    assert_status_is_true(db_url, 1)
    archived = count_warc_responses(tmp_path / "warc")
    assert len(archived) == n and set(archived.values()) == {1}


@pytest.mark.slow
def test_max_pages_is_one_budget_for_the_whole_fleet(db_url: str, tmp_path: Path) -> None:
    """Eight worker processes with max_pages = 120 fetch exactly 120 pages between them; the rest is skipped."""
    site = GraphSite(n=600).start()
    try:
        spec = tmp_path / "budget.toml"
        spec.write_text(graph_spec(site, tmp_path, name="budget", concurrency=4, max_pages=120))
        assert shoal("submit", str(spec), "--db", db_url).returncode == 0
        res = shoal("work", "--db", db_url, "--processes", "8", timeout=600)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    finally:
        site.stop()
    pages = Counter(p for _, _, p in site.hits if p.startswith("/p/"))
    assert sum(pages.values()) == 120
    f = SqlFrontier(db_url, create=False)
    try:
        snap = f.status(1)
    finally:
        f.close()
    assert snap.counts["done"] == 120 and snap.fetched == 120
    assert snap.counts["pending"] == snap.counts["leased"] == 0
    assert set(snap.skipped) == {"max_pages"}
    assert_status_is_true(db_url, 1)


@pytest.mark.slow
def test_host_interval_holds_across_eight_worker_processes(db_url: str, tmp_path: Path) -> None:
    """With 8 worker processes, the server sees no two requests to one host closer than the delay (10 % tolerance)."""
    # Six hosts of eight pages: as many gaps (48) as three of sixteen, and more hosts contended
    # at once, in half the time (the hosts are crawled side by side).
    hosts = tuple(f"127.0.0.{i}" for i in range(2, 8))
    n = 8
    delay = 1.0  # 10 % of it (100 ms) covers a loaded machine delaying one arrival at the server
    site = GraphSite(n=n, hosts=hosts).start()
    try:
        spec = tmp_path / "polite.toml"
        spec.write_text(
            graph_spec(site, tmp_path, name="polite", delay=delay, per_host=4, concurrency=4)
        )
        assert shoal("submit", str(spec), "--db", db_url).returncode == 0
        res = shoal("work", "--db", db_url, "--processes", "8", timeout=600)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    finally:
        site.stop()
    by_host: dict[str, list[float]] = defaultdict(list)
    pages: Counter[tuple[str, str]] = Counter()
    for t, host, path in site.hits:
        by_host[host].append(t)
        pages[(host, path)] += 1
    assert set(by_host) == set(hosts)
    for host, times in by_host.items():
        times.sort()
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert sum(1 for (h, p) in pages if h == host and p.startswith("/p/")) == n
        assert all(c == 1 for (h, p), c in pages.items() if p.startswith("/p/"))
        assert min(gaps) >= delay * 0.9, f"{host}: smallest gap {min(gaps):.3f}s"
    # The hosts were crawled side by side (each at its own pace), not one after another.
    assert max(min(t) for t in by_host.values()) < min(max(t) for t in by_host.values())
