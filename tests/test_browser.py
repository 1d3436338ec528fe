"""The browser fetcher against a local site, with real Chromium and chromedriver.

One fetcher (pool of 2) is shared by the module to keep it fast; tests that
need their own browsers (crash, orphans, https) start them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from shoal.errors import BrowserError, ErrorClass, FetchError, PolicyRefusal, SkipReason
from shoal.exchange import FetchRequest, FetchResult
from shoal.fetch.address import AddressPolicy
from shoal.spec import Rule
from tests.sites.browser import SiteServer

try:
    from shoal.fetch.browser.doctor import check_browser
    from shoal.fetch.browser.fetcher import BrowserFetcher
    from shoal.fetch.browser.launch import find_chromedriver, find_chromium
    from shoal.fetch.proxy.reach import Reach
    from shoal.fetch.proxy.records import REFUSED_HEADER
    from shoal.fetch.proxy.server import FilteringProxy

    _FOUND = find_chromium() is not None and find_chromedriver() is not None
except ImportError:  # selenium not installed
    _FOUND = False

if not _FOUND:
    _WHY = (
        "Chromium, chromedriver or selenium is missing: apt-get install chromium chromium-driver "
        "and pip install 'shoal[browser]'"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(_WHY, pytrace=False)
    pytest.skip(_WHY, allow_module_level=True)

pytestmark = pytest.mark.browser

POLICY = ["127.0.0.1/32"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def refused_site() -> Iterator[SiteServer]:
    site = SiteServer("127.0.0.2").start()
    yield site
    site.stop()


@pytest.fixture(scope="module")
def site(refused_site: SiteServer) -> Iterator[SiteServer]:
    site = SiteServer("127.0.0.1", refused=f"127.0.0.2:{refused_site.port}").start()
    yield site
    site.stop()


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as r:
        yield r


@pytest.fixture(scope="module")
def fetcher(runner: asyncio.Runner, site: SiteServer) -> Iterator[BrowserFetcher]:
    f = BrowserFetcher(
        AddressPolicy(allow_cidrs=POLICY),
        scope_hosts=[site.url("/")],
        pool_size=2,
        recycle_pages=50,
        user_agent="shoal-test/1",
    )
    yield f
    runner.run(f.close())


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """The processes of ``procs`` still running (zombies count as gone)."""
    alive = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
    return alive


def rule(**options: Any) -> Rule:
    return Rule(glob="*", render="browser", **options)


def render(
    runner: asyncio.Runner, fetcher: BrowserFetcher, url: str, timeout: float = 20, **options: Any
) -> FetchResult:
    return runner.run(fetcher.fetch(FetchRequest(url, rule(**options), time.monotonic() + timeout)))


def test_ajax_comments_rendered_with_wait_for(
    runner: asyncio.Runner, fetcher: BrowserFetcher, site: SiteServer
) -> None:
    """Comments that arrive by Ajax 500 ms after load are in the DOM; the raw body has none."""
    r = render(runner, fetcher, site.url("/ajax"), wait_for=".comment")
    assert r.status == 200 and r.reason == "OK" and r.http_version == "1.1"
    assert r.peer_ip == "127.0.0.1"
    assert r.rendered_html is not None and r.rendered_html.count('class="comment"') == 3
    assert "첫 댓글" in r.rendered_html
    assert b'class="comment"' not in r.body and "첫 댓글".encode() not in r.body
    conversions = [x for x in r.rendered if x.kind == "conversion"]
    assert len(conversions) == 1 and conversions[0].content_type == "text/html; charset=utf-8"
    assert ("User-Agent", "shoal-test/1") in r.request_headers


def test_raw_body_stays_content_encoded(
    runner: asyncio.Runner, fetcher: BrowserFetcher, site: SiteServer
) -> None:
    """The result keeps the gzip body as received; the rendered DOM is decoded."""
    r = render(runner, fetcher, site.url("/gzip"))
    assert r.header("content-encoding") == "gzip" and r.body[:2] == b"\x1f\x8b"
    assert r.rendered_html is not None and "압축된 페이지" in r.rendered_html


def test_infinite_scroll_loads_more(
    runner: asyncio.Runner, fetcher: BrowserFetcher, site: SiteServer
) -> None:
    """scroll=5 loads five more pages of items; a large scroll stops when the list stops growing."""
    r = render(runner, fetcher, site.url("/scroll"), wait_for=".item", scroll=5)
    assert r.rendered_html is not None and r.rendered_html.count('class="item"') == 60
    r = render(runner, fetcher, site.url("/scroll"), wait_for=".item", scroll=200)
    assert r.rendered_html is not None and r.rendered_html.count('class="item"') == 80


def test_naver_style_iframe_captured(
    runner: asyncio.Runner, fetcher: BrowserFetcher, site: SiteServer
) -> None:
    """frames=true captures the same-site iframe#mainFrame post; wait_for also looks inside frames."""
    r = render(runner, fetcher, site.url("/blog"), frames=True, wait_for=".se-main-container")
    frame_url = site.url("/PostView.naver?blogId=shoal&logNo=1")
    assert r.frame_urls == [frame_url]
    frames = [x for x in r.rendered if x.kind == "resource"]
    assert [x.url for x in frames] == [frame_url]
    assert frames[0].content_type == "text/html; charset=utf-8"
    assert "프레임 안의 본문" in frames[0].data.decode()
    assert r.rendered_html is not None and "프레임 안의 본문" not in r.rendered_html


def test_wait_for_never_appears_is_missing(
    runner: asyncio.Runner, fetcher: BrowserFetcher, site: SiteServer
) -> None:
    """A wait_for selector that never appears raises MISSING after wait_timeout."""
    with pytest.raises(FetchError) as info:
        render(runner, fetcher, site.url("/never"), wait_for=".comment", wait_timeout=1)
    assert info.value.error_class == ErrorClass.MISSING
    assert "did not appear within 1s" in str(info.value)


def test_hanging_script_is_transient_and_browser_recycled(
    runner: asyncio.Runner, fetcher: BrowserFetcher, site: SiteServer
) -> None:
    """A page spinning in while(true) fails TRANSIENT within its deadline; the pool still renders."""
    started = fetcher.browsers_started
    with pytest.raises(FetchError) as info:
        render(runner, fetcher, site.url("/hang"), timeout=3)
    assert info.value.error_class == ErrorClass.TRANSIENT
    assert "timed out" in str(info.value) or "deadline" in str(info.value)
    r = render(runner, fetcher, site.url("/plain"))
    assert r.rendered_html is not None and "plain page" in r.rendered_html

    async def both() -> list[FetchResult]:
        return await asyncio.gather(
            *(
                fetcher.fetch(FetchRequest(site.url(f"/plain?{i}"), None, time.monotonic() + 20))
                for i in range(2)
            )
        )

    assert [r.status for r in runner.run(both())] == [200, 200]
    assert fetcher.browsers_started > started  # the wedged browser was replaced


def test_page_hanging_after_load_is_cut_at_the_deadline(
    runner: asyncio.Runner, fetcher: BrowserFetcher, site: SiteServer
) -> None:
    """A page that wedges its renderer after load is abandoned at the deadline and its browser killed."""
    with pytest.raises(FetchError) as info:
        render(
            runner, fetcher, site.url("/hang-later"), timeout=3, wait_for=".never", wait_timeout=30
        )
    assert info.value.error_class == ErrorClass.TRANSIENT
    assert "timed out" in str(info.value) or "deadline" in str(info.value)
    assert render(runner, fetcher, site.url("/plain")).status == 200


def test_non_html_page_is_kept_unrendered(
    runner: asyncio.Runner, fetcher: BrowserFetcher, site: SiteServer
) -> None:
    """An image as the page: its bytes are the result, there is no DOM to capture."""
    r = render(runner, fetcher, site.url("/x.png"), wait_for=".comment")
    assert r.status == 200 and r.content_type == "image/png" and r.body == b"\x89PNG\r\n\x1a\n"
    assert r.rendered_html is None and r.rendered == []


def test_refused_addresses_never_fetched(
    runner: asyncio.Runner, fetcher: BrowserFetcher, site: SiteServer, refused_site: SiteServer
) -> None:
    """Images, iframes, scripts, XHR and redirect hops to a refused address never leave the proxy."""
    before = len(fetcher.refused)
    r = render(runner, fetcher, site.url("/ssrf"))
    assert r.status == 200 and r.rendered_html is not None and "visible" in r.rendered_html
    time.sleep(0.3)  # the page's fetch() runs after load
    assert refused_site.log == []
    refused = {x.url.rsplit("/", 1)[-1] for x in fetcher.refused[before:]}
    assert {"x.png", "frame", "x.js", "xhr", "redirected.png"} <= refused
    assert "/to-refused" in site.log


def test_refused_page_is_a_policy_refusal(
    runner: asyncio.Runner, fetcher: BrowserFetcher, refused_site: SiteServer
) -> None:
    """A page whose own address is refused raises PolicyRefusal(address_policy), nothing sent."""
    with pytest.raises(PolicyRefusal) as info:
        render(runner, fetcher, refused_site.url("/plain"))
    assert info.value.reason == SkipReason.ADDRESS_POLICY
    assert refused_site.log == []


def test_unreachable_page_is_transient(runner: asyncio.Runner, fetcher: BrowserFetcher) -> None:
    """A page whose server refuses the connection fails TRANSIENT (the proxy could not connect)."""
    with pytest.raises(FetchError) as info:
        render(runner, fetcher, "http://127.0.0.1:9/nothing")
    assert info.value.error_class == ErrorClass.TRANSIENT


def test_browser_makes_no_outside_requests(
    runner: asyncio.Runner, fetcher: BrowserFetcher, site: SiteServer
) -> None:
    """Every request the browsers made went to the test hosts; Chromium's own services never left the proxy."""
    render(runner, fetcher, site.url("/plain"))
    time.sleep(1.0)  # Chromium asks for its services in the first second of a profile
    outside = [
        e
        for e in fetcher.exchanges
        if urllib.parse.urlsplit(e.url).hostname not in ("127.0.0.1", "127.0.0.2")
        and e.error != "browser_service"
    ]
    assert outside == []


def test_more_comments_button_clicked(
    runner: asyncio.Runner, fetcher: BrowserFetcher, site: SiteServer
) -> None:
    """A "more comments" button is clicked while present: all pages of comments are captured."""
    r = render(runner, fetcher, site.url("/more"), click=[".more"])
    assert r.rendered_html is not None
    assert r.rendered_html.count('class="comment"') == 7
    assert "c3-1" in r.rendered_html and 'class="more"' not in r.rendered_html


def test_screenshot_is_png(
    runner: asyncio.Runner, fetcher: BrowserFetcher, site: SiteServer
) -> None:
    """screenshot=true adds a PNG resource next to the rendered DOM."""
    r = render(runner, fetcher, site.url("/plain"), screenshot=True)
    shots = [x for x in r.rendered if x.content_type == "image/png"]
    assert len(shots) == 1 and shots[0].kind == "resource"
    assert shots[0].data.startswith(b"\x89PNG\r\n\x1a\n") and len(shots[0].data) > 1000


def test_redirect_is_returned_not_followed(
    runner: asyncio.Runner, fetcher: BrowserFetcher, site: SiteServer
) -> None:
    """A 302 page is the result; the browser does not fetch its target (the worker will)."""
    n = len(site.log)
    r = render(runner, fetcher, site.url("/redirect"), wait_for=".comment")
    assert r.status == 302 and r.header("location") == "/plain"
    assert r.rendered_html is None and r.rendered == []
    assert "/plain" not in site.log[n:]


def test_http_error_page_is_a_result(
    runner: asyncio.Runner, fetcher: BrowserFetcher, site: SiteServer
) -> None:
    """A 404 is returned with its rendered DOM, without waiting for wait_for."""
    r = render(runner, fetcher, site.url("/missing"), wait_for=".comment", wait_timeout=5)
    assert r.status == 404 and r.rendered_html is not None and "not here" in r.rendered_html


def test_pool_of_two_renders_concurrently(
    runner: asyncio.Runner, fetcher: BrowserFetcher, site: SiteServer
) -> None:
    """Two pages render at the same time while the event loop keeps ticking."""

    async def run() -> tuple[int, list[FetchResult]]:
        await asyncio.gather(
            *(
                fetcher.fetch(FetchRequest(site.url("/plain"), None, time.monotonic() + 20))
                for _ in range(2)
            )
        )
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                await asyncio.sleep(0.01)
                ticks += 1

        tick = asyncio.create_task(ticker())
        results = await asyncio.gather(
            *(
                fetcher.fetch(
                    FetchRequest(
                        site.url(f"/slow-ajax?delay=1500&n={i}"),
                        rule(wait_for=".comment"),
                        time.monotonic() + 20,
                    ),
                )
                for i in range(2)
            )
        )
        stop.set()
        await tick
        return ticks, list(results)

    start = len(site.log)
    ticks, results = runner.run(run())
    assert all(r.rendered_html is not None and "첫 댓글" in r.rendered_html for r in results)
    # Both pages were loaded before either asked for its comments: the renders overlapped.
    log = site.log[start:]
    first_comments = log.index("/api/comments")
    assert {"/slow-ajax?delay=1500&n=0", "/slow-ajax?delay=1500&n=1"} <= set(log[:first_comments])
    assert ticks >= 5  # the event loop ran while both browsers worked


def test_crashed_browser_retried_on_fresh_one(runner: asyncio.Runner, site: SiteServer) -> None:
    """When Chromium dies between pages, the page is retried once on a new browser."""
    f = BrowserFetcher(
        AddressPolicy(allow_cidrs=POLICY),
        scope_hosts=[site.url("/")],
        pool_size=1,
        recycle_pages=50,
        user_agent="t",
    )
    try:
        assert render(runner, f, site.url("/plain")).status == 200
        for pid in f.process_ids():
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if proc.name() == "chromium":
                    proc.kill()
        r = render(runner, f, site.url("/ajax"), wait_for=".comment")
        assert r.rendered_html is not None and "첫 댓글" in r.rendered_html
        assert f.browsers_started == 2
    finally:
        runner.run(f.close())


def test_browser_recycled_after_recycle_pages(runner: asyncio.Runner, site: SiteServer) -> None:
    """After recycle_pages pages a browser is replaced; the old one's processes and profile are gone."""
    f = BrowserFetcher(
        AddressPolicy(allow_cidrs=POLICY),
        scope_hosts=[site.url("/")],
        pool_size=1,
        recycle_pages=2,
        user_agent="t",
    )
    try:
        render(runner, f, site.url("/plain?1"))
        first = [psutil.Process(p) for p in f.process_ids()]
        profiles = {
            a.split("=", 1)[1]
            for p in first
            for a in p.cmdline()
            if a.startswith("--user-data-dir=")
        }
        render(runner, f, site.url("/plain?2"))
        render(runner, f, site.url("/plain?3"))
        assert f.browsers_started == 2
        end = time.monotonic() + 5
        while _alive(first) and time.monotonic() < end:
            runner.run(asyncio.sleep(0.1))  # the old browser stops in the background
        assert _alive(first) == []
        assert profiles and not any(Path(d).exists() for d in profiles)
    finally:
        runner.run(f.close())


CHILD = r"""
import asyncio, json, sys, time
from shoal.fetch.address import AddressPolicy
from shoal.exchange import FetchRequest
from shoal.fetch.browser.fetcher import BrowserFetcher

async def main():
    f = BrowserFetcher(AddressPolicy(allow_cidrs=["127.0.0.1/32"]), scope_hosts=sys.argv[1:], pool_size=2, recycle_pages=10, user_agent="t")
    await asyncio.gather(*(f.fetch(FetchRequest(u, None, time.monotonic() + 30)) for u in sys.argv[1:]))
    print(json.dumps(f.process_ids()), flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def test_no_orphan_chromium_after_sigkill(site: SiteServer) -> None:
    """SIGKILL of the process owning the browsers leaves no Chromium and no profile behind."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, site.url("/plain"), site.url("/ajax")],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        pids = json.loads(line)
        procs = [psutil.Process(p) for p in pids]
        chromium = [p for p in procs if p.name() == "chromium"]
        assert len({p.ppid() for p in chromium if "--type=" not in " ".join(p.cmdline())}) == 2
        profiles = {
            a.split("=", 1)[1]
            for p in chromium
            for a in p.cmdline()
            if a.startswith("--user-data-dir=")
        }
        assert len(profiles) == 2
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()

    end = time.monotonic() + 15
    while _alive(procs) and time.monotonic() < end:
        time.sleep(0.1)
    assert _alive(procs) == []
    assert [
        p
        for p in psutil.process_iter(["cmdline"])
        if any(x in " ".join(p.info["cmdline"] or []) for x in profiles)
    ] == []
    assert not any(Path(d).exists() for d in profiles)


def _tls_context(tmp: Path) -> ssl.SSLContext:
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def test_https_page_rebuilt_from_devtools(runner: asyncio.Runner, tmp_path: Path) -> None:
    """An https page's response comes from DevTools: status, headers, decoded body, peer address."""
    if shutil.which("openssl") is None:
        from tests.conftest import missing

        missing(
            "openssl",
            "it makes the test certificate: apt-get install openssl (make test does it as root)",
        )
    tls = SiteServer("127.0.0.1", ssl_context=_tls_context(tmp_path)).start()
    f = BrowserFetcher(
        AddressPolicy(allow_cidrs=POLICY),
        scope_hosts=[tls.url("/")],
        pool_size=1,
        recycle_pages=50,
        user_agent="t",
        ignore_certificate_errors=True,
    )
    try:
        r = render(runner, f, tls.url("/ajax"), wait_for=".comment")
        assert r.status == 200 and r.header("content-type") == "text/html; charset=utf-8"
        assert b"setTimeout" in r.body and r.header("content-length") == str(len(r.body))
        assert r.peer_ip == "127.0.0.1"
        assert r.rendered_html is not None and "첫 댓글" in r.rendered_html
        r = render(runner, f, tls.url("/gzip"))
        assert r.header("content-encoding") is None and "압축된 페이지".encode() in r.body
        r = render(runner, f, tls.url("/missing"))
        assert r.status == 404
        r = render(runner, f, tls.url("/redirect"))
        assert r.status == 302 and r.header("location") == "/plain" and r.rendered_html is None
        with pytest.raises(PolicyRefusal):
            render(runner, f, "https://127.0.0.2:8443/")
    finally:
        runner.run(f.close())
        tls.stop()


def test_proxy_refuses_with_header(refused_site: SiteServer, site: SiteServer) -> None:
    """The proxy answers 403 with X-Shoal-Refused for a refused address, forwards an allowed one."""
    with FilteringProxy(Reach(AddressPolicy(allow_cidrs=POLICY), [site.url("/")])) as proxy:
        channel = proxy.open_channel()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": channel.address}))
        with pytest.raises(urllib.error.HTTPError) as info:
            opener.open(refused_site.url("/plain"), timeout=5)
        assert info.value.code == 403 and info.value.headers[REFUSED_HEADER] == "address_policy"
        info.value.close()
        with opener.open(site.url("/plain"), timeout=5) as resp:
            assert resp.status == 200 and b"plain page" in resp.read()
        assert [r.url for r in proxy.refused] == [refused_site.url("/plain")]
    assert refused_site.log == []


def test_missing_chromedriver_is_critical(runner: asyncio.Runner, site: SiteServer) -> None:
    """A chromedriver that does not exist is CRITICAL with an install hint."""
    f = BrowserFetcher(
        AddressPolicy(allow_cidrs=POLICY),
        scope_hosts=[site.url("/")],
        pool_size=1,
        recycle_pages=1,
        user_agent="t",
        chromedriver="/nonexistent/chromedriver",
    )
    try:
        with pytest.raises(BrowserError) as info:
            render(runner, f, site.url("/plain"))
        assert info.value.error_class == ErrorClass.CRITICAL
        assert "apt-get install chromium chromium-driver" in str(info.value)
    finally:
        runner.run(f.close())


def test_doctor_checks_pass() -> None:
    """The doctor finds both programs and renders a page."""
    checks = check_browser()
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    assert {"chromium", "chromedriver", "headless page"} <= {c.name for c in checks}
