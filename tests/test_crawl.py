"""The embedded crawl end to end: the demo site on 127.0.0.1 → SQLite frontier → WARC files."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from shoal.archive import WarcRef, read_record
from shoal.crawl import run_async, run_loop, start_crawl
from shoal.demo.expected import expected, spec_text
from shoal.frontier import SqlFrontier
from shoal.frontier.tables import urls
from shoal.spec import Spec, parse_spec


def set_key(text: str, section: str, key: str, value: str) -> str:
    """``text`` with ``key = value`` set in ``[section]`` (replaced, or added after the header, or a new section)."""
    if f"[{section}]\n" not in text:
        return text + f"\n[{section}]\n{key} = {value}\n"
    head = text.index(f"[{section}]\n") + len(section) + 3
    nxt = text.find("\n[", head)
    body = text[head : nxt if nxt >= 0 else len(text)]
    new_body, n = re.subn(rf"(?m)^{key}\s*=.*$", f"{key} = {value}", body)
    if n == 0:
        new_body = f"{key} = {value}\n" + body
    return text[:head] + new_body + (text[nxt:] if nxt >= 0 else "")


def demo_spec(base_url: str, data: Path, **overrides: str) -> tuple[Spec, str]:
    """The demo spec with its storage under ``data``; overrides are ``section__key=value``."""
    text = spec_text(base_url, data)
    for name, value in overrides.items():
        section, key = name.split("__")
        text = set_key(text, section, key, value)
    return parse_spec(text), text


def final_rows(db: str) -> dict[str, Any]:
    f = SqlFrontier(db, create=False)
    try:
        return {r.url: r for r in f.query(select(urls))}
    finally:
        f.close()


def outcome_sets(rows: dict[str, Any]) -> dict[str, Any]:
    return {
        "done": {u for u, r in rows.items() if r.status == "done"},
        "failed": {u: r.error_class for u, r in rows.items() if r.status == "failed"},
        "skipped": {u: r.skip_reason for u, r in rows.items() if r.status == "skipped"},
        "other": {
            u: r.status for u, r in rows.items() if r.status not in ("done", "failed", "skipped")
        },
    }


def crawl_here(spec: Spec, text: str) -> tuple[Any, bool]:
    """Run the crawl of ``spec`` in this process to its end; returns (worker stats, finished)."""
    frontier = SqlFrontier(spec.frontier_url())
    try:
        crawl = start_crawl(frontier, spec, text)
        stats, finished = run_loop(
            run_async(spec, frontier, crawl, progress=False, install_signals=False)
        )
        return stats, bool(finished)
    finally:
        frontier.close()


@dataclass(frozen=True)
class DemoCrawl:
    """The demo crawled to its end in this process: the server that answered, the spec, the result."""

    server: Any
    spec: Spec
    text: str
    stats: Any
    finished: bool


@pytest.fixture(scope="module")
def demo_crawl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoCrawl]:
    """One complete demo crawl that the tests reading its result share (it takes seconds: retries, a timeout)."""
    from shoal.demo.site import start_in_thread

    server = start_in_thread()
    try:
        spec, text = demo_spec(server.base_url, tmp_path_factory.mktemp("demo"))
        stats, finished = crawl_here(spec, text)
    finally:
        server.stop()  # its request log stays readable
    yield DemoCrawl(server, spec, text, stats, finished)


def test_demo_crawl_ends_with_the_exact_expected_sets(demo_crawl: DemoCrawl) -> None:
    """Every URL of the demo ends done, failed with its class or skipped with its reason, exactly as the site defines."""
    demo_server, spec = demo_crawl.server, demo_crawl.spec
    assert demo_crawl.finished
    want = expected(demo_server.base_url)
    got = outcome_sets(final_rows(spec.frontier_url()))
    assert got["other"] == {}
    assert got["done"] == want["done"]
    assert got["failed"] == want["failed"]
    assert got["skipped"] == want["skipped"]
    # robots.txt was obeyed: the disallowed page was never requested.
    paths = Counter(h.path_qs for h in demo_server.log)
    assert not [p for p in paths if p.startswith("/private/")]
    # Pages that succeeded at once were requested exactly once.
    assert paths["/blog/posts/1"] == 1 and paths["/board/free/read?no=5"] == 1
    assert demo_crawl.stats.fenced == 0


def test_every_archived_record_reads_back_by_its_reference(demo_crawl: DemoCrawl) -> None:
    """Each done or failed URL with a WARC reference reads back as its own response, and every file passes warcio check."""
    spec = demo_crawl.spec
    rows = final_rows(spec.frontier_url())
    refs = [r for r in rows.values() if r.warc_file]
    assert len(refs) >= len([r for r in rows.values() if r.status == "done"])
    for r in refs:
        rec = read_record(
            spec.archive_dir(), WarcRef(r.warc_file, r.warc_offset, r.warc_length, r.warc_record_id)
        )
        assert rec.url == r.url
        assert rec.http_status == r.http_status
    files = sorted(Path(spec.archive_dir()).glob("*.warc.gz"))
    assert files and not list(Path(spec.archive_dir()).glob("*.open"))
    for f in files:
        warcio = Path(sys.executable).with_name("warcio")
        check = subprocess.run([str(warcio), "check", "-v", str(f)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_euckr_board_links_are_followed(demo_crawl: DemoCrawl) -> None:
    """The EUC-KR board (no charset header) is crawled: its posts are reached through its list pages."""
    done = outcome_sets(final_rows(demo_crawl.spec.frontier_url()))["done"]
    base_url = demo_crawl.server.base_url
    assert {u for u in done if "/euckr/read/" in u} == {
        f"{base_url}/euckr/read/{i}" for i in range(1, 17)
    }


def wait_for_done(db: str, n: int, proc: subprocess.Popen[str], timeout: float = 120.0) -> None:
    """Wait until the crawl's frontier holds at least ``n`` done URLs (the process must stay alive)."""
    path = db.removeprefix("sqlite:///")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        if os.path.exists(path):
            try:
                with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as c:
                    got = c.execute("SELECT count(*) FROM urls WHERE status = 'done'").fetchone()
                if got[0] >= n:
                    return
            except sqlite3.OperationalError:
                pass  # the schema is being created
        time.sleep(0.1)
    raise AssertionError(f"fewer than {n} URLs done after {timeout:.0f}s")


def _shoal(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "shoal", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_resume_after_sigkill_loses_nothing(demo_server: Any, tmp_path: Path) -> None:
    """A crawl killed with SIGKILL mid-way and started again ends with the same done set as an uninterrupted one."""
    spec, text = demo_spec(
        demo_server.base_url, tmp_path, politeness__delay="0.12", worker__concurrency="4"
    )
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(text)
    proc = _shoal("crawl", str(spec_path), "--no-progress", cwd=tmp_path)
    db = spec.frontier_url()
    wait_for_done(db, 15, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    mid = outcome_sets(final_rows(db))
    assert 15 <= len(mid["done"]) < len(expected(demo_server.base_url)["done"])
    assert list(Path(spec.archive_dir()).glob("*.open")), "the killed run left its WARC open"
    # The slow pace only kept the first run going until the kill; the rerun goes at the demo's own.
    spec_path.write_text(demo_spec(demo_server.base_url, tmp_path)[1])
    again = _shoal(
        "crawl",
        str(spec_path),
        "--no-progress",
        "--summary-json",
        str(tmp_path / "s.json"),
        cwd=tmp_path,
    )
    output, _ = again.communicate(timeout=120)
    assert again.returncode == 0, output
    got = outcome_sets(final_rows(db))
    want = expected(demo_server.base_url)
    assert got["done"] == want["done"] and got["failed"] == want["failed"] and got["other"] == {}
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["finished"] and summary["done"] == len(want["done"])
    assert not list(Path(spec.archive_dir()).glob("*.open"))


def test_sigint_stops_cleanly_and_gives_back_leases(demo_server: Any, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) ends the crawl with exit 130, no URL left leased, and a rerun finishes it."""
    spec, text = demo_spec(demo_server.base_url, tmp_path, politeness__delay="0.15")
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(text)
    proc = _shoal("crawl", str(spec_path), "--no-progress", cwd=tmp_path)
    wait_for_done(spec.frontier_url(), 3, proc)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    rows = final_rows(spec.frontier_url())
    assert "leased" not in outcome_sets(rows)["other"].values()
    assert outcome_sets(rows)["other"], "the crawl was stopped before its end"
    spec_path.write_text(
        demo_spec(demo_server.base_url, tmp_path)[1]
    )  # the rerun at the demo's pace
    again = _shoal("crawl", str(spec_path), "--no-progress", cwd=tmp_path)
    output, _ = again.communicate(timeout=120)
    assert again.returncode == 0, output


def test_two_sigterms_only_hurry_the_clean_stop(demo_server: Any, tmp_path: Path) -> None:
    """Two SIGTERMs in a row (GNU timeout sends its own) end the crawl cleanly: exit 130, no URL leased, the worker row stopped."""
    spec, text = demo_spec(demo_server.base_url, tmp_path, politeness__delay="0.15")
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(text)
    proc = _shoal("crawl", str(spec_path), "--no-progress", cwd=tmp_path)
    wait_for_done(spec.frontier_url(), 3, proc)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    rows = final_rows(spec.frontier_url())
    assert "leased" not in outcome_sets(rows)["other"].values()
    path = spec.frontier_url().removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as c:
        states = [r[0] for r in c.execute("SELECT state FROM workers")]
    assert states == ["stopped"]


def test_status_reports_counts_classes_and_hosts(demo_crawl: DemoCrawl, tmp_path: Path) -> None:
    """`shoal status --json` on a finished crawl gives the same counts as the frontier, by class, reason and host."""
    demo_server = demo_crawl.server
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(demo_crawl.text)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "shoal",
            "status",
            str(spec_path),
            "--json",
            "--html",
            str(tmp_path / "s.html"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    want = expected(demo_server.base_url)
    assert st["counts"]["done"] == len(want["done"])
    assert sum(st["failed"].values()) == len(want["failed"])
    assert st["skipped"] == dict(Counter(want["skipped"].values()))
    assert st["hosts"][0]["host"] == demo_server.base_url.split("//")[1]
    assert 'id="chart-pages"' in (tmp_path / "s.html").read_text()


@pytest.mark.parametrize("spec_text_bad", ['[crawl]\nname = "x"\nseeds = []\n'])
def test_crawl_refuses_a_bad_spec_before_starting(tmp_path: Path, spec_text_bad: str) -> None:
    """`shoal crawl` on an invalid spec exits 2 with the key named and creates no database."""
    p = tmp_path / "bad.toml"
    p.write_text(spec_text_bad)
    res = subprocess.run(
        [sys.executable, "-m", "shoal", "crawl", str(p)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert res.returncode == 2
    assert "crawl" in res.stderr and "seed" in res.stderr
    assert not (tmp_path / "shoal-data").exists()


def test_max_pages_stops_the_crawl_and_skips_the_rest(demo_server: Any, tmp_path: Path) -> None:
    """With max_pages = 10 exactly 10 pages are fetched; every other known URL ends skipped (max_pages)."""
    spec, text = demo_spec(demo_server.base_url, tmp_path, limits__max_pages="10")
    _, finished = crawl_here(spec, text)
    assert finished
    got = outcome_sets(final_rows(spec.frontier_url()))
    assert len(got["done"]) == 10
    assert got["other"] == {}
    assert (
        set(got["skipped"].values()) <= {"max_pages", "robots"}
        and "max_pages" in got["skipped"].values()
    )


def test_refused_loopback_seed_says_which_setting_allows_it(tmp_path: Path) -> None:
    """A loopback seed refused by the default address policy ends skipped, and the log names allow_private."""
    from tests.sites.graph import GraphSite

    site = GraphSite(n=3).start()
    try:
        spec = tmp_path / "refused.toml"
        spec.write_text(
            f'[crawl]\nname = "refused"\nseeds = ["{site.url()}"]\n'
            f'[storage]\nfrontier = "sqlite:///{tmp_path}/f.sqlite"\narchive = "{tmp_path}/warc"\n',
            "utf-8",
        )
        run = subprocess.run(
            [sys.executable, "-m", "shoal", "crawl", str(spec), "--no-progress"],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    finally:
        site.stop()
    assert site.hits == []  # nothing was sent to the refused address
    assert "allow_private" in run.stderr, run.stderr
    rows = final_rows(f"sqlite:///{tmp_path}/f.sqlite")
    assert {r.skip_reason for r in rows.values()} == {"address_policy"}
