"""The fetcher contract (``shoal.fetch.base.Fetcher``), pinned by the same cases on the HTTP and the browser fetcher.

A page is a result whatever its status, a refused address is a
:class:`~shoal.errors.PolicyRefusal`, a missed deadline a ``TRANSIENT``
:class:`~shoal.errors.FetchError`, and ``request.headers`` reach the URL's own
host only. The browser runs real Chromium through the filtering proxy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from shoal.errors import ErrorClass, FetchError, PolicyRefusal
from shoal.exchange import FetchRequest
from shoal.fetch.address import AddressPolicy
from shoal.fetch.base import Fetcher
from shoal.fetch.http import HttpFetcher
from shoal.spec import Rule
from tests.sites.browser import SiteServer, other_site, runner, site

__all__ = ["other_site", "runner", "site"]

POLICY = AddressPolicy(allow_cidrs=["127.0.0.1/32"])


def _browser_available() -> bool:
    try:
        import selenium  # noqa: F401

        from shoal.fetch.browser.launch import find_chromedriver, find_chromium
    except ImportError:
        return False
    return find_chromium() is not None and find_chromedriver() is not None


@pytest.fixture(scope="module", params=["http", "browser"])
def fetcher(
    request: pytest.FixtureRequest,
    runner: asyncio.Runner,
    site: SiteServer,
    other_site: SiteServer,
) -> Iterator[Fetcher]:
    f: Fetcher
    if request.param == "http":
        f = HttpFetcher(POLICY, user_agent="shoal-contract", max_body_bytes=1 << 20)
    else:
        if not _browser_available():
            from tests.conftest import missing

            missing(
                "Chromium, chromedriver or selenium",
                "apt-get install chromium chromium-driver and pip install 'shoal[browser]'",
            )
        from shoal.fetch.browser.fetcher import BrowserFetcher

        f = BrowserFetcher(
            POLICY,
            scope_hosts=[site.url("/"), other_site.url("/")],
            pool_size=1,
            recycle_pages=100,
            user_agent="shoal-contract",
        )
    yield f
    runner.run(f.close())


def test_a_page_is_a_result(runner: asyncio.Runner, fetcher: Fetcher, site: SiteServer) -> None:
    """A 200 page comes back with its status, headers and body as served."""
    r = runner.run(fetcher.fetch(FetchRequest(site.url("/plain"), None, time.monotonic() + 30)))
    assert r.status == 200 and r.content_type == "text/html"
    assert b"plain page" in r.body and r.peer_ip == "127.0.0.1"


def test_a_404_is_a_result_not_an_error(
    runner: asyncio.Runner, fetcher: Fetcher, site: SiteServer
) -> None:
    """A 404 is returned as a result with its body, never raised."""
    r = runner.run(fetcher.fetch(FetchRequest(site.url("/missing"), None, time.monotonic() + 30)))
    assert r.status == 404 and b"not here" in r.body


def test_a_refused_address_is_a_policy_refusal(
    runner: asyncio.Runner, fetcher: Fetcher, site: SiteServer
) -> None:
    """A URL on an address the policy refuses raises PolicyRefusal and sends nothing."""
    refused = SiteServer("127.0.0.2").start()
    try:
        with pytest.raises(PolicyRefusal):
            runner.run(
                fetcher.fetch(FetchRequest(refused.url("/plain"), None, time.monotonic() + 30))
            )
        assert refused.log == []
    finally:
        refused.stop()


def test_a_missed_deadline_is_transient(
    runner: asyncio.Runner, fetcher: Fetcher, site: SiteServer
) -> None:
    """A server that answers after the deadline makes the fetch a TRANSIENT FetchError by then."""
    with pytest.raises(FetchError) as info:
        runner.run(
            fetcher.fetch(FetchRequest(site.url("/slow-head?s=30"), None, time.monotonic() + 3))
        )
    assert info.value.error_class == ErrorClass.TRANSIENT


def test_headers_go_to_the_own_host_only(
    runner: asyncio.Runner, fetcher: Fetcher, site: SiteServer, other_site: SiteServer
) -> None:
    """request.headers reach the URL's host and never another host the page makes the fetcher ask."""
    start, other_start = len(site.log), len(other_site.log)
    url = site.url(f"/with-subresources?other=127.0.0.1:{other_site.port}")
    rule = Rule(glob="*", render="browser", wait_for="#done", wait_timeout=20)
    headers = (("X-Contract", "c1"), ("Cookie", "sid=contract-secret"))
    r = runner.run(fetcher.fetch(FetchRequest(url, rule, time.monotonic() + 40, headers)))
    assert r.status == 200
    page = site.headers[site.log.index(url.removeprefix(site.base), start)]
    assert page.get("X-Contract") == "c1" and page.get("Cookie") == "sid=contract-secret"
    assert all(
        "X-Contract" not in h and "Cookie" not in h for h in other_site.headers[other_start:]
    )
    assert not any("contract-secret" in v for _, v in r.request_headers)
