"""A full or unwritable archive or frontier is critical (issue #9 item 3), on real small tmpfs mounts.

The crawl runs as ``shoal crawl`` in its own process against the hostile site
on 127.0.0.1; once it has done some pages the test fills the tmpfs (or mounts
it read-only), and the worker must stop with exit 3 and a message naming the
problem, its URLs back to pending untouched (none ``failed``), a ``critical``
event recorded when the frontier can still take it; after space is freed a
rerun ends the crawl. Mounting needs root (CI runs the tests as root); elsewhere
the tests are skipped through ``missing()``.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from tests.conftest import missing
from tests.sites.hostile import HostileSite, spec_text, start_hostile_site

PAGES = 150


@pytest.fixture
def site() -> Iterator[HostileSite]:
    """The hostile site with a hub of PAGES small pages."""
    s = start_hostile_site()
    s.hubs["disk"] = [f"/ok/d{i}" for i in range(PAGES)]
    yield s
    s.stop()


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``path`` for the test, unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        missing("a tmpfs mount", "the disk-full tests mount a small tmpfs: run them as root")
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        missing("a tmpfs mount", f"mount failed: {res.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> Path:
    """Fill the filesystem of ``folder`` to the last byte; returns the filler file."""
    filler = folder / "filler"
    with open(filler, "wb") as f:
        chunk = b"\0" * 65536
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    for size in (4096, 512, 1):  # the last partial pages
        try:
            with open(filler, "ab") as f:
                while True:
                    f.write(b"\0" * size)
                    f.flush()
        except OSError:
            pass
    return filler


def crawl(spec: Path) -> subprocess.Popen[str]:
    """``shoal crawl SPEC`` in its own process."""
    return subprocess.Popen(
        [sys.executable, "-m", "shoal", "crawl", str(spec), "--no-progress"],
        cwd=spec.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def statuses(db: Path) -> Counter[str]:
    """URL rows by status (and failure class)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        rows = c.execute("SELECT status, error_class FROM urls").fetchall()
    return Counter(s if s != "failed" else f"failed {e}" for s, e in rows)


def wait_done(db: Path, n: int, proc: subprocess.Popen[str], timeout: float = 120.0) -> None:
    """Wait until ``n`` URLs are done (the crawl still running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        if db.exists():
            try:
                if statuses(db)["done"] >= n:
                    return
            except sqlite3.OperationalError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} URLs done after {timeout:.0f}s")


def responses(folder: Path) -> Counter[str]:
    """Response records per target URL in every closed WARC file of ``folder``."""
    out: Counter[str] = Counter()
    for f in sorted(folder.glob("*.warc.gz")):
        with open(f, "rb") as fh:
            for rec in ArchiveIterator(fh):
                if rec.rec_type == "response":
                    out[rec.rec_headers.get_header("WARC-Target-URI")] += 1
    return out


def events(db: Path, kind: str) -> list[str]:
    """Messages of the crawl's events of ``kind``."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        return [r[0] for r in c.execute("SELECT message FROM events WHERE kind = ?", (kind,))]


def write_spec(site: HostileSite, data: Path, frontier: Path | None = None) -> Path:
    """A crawl of the hub's pages, slow enough (one at a time, 20 ms apart) to be caught mid-way."""
    storage = {"frontier": f"sqlite:///{frontier}"} if frontier else {}
    text = spec_text(
        "disk",
        data,
        [f"{site.base_url}/hub/disk"],
        [],
        {
            "politeness": {"delay": 0.02, "concurrency_per_host": 1},
            "worker": {"concurrency": 4, "lease_seconds": 30, "flush_interval": 0.05},
            "storage": storage,
        },
    )
    spec = data / "spec.toml"
    spec.write_text(text)
    return spec


def test_a_full_archive_disk_stops_the_worker_and_a_rerun_archives_every_page_once(
    site: HostileSite, tmp_path: Path
) -> None:
    """ENOSPC on the archive: exit 3 naming the disk, no URL failed, a critical event; after freeing space a rerun archives each page exactly once."""
    with tmpfs(tmp_path / "warc", "4m") as warc:
        spec = write_spec(site, tmp_path)
        db = tmp_path / "frontier.sqlite"
        proc = crawl(spec)
        wait_done(db, 20, proc)
        filler = fill(warc)
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 3, output
        assert "archive" in output and "disk" in output and "bug in shoal" not in output
        mid = statuses(db)
        assert not [k for k in mid if k.startswith("failed")], mid
        assert mid["pending"] > 0 and mid["leased"] == 0, mid
        assert len(events(db, "critical")) == 1
        filler.unlink()
        again = crawl(spec)
        output, _ = again.communicate(timeout=180)
        assert again.returncode == 0, output
        end = statuses(db)
        assert end["done"] == PAGES + 1 and set(end) == {"done"}, end
        per_url = responses(warc)
        assert len(per_url) == PAGES + 1 and set(per_url.values()) == {1}, per_url.most_common(3)


def test_a_read_only_archive_folder_is_critical(site: HostileSite, tmp_path: Path) -> None:
    """A read-only archive folder: exit 3 with the problem named (not a bug report), no URL failed; writable again, the crawl finishes."""
    with tmpfs(tmp_path / "warc", "8m") as warc:
        subprocess.run(["mount", "-o", "remount,ro", str(warc)], check=True)
        spec = write_spec(site, tmp_path)
        db = tmp_path / "frontier.sqlite"
        proc = crawl(spec)
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 3, output
        assert "archive" in output and "bug in shoal" not in output
        mid = statuses(db)
        assert not [k for k in mid if k.startswith("failed")] and mid["leased"] == 0, mid
        subprocess.run(["mount", "-o", "remount,rw", str(warc)], check=True)
        again = crawl(spec)
        output, _ = again.communicate(timeout=180)
        assert again.returncode == 0, output
        assert set(statuses(db)) == {"done"}
        assert set(responses(warc).values()) == {1}


def test_a_full_frontier_disk_is_critical(site: HostileSite, tmp_path: Path) -> None:
    """SQLite on a full disk: exit 3 naming the database (not 'a bug in shoal'), no URL failed; after freeing space a rerun finishes every page."""
    with tmpfs(tmp_path / "db", "8m") as dbdir:
        db = dbdir / "frontier.sqlite"
        spec = write_spec(site, tmp_path, frontier=db)
        proc = crawl(spec)
        wait_done(db, 20, proc)
        filler = fill(dbdir)
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 3, output
        assert "cannot write" in output and "bug in shoal" not in output
        filler.unlink()
        mid = statuses(db)
        assert not [k for k in mid if k.startswith("failed")], mid
        again = crawl(spec)
        output, _ = again.communicate(timeout=180)
        assert again.returncode == 0, output
        end = statuses(db)
        assert end["done"] == PAGES + 1 and set(end) == {"done"}, end
        # Every page is archived; a page whose outcome the full disk refused was fetched again.
        assert len(responses(tmp_path / "warc")) == PAGES + 1
