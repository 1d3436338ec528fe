"""Hostile pages against the browser fetcher, with loopback allowed (the demo's and every local mirror's setting).

Real Chromium, chromedriver and the filtering proxy. The canaries are raw TCP
and UDP sockets that record every connection and datagram: a refused target
must see none at all, not merely get no useful answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from shoal.exchange import FetchRequest, FetchResult
from shoal.fetch.address import AddressPolicy
from shoal.spec import Rule
from tests.sites.browser import Canary, SiteServer, other_site, runner, site

try:
    from shoal.fetch.browser.fetcher import BrowserFetcher
    from shoal.fetch.browser.launch import find_chromedriver, find_chromium

    _FOUND = find_chromium() is not None and find_chromedriver() is not None
except ImportError:  # selenium not installed
    _FOUND = False

if not _FOUND:
    from tests.conftest import missing

    missing(
        "Chromium, chromedriver or selenium",
        "apt-get install chromium chromium-driver and pip install 'shoal[browser]'",
    )

pytestmark = pytest.mark.browser

__all__ = ["other_site", "runner", "site"]


@pytest.fixture(scope="module")
def fetcher(
    runner: asyncio.Runner, site: SiteServer, other_site: SiteServer
) -> Iterator[BrowserFetcher]:
    # allow_private: every private and loopback address passes the policy; only the scope narrows it.
    f = BrowserFetcher(
        AddressPolicy(allow_private=True),
        scope_hosts=[site.url("/"), f"127.0.0.1:{other_site.port}"],
        pool_size=1,
        recycle_pages=1000,
        user_agent="shoal-attack-test",
    )
    yield f
    runner.run(f.close())


@pytest.fixture
def canaries() -> Iterator[list[Canary]]:
    """An unnamed port of 127.0.0.1 (allowed address, out of scope) and 127.0.0.2."""
    cs = [Canary("127.0.0.1").start(), Canary("127.0.0.2").start()]
    yield cs
    for c in cs:
        c.stop()


def render(
    runner: asyncio.Runner,
    f: BrowserFetcher,
    url: str,
    *,
    wait_for: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
    timeout: float = 40.0,
) -> FetchResult:
    rule = Rule(glob="*", render="browser", wait_for=wait_for, wait_timeout=20)
    return runner.run(f.fetch(FetchRequest(url, rule, time.monotonic() + timeout, headers)))


def _settle(runner: asyncio.Runner, seconds: float = 1.5) -> None:
    """Let late requests (service worker install, ICE gathering) happen before counting hits."""
    runner.run(asyncio.sleep(seconds))


def test_page_cannot_start_a_chromedriver_session(
    runner: asyncio.Runner, fetcher: BrowserFetcher, site: SiteServer, tmp_path: Path
) -> None:
    """A page posting a new session with a shell command to the real chromedriver port runs nothing."""
    assert render(runner, fetcher, site.url("/plain")).status == 200  # a browser is up
    driver_ports = fetcher.driver_ports()
    own = fetcher.own_ports()
    assert len(driver_ports) == 1 and set(driver_ports) < own
    assert len(own) >= 3, own  # chromedriver, DevTools and the proxy's channel at least
    listening = set()
    for pid in fetcher.process_ids():  # guard, chromedriver and every Chromium process
        with contextlib.suppress(psutil.Error):
            for conn in psutil.Process(pid).net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    listening.add(conn.laddr.port)
    assert listening and listening <= own, (listening, own)  # DevTools among them
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    ports = ",".join(str(p) for p in sorted(own))
    url = site.url(f"/attack-driver?ports={ports}&marker={marker}")
    r = render(runner, fetcher, url, wait_for="#done")
    assert r.status == 200 and r.rendered_html is not None
    assert any(p.startswith("/report?") for p in site.log)  # the attack ran to its end
    _settle(runner)
    assert not marker.exists()
    refused = {(x.host, x.port, x.why) for x in fetcher.refused}
    for port in own:
        for host in ("127.0.0.1", "::1", "localhost", "0.0.0.0"):
            assert (host, port, "own_socket") in refused, (host, port, refused)
    # Nothing from the page reached chromedriver: no request of it was forwarded anywhere.
    forwarded = [e for e in fetcher.exchanges if e.error is None and e.status]
    assert not any(f":{p}/" in e.url for e in forwarded for p in own), forwarded
    # chromedriver still has one session and Chromium no renderer started through a prefix.
    shells = [
        p
        for p in psutil.process_iter(["cmdline"])
        if any("renderer-cmd-prefix" in a for a in (p.info["cmdline"] or []))
    ]
    assert shells == []


def test_the_attack_payload_is_real_without_the_proxy(site: SiteServer, tmp_path: Path) -> None:
    """Control: the same text/plain POST, sent straight to a bare chromedriver, does run the command."""
    from shoal.fetch.browser.launch import find_chromedriver, free_port, port_open

    chromedriver = find_chromedriver()
    assert chromedriver is not None
    marker = tmp_path / "control-marker"
    port = free_port()
    driver = subprocess.Popen(
        [chromedriver, f"--port={port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        end = time.monotonic() + 30
        while not port_open(port):
            assert time.monotonic() < end, "chromedriver did not listen"
            time.sleep(0.05)
        args = ["--headless=new", f"--renderer-cmd-prefix=/bin/sh -c touch${{IFS}}{marker}"]
        if os.geteuid() == 0:
            args.append("--no-sandbox")
        caps = {
            "capabilities": {
                "alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {"args": args}}
            }
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/session",
            data=json.dumps(caps).encode(),
            headers={"Content-Type": "text/plain", "Origin": site.base},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                resp.read()
        except OSError:
            pass  # the session may fail to start: the renderer never came up
        end = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < end:
            time.sleep(0.1)
        assert marker.exists()
    finally:
        procs = [driver.pid]
        with contextlib.suppress(psutil.Error):
            procs += [c.pid for c in psutil.Process(driver.pid).children(recursive=True)]
        for pid in procs:
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
        driver.wait(10)


def test_out_of_scope_ports_and_addresses_get_no_connection(
    runner: asyncio.Runner,
    fetcher: BrowserFetcher,
    site: SiteServer,
    canaries: list[Canary],
) -> None:
    """Every kind of request a page can make, aimed at an unnamed port or address, reaches nothing."""
    for canary in canaries:
        before = len(site.log)
        r = render(runner, fetcher, site.url(f"/hostile?t={canary.target}"), wait_for="#done")
        assert r.status == 200
        assert "/report?hostile-fired" in site.log[before:]
        _settle(runner, 2.0)
        assert canary.hits == [], canary.hits
        refused = [x for x in fetcher.refused if x.port == canary.port]
        assert refused and {x.why for x in refused} == {"out_of_scope"}
        # The page really aimed many kinds of request at the canary.
        kinds = {x.url.rsplit("/", 1)[-1] for x in refused}
        assert {"img", "fetch", "xhr", "script", "css-import", "background"} <= kinds, kinds
    assert all(c.hits == [] for c in canaries)


def test_frame_cannot_navigate_the_top_page_to_a_refused_address(
    runner: asyncio.Runner,
    fetcher: BrowserFetcher,
    site: SiteServer,
    canaries: list[Canary],
) -> None:
    """``top.location`` set by an iframe to an out-of-scope port is refused; nothing connects there."""
    canary = canaries[0]
    render(runner, fetcher, site.url(f"/top-navigation?t={canary.target}"))
    end = time.monotonic() + 10
    while time.monotonic() < end and not any(x.port == canary.port for x in fetcher.refused):
        _settle(runner, 0.1)
    assert any(x.port == canary.port and x.url.endswith("/v/top-location") for x in fetcher.refused)
    assert canary.hits == []


def test_in_scope_ports_stay_reachable(
    runner: asyncio.Runner, fetcher: BrowserFetcher, site: SiteServer, other_site: SiteServer
) -> None:
    """The seeds' and allowed_hosts' host:port pairs on loopback are fetched as before."""
    before = len(other_site.log)
    r = render(
        runner,
        fetcher,
        site.url(f"/with-subresources?other=127.0.0.1:{other_site.port}"),
        wait_for="#done",
    )
    assert r.status == 200
    assert "/x.png?other" in other_site.log[before:]
    assert "/xhr?other" in other_site.log[before:]


def test_scope_headers_go_to_the_page_host_only(
    runner: asyncio.Runner, fetcher: BrowserFetcher, site: SiteServer, other_site: SiteServer
) -> None:
    """[scope.headers] reach the page and its own host's subresources, never another host:port."""
    start, other_start = len(site.log), len(other_site.log)
    r = render(
        runner,
        fetcher,
        site.url(f"/with-subresources?other=127.0.0.1:{other_site.port}"),
        wait_for="#done",
        headers=(("Authorization", "Bearer s3cret-token"), ("X-Board", "b1")),
    )
    assert r.status == 200
    own = dict(zip(site.log[start:], site.headers[start:], strict=True))
    page = next(h for p, h in own.items() if p.startswith("/with-subresources"))
    assert page.get("Authorization") == "Bearer s3cret-token" and page.get("X-Board") == "b1"
    assert own["/x.png?own"].get("Authorization") == "Bearer s3cret-token"
    assert own["/xhr?own"].get("X-Board") == "b1"
    other = dict(zip(other_site.log[other_start:], other_site.headers[other_start:], strict=True))
    assert "/x.png?other" in other and "/xhr?other" in other
    assert all("Authorization" not in h and "X-Board" not in h for h in other.values())
    # The WARC-bound request record keeps the header name, not the secret.
    assert ("X-Board", "b1") in r.request_headers
    assert not any("s3cret-token" in v for _, v in r.request_headers)
    # The next page without headers sends none.
    start = len(site.log)
    render(runner, fetcher, site.url("/plain?after"))
    after = dict(zip(site.log[start:], site.headers[start:], strict=True))
    assert "Authorization" not in after["/plain?after"]


def test_scope_headers_on_an_https_browser_page_are_refused_not_dropped(
    runner: asyncio.Runner, fetcher: BrowserFetcher
) -> None:
    """An https page with [scope.headers] fails PERMANENT with the fix named, instead of going without."""
    from shoal.errors import ErrorClass, FetchError

    with pytest.raises(FetchError) as info:
        render(runner, fetcher, "https://127.0.0.1:9/", headers=(("Cookie", "a=b"),))
    assert info.value.error_class == ErrorClass.PERMANENT
    assert "render" in str(info.value) and "Cookie" in str(info.value)


def test_chromedriver_listens_on_loopback_only_behind_a_secret_prefix(
    runner: asyncio.Runner, fetcher: BrowserFetcher, site: SiteServer
) -> None:
    """chromedriver binds 127.0.0.1/::1 only, and a command without its random URL prefix starts nothing."""
    assert render(runner, fetcher, site.url("/plain?driver")).status == 200
    (port,) = fetcher.driver_ports()
    owner = next(
        c.pid
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid
    )
    assert psutil.Process(owner).name() == "chromedriver"
    listening = {
        c.laddr.ip
        for c in psutil.Process(owner).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }
    assert listening and listening <= {"127.0.0.1", "::1"}, listening
    args = psutil.Process(owner).cmdline()
    assert not any(a.startswith(("--allowed-ips", "--allowed-origins")) for a in args)
    assert any(a.startswith("--url-base=/") and len(a) > len("--url-base=/") + 16 for a in args)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/session",
        data=b'{"capabilities": {}}',
        headers={"Content-Type": "text/plain"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert b"unhandled request" in info.value.read()
    info.value.close()
