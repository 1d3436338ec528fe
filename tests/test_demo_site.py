"""The bundled demo site serves every route as documented, on a real 127.0.0.1 socket."""

from __future__ import annotations

import asyncio
import http.client
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser

import shoal.demo.site as demo_site
from shoal.demo import (
    PLANTED_NUMBERS,
    PLANTED_PII,
    DemoServer,
    demo_spec_text,
    expected,
    spec_text,
    start_in_thread,
)
from shoal.demo.data import BLOG_POSTS, CP949_ONLY_POSTS, EUCKR_TITLES
from shoal.spec import Rule, parse_spec
from shoal.testing import wait_until

HREF = re.compile(r'href="([^"]*)"', re.IGNORECASE)


@pytest.fixture(scope="module")
def server() -> Iterator[DemoServer]:
    """One demo server shared by the read-only tests of this module."""
    s = start_in_thread()
    yield s
    s.stop()


@pytest.fixture
def fresh() -> Iterator[DemoServer]:
    """A demo server of its own, for tests that depend on its state or its log."""
    s = start_in_thread()
    yield s
    s.stop()


class Reply:
    """One HTTP answer, read whole."""

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        """The body as UTF-8."""
        return self.body.decode("utf-8")

    def links(self) -> list[str]:
        """Every href of the page, in order (the site writes them all in double quotes)."""
        return HREF.findall(self.body.decode("latin-1"))


def get(s: DemoServer, path: str, timeout: float = 5.0, ua: str = "shoal-test") -> Reply:
    """GET ``path`` without following redirects."""
    conn = http.client.HTTPConnection(s.host, s.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": ua})
        r = conn.getresponse()
        return Reply(r.status, r.headers, r.read())
    finally:
        conn.close()


def test_home_links_every_section_and_test_page(server: DemoServer) -> None:
    """The home page links to the blog, both boards and each misbehaving page."""
    r = get(server, "/")
    assert r.status == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    links = set(r.links())
    for path in (
        "/blog/",
        "/board/free/list?page=1",
        "/euckr/list?page=1",
        "/private/secret",
        "/slow",
        "/too-slow",
        "/error500",
        "/flaky",
        "/redirect/1",
        "/gone",
    ):
        assert path in links
    assert all(link.startswith("/") for link in links)


def test_robots_txt_disallows_private(server: DemoServer) -> None:
    """robots.txt disallows /private/ for every user agent."""
    r = get(server, "/robots.txt")
    assert r.status == 200
    assert r.text.splitlines() == ["User-agent: *", "Disallow: /private/"]


def test_private_page_exists(server: DemoServer) -> None:
    """The robots-disallowed page is a real page (only politeness keeps crawlers out)."""
    assert get(server, "/private/secret").status == 200


def test_blog_lists_paginate_four_posts_each(server: DemoServer) -> None:
    """The blog has three list pages of four posts each, newest first, with pagination and nav."""
    seen: list[str] = []
    for path in ("/blog/", "/blog/?page=2", "/blog/?page=3"):
        r = get(server, path)
        assert r.status == 200
        posts = re.findall(r'class="title" href="(/blog/posts/\d+)"', r.text)
        assert len(posts) == 4
        seen += posts
        assert {"/", "/blog/", "/board/free/list?page=1"} <= set(r.links())
        assert '<nav class="pagination">' in r.text
    assert seen == [f"/blog/posts/{n}" for n in range(12, 0, -1)]
    page2 = get(server, "/blog/?page=2").links()
    assert {"/blog/", "/blog/?page=3"} <= set(page2)
    assert "/blog/?page=1" not in get(server, "/blog/?page=3").links()
    assert get(server, "/blog/?page=4").status == 404
    assert get(server, "/blog/?page=x").status == 404


def test_blog_post_has_fields_and_back_link(server: DemoServer) -> None:
    """A post has a title, author, ISO date, content with Korean and English, tags and a link back."""
    r = get(server, "/blog/posts/6")
    assert r.status == 200
    t = r.text
    assert '<h1 class="title">집에서 만드는 김치찌개 레시피</h1>' in t
    assert '<span class="author">최유진</span>' in t
    assert '<time class="date" datetime="2026-01-13">' in t
    content = t.split('<div class="content">', 1)[1].split("</div>", 1)[0]
    assert content.count("<p>") >= 3
    assert re.search(r"[가-힣]", content) and re.search(r"\b[A-Z][a-z]+ ", content)
    assert '<li class="tag">#요리</li>' in t
    assert "/blog/?page=2" in r.links()


def test_post_7_links_to_a_missing_post(server: DemoServer) -> None:
    """Post 7 links to /blog/posts/999, which is a 404 HTML page."""
    assert "/blog/posts/999" in get(server, "/blog/posts/7").links()
    r = get(server, "/blog/posts/999")
    assert r.status == 404
    assert "404" in r.text and "/" in r.links()


def test_planted_pii_is_where_the_table_says(server: DemoServer) -> None:
    """Each planted personal datum appears in its post only, and the harmless numbers in theirs."""
    kinds = {k for found in PLANTED_PII.values() for k in found}
    assert kinds == {"email", "phone_mobile", "phone_landline", "phone_intl", "rrn", "card"}
    pages = {p.path: get(server, p.path).text for p in BLOG_POSTS}
    for path, page in pages.items():
        for value in {v for found in PLANTED_PII.values() for v in found.values()}:
            planted = value in PLANTED_PII.get(path, {}).values()
            assert (value in page) == planted, (path, value)
        for number in PLANTED_NUMBERS[path]:
            assert number in page, (path, number)
    assert "12,000원" in pages["/blog/posts/1"]


def test_board_lists_and_posts(server: DemoServer) -> None:
    """The UTF-8 board lists 10 posts per page in a table; each post has 0 to 3 comments."""
    numbers: list[int] = []
    for page in (1, 2, 3):
        r = get(server, f"/board/free/list?page={page}")
        assert r.status == 200
        rows = re.findall(r'<td class="no">(\d+)</td>', r.text)
        assert len(rows) == 10
        numbers += map(int, rows)
        assert '<td class="hit">' in r.text and '<td class="writer">' in r.text
    assert numbers == list(range(30, 0, -1))
    counts = set()
    for no in range(1, 31):
        r = get(server, f"/board/free/read?no={no}")
        assert r.status == 200
        comments = r.text.split('<ul class="comments">', 1)[1].split("</ul>", 1)[0]
        counts.add(comments.count('<li class="comment">'))
        assert '<dd class="hit">' in r.text
    assert counts == {0, 1, 2, 3}
    assert get(server, "/board/free/read?no=31").status == 404
    assert get(server, "/board/free/list?page=0").status == 404


def test_euckr_pages_are_euckr_without_charset_header(server: DemoServer) -> None:
    """The old board is served as EUC-KR (CP949) bytes with a bare text/html; only list pages declare it."""
    for path in ("/euckr/list?page=1", "/euckr/list?page=2"):
        r = get(server, path)
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/html"
        with pytest.raises(UnicodeDecodeError):
            r.body.decode("utf-8")
        text = r.body.decode("cp949")
        assert 'CONTENT="text/html; charset=euc-kr"' in text
        if "똠" in text:  # a page labelled euc-kr that only CP949 decodes, as in the wild
            with pytest.raises(UnicodeDecodeError):
                r.body.decode("euc_kr")
        assert len(re.findall(r'HREF="/euckr/read/\d+"', text)) == 8
    for no in range(1, 17):
        r = get(server, f"/euckr/read/{no}")
        assert r.headers["Content-Type"] == "text/html"
        assert b"charset" not in r.body.lower()
        text = r.body.decode("cp949")
        assert EUCKR_TITLES[no - 1] in text
        if no in CP949_ONLY_POSTS:
            with pytest.raises(UnicodeDecodeError):
                r.body.decode("euc_kr")
            assert "똠양꿍" in text
        else:
            assert r.body.decode("euc_kr") == text
    assert set(CP949_ONLY_POSTS) == {5}


def test_redirect_chain(server: DemoServer) -> None:
    """/redirect/1 answers 302, /redirect/2 301, /redirect/3 302, ending at /blog/posts/1."""
    hops = []
    path = "/redirect/1"
    while True:
        r = get(server, path)
        if r.status not in (301, 302):
            break
        hops.append((path, r.status))
        path = r.headers["Location"]
    assert hops == [("/redirect/1", 302), ("/redirect/2", 301), ("/redirect/3", 302)]
    assert path == "/blog/posts/1" and r.status == 200
    assert get(server, "/redirect/4").status == 404


def test_error_pages(server: DemoServer) -> None:
    """/error500 is always 500, /gone is 410, unknown paths are an HTML 404."""
    assert [get(server, "/error500").status for _ in range(3)] == [500, 500, 500]
    assert get(server, "/gone").status == 410
    r = get(server, "/no/such/page")
    assert r.status == 404
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"


def test_flaky_fails_once_per_app(fresh: DemoServer) -> None:
    """/flaky answers 503 with Retry-After: 1 the first time, 200 ever after; a new app starts over."""
    first = get(fresh, "/flaky")
    assert first.status == 503 and first.headers["Retry-After"] == "1"
    assert [get(fresh, "/flaky").status for _ in range(3)] == [200, 200, 200]
    with start_in_thread() as other:
        assert get(other, "/flaky").status == 503


class _HeldSleeps:
    """The demo site's ``asyncio`` whose ``sleep`` records its delay and waits for ``release`` first."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.to_thread(self.release.wait, 30)
        await asyncio.sleep(delay)


def test_slow_and_too_slow(fresh: DemoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """/slow answers after half a second; /too-slow outlasts a 1 s client timeout and stop() does not wait for it."""
    held = _HeldSleeps()
    answers: list[int] = []
    with monkeypatch.context() as m:
        m.setattr(demo_site, "asyncio", held)
        asking = threading.Thread(target=lambda: answers.append(get(fresh, "/slow", 30).status))
        asking.start()
        try:
            wait_until("the /slow handler to sleep", lambda: held.delays)
            # The handler sleeps half a second, and the client has no answer while it sleeps.
            assert held.delays == [0.5] and asking.is_alive() and answers == []
        finally:
            held.release.set()
            asking.join(30)
    assert answers == [200]
    with pytest.raises(TimeoutError):
        get(fresh, "/too-slow", timeout=1.0)
    outcome: list[object] = []

    def hang() -> None:
        try:
            outcome.append(get(fresh, "/too-slow", timeout=10.0).status)
        except (OSError, http.client.HTTPException) as exc:
            outcome.append(exc)

    pending = threading.Thread(target=hang)
    pending.start()
    time.sleep(0.2)
    fresh.stop()
    # /too-slow answers after 30 s: the client ending within the join, without a 200, shows stop()
    # cut the hanging request instead of waiting for it.
    pending.join(15)
    assert not pending.is_alive() and outcome and outcome[0] != 200


def test_log_records_every_request(fresh: DemoServer) -> None:
    """The log holds (monotonic time, method, path with query, user agent) of each request, in order."""
    before = time.monotonic()
    get(fresh, "/board/free/list?page=2", ua="agent-a")
    get(fresh, "/nope", ua="agent-b")
    get(fresh, "/board/free/list?page=2", ua="agent-a")
    log = fresh.log.snapshot()
    assert [(h.method, h.path_qs, h.user_agent) for h in log] == [
        ("GET", "/board/free/list?page=2", "agent-a"),
        ("GET", "/nope", "agent-b"),
        ("GET", "/board/free/list?page=2", "agent-a"),
    ]
    assert before <= log[0].time <= log[1].time <= log[2].time <= time.monotonic()
    assert fresh.log.hits("/board/free/list?page=2") == 2
    assert tuple(log[0]) == (log[0].time, "GET", "/board/free/list?page=2", "agent-a")


def test_expected_counts(server: DemoServer) -> None:
    """A correct demo crawl ends with 73 URLs done (the notice image included), 4 failed and 1 skipped by robots."""
    e = expected(server.base_url)
    b = server.base_url
    assert len(e["done"]) == 73
    assert e["failed"] == {
        f"{b}/gone": "permanent",
        f"{b}/notice/2019": "permanent",
        f"{b}/error500": "transient",
        f"{b}/too-slow": "transient",
    }
    assert e["skipped"] == {f"{b}/private/secret": "robots"}
    assert {f"{b}/", f"{b}/blog/", f"{b}/flaky", f"{b}/redirect/2", f"{b}/euckr/read/5"} <= e[
        "done"
    ]
    assert f"{b}/robots.txt" not in e["done"]
    everything = expected(b, detail_links=True)
    assert everything["failed"] == {**e["failed"], f"{b}/blog/posts/999": "permanent"}
    assert everything["done"] == e["done"]


def _classify(s: DemoServer, path: str) -> tuple[str, str, Reply | None]:
    """Fetch like a correct crawler would (one retry after a 503, 1 s deadline): (status, class, reply)."""
    for attempt in range(2):
        try:
            r = get(s, path, timeout=1.0)
        except TimeoutError:
            return "failed", "transient", None
        if r.status == 503 and attempt == 0:
            time.sleep(float(r.headers.get("Retry-After", "0")))
            continue
        if r.status >= 500:
            return "failed", "transient", r
        if r.status >= 400:
            return "failed", "permanent", r
        return "done", "", r
    raise AssertionError("unreachable")


def _walk(s: DemoServer, rules: list[Rule] | None) -> dict[str, object]:
    """Crawl the live site breadth first: with ``rules``, links of list pages only, through ``follow``."""
    base = s.base_url + "/"
    done: set[str] = set()
    failed: dict[str, str] = {}
    skipped: dict[str, str] = {}
    queue = deque(["/"])
    seen = {"/"}
    while queue:
        path = queue.popleft()
        url = urljoin(base, path)
        if path.startswith("/private/"):
            skipped[url] = "robots"
            continue
        status, cls, r = _classify(s, path)
        if status == "failed":
            failed[url] = cls
            continue
        done.add(url)
        assert r is not None
        if r.status in (301, 302):
            targets = [r.headers["Location"]]
        elif rules is None:
            targets = r.links()
            if r.headers.get("Content-Type", "").startswith("text/html"):
                tree = HTMLParser(r.body.decode("latin-1"))
                targets += [
                    str(i.attributes.get("src"))
                    for i in tree.css("img.notice")
                    if i.attributes.get("src")
                ]
        else:
            rule = _first_rule(rules, url)
            assert rule is not None, url
            targets = []
            if rule.kind == "list":
                tree = HTMLParser(r.body.decode("latin-1"))
                for sel in rule.follow or ["a"]:
                    targets += [
                        str(a.attributes.get("href"))
                        for a in tree.css(sel)
                        if a.attributes.get("href")
                    ]
            elif rule.images and r.headers.get("Content-Type", "").startswith("text/html"):
                tree = HTMLParser(r.body.decode("latin-1"))
                targets += [
                    str(i.attributes.get("src"))
                    for i in tree.css(rule.images)
                    if i.attributes.get("src")
                ]
        for href in targets:
            parts = urlsplit(urljoin(url, href))
            nxt = parts.path + ("?" + parts.query if parts.query else "")
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return {"done": done, "failed": failed, "skipped": skipped}


def test_expected_matches_a_walk_with_the_demo_rules(fresh: DemoServer) -> None:
    """Walking the live site as demo.toml says (list pages, follow selectors, robots) meets exactly expected()."""
    rules = list(parse_spec(spec_text(fresh.base_url)).rules)
    assert _walk(fresh, rules) == expected(fresh.base_url)


def test_expected_matches_a_walk_of_every_link(fresh: DemoServer) -> None:
    """Following every link of every page meets exactly expected(detail_links=True)."""
    assert _walk(fresh, None) == expected(fresh.base_url, detail_links=True)


def _first_rule(rules: list[Rule], url: str) -> Rule | None:
    """The first rule matching ``url`` as spec.py documents it (a '/' glob matches path and query)."""
    parts = urlsplit(url)
    path_qs = parts.path + ("?" + parts.query if parts.query else "")
    for rule in rules:
        if rule.glob is not None:
            subject = path_qs if rule.glob.startswith("/") else url
            if rule.compiled().match(subject):
                return rule
        elif rule.compiled().search(url):
            return rule
    return None


def test_demo_spec_is_valid_and_covers_every_url() -> None:
    """demo.toml validates once {base_url} is filled in, and its rules give each page its kind."""
    base = "http://127.0.0.1:8123"
    spec = parse_spec(spec_text(base), "demo.toml")
    assert spec.crawl.seeds == [f"{base}/"]
    assert spec.scope.allow_private and spec.politeness.robots
    assert spec.limits.fetch_timeout == 2 and spec.limits.max_retries == 2
    rules = list(spec.rules)
    kinds = {
        "/": ("home", "list"),
        "/blog/": ("blog-list", "list"),
        "/blog/?page=3": ("blog-list", "list"),
        "/blog/posts/12": ("blog-post", "detail"),
        "/board/free/list?page=2": ("board-list", "list"),
        "/board/free/read?no=30": ("board-post", "detail"),
        "/euckr/list?page=2": ("euckr-list", "list"),
        "/euckr/read/16": ("euckr-post", "detail"),
        "/too-slow": ("other", "detail"),
        "/redirect/2": ("other", "detail"),
    }
    for path, want in kinds.items():
        rule = _first_rule(rules, base + path)
        assert rule is not None and (rule.name, rule.kind) == want, path
    e = expected(base)
    for url in [*e["done"], *e["failed"], *e["skipped"]]:
        assert _first_rule(rules, url) is not None, url


def test_demo_spec_text_places_the_data_folder(tmp_path: Path) -> None:
    """demo_spec_text puts the frontier and the WARC files under the given folder."""
    spec = parse_spec(demo_spec_text("http://127.0.0.1:9/", tmp_path / "demo data"))
    assert spec.crawl.seeds == ["http://127.0.0.1:9/"]
    assert spec.frontier_url() == f"sqlite:///{tmp_path}/demo data/frontier.sqlite"
    assert spec.archive_dir() == f"{tmp_path}/demo data/warc"
    assert parse_spec(spec_text("http://127.0.0.1:9")).archive_dir() == "shoal-data/demo/warc"
