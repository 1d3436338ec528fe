"""More of the hostile web: address spellings, redirects and side doors to refused hosts, robots.txt abuse, protocol abuse.

Every case is a real crawl (SQLite in ``tmp_path``) or a real fetch against
:mod:`tests.sites.hostile` on 127.0.0.1. The crawls allow ``127.0.0.1/32``
only, so 127.0.0.2 (where the site also listens, as a canary) stays refused:
each address case asserts that the canary saw no request at all. No address
outside loopback is ever connected to; the IPv6 forms used here are refused
before any connection.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from shoal.archive import WarcRef, read_record
from shoal.errors import ErrorClass, FetchError, SpecError
from shoal.exchange import FetchRequest
from shoal.fetch.address import AddressPolicy
from shoal.fetch.http import StaticResolver
from shoal.frontier.tables import workers
from shoal.urls import canonicalize
from tests.sites.hostile import GZIP2_BOMB_BYTES, HostileSite, gzip2_bomb, run_crawl, spec_text
from tests.test_hostile import MIB, fetch, fetcher, outcome, rows_of, site, table

__all__ = ["site"]  # the fixture, re-exported for pytest

LOOPBACK_ONLY: dict[str, Any] = {
    "allow_private": False,
    "allow_cidrs": ["127.0.0.1/32"],
    "allowed_hosts": ["*"],
}
"""Scope of every crawl here: 127.0.0.1 reachable, 127.0.0.2 and every other address refused."""

HUB_RULES = [
    {"name": "hub", "regex": "/(hub|page)/", "kind": "list"},
    {"name": "other", "glob": "*", "kind": "detail"},
]


def crawl(
    site: HostileSite,
    tmp_path: Path,
    seeds: list[str],
    *,
    rules: list[dict[str, Any]] | None = None,
    sections: dict[str, dict[str, Any]] | None = None,
    hosts: dict[str, list[str]] | None = None,
) -> tuple[Any, Any, dict[str, tuple[str, str | None]]]:
    """One crawl of ``seeds`` under :data:`LOOPBACK_ONLY`; returns ``(spec, stats, outcome by URL)``."""
    merged: dict[str, dict[str, Any]] = {"scope": dict(LOOPBACK_ONLY)}
    for key, values in (sections or {}).items():
        merged.setdefault(key, {}).update(values)
    text = spec_text("more", tmp_path, seeds, rules or HUB_RULES, merged)
    spec, stats = run_crawl(text, hosts=hosts)
    return spec, stats, {u: outcome(r) for u, r in rows_of(spec).items()}


# -- address spellings -----------------------------------------------------------------------------

SPELLINGS = {
    "dec": "http://2130706434:{port}/ok/dec",
    "hex": "http://0x7f000002:{port}/ok/hex",
    "oct": "http://0177.0.0.2:{port}/ok/oct",
    "short": "http://127.2:{port}/ok/short",
    "dot": "http://127.0.0.2.:{port}/ok/dot",
    "wide": "http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff12:{port}/ok/wide",
    "pct": "http://%31%32%37.0.0.2:{port}/ok/pct",
    "userinfo": "http://127.0.0.1:{port}@127.0.0.2:{port}/ok/userinfo",
    "upper": "http://0X7F000002:{port}/ok/upper",
    "mixed": "http://0x7f.0.0x0.02:{port}/ok/mixed",
    "ideo": "http://127\u30020\u30020\u30022:{port}/ok/ideo",
    "pctdot": "http://127.0.0.2%2e:{port}/ok/pctdot",
    "tab": "http://127.0.0.\t2:{port}/ok/tab",
    "newline": "http://127.0\n.0.2:{port}/ok/newline",
}
"""Spellings of 127.0.0.2 that WHATWG parsing turns into ``127.0.0.2`` (path names the case)."""

IPV6_FORMS = {
    "http://0.0.0.0:{port}/ok/zero": "http://0.0.0.0:{port}/ok/zero",
    "http://[::127.0.0.2]:{port}/ok/compat": "http://[::7f00:2]:{port}/ok/compat",
    "http://[2002:7f00:2::]:{port}/ok/6to4": "http://[2002:7f00:2::]:{port}/ok/6to4",
    "http://[64:ff9b::127.0.0.2]:{port}/ok/nat64": "http://[64:ff9b::7f00:2]:{port}/ok/nat64",
    "http://[2002:7f00:1::]:{port}/ok/6to4-allowed": "http://[2002:7f00:1::]:{port}/ok/6to4-allowed",
    "http://[64:ff9b::7f00:1]:{port}/ok/nat64-allowed": "http://[64:ff9b::7f00:1]:{port}/ok/nat64-allowed",
}
"""Other refused forms as linked → as stored; the ``-allowed`` ones carry the allowed 127.0.0.1."""


def test_6to4_and_nat64_are_never_allowed_by_an_ipv4_network() -> None:
    """Allowing 127.0.0.1/32 allows ::ffff:127.0.0.1 (same socket) but not 2002:7f00:1:: or 64:ff9b::7f00:1 (other hosts); global 6to4 stays allowed."""
    policy = AddressPolicy(allow_cidrs=["127.0.0.1/32"])
    assert policy.allows("::ffff:127.0.0.1")
    assert not policy.allows("2002:7f00:1::") and not policy.allows("64:ff9b::7f00:1")
    assert policy.allows("2002:808:808::") and policy.allows("64:ff9b::808:808")
    assert not AddressPolicy().allows("2002:7f00:1::")


def test_every_spelling_of_a_refused_address_is_skipped_in_a_crawl(
    site: HostileSite, tmp_path: Path
) -> None:
    """Decimal, hex, octal, short, mixed, trailing-dot, full-width, ideographic-dot, percent-encoded, tab/newline, userinfo, 0.0.0.0, IPv4-compatible, 6to4 and NAT64 forms, linked or redirected to, end skipped address_policy with no request sent."""
    p = site.port
    linked = [u.format(port=p) for u in (*SPELLINGS.values(), *IPV6_FORMS)]
    redirected = [
        "http://0x7f000002:{port}/ok/via-hex",
        "http://2130706434:{port}/ok/via-dec",
        "http://127.0.0.1:{port}@127.0.0.2:{port}/ok/via-userinfo",
        "http://[::127.0.0.2]:{port}/ok/via-v6",
        "http://[2002:7f00:1::]:{port}/ok/via-6to4",
    ]
    site.hubs["forms"] = [
        *linked,
        *(f"/redir/to?u={u.format(port=p)}" for u in redirected),
        f"http://127.0.0.1:{p}\\@127.0.0.2:{p}/ok/backslash",
        f"/redir/to?u=http://127.0.0.256:{p}/ok/invalid",
    ]
    spec, _, got = crawl(site, tmp_path, [f"{site.base_url}/hub/forms"])
    refused = {u for u, o in got.items() if o == ("skipped", "address_policy")}
    assert refused == {
        *(f"http://127.0.0.2:{p}/ok/{n}" for n in SPELLINGS),
        *(u.format(port=p) for u in IPV6_FORMS.values()),
        *(f"http://127.0.0.2:{p}/ok/via-{n}" for n in ("hex", "dec", "userinfo")),
        f"http://[::7f00:2]:{p}/ok/via-v6",
        f"http://[2002:7f00:1::]:{p}/ok/via-6to4",
    }
    # A backslash is a slash to WHATWG: the link stays on 127.0.0.1 (a 404 there).
    assert got[f"http://127.0.0.1:{p}/@127.0.0.2:{p}/ok/backslash"] == ("failed", "permanent")
    invalid = f"{site.base_url}/redir/to?u=http://127.0.0.256:{p}/ok/invalid"
    assert got[invalid] == ("failed", "permanent")
    assert "uncrawlable URL" in rows_of(spec)[invalid].error_detail
    assert site.hits_on("127.0.0.2") == []
    assert [h.path_qs for h in site.hits("/ok/")] == []  # 0.0.0.0 would have reached 127.0.0.1
    assert [w.state for w in table(spec, workers)] == ["stopped"]


def test_a_seed_spelling_a_refused_address_is_skipped_and_an_invalid_one_is_a_spec_error(
    site: HostileSite, tmp_path: Path
) -> None:
    """Seeds in hex, decimal and short form are stored as 127.0.0.2 and skipped unsent; an unparsable seed stops the crawl with a SpecError naming it."""
    p = site.port
    seeds = [f"http://0x7f000002:{p}/ok/s1", f"http://2130706434:{p}/ok/s2", f"http://127.2:{p}/"]
    _, _, got = crawl(site, tmp_path, seeds)
    assert got == {
        f"http://127.0.0.2:{p}/ok/s1": ("skipped", "address_policy"),
        f"http://127.0.0.2:{p}/ok/s2": ("skipped", "address_policy"),
        f"http://127.0.0.2:{p}/": ("skipped", "address_policy"),
    }
    assert site.hits_on("127.0.0.2") == []
    with pytest.raises(SpecError, match=r"127\.0\.0\.256"):
        crawl(site, tmp_path / "bad", [f"http://127.0.0.256:{p}/"])


# -- redirects ------------------------------------------------------------------------------------

CODES = (301, 302, 303, 307, 308)
BAD_SCHEMES = {
    "gopher": "gopher://127.0.0.2:{port}/1",
    "data": "data:text/plain,http://127.0.0.2:{port}/ok/data",
    "javascript": "javascript:fetch('http://127.0.0.2:{port}/ok/js')",
    "ws": "ws://127.0.0.2:{port}/ok/ws",
}
"""Redirect targets that are not http(s) (each would reach 127.0.0.2 if followed)."""


def test_every_redirect_code_to_a_refused_address_or_scheme_fetches_nothing_there(
    site: HostileSite, tmp_path: Path
) -> None:
    """301, 302, 303, 307 and 308 to 127.0.0.2 (literal or by name) leave the target skipped address_policy; to gopher:, data:, javascript: or ws: the redirect fails permanent as uncrawlable."""
    p = site.port
    hub = []
    for code in CODES:
        hub.append(f"/redir/code/{code}?u=http://127.0.0.2:{p}/ok/lit{code}")
        hub.append(f"/redir/code/{code}?u=http://evil.test:{p}/ok/name{code}")
        hub += [f"/redir/code/{code}?u={u.format(port=p)}" for u in BAD_SCHEMES.values()]
    site.hubs["redirects"] = hub
    spec, _, got = crawl(
        site, tmp_path, [f"{site.base_url}/hub/redirects"], hosts={"evil.test": ["127.0.0.2"]}
    )
    rows = rows_of(spec)
    for code in CODES:
        for target in (f"http://127.0.0.2:{p}/ok/lit{code}", f"http://evil.test:{p}/ok/name{code}"):
            assert got[f"{site.base_url}/redir/code/{code}?u={target}"] == ("done", None), target
            assert got[target] == ("skipped", "address_policy"), target
            assert rows[target].redirects == 1
        for scheme, u in BAD_SCHEMES.items():
            # The hub's href is stored in its WHATWG form (quotes and spaces escaped).
            row = rows[canonicalize(f"{site.base_url}/redir/code/{code}?u={u.format(port=p)}").url]
            assert outcome(row) == ("failed", "permanent"), (code, scheme)
            assert (
                "uncrawlable URL" in row.error_detail and "only http and https" in row.error_detail
            )
    assert len(got) == 1 + len(hub) + 2 * len(CODES)  # the hub, each source, each http target
    assert len(site.hits("/redir/code/")) == len(hub)
    assert site.hits_on("127.0.0.2") == [] and site.hits("/ok/") == []


# -- side doors: <base>, <area>, refresh, Link, images --------------------------------------------


def test_base_area_refresh_and_link_headers_never_reach_a_refused_host(
    site: HostileSite, tmp_path: Path
) -> None:
    """A <base href> on 127.0.0.2 makes relative links refused; an <area> to it is refused; meta refresh, Refresh and Link headers to it are never fetched."""
    canary = "http://127.0.0.2:{port}"
    site.pages["base"] = (
        f'<html><head><base href="{canary}/ok/"></head><body><a href="base-rel">r</a>'
        '<a href="/ok/base-abs">a</a></body></html>',
        {},
    )
    site.pages["area"] = (
        f'<html><body><map name="m"><area href="{canary}/ok/area" shape="rect" coords="0,0,1,1">'
        '<area href="/ok/area-home"></map></body></html>',
        {},
    )
    site.pages["refresh"] = (
        f'<html><head><meta http-equiv="refresh" content="0; url={canary}/ok/meta"></head>'
        '<body><a href="/ok/refresh-home">home</a></body></html>',
        {
            "Refresh": f"0; url={canary}/ok/refresh-header",
            "Link": f'<{canary}/ok/link-header>; rel="preload", <{canary}/ok/link-next>; rel="next"',
        },
    )
    seeds = [f"{site.base_url}/page/{n}" for n in ("base", "area", "refresh")]
    _, _, got = crawl(site, tmp_path, seeds)
    p = site.port
    assert got == {
        **{s: ("done", None) for s in seeds},
        f"http://127.0.0.2:{p}/ok/base-rel": ("skipped", "address_policy"),
        f"http://127.0.0.2:{p}/ok/base-abs": ("skipped", "address_policy"),
        f"http://127.0.0.2:{p}/ok/area": ("skipped", "address_policy"),
        f"{site.base_url}/ok/area-home": ("done", None),
        f"{site.base_url}/ok/refresh-home": ("done", None),
    }
    assert site.hits_on("127.0.0.2") == []
    assert sorted(h.path_qs for h in site.hits("/ok/")) == ["/ok/area-home", "/ok/refresh-home"]


def test_images_on_refused_hosts_are_not_fetched(site: HostileSite, tmp_path: Path) -> None:
    """An images = rule asks for assets on 127.0.0.2 (literal, hex and by name) and on 127.0.0.1: only the allowed one is fetched."""
    site.pages["gallery"] = (
        '<html><body><img src="http://127.0.0.2:{port}/files/pic.png?lit">'
        '<img src="http://0x7f000002:{port}/files/pic.png?hex">'
        '<img src="http://evil.test:{port}/files/pic.png?name">'
        '<img src="/files/pic.png?home"></body></html>',
        {},
    )
    seed = f"{site.base_url}/page/gallery"
    rules = [{"name": "gallery", "regex": "/page/", "kind": "detail", "images": "img"}]
    spec, _, got = crawl(site, tmp_path, [seed], rules=rules, hosts={"evil.test": ["127.0.0.2"]})
    p = site.port
    assert got == {
        seed: ("done", None),
        f"http://127.0.0.2:{p}/files/pic.png?lit": ("skipped", "address_policy"),
        f"http://127.0.0.2:{p}/files/pic.png?hex": ("skipped", "address_policy"),
        f"http://evil.test:{p}/files/pic.png?name": ("skipped", "address_policy"),
        f"{site.base_url}/files/pic.png?home": ("done", None),
    }
    assert {r.kind for u, r in rows_of(spec).items() if u != seed} == {"asset"}
    assert site.hits_on("127.0.0.2") == []
    assert [h.path_qs for h in site.hits("/files/")] == ["/files/pic.png?home"]


# -- robots.txt abuse -----------------------------------------------------------------------------


def test_robots_txt_redirects_bombs_giant_files_and_groups_for_shoal_only(
    site: HostileSite, tmp_path: Path
) -> None:
    """robots.txt redirecting to 127.0.0.2 (literal or by name) is unreachable, never fetched there; a gzip bomb as robots.txt allows all; a 10 MB one is read to 500 KiB; a group for shoal alone is obeyed."""
    p = site.port
    names = ["rtobad.test", "rtoevil.test", "rbomb.test", "r10m.test", "ronly.test"]
    seeds = [
        f"http://rtobad.test:{p}/ok/a",
        f"http://rtoevil.test:{p}/ok/b",
        f"http://rbomb.test:{p}/ok/c",
        f"http://r10m.test:{p}/ok/before-mark",
        f"http://r10m.test:{p}/ok/after-mark",
        f"http://ronly.test:{p}/ok/x",
        f"http://ronly.test:{p}/echo",
    ]
    hosts = {n: ["127.0.0.1"] for n in names} | {"evil.test": ["127.0.0.2"]}
    spec, _, got = crawl(site, tmp_path, seeds, hosts=hosts)
    assert got == {
        f"http://rtobad.test:{p}/ok/a": ("failed", "transient"),
        f"http://rtoevil.test:{p}/ok/b": ("failed", "transient"),
        f"http://rbomb.test:{p}/ok/c": ("done", None),
        f"http://r10m.test:{p}/ok/before-mark": ("skipped", "robots"),
        f"http://r10m.test:{p}/ok/after-mark": ("done", None),
        f"http://ronly.test:{p}/ok/x": ("skipped", "robots"),
        f"http://ronly.test:{p}/echo": ("done", None),
    }
    rows = rows_of(spec)
    for seed in seeds[:2]:
        assert rows[seed].error_detail.startswith("robots.txt unavailable (unreachable)")
    assert site.hits_on("127.0.0.2") == []
    assert (
        site.hits("/ok/", host="rtobad.test") == [] and site.hits("/ok/", host="ronly.test") == []
    )
    assert len(site.hits("/robots.txt", host="r10m.test")) == 1


def test_a_gzip_bomb_as_robots_txt_is_decoded_to_500_kib_with_bounded_memory(
    site: HostileSite,
) -> None:
    """The robots.txt getter of a crawl decodes an 11.5 MB gzip bomb to at most 512 KiB, its memory bounded by the caps, and the rules allow everything."""
    from shoal.crawl import robots_getter
    from shoal.fetch.robots import Robots

    async def go() -> tuple[int, bytes, int]:
        f = fetcher(resolver=StaticResolver({"rbomb.test": ["127.0.0.1"]}))

        async def before(url: str) -> None:
            return None

        tracemalloc.start()
        try:
            status, body, _ = await robots_getter(f, 5.0, before)(
                f"http://rbomb.test:{site.port}/robots.txt"
            )
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            await f.close()
        return status, body, peak

    status, body, peak = asyncio.run(go())
    assert status == 200 and len(body) == 512 * 1024
    assert body.startswith(b"This is a compression bomb.\n")
    assert peak < 8 * MIB, f"peak {peak / MIB:.1f} MiB"
    robots = Robots.from_response(status, body, "shoal/1.0")
    assert robots.allowed(f"http://rbomb.test:{site.port}/anything")


# -- protocol abuse -------------------------------------------------------------------------------


def test_a_two_layer_gzip_bomb_stops_at_the_cap_with_bounded_memory(site: HostileSite) -> None:
    """64 MiB of zeros in gzip inside gzip (about 300 bytes sent) stops at the 1 MiB cap, truncated 'length', memory bounded."""
    raw = gzip2_bomb()
    assert len(raw) < 4096 and len(gzip.decompress(gzip.decompress(raw))) == GZIP2_BOMB_BYTES

    async def go() -> tuple[Any, int]:
        # Measured inside the loop: asyncio.run's teardown reprs the result (4 bytes per zero).
        f = fetcher()
        tracemalloc.start()
        try:
            got = await f.fetch(
                FetchRequest(f"{site.base_url}/z/bomb-gzip2", None, time.monotonic() + 5)
            )
            return got, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            await f.close()

    res, peak = asyncio.run(go())
    assert res.status == 200 and res.truncated == "length" and res.body == raw
    assert res.decoded is not None and len(res.decoded) == MIB and set(res.decoded) == {0}
    assert peak < 6 * MIB, f"peak {peak / MIB:.1f} MiB"


@pytest.mark.parametrize(
    ("path", "cap", "truncated", "body"),
    [
        ("/endless/plain", MIB, "length", MIB),
        ("/endless/gzip", MIB, "length", None),
        ("/endless/plain?pause=0.2", 64 * MIB, "time", None),
        ("/endless/gzip?pause=0.2", 64 * MIB, "time", None),
    ],
)
def test_endless_streams_are_cut_by_the_size_cap_or_the_deadline(
    site: HostileSite, path: str, cap: int, truncated: str, body: int | None
) -> None:
    """A body that never ends, plain or gzip, is cut at the cap (fast) or at the deadline (slow), keeping what arrived."""
    res = fetch(site.base_url + path, timeout=1.0, max_body_bytes=cap)
    assert not isinstance(res, FetchError), res
    assert res.status == 200 and res.truncated == truncated
    assert res.decoded is not None and 0 < len(res.decoded) <= cap
    assert res.decoded.startswith(b"<p>000")
    if truncated == "length":
        assert len(res.decoded) == cap
    if body is not None:
        assert len(res.body) == body


@pytest.mark.parametrize(
    ("path", "want", "detail"),
    [
        ("/cl-larger-hold", "time", None),
        ("/cl-overflow", ErrorClass.PERMANENT, "Content-Length"),
        ("/big-header", ErrorClass.PERMANENT, "8190 bytes"),
        ("/many-headers", ErrorClass.PERMANENT, "Too many headers"),
        ("/header-drip", ErrorClass.TRANSIENT, "deadline"),
    ],
)
def test_header_and_length_abuse_is_classified(
    site: HostileSite, path: str, want: ErrorClass | str, detail: str | None
) -> None:
    """A Content-Length past the body (then silence), an overflowing Content-Length, a 1 MiB header, 10,000 headers and a header drip each get their class; the fetcher still works after."""
    res = fetch(site.raw_url + path, timeout=1.0)
    if isinstance(want, ErrorClass):
        assert isinstance(res, FetchError) and res.error_class is want, res
        assert detail is not None and detail in str(res)
    else:
        assert not isinstance(res, FetchError), res
        assert res.status == 200 and res.truncated == want
        assert res.body == b"<html><body>thirty bytes only"
    assert fetch(f"{site.base_url}/ok/after").status == 200


PROTOCOL_EXPECTED: dict[str, tuple[tuple[str, str | None], str | None]] = {
    "{base}/z/bomb-gzip2": (("failed", "permanent"), "length"),
    "{base}/endless/plain": (("failed", "permanent"), "length"),
    "{base}/endless/gzip": (("failed", "permanent"), "length"),
    "{base}/endless/plain?pause=0.5": (("failed", "transient"), "time"),
    "{raw}/cl-larger-hold": (("failed", "transient"), "time"),
    "{raw}/cl-overflow": (("failed", "permanent"), None),
    "{raw}/big-header": (("failed", "permanent"), None),
    "{raw}/many-headers": (("failed", "permanent"), None),
    "{raw}/header-drip": (("failed", "transient"), None),
}
"""Each protocol case in a crawl: its outcome (README failure table) and its WARC-Truncated reason."""


def test_protocol_abuse_in_a_crawl_is_classified_archived_and_survived(
    site: HostileSite, tmp_path: Path
) -> None:
    """In one crawl every protocol case ends with its class, truncated bodies are archived with WARC-Truncated, and the worker stops cleanly."""
    site.hubs["protocol"] = list(PROTOCOL_EXPECTED)
    spec, stats, got = crawl(
        site,
        tmp_path,
        [f"{site.base_url}/hub/protocol"],
        sections={"scope": {"allowed_hosts": ["127.0.0.1"]}},
    )
    rows = rows_of(spec)
    assert got == {
        f"{site.base_url}/hub/protocol": ("done", None),
        **{site.fill(p): o for p, (o, _) in PROTOCOL_EXPECTED.items()},
    }
    for p, (_, reason) in PROTOCOL_EXPECTED.items():
        r = rows[site.fill(p)]
        if reason is None:
            assert r.warc_file is None, p
            continue
        rec = read_record(
            spec.archive_dir(), WarcRef(r.warc_file, r.warc_offset, r.warc_length, r.warc_record_id)
        )
        assert rec.truncated == reason, p
    # A 1 MiB header does not become a 1 MiB error message.
    assert "8190 bytes" in rows[site.fill("{raw}/big-header")].error_detail
    assert max(len(r.error_detail or "") for r in rows.values()) <= 1000
    assert [w.state for w in table(spec, workers)] == ["stopped"]
    assert stats.failed.get("unknown", 0) == 0
