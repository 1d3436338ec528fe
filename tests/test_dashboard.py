"""The dashboard page (``shoal dashboard``, ``status --html``) in real headless Chromium.

The page must load without console errors, draw its plotly charts from the
installed package (no network), show every number equal to ``status --json``,
never clip a number, update itself, and leave a screenshot as a test artifact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.frontier import SqlFrontier
from shoal.frontier.contract import NewURL
from shoal.spec import Spec
from shoal.status import collect
from shoal.status.collect import report_path
from shoal.status.dashboard import DashboardServer, plotly_js, status_page
from shoal.urls import canonicalize
from tests.conftest import missing
from tests.parse_helpers import crawl, demo_spec

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# Numbers that depend on the moment of reading (ages, the recent rate): present, but not compared.
MOMENT_KEYS = (
    "heartbeat_age_s",
    "next_slot_in_s",
    "paused_for_s",
    "pages_last_minute",
    "pages_last_10_minutes",
    "recent_pages_per_second",
)


@pytest.fixture(scope="module")
def crawled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Spec, Path]]:
    """The demo crawled and parsed, plus 2,100 pending URLs on a second host (numbers past 2,000)."""
    from shoal.demo.site import start_in_thread
    from shoal.parse import run_parse

    data = tmp_path_factory.mktemp("dash")
    server = start_in_thread()
    try:
        text = demo_spec(server.base_url, data)
        spec = crawl(text)
        run_parse(spec, processes=1, progress=False)
    finally:
        server.stop()
    add_pending(spec, 2100, "example.test")
    path = data / "demo.toml"
    path.write_text(text, encoding="utf-8")
    yield spec, path


def add_pending(spec: Spec, n: int, host: str, start: int = 0) -> None:
    """Add ``n`` pending URLs on ``host`` (never fetched: no worker runs)."""
    f = SqlFrontier(spec.frontier_url(), create=False)
    try:
        info = f.get_crawl(spec.name)
        rows = []
        for i in range(start, start + n):
            c = canonicalize(f"http://{host}/item/{i}")
            rows.append(NewURL(c.url, c.url_key, c.host, c.host_key, 7, "detail", 1))
        f.add_urls(info.id, rows, 50)
    finally:
        f.close()


@pytest.fixture
def driver() -> Iterator[Any]:
    """Headless Chromium through Debian's chromedriver, with the browser console log kept."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        missing("chromium and chromedriver", "install Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,2400",
        "--no-first-run",
        "--disable-background-networking",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    d.set_page_load_timeout(60)
    try:
        yield d
    finally:
        d.quit()


def status_json(spec_path: Path) -> dict[str, Any]:
    res = subprocess.run(
        [sys.executable, "-m", "shoal", "status", str(spec_path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=spec_path.parent,
    )
    assert res.returncode == 0, res.stderr
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def lookup(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def wait_for(cond: Any, timeout: float = 60.0) -> Any:
    end = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)


def charts_drawn(driver: Any) -> bool:
    return bool(
        driver.execute_script(
            "return ['pages','errors','statuses'].every(n => "
            "document.querySelector('#chart-' + n + ' .main-svg') !== null)"
        )
    )


def check_page(driver: Any, want: dict[str, Any], shot: Path) -> list[str]:
    """Charts drawn, no console error, every number equal to the JSON, none clipped; returns the keys."""
    wait_for(lambda: charts_drawn(driver))
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == [], severe
    numbers = driver.execute_script(
        "return Array.from(document.querySelectorAll('[data-k]')).map(e => [e.dataset.k, e.textContent])"
    )
    keys = [k for k, _ in numbers]
    for key, text in numbers:
        if key.split(".")[-1] in MOMENT_KEYS:
            continue
        value = lookup(want, key)
        if isinstance(value, float):
            assert float(text) == pytest.approx(value, abs=1e-3), key
        else:
            assert text == ("-" if value is None else str(value)), (key, text, value)
    clipped = driver.execute_script(
        """
        const bad = [];
        for (const el of document.querySelectorAll('td, th, .card .v')) {
          if (el.scrollWidth > el.clientWidth + 1) bad.push(el.textContent);
        }
        for (const el of document.querySelectorAll('[data-k]')) {
          const cell = el.closest('td, .card, p');
          const r = el.getBoundingClientRect(), c = cell.getBoundingClientRect();
          if (r.width === 0 || r.right > c.right + 0.5 || r.left < c.left - 0.5) bad.push(el.dataset.k);
        }
        return bad;
        """
    )
    assert clipped == []
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    print(f"dashboard screenshot: {shot}")
    return keys


def test_live_dashboard_matches_status_json_and_updates_itself(
    crawled: tuple[Spec, Path], driver: Any, tmp_path: Path
) -> None:
    """`shoal dashboard`'s page: charts from the packaged plotly.js, numbers = `status --json`, none clipped, live updates."""
    spec, spec_path = crawled
    want = status_json(spec_path)
    assert want["counts"]["pending"] == 2100
    f = SqlFrontier(spec.frontier_url(), create=False)
    info = f.get_crawl(spec.name)
    report = report_path(spec)
    server = DashboardServer(
        lambda: collect(f, info, report=report), host="127.0.0.1", port=0, refresh=1
    ).start()
    try:
        with urllib.request.urlopen(server.url + "plotly.min.js", timeout=30) as r:
            assert r.read() == plotly_js()
        driver.get(server.url)
        keys = check_page(driver, want, tmp_path / "dashboard.png")
        for key in (
            "counts.pending",
            "counts.done",
            "total",
            "bytes_archived",
            "hosts.0.pending",
            "workers.0.pages_done",
            "machines.0.workers",
            "parse.tables.0.rows",
            "last_errors.0.http_status",
        ):
            assert key in keys, key
        page = driver.page_source
        assert "http://127.0.0.1" in page  # the last errors' full URLs
        scripts = driver.execute_script(
            "return Array.from(document.scripts).map(s => s.src).filter(Boolean)"
        )
        assert scripts == [server.url + "plotly.min.js"]
        add_pending(spec, 5, "example.test", start=5000)
        wait_for(
            lambda: (
                driver.execute_script(
                    "return document.querySelector('[data-k=\"counts.pending\"]').textContent"
                )
                == "2105"
            )
        )
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        server.stop()
        f.close()


def test_status_html_file_is_the_same_page_offline(
    crawled: tuple[Spec, Path], driver: Any, tmp_path: Path
) -> None:
    """`shoal status --html F` writes a page that works from a file, plotly inlined, numbers = `status --json`."""
    _spec, spec_path = crawled
    out = tmp_path / "status.html"
    res = subprocess.run(
        [sys.executable, "-m", "shoal", "status", str(spec_path), "--json", "--html", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=spec_path.parent,
    )
    assert res.returncode == 0, res.stderr
    want = json.loads(res.stdout)
    text = out.read_text(encoding="utf-8")
    assert "<script src=" not in text  # plotly.js is inlined: nothing to fetch
    driver.get(out.as_uri())
    keys = check_page(driver, want, tmp_path / "status-html.png")
    assert "hosts.1.pending" in keys and "counts.pending" in keys


def test_page_escapes_crawl_text(crawled: tuple[Spec, Path]) -> None:
    """Text from the crawl (an error detail with markup) is escaped in the page, numbers printed whole."""
    spec, _ = crawled
    f = SqlFrontier(spec.frontier_url(), create=False)
    try:
        st = collect(f, f.get_crawl(spec.name))
    finally:
        f.close()
    st.last_errors[0]["detail"] = "<script>alert(1)</script> [parse]"
    page = status_page(st)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; [parse]" in page
    assert st.counts["pending"] >= 2100
    assert f'<span class="n" data-k="counts.pending">{st.counts["pending"]}</span>' in page


def test_dashboard_command_serves_status_on_loopback(crawled: tuple[Spec, Path]) -> None:
    """`shoal dashboard SPEC --port 0` listens on 127.0.0.1, serves the same numbers, and stops cleanly on Ctrl-C."""
    import signal

    _spec, spec_path = crawled
    want = status_json(spec_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal", "dashboard", str(spec_path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=spec_path.parent,
        # Ctrl-C as at a terminal, even when these tests run as a background job (SIGINT ignored).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "dashboard of crawl 'demo' at http://127.0.0.1:" in line, line
        url = line.split(" at ", 1)[1].split(" ", 1)[0]
        with urllib.request.urlopen(url + "status.json", timeout=30) as r:
            got = json.loads(r.read())
        assert got["counts"] == want["counts"]
        assert (
            got["failed"] == want["failed"] and got["hosts"][0]["host"] == want["hosts"][0]["host"]
        )
        with urllib.request.urlopen(url, timeout=30) as r:
            page = r.read().decode("utf-8")
        assert '<script src="plotly.min.js"></script>' in page
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
