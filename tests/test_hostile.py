"""The hostile web: address policy, bombs, traps, slow and broken servers, robots.txt, secrets, politeness.

Every test runs against :mod:`tests.sites.hostile` on 127.0.0.1 (crawls with
SQLite in ``tmp_path``); nothing is sent anywhere else. Addresses outside
loopback appear only in pure policy checks or as targets the policy must
refuse before any connection is opened.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import logging
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from shoal.archive import WarcRef, read_record
from shoal.content.codings import StreamDecoder, coding_problem, content_codings, content_decode
from shoal.errors import ErrorClass, FetchError, PolicyRefusal, SkipReason
from shoal.exchange import FetchRequest
from shoal.fetch.address import AddressPolicy
from shoal.fetch.http import HostHeaders, HttpFetcher, StaticResolver
from shoal.frontier import SqlFrontier
from shoal.frontier.tables import events, hosts, urls, workers
from shoal.secrets import RedactingFilter, redact_headers, redact_text, redact_url
from shoal.spec import LimitsSpec
from shoal.testing import wait_until
from shoal.urls import HostScope
from shoal.worker.links import LinkExtractor, Router
from shoal.worker.markup import MAX_NESTING, MAX_OPTIONS, tame_html
from tests.sites.hostile import (
    BOARD_PAGES,
    BOARD_WINDOW,
    CODINGS,
    COOKIE,
    PASSWORD,
    SAMPLES,
    SECRETS,
    TOKEN,
    HostileSite,
    run_crawl,
    spec_text,
    start_hostile_site,
)

BOMBS = ["bomb-gzip", "bomb-deflate", "bomb-br", "bomb-zstd"]
HTML_SAMPLES = [n for n in CODINGS if n.startswith("html-") and n != "html-gzip-deflate-gzip"]
MIB = 1024 * 1024


@pytest.fixture
def site() -> Iterator[HostileSite]:
    """The hostile site on free ports of 127.0.0.1."""
    s = start_hostile_site()
    yield s
    s.stop()


def fetcher(**kw: Any) -> HttpFetcher:
    """An HTTP fetcher that may reach loopback (127.0.0.1 only unless ``policy`` says otherwise)."""
    policy = kw.pop("policy", AddressPolicy(allow_cidrs=["127.0.0.1/32"]))
    return HttpFetcher(
        policy, user_agent="shoal-test/1.0", max_body_bytes=kw.pop("max_body_bytes", MIB), **kw
    )


def fetch(url: str, *, timeout: float = 5.0, **kw: Any) -> Any:
    """One fetch on a fresh fetcher; returns the result or the FetchError raised."""
    opts = {k: kw.pop(k) for k in ("headers", "html_only") if k in kw}

    async def go() -> Any:
        f = fetcher(**kw)
        try:
            return await f.fetch(FetchRequest(url, None, time.monotonic() + timeout, **opts))
        except FetchError as exc:
            return exc
        finally:
            await f.close()

    return asyncio.run(go())


def rows_of(spec: Any) -> dict[str, Any]:
    """Every URL row of the crawl, by URL."""
    f = SqlFrontier(spec.frontier_url(), create=False)
    try:
        return {r.url: r for r in f.query(select(urls))}
    finally:
        f.close()


def outcome(r: Any) -> tuple[str, str | None]:
    """``(status, error class or skip reason)`` of a row."""
    return r.status, r.error_class or r.skip_reason


def table(spec: Any, t: Any) -> list[Any]:
    """All rows of a frontier table."""
    f = SqlFrontier(spec.frontier_url(), create=False)
    try:
        return list(f.query(select(t)))
    finally:
        f.close()


# -- pure checks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ip",
    [
        "0.1.2.3",
        "10.0.0.1",
        "100.64.0.1",
        "100.127.255.254",
        "127.0.0.2",
        "169.254.169.254",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "::ffff:127.0.0.2",
        "::ffff:169.254.169.254",
        "::127.0.0.1",
        "2002:7f00:1::",
        "64:ff9b::a9fe:a9fe",
        "255.255.255.255",
        "224.0.0.1",
    ],
)
def test_address_policy_refuses_non_global_addresses(ip: str) -> None:
    """Every private, loopback, link-local and special range is refused by default, IPv4 in IPv6 unwrapped."""
    assert not AddressPolicy().allows(ip)


def test_address_policy_allows_global_addresses_and_named_networks() -> None:
    """Global addresses pass; a named CIDR allows exactly its range, also when written as mapped IPv6."""
    policy = AddressPolicy(allow_cidrs=["127.0.0.1/32"])
    assert policy.allows("8.8.8.8") and policy.allows("2606:4700::1111")
    assert policy.allows("127.0.0.1") and policy.allows("::ffff:127.0.0.1")
    assert (
        not policy.allows("127.0.0.2")
        and not policy.allows("::1")
        and not policy.allows("not an ip")
    )
    assert AddressPolicy(allow_private=True).allows("169.254.169.254")


def test_stream_decoder_matches_whole_body_decoding_one_byte_at_a_time() -> None:
    """Fed byte by byte, the streaming decoder gives what content_decode gives for every sample."""
    for name in [*HTML_SAMPLES, "truncated-crc-error", "unexpected-eof"]:
        path = next(p for p in (SAMPLES / f"{name}.bin", SAMPLES / f"{name}.gz") if p.exists())
        data, coding = path.read_bytes(), CODINGS[name]
        codings = content_codings(coding)
        assert codings is not None
        dec = StreamDecoder(codings, MIB)
        out = b"".join(dec.feed(data[i : i + 1]) for i in range(len(data)))
        want, _ = content_decode(data, coding, MIB)
        assert out == want, name
    # Scrapy saved the expected output as the latin-1 text of the bytes, re-encoded as UTF-8.
    assert out == (SAMPLES / "unexpected-eof-output.txt").read_bytes().decode("utf-8").encode(
        "latin-1"
    )


def test_codings_beyond_two_layers_or_unknown_are_not_decoded() -> None:
    """Three stacked codings are refused with a reason; an unknown label means 'take the bytes as they are'."""
    assert coding_problem("gzip, deflate, gzip") is not None
    assert coding_problem("gzip, br") is None and coding_problem(None) is None
    assert content_codings("utf-8") is None and content_codings("identity") == []


def test_redaction_hides_passwords_tokens_and_secret_headers() -> None:
    """URLs, proxy URLs, free text and header lists keep their shape but lose their secrets."""
    assert (
        redact_url(f"http://crawler:{PASSWORD}@h/p?q=1&token=abc")
        == "http://crawler:***@h/p?q=1&token=***"
    )
    assert redact_url("https://ghp_secret@github.com/x") == "https://***@github.com/x"
    text = (
        f"proxy http://u:{PASSWORD}@proxy:3128 said Authorization: Bearer {TOKEN}; cookie={COOKIE}"
    )
    assert not any(s in redact_text(text) for s in SECRETS)
    hdrs = redact_headers(
        [
            ("Authorization", f"Basic {SECRETS[3]}"),
            ("Cookie", f"session={COOKIE}; x=1"),
            ("Accept", "*/*"),
        ]
    )
    assert hdrs == [
        ("Authorization", "Basic ***"),
        ("Cookie", "session=***; x=***"),
        ("Accept", "*/*"),
    ]
    record = logging.LogRecord(
        "shoal", logging.WARNING, __file__, 1, "failed on %s", (f"http://a:{PASSWORD}@h/",), None
    )
    RedactingFilter().filter(record)
    assert PASSWORD not in record.getMessage()


def test_trap_reasons_of_single_urls() -> None:
    """Length, segment count, repeated segments and far-future dates are each recognised; ordinary URLs pass."""
    ex = LinkExtractor(Router([]), HostScope(["*"]), LimitsSpec())
    year = time.gmtime().tm_year
    assert ex.trap_reason("http://h/" + "x" * 3000) is SkipReason.URL_TOO_LONG
    assert (
        ex.trap_reason("http://h/" + "/".join(f"s{i}" for i in range(40)))
        is SkipReason.TOO_MANY_SEGMENTS
    )
    assert ex.trap_reason("http://h/a/b/a/b/a/b/a/b/") is SkipReason.REPEATED_SEGMENTS
    for dated in (
        f"/cal/{year + 4}-01",
        f"/{year + 9}/05/",
        f"/e?year={year + 4}",
        f"/e?ym={year + 5}01",
    ):
        assert ex.trap_reason("http://h" + dated) is SkipReason.CALENDAR, dated
    for ok in (
        f"/cal/{year + 1}-01",
        "/2003/05/post",
        "/board?page=4999",
        "/item/12345-6789",
        "/a/b/a/b/",
        f"/list?start={year + 20}",
        f"/t/topic/{year + 20}/10",
        f"/item/{year + 20}-3",
        f"/p/{year + 500}-05",
    ):
        assert ex.trap_reason("http://h" + ok) is None, ok
    assert (
        LinkExtractor(
            Router([]), HostScope(["*"]), LimitsSpec(calendar_years_ahead=None)
        ).trap_reason(f"http://h/cal/{year + 50}-01")
        is None
    )


def test_taming_bounds_nesting_and_keeps_every_link() -> None:
    """50,000 nested divs and 100,000 options are cut to bounded markup (nesting and options capped) before parsing, links intact."""
    nested = "<div>" * 50_000 + '<a href="/deep">x</a>' + "</div>" * 50_000
    options = "<select>" + "<option>x" * 100_000 + '</select><a href="/after">y</a>'
    tamed = tame_html(nested)
    assert isinstance(tamed, str)
    assert tamed.count("<div>") == MAX_NESTING and tamed.count("</div>") == MAX_NESTING
    assert '<a href="/deep">x</a>' in tamed
    assert tame_html(nested.encode()) == tamed.encode()
    tamed_options = tame_html(options)
    assert isinstance(tamed_options, str) and tamed_options.count("<option>") == MAX_OPTIONS
    for doc, link in ((nested, "/deep"), (options, "/after"), (nested.encode(), "/deep")):
        ex = LinkExtractor(Router([]), HostScope(["*"]), LimitsSpec())
        assert ex.hrefs(doc, None)[0] == [link]
    small = '<ul><li><a href="/a">a</a><li><a href="/b">b</a></ul>'
    assert tame_html(small) == small


# -- the fetcher ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BOMBS)
def test_each_bomb_stops_at_the_cap_with_bounded_memory(site: HostileSite, name: str) -> None:
    """An 11.5 MB decompression bomb stops at the 1 MiB cap: truncated 'length', raw bytes kept, memory bounded."""
    tracemalloc.start()
    try:
        res = fetch(f"{site.base_url}/z/{name}")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res.status == 200 and res.truncated == "length"
    assert res.decoded is not None and len(res.decoded) == MIB
    assert 0 < len(res.body) <= (SAMPLES / f"{name}.bin").stat().st_size
    assert peak < 6 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_every_encoding_decodes_as_it_streams(site: HostileSite) -> None:
    """gzip, raw and zlib deflate, br, three zstd framings and gzip+deflate all give the same page; the raw body is kept."""
    page = gzip.decompress((SAMPLES / "html-gzip.bin").read_bytes())
    for name in HTML_SAMPLES:
        res = fetch(f"{site.base_url}/z/{name}")
        raw = (SAMPLES / f"{name}.bin").read_bytes()
        assert res.truncated is None and res.body == raw, name
        assert res.decoded == content_decode(raw, CODINGS[name], MIB)[0], name
        assert res.decoded[:100] == page[:100] and res.decoded.rstrip().endswith(b"</html>"), name
    three = fetch(f"{site.base_url}/z/html-gzip-deflate-gzip")
    assert three.decoded is None and coding_problem(three.header("content-encoding"))
    assert fetch(f"{site.base_url}/z/mislabelled").decoded is None


@pytest.mark.parametrize("path", ["/slow/drip", "/slow/hang-headers", "/slow/hang-before"])
def test_the_deadline_cuts_slow_servers(site: HostileSite, path: str) -> None:
    """A dripping server or one that hangs after (or before) its headers is cut at the total deadline."""
    res = fetch(site.base_url + path, timeout=1.0)
    if path == "/slow/hang-before":
        assert isinstance(res, FetchError) and res.error_class is ErrorClass.TRANSIENT
        # the total deadline ended it (not the connect timeout, not the server)
        assert res.detail.startswith("no response within the ") and res.detail.endswith(
            "s deadline"
        )
    else:
        assert res.truncated == "time" and len(res.body) < 100
    # The server never ends: the client cut it while the site was still answering.
    wait_until(f"the site to see {path} cut by its client", lambda: path in site.cut)


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("/dup-cl", "permanent"),
        ("/bad-chunk", "permanent"),
        ("/invalid-header", "permanent"),
        ("/garbage", "permanent"),
        ("/reset", "disconnect"),
        ("/short", "disconnect"),
        ("/empty-200", None),
        ("/bad-chunk-late", "time|unspecified"),
    ],
)
def test_broken_responses_become_errors_or_truncated_results(
    site: HostileSite, path: str, want: str | None
) -> None:
    """Protocol breakage is a permanent FetchError; a body cut short is a result marked truncated."""
    res = fetch(site.raw_url + path, timeout=1.0)
    if want == "permanent":
        assert isinstance(res, FetchError) and res.error_class is ErrorClass.PERMANENT, res
    else:
        assert not isinstance(res, FetchError), res
        assert (res.truncated or None) in (want.split("|") if want else [None])
    refused = fetch(site.refused_url + "/x")
    assert isinstance(refused, FetchError) and refused.error_class is ErrorClass.TRANSIENT


def test_ip_literals_and_names_are_checked_before_any_connection(site: HostileSite) -> None:
    """127.0.0.2, mapped ::ffff:127.0.0.2, ::1 and 169.254.169.254, as literals or behind a name, are refused unsent."""
    table = {
        "evil.test": ["127.0.0.2"],
        "meta.test": ["169.254.169.254"],
        "mapped.test": ["::ffff:127.0.0.2"],
        "good.test": ["127.0.0.1"],
        "mixed.test": ["127.0.0.2", "127.0.0.1"],
    }
    p = site.port
    for url in (
        f"http://127.0.0.2:{p}/ok/a",
        f"http://[::ffff:127.0.0.2]:{p}/ok/b",
        f"http://[::1]:{p}/ok/c",
        "http://169.254.169.254/latest/meta-data/",
        f"http://evil.test:{p}/ok/d",
        "http://meta.test/latest/",
        f"http://mapped.test:{p}/ok/e",
    ):
        res = fetch(url, resolver=StaticResolver(table, fallback=False))
        assert isinstance(res, PolicyRefusal) and res.reason is SkipReason.ADDRESS_POLICY, (
            url,
            res,
        )
    for url in (f"http://good.test:{p}/ok/f", f"http://mixed.test:{p}/ok/g"):
        res = fetch(url, resolver=StaticResolver(table, fallback=False))
        assert res.status == 200 and res.peer_ip == "127.0.0.1"
    assert site.hits_on("127.0.0.2") == []

    async def checks() -> list[str]:
        f = fetcher(resolver=StaticResolver(table, fallback=False))
        out = []
        for url in (f"http://evil.test:{p}/", "http://10.1.2.3/", f"http://good.test:{p}/"):
            try:
                await f.check_address(url)
                out.append("ok")
            except PolicyRefusal:
                out.append("refused")
        await f.close()
        return out

    assert asyncio.run(checks()) == ["refused", "refused", "ok"]


def test_every_socket_is_checked_even_when_the_earlier_checks_are_bypassed(
    site: HostileSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the IP-literal check switched off, the socket factory still refuses 127.0.0.2 before connecting."""
    monkeypatch.setattr(HttpFetcher, "_literal_refusal", lambda self, host: None)
    res = fetch(f"http://127.0.0.2:{site.port}/ok/backstop")
    assert isinstance(res, PolicyRefusal) and "127.0.0.2" in res.detail
    assert site.hits_on("127.0.0.2") == []


def test_url_credentials_become_a_header_and_never_reach_the_record(site: HostileSite) -> None:
    """user:password@ is sent as Basic auth, removed from the result's URL, and redacted in the recorded request."""
    res = fetch(f"http://crawler:{PASSWORD}@127.0.0.1:{site.port}/auth/basic")
    assert res.status == 200
    assert res.url == f"{site.base_url}/auth/basic"
    assert dict(res.request_headers)["Authorization"] == "Basic ***"
    assert not any(s in repr(res.request_headers) for s in SECRETS)
    hh = HostHeaders({"localhost:8000": {"Cookie": "a=1"}}, ["http://u:p@example.com/"])
    assert hh.for_url("http://localhost:8000/x") == {"Cookie": "a=1"}
    assert (
        hh.for_url("http://localhost:8001/x") == {} and hh.for_url("http://sub.example.com/") == {}
    )
    assert (
        (hh.for_url("http://example.com:8080/") or {}).get("Authorization", "").startswith("Basic ")
    )


def test_html_only_skips_the_body_of_other_types(site: HostileSite) -> None:
    """With html_only, a PDF's headers are read and its body is not."""
    res = fetch(f"{site.base_url}/files/doc.pdf", html_only=True)
    assert res.status == 200 and res.content_type == "application/pdf" and res.body == b""
    assert fetch(f"{site.base_url}/files/doc.pdf").body.startswith(b"%PDF")


# -- crawls ---------------------------------------------------------------------------------------

HOSTILE_EXPECTED: dict[str, tuple[str, str | None]] = {
    **{f"/z/{b}": ("failed", "permanent") for b in BOMBS},
    **{
        f"/z/{n}": ("done", None)
        for n in [
            *HTML_SAMPLES,
            "truncated-crc-error",
            "unexpected-eof",
            "mislabelled",
            "unknown-coding",
        ]
    },
    "/z/html-gzip-deflate-gzip": ("failed", "permanent"),
    "/z/bomb-gzip?status=503": (
        "failed",
        "transient",
    ),  # an error's class comes from its status, not its body
    "/slow/drip": ("failed", "transient"),
    "/slow/hang-headers": ("failed", "transient"),
    "/slow/hang-before": ("failed", "transient"),
    "/redir/loop/a": ("done", None),
    "/redir/loop/b": ("failed", "permanent"),
    "/redir/chain/0": ("done", None),
    "/redir/chain/1": ("done", None),
    "/redir/chain/2": ("done", None),
    "/redir/chain/3": ("failed", "permanent"),
    "/redir/rel": ("done", None),
    "/redir/abs": ("done", None),
    "/redir/proto": ("done", None),
    "/redir/target-rel": ("done", None),
    "/redir/target-abs": ("done", None),
    "/redir/target-proto": ("done", None),
    "/redir/file": ("failed", "permanent"),
    "/redir/ftp": ("failed", "permanent"),
    "{raw}/dup-cl": ("failed", "permanent"),
    "{raw}/bad-chunk": ("failed", "permanent"),
    "{raw}/invalid-header": ("failed", "permanent"),
    "{raw}/garbage": ("failed", "permanent"),
    "{raw}/reset": ("failed", "transient"),
    "{raw}/short": ("failed", "transient"),
    "{raw}/empty-200": ("failed", "transient"),
    "{refused}/x": ("failed", "transient"),
    "/files/doc.pdf": ("done", None),
    "/files/pic.png": ("done", None),
    "/html/malformed": ("done", None),
    "/html/nested": ("done", None),
    "/html/bad-bytes": ("done", None),
    "/html/options": ("done", None),
    **{f"/ok/{m}": ("done", None) for m in ("m1", "m1b", "m1c", "m2", "m3", "m4")},
    "/status/404": ("failed", "permanent"),
    "/status/410": ("failed", "permanent"),
    "/status/403": ("failed", "permanent"),
    "/status/500": ("failed", "transient"),
    "/hub/broken": ("done", None),
}
"""Each hostile case of the big crawl and the outcome it must end with."""

WARC_TRUNCATED = {
    **{f"/z/{b}": "length" for b in BOMBS},
    "/slow/drip": "time",
    "/slow/hang-headers": "time",
    "{raw}/reset": "disconnect",
    "{raw}/short": "disconnect",
}


def test_a_hostile_site_ends_with_every_url_classified(site: HostileSite, tmp_path: Path) -> None:
    """Bombs, stacked codings, slow, broken and redirecting servers, odd types and HTML: each URL gets its class."""
    reached = ("/hub/broken", "/redir/loop/b", "/redir/chain/1", "/redir/chain/2", "/redir/chain/3")
    entries = [
        p
        for p in HOSTILE_EXPECTED
        if p not in reached and not p.startswith(("/ok/", "/redir/target-"))
    ]
    site.hubs["broken"] = [p if p.startswith("{") else "{base}" + p for p in entries]
    text = spec_text(
        "hostile",
        tmp_path,
        [site.base_url + "/hub/broken"],
        [
            {"name": "hub", "regex": "/hub/", "kind": "list"},
            {"name": "files", "regex": "/files/", "kind": "list"},
            {"name": "html", "regex": "/html/", "kind": "list"},
            {"name": "other", "glob": "*", "kind": "detail"},
        ],
        {"scope": {"allowed_hosts": ["127.0.0.1"]}, "limits": {"max_redirects": 3}},
    )
    spec, stats = run_crawl(text)
    rows = rows_of(spec)
    got = {u: outcome(r) for u, r in rows.items()}
    want = {
        site.fill(p if p.startswith("{") else "{base}" + p): o for p, o in HOSTILE_EXPECTED.items()
    }
    assert got == want
    # A truncated body is archived and marked, not lost.
    for p, reason in WARC_TRUNCATED.items():
        r = rows[site.fill(p if p.startswith("{") else "{base}" + p)]
        rec = read_record(
            spec.archive_dir(), WarcRef(r.warc_file, r.warc_offset, r.warc_length, r.warc_record_id)
        )
        assert rec.truncated == reason, p
    # Non-HTML is archived but never parsed for links; the worker lived to the end.
    assert site.hits("/ok/from-pdf") == []
    assert [w.state for w in table(spec, workers)] == ["stopped"]
    assert stats.failed.get("unknown", 0) == 0


def test_traps_are_skipped_and_a_5000_page_board_is_not(site: HostileSite, tmp_path: Path) -> None:
    """Depth, URL length, repeated and too many segments, empty calendars, far-future dates and pages past a board's end are skipped with their reasons, while all 5,000 board pages are crawled."""
    b, ym = site.base_url, time.strftime("%Y-%m")
    rules = [
        {"name": n, "regex": r, "kind": k}
        for n, r, k in (
            ("board", r"/board\?page=\d+$", "list"),
            ("post", r"/post/\d+$", "detail"),
            ("cal", "/cal/", "list"),
            ("events", "/events/", "list"),
            ("event", "/event/", "detail"),
            ("ping", "/ping/", "list"),
            ("pong", "/pong/", "list"),
            ("rep", "/rep/", "list"),
            ("seg", "/seg/", "list"),
            ("long", "/long/", "list"),
        )
    ]
    text = spec_text(
        "traps",
        tmp_path,
        [
            f"{b}/board?page=1",
            f"{b}/cal/{ym}",
            f"{b}/events/{ym}",
            f"{b}/ping/1",
            f"{b}/rep/",
            f"{b}/seg/",
            f"{b}/long/0",
        ],
        rules,
        {"worker": {"concurrency": 32}, "politeness": {"concurrency_per_host": 32}},
    )
    spec, _ = run_crawl(text)
    rows = rows_of(spec)
    limits, defaults = spec.limits, LimitsSpec()
    for key in (
        "max_depth",
        "max_url_length",
        "max_path_segments",
        "max_repeated_segments",
        "calendar_years_ahead",
    ):
        assert getattr(limits, key) == getattr(defaults, key)  # the trap defaults, untouched

    def by(part: str) -> dict[str, Any]:
        return {u: r for u, r in rows.items() if part in u}

    board = {int(u.rsplit("=", 1)[1]): r for u, r in by("/board?page=").items()}
    assert all(board[n].status == "done" for n in range(1, BOARD_PAGES + 1))
    assert (
        all(outcome(r) == ("skipped", "robots") for r in by("/post/").values())
        and len(by("/post/")) == BOARD_PAGES
    )
    beyond = {n: r for n, r in board.items() if n > BOARD_PAGES}
    assert {outcome(r) for r in beyond.values()} == {("done", None), ("skipped", "empty_pages")}
    assert max(n for n, r in beyond.items() if r.status == "done") <= BOARD_PAGES + BOARD_WINDOW * (
        limits.max_depth + 2
    )
    cal = by("/cal/")
    # The seed is the calendar's first page seen (its print is new): its two neighbours keep depth
    # 0. From them on every empty month repeats the print and costs a hop: max_depth more each way.
    assert sum(r.status == "done" for r in cal.values()) == 2 * limits.max_depth + 3
    assert {outcome(r) for r in cal.values() if r.status != "done"} == {("skipped", "empty_pages")}
    last_year = time.gmtime().tm_year + (limits.calendar_years_ahead or 0)
    ev = by("/events/")
    assert all(
        int(u.rsplit("/", 1)[1][:4]) <= last_year for u, r in ev.items() if r.status == "done"
    )
    assert [outcome(r) for r in ev.values() if r.status != "done"] == [("skipped", "calendar")]
    hops = {**by("/ping/"), **by("/pong/")}
    assert [(r.depth, outcome(r)) for r in hops.values() if r.status != "done"] == [
        (11, ("skipped", "max_depth"))
    ]
    assert [outcome(r) for r in by("/rep/").values() if r.status != "done"] == [
        ("skipped", "repeated_segments")
    ]
    assert [outcome(r) for r in by("/seg/").values() if r.status != "done"] == [
        ("skipped", "too_many_segments")
    ]
    assert [outcome(r) for r in by("/long/").values() if r.status != "done"] == [
        ("skipped", "url_too_long")
    ]
    assert not [u for u, r in rows.items() if r.status not in ("done", "skipped")]
    assert site.hits("/post/") == []


def test_address_policy_in_a_crawl_skips_and_logs_once_per_host(
    site: HostileSite, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Names and literals that reach 127.0.0.2, ::1 or 169.254.169.254, directly or by redirect, end skipped address_policy, logged once per host."""
    p = site.port
    site.hubs["policy"] = [
        *(f"http://evil.test:{p}/ok/{i}" for i in range(3)),
        "http://meta.test/latest/meta-data/",
        f"http://mapped.test:{p}/ok/x",
        f"http://127.0.0.2:{p}/ok/lit",
        f"http://[::ffff:127.0.0.2]:{p}/ok/lit6",
        f"http://[::1]:{p}/ok/v6",
        "http://169.254.169.254/latest/meta-data/",
        f"http://mixed.test:{p}/ok/mixed",
        f"/redir/to?u=http://evil.test:{p}/ok/via-redirect",
        "/redir/to?u=http://169.254.169.254/computeMetadata/",
    ]
    hosts_table = {
        "evil.test": ["127.0.0.2"],
        "meta.test": ["169.254.169.254"],
        "mapped.test": ["::ffff:127.0.0.2"],
        "good.test": ["127.0.0.1"],
        "mixed.test": ["127.0.0.2", "127.0.0.1"],
    }
    text = spec_text(
        "policy",
        tmp_path,
        [f"http://good.test:{p}/hub/policy"],
        [
            {"name": "hub", "regex": "/hub/", "kind": "list"},
            {"name": "other", "glob": "*", "kind": "detail"},
        ],
        {
            "scope": {
                "allow_private": False,
                "allow_cidrs": ["127.0.0.1/32"],
                "allowed_hosts": ["*"],
            }
        },
    )
    with caplog.at_level(logging.INFO, logger="shoal"):
        spec, _ = run_crawl(text, hosts=hosts_table)
    got = {u: outcome(r) for u, r in rows_of(spec).items()}
    refused = {u for u, o in got.items() if o == ("skipped", "address_policy")}
    assert refused == {
        *(f"http://evil.test:{p}/ok/{i}" for i in range(3)),
        "http://meta.test/latest/meta-data/",
        f"http://mapped.test:{p}/ok/x",
        f"http://127.0.0.2:{p}/ok/lit",
        f"http://[::ffff:7f00:2]:{p}/ok/lit6",
        f"http://[::1]:{p}/ok/v6",
        "http://169.254.169.254/latest/meta-data/",
        f"http://evil.test:{p}/ok/via-redirect",
        "http://169.254.169.254/computeMetadata/",
    }
    assert {u for u, o in got.items() if o[0] != "skipped"} == {
        f"http://good.test:{p}/hub/policy",
        f"http://mixed.test:{p}/ok/mixed",
        f"http://good.test:{p}/redir/to?u=http://evil.test:{p}/ok/via-redirect",
        f"http://good.test:{p}/redir/to?u=http://169.254.169.254/computeMetadata/",
    }
    assert all(o == ("done", None) for u, o in got.items() if o[0] != "skipped")
    assert site.hits_on("127.0.0.2") == []
    lead = "not fetching from "
    notes = [
        r.getMessage()[len(lead) :].split(": ", 1)[0]
        for r in caplog.records
        if r.getMessage().startswith(lead)
    ]
    assert Counter(notes) == {
        h: 1
        for h in (
            f"evil.test:{p}",
            "meta.test",
            f"mapped.test:{p}",
            f"127.0.0.2:{p}",
            f"[::ffff:7f00:2]:{p}",
            f"[::1]:{p}",
            "169.254.169.254",
        )
    }


def test_robots_txt_edge_cases(site: HostileSite, tmp_path: Path) -> None:
    """404 allows; 503, a hang and a refused connection disallow for now and retry later; 5 redirects are followed, 6 are not; Crawl-delay is capped; a 600 KiB file is cut at 500 KiB."""
    p, rp = site.port, site.refused_port
    seeds = [
        f"http://r404.test:{p}/ok/a",
        f"http://r503.test:{p}/ok/b",
        f"http://rlater.test:{p}/ok/c",
        f"http://rhang.test:{p}/ok/d",
        f"http://unreach.test:{rp}/ok/e",
        f"http://rredir5.test:{p}/ok/private",
        f"http://rredir5.test:{p}/ok/f",
        f"http://rredir6.test:{p}/ok/private",
        *(f"http://rdelay.test:{p}/ok/g{i}" for i in range(3)),
        f"http://rbig.test:{p}/ok/before-mark",
        f"http://rbig.test:{p}/ok/after-mark",
    ]
    names = [
        "r404.test",
        "r503.test",
        "rlater.test",
        "rhang.test",
        "unreach.test",
        "rredir5.test",
        "rredir6.test",
        "rdelay.test",
        "rbig.test",
    ]
    text = spec_text(
        "robots",
        tmp_path,
        seeds,
        [{"name": "any", "glob": "*", "kind": "detail"}],
        {"scope": {"allowed_hosts": ["*"]}, "politeness": {"max_crawl_delay": 0.5}},
    )
    spec, _ = run_crawl(text, hosts={n: ["127.0.0.1"] for n in names})
    got = {
        u.split("//", 1)[1].replace(f":{p}", "").replace(f":{rp}", ""): outcome(r)
        for u, r in rows_of(spec).items()
    }
    assert got == {
        "r404.test/ok/a": ("done", None),
        "r503.test/ok/b": ("failed", "transient"),
        "rlater.test/ok/c": ("done", None),
        "rhang.test/ok/d": ("failed", "transient"),
        "unreach.test/ok/e": ("failed", "transient"),
        "rredir5.test/ok/private": ("skipped", "robots"),
        "rredir5.test/ok/f": ("done", None),
        "rredir6.test/ok/private": ("done", None),
        **{f"rdelay.test/ok/g{i}": ("done", None) for i in range(3)},
        "rbig.test/ok/before-mark": ("skipped", "robots"),
        "rbig.test/ok/after-mark": ("done", None),
    }
    # Disallowed for now means not fetched, and robots.txt asked again later.
    assert site.hits("/ok/", host="r503.test") == [] and site.hits("/ok/", host="rhang.test") == []
    assert (
        len(site.hits("/robots.txt", host="r503.test")) >= 2
        and len(site.hits("/robots.txt", host="rlater.test")) >= 2
    )
    detail = {
        r.url.split("//", 1)[1].split("/", 1)[0].split(":")[0]: r.error_detail
        for r in rows_of(spec).values()
    }
    assert detail["r503.test"].startswith("robots.txt unavailable (HTTP 503)")
    assert detail["rhang.test"].startswith("robots.txt unavailable (unreachable)")
    # Crawl-delay 100 is capped to the spec's 0.5 s, kept in the hosts table and obeyed.
    delays = {h.host.split(":")[0]: h.min_delay_ms for h in table(spec, hosts)}
    assert delays["rdelay.test"] == 500
    starts = [h.at for h in site.hits("/ok/g", host="rdelay.test")]
    assert len(starts) == 3 and min(b - a for a, b in itertools.pairwise(starts)) >= 0.45


def test_non_html_is_skipped_and_not_archived_when_the_spec_says_so(
    site: HostileSite, tmp_path: Path
) -> None:
    """With archive_non_html = false a PDF and an image end skipped content_type, unread and unarchived."""
    b = site.base_url
    text = spec_text(
        "types",
        tmp_path,
        [f"{b}/files/doc.pdf", f"{b}/files/pic.png", f"{b}/ok/page"],
        [
            {"name": "files", "regex": "/files/", "kind": "list"},
            {"name": "any", "glob": "*", "kind": "detail"},
        ],
        {"limits": {"archive_non_html": False}},
    )
    spec, _ = run_crawl(text)
    rows = rows_of(spec)
    assert {u: outcome(r) for u, r in rows.items()} == {
        f"{b}/files/doc.pdf": ("skipped", "content_type"),
        f"{b}/files/pic.png": ("skipped", "content_type"),
        f"{b}/ok/page": ("done", None),
    }
    assert (
        rows[f"{b}/files/doc.pdf"].warc_file is None
        and rows[f"{b}/files/doc.pdf"].content_type == "application/pdf"
    )


def _warc_text(folder: Path) -> bytes:
    out = b""
    for f in sorted(folder.glob("*.warc.gz")):
        out += gzip.decompress(f.read_bytes())
    return out


def test_secrets_never_leak_and_credentials_stay_on_their_host(
    site: HostileSite, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Credentials from a seed URL and from [scope] headers authenticate their own host only, and no password reaches the logs, `shoal status` or the WARC files."""
    p, q = site.port, site.alt_port
    seeds = [
        f"http://crawler:{PASSWORD}@127.0.0.1:{p}/auth/basic?alt={q}",
        f"http://crawler:{PASSWORD}@127.0.0.1:{p}/auth/basic/gone/missing",
        f"http://localhost:{p}/auth/header?alt={q}",
    ]
    text = spec_text(
        "secrets",
        tmp_path,
        seeds,
        [
            {"name": "auth", "regex": r"/auth/(basic|header)(\?|$)", "kind": "list"},
            {"name": "any", "glob": "*", "kind": "detail"},
        ],
        {
            "scope": {
                "allowed_hosts": ["127.0.0.1", "localhost"],
                "headers": {
                    f"localhost:{p}": {
                        "Authorization": f"Bearer {TOKEN}",
                        "Cookie": f"session={COOKIE}",
                    }
                },
            }
        },
    )
    (tmp_path / "spec.toml").write_text(text)
    with caplog.at_level(logging.DEBUG):
        spec, _ = run_crawl(text)
    rows = rows_of(spec)
    # Seeds are stored without their userinfo; the credential is sent to its own host only.
    assert not any(PASSWORD in u for u in rows)
    got = {u: outcome(r) for u, r in rows.items()}
    assert got == {
        f"http://127.0.0.1:{p}/auth/basic?alt={q}": ("done", None),
        f"http://127.0.0.1:{p}/auth/basic/gone/missing": ("failed", "permanent"),
        f"http://127.0.0.1:{p}/auth/basic/page2": ("done", None),
        f"http://127.0.0.1:{p}/auth/basic/missing": ("failed", "permanent"),
        f"http://127.0.0.1:{p}/auth/basic/hop?alt={q}": ("done", None),
        f"http://127.0.0.1:{q}/echo?from=basic": ("done", None),
        f"http://localhost:{p}/auth/header?alt={q}": ("done", None),
        f"http://localhost:{p}/auth/header/page2": ("done", None),
        f"http://localhost:{p}/auth/header/missing": ("failed", "permanent"),
        f"http://localhost:{p}/auth/header/hop?alt={q}": ("done", None),
        f"http://127.0.0.1:{q}/echo?from=header": ("done", None),
    }
    # The cross-site hop carried neither Authorization nor Cookie; the home host got them every time.
    echo = site.hits("/echo")
    assert len(echo) == 2 and not any(
        k.lower() in ("authorization", "cookie") for h in echo for k in h.headers
    )
    assert all(h.headers.get("Authorization") for h in site.hits("/auth/"))
    status = [
        subprocess.run(
            [sys.executable, "-m", "shoal", "status", str(tmp_path / "spec.toml"), *extra],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
        for extra in ((), ("--json",))
    ]
    assert all(s.returncode == 0 for s in status), status
    assert "gone/missing" in status[1].stdout  # the failed seed is listed, its password is not
    json.loads(status[1].stdout)
    warc = _warc_text(Path(spec.archive_dir()))
    assert b"Basic ***" in warc and b"Bearer ***" in warc
    for secret in SECRETS:
        assert secret not in caplog.text, secret
        assert all(secret not in s.stdout + s.stderr for s in status), secret
        assert secret.encode() not in warc, secret


def test_retry_after_slows_the_host_and_a_403_burst_pauses_it(
    site: HostileSite, tmp_path: Path
) -> None:
    """503 and 429 with Retry-After hold back every next request to the host; three 403s in a row pause the host as blocked and record an event."""
    b, q = site.base_url, site.alt_port
    seeds = [
        f"{b}/ra/503",
        *(f"{b}/ok/r{i}" for i in range(3)),
        f"http://localhost:{site.port}/ra/429",
        *(f"http://localhost:{site.port}/ok/l{i}" for i in range(2)),
        *(f"http://127.0.0.1:{q}/blocked/{i}" for i in range(6)),
    ]
    text = spec_text(
        "polite",
        tmp_path,
        seeds,
        [{"name": "any", "glob": "*", "kind": "detail"}],
        {
            "scope": {"allowed_hosts": ["127.0.0.1", "localhost"]},
            "politeness": {
                "concurrency_per_host": 1,
                "delay": 0.05,
                "block_threshold": 3,
                "block_pause": 1.5,
            },
            "limits": {"max_retries": 1, "retry_base": 0.05},
        },
    )
    spec, _ = run_crawl(text)
    rows = rows_of(spec)
    assert outcome(rows[f"{b}/ra/503"]) == ("done", None)
    assert outcome(rows[f"http://localhost:{site.port}/ra/429"]) == ("done", None)
    for host, path in (("127.0.0.1", "/ra/503"), ("localhost", "/ra/429")):
        on_host = [
            h
            for h in site.log
            if h.host == host and h.port == site.port and not h.path_qs.startswith("/robots")
        ]
        first = next(h.at for h in on_host if h.path_qs == path)
        later = [h.at - first for h in on_host if h.at > first]
        assert later and min(later) >= 1.9, (
            host,
            later,
        )  # the retry and every other URL of the host waited
    assert {outcome(r) for u, r in rows.items() if "/blocked/" in u} <= {
        ("failed", "permanent"),
        ("failed", "blocked"),
    }
    blocked = [e for e in table(spec, events) if e.kind == "blocked"]
    assert (
        blocked
        and {e.host for e in blocked} == {f"127.0.0.1:{q}"}
        and all(e.severity == "warning" for e in blocked)
    )
    assert {h.host: h.pause_reason for h in table(spec, hosts)}[f"127.0.0.1:{q}"] == "blocked"
    starts = [h.at for h in site.hits("/blocked/")]
    assert starts[3] - starts[2] >= 1.4  # nothing reached the host while it was paused
