"""URL parsing, canonical form and host scope: WHATWG web-platform-tests vectors and unit cases."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shoal.errors import URLError
from shoal.urls import HostScope, canonicalize, host_key, host_of, key64, resolve, url_key
from tests.vectors import TESTDATA

URLTESTDATA = TESTDATA / "whatwg-url" / "urltestdata.json"

URL_FLOOR = 891
"""urltestdata.json objects passed by resolve(): all 891 (267 of them must fail)."""

COMPONENTS = (
    "href",
    "protocol",
    "username",
    "password",
    "host",
    "hostname",
    "port",
    "pathname",
    "search",
    "hash",
)


def _url_cases() -> list[dict[str, Any]]:
    """The test objects of urltestdata.json (strings in it are section comments)."""
    return [c for c in json.loads(URLTESTDATA.read_text("utf-8")) if isinstance(c, dict)]


def _check(case: dict[str, Any]) -> str | None:
    """None when resolve() behaves as the case says, else what went wrong."""
    try:
        url = resolve(case["input"], case.get("base"))
    except URLError:
        return None if case.get("failure") else "raised URLError"
    if case.get("failure"):
        return f"parsed as {url.href!r} but must fail"
    for name in COMPONENTS:
        if getattr(url, name) != case[name]:
            return f"{name} {getattr(url, name)!r} != {case[name]!r}"
    if "origin" in case and url.origin != case["origin"]:
        return f"origin {url.origin!r} != {case['origin']!r}"
    return None


def test_whatwg_url_vectors() -> None:
    """resolve() raises URLError on every failure case and gives href and every component otherwise."""
    cases = _url_cases()
    assert len(cases) == 891
    assert sum(1 for c in cases if c.get("failure")) == 267
    failures = []
    for case in cases:
        problem = _check(case)
        if problem is not None:
            failures.append(f"{case['input']!r} on {case.get('base')!r}: {problem}")
    passed = len(cases) - len(failures)
    print(f"WHATWG URL: {passed}/{len(cases)} passed")
    assert passed >= URL_FLOOR, "\n".join(failures[:50])


def test_resolve_rejects_invalid_input_with_urlerror() -> None:
    """An unparsable href, or a relative one without a base, raises URLError (a ValueError)."""
    with pytest.raises(URLError):
        resolve("http://exa mple.com/")
    with pytest.raises(URLError):
        resolve("/relative/only")
    with pytest.raises(ValueError):
        resolve("x", "not a base")


def test_canonical_form_drops_fragment_and_default_port_and_lowers_host() -> None:
    """The fragment (even an empty one) and the scheme's default port go; scheme and host become lower case."""
    assert canonicalize("HTTP://Example.COM:80/Path?q=1#frag").url == "http://example.com/Path?q=1"
    assert canonicalize("https://example.com:443/a").url == "https://example.com/a"
    assert canonicalize("https://example.com:8443/a").url == "https://example.com:8443/a"
    assert canonicalize("http://example.com/page#").url == "http://example.com/page"
    assert canonicalize("http://example.com/page?#top").url == "http://example.com/page?"
    assert canonicalize("http://example.com").url == "http://example.com/"


def test_canonical_form_resolves_relative_references() -> None:
    """Relative hrefs resolve against the base like a browser: dot segments, query-only, scheme-relative."""
    base = "https://blog.example.com/board/list?page=2"
    assert canonicalize("view?id=7", base).url == "https://blog.example.com/board/view?id=7"
    assert canonicalize("../img/a.png", base).url == "https://blog.example.com/img/a.png"
    assert canonicalize("?page=3", base).url == "https://blog.example.com/board/list?page=3"
    assert canonicalize("//cdn.example.com/x", base).url == "https://cdn.example.com/x"
    assert canonicalize("  /trimmed  ", base).url == "https://blog.example.com/trimmed"
    assert canonicalize("#comments", base).url == "https://blog.example.com/board/list?page=2"


def test_canonical_form_percent_encodes_korean() -> None:
    """Korean paths and queries are UTF-8 percent-encoded and Korean hosts become punycode."""
    c = canonicalize("/게시판/글?q=한글", "https://한국.kr/a/")
    assert (
        c.url
        == "https://xn--3e0b707e.kr/%EA%B2%8C%EC%8B%9C%ED%8C%90/%EA%B8%80?q=%ED%95%9C%EA%B8%80"
    )
    assert c.host == "xn--3e0b707e.kr"
    assert canonicalize(c.url).url == c.url


def test_tracking_parameters_are_stripped_only_when_asked() -> None:
    """utm_* (and other listed names) leave the query when a strip pattern is given; others stay in order."""
    url = "https://shop.example.com/item?utm_source=mail&id=3&utm_campaign=x&fbclid=abc&ref=top"
    assert canonicalize(url).url == url
    strip = HostScope(["*"], ["utm_*", "fbclid"]).strip
    assert canonicalize(url, strip=strip).url == "https://shop.example.com/item?id=3&ref=top"
    assert canonicalize("https://a.com/p?utm_medium=x", strip=strip).url == "https://a.com/p"
    assert canonicalize("https://a.com/p?utm=1", strip=strip).url == "https://a.com/p?utm=1"
    assert HostScope(["*"]).strip is None


@pytest.mark.parametrize(
    "href",
    [
        "ftp://example.com/file",
        "mailto:someone@example.com",
        "javascript:alert(1)",
        "data:text/html,hi",
        "file:///etc/passwd",
    ],
)
def test_non_http_schemes_are_refused(href: str) -> None:
    """Only http and https URLs are crawled; anything else raises URLError."""
    with pytest.raises(URLError):
        canonicalize(href)


def test_canonical_keys_are_stable_signed_64_bit() -> None:
    """Equal canonical URLs share a key; keys fit a signed BIGINT and do not depend on the process."""
    a = canonicalize("http://EXAMPLE.com:80/x#y")
    b = canonicalize("http://example.com/x")
    assert a == b
    assert a.url_key == url_key(a.url) == key64("http://example.com/x")
    assert a.host_key == host_key("EXAMPLE.com")
    assert -(2**63) <= a.url_key < 2**63
    assert key64("http://example.com/x") == key64("http://example.com/x")
    assert key64("a") != key64("b")
    assert host_of("https://Example.com:8080/p") == "example.com:8080"


def test_host_scope_exact_suffix_and_any() -> None:
    """Exact names match on any port; '*.suffix' matches subdomains and the apex; '*' matches all."""
    scope = HostScope(["Blog.Example.com", "*.naver.com", "shop.test:8080"])
    assert scope.allows("blog.example.com")
    assert scope.allows("blog.example.com:8443")
    assert not scope.allows("example.com")
    assert not scope.allows("evilblog.example.com")
    assert scope.allows("naver.com") and scope.allows("m.blog.naver.com")
    assert not scope.allows("notnaver.com")
    assert scope.allows("shop.test:8080")
    assert not scope.allows("shop.test")
    assert not scope.allows("shop.test:9090")
    assert HostScope(["*"]).allows("anything.example")
    assert not HostScope([]).allows("example.com")


def test_host_scope_matches_canonical_hosts() -> None:
    """Entries are normalised like URL hosts: IDN names match punycode, IPv6 literals match with a port."""
    scope = HostScope(["한국.kr", "*.예시.com", "[::1]"])
    assert scope.allows(canonicalize("https://한국.kr/").host)
    assert scope.allows(canonicalize("https://blog.예시.com/").host)
    assert scope.allows(canonicalize("http://[::1]:8080/").host)
    assert not scope.allows("xn--other.kr")


def test_host_scope_caches_decisions() -> None:
    """A repeated host is answered from the cache with the same decision."""
    scope = HostScope(["a.example"])
    assert scope.allows("a.example") and scope.allows("a.example")
    assert not scope.allows("b.example") and not scope.allows("b.example")
    assert scope._cache == {"a.example": True, "b.example": False}


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("http://Example.COM:80/a b?x=1 2#f", "http://example.com/a%20b?x=1%202"),
        ("https://h:443", "https://h/"),
        ("http://h/%7Efoo/é?q=é", "http://h/%7Efoo/%C3%A9?q=%C3%A9"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://한국.kr/", "http://xn--3e0b707e.kr/"),
        ("http://h/a/../b?utm_source=x", "http://h/b?utm_source=x"),
        ("http://u:p@h/x", "http://h/x"),
        ("data:text/plain,x", "data:text/plain,x"),
    ],
)
def test_normalize_url_is_canonicalize_with_the_query_kept(url: str, want: str) -> None:
    """normalize_url is the canonical form (no parameter stripped); other schemes come back as given."""
    from shoal.urls import normalize_url

    assert normalize_url(url) == want
