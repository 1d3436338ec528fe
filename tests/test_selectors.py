"""Every selector of a spec is checked at validate by the engine that runs it; crawl and parse share one CSS dialect."""

from __future__ import annotations

import pytest
from parsel import Selector

from shoal.errors import SpecError
from shoal.spec import LimitsSpec, parse_spec
from shoal.urls import HostScope
from shoal.worker.links import LinkExtractor, Router

HEAD = """
[crawl]
name = "board"
seeds = ["https://board.example.com/list"]

[[rules]]
name = "first"
glob = "/first/*"
"""

BOARD = """<html><body><ul>
<li><a href="/read/1">첫 글</a></li><li><a href="/read/2">둘째 글</a></li></ul>
<div class="paging"><a href="/list?page=1">1</a><a href="/list?page=2">다음</a></div>
<img class="notice" src="/n.png"></body></html>"""


def _rule(body: str) -> str:
    return HEAD + '\n[[rules]]\nname = "board-list"\nglob = "/list*"\n' + body + "\n"


@pytest.mark.parametrize(
    ("body", "key", "selector"),
    [
        ('kind = "list"\nfollow = ["td.subject a", "a["]', "follow", "a["),
        ('kind = "list"\nfollow = ["a >> b"]', "follow", "a >> b"),
        ('kind = "list"\nfollow = ["a::text"]', "follow", "a::text"),
        ('kind = "list"\nfollow = ["a:lexbor-contains(x)"]', "follow", "a:lexbor-contains(x)"),
        ('images = "img[src"', "images", "img[src"),
        ('images = "img::attr(src)"', "images", "img::attr(src)"),
        ('render = "browser"\nwait_for = "div.comment["', "wait_for", "div.comment["),
        ('render = "browser"\nwait_for = ".x:contains(\'y\')"', "wait_for", ":contains"),
        ('render = "browser"\nclick = ["button.more", "button:::x"]', "click", "button:::x"),
        ('render = "browser"\nclick = [""]', "click", "empty CSS selector"),
    ],
)
def test_every_bad_selector_is_a_validate_error_naming_rule_and_selector(
    body: str, key: str, selector: str
) -> None:
    """A selector its engine cannot compile fails validation with `rules["name"].key` and the selector."""
    with pytest.raises(SpecError) as err:
        parse_spec(_rule(body), "board.toml")
    msg = str(err.value)
    assert f'rules["board-list"].{key}' in msg, msg
    assert selector in msg
    assert "rules.1" not in msg


@pytest.mark.parametrize(
    "body",
    [
        'wait_for = ".comment"',
        "scroll = 3",
        'click = ["button.more"]',
        "frames = true",
        "screenshot = true",
        "wait_timeout = 5",
    ],
)
def test_browser_only_keys_on_an_http_rule_are_refused(body: str) -> None:
    """wait_for, scroll, click, frames, screenshot and wait_timeout need render = "browser"."""
    with pytest.raises(SpecError) as err:
        parse_spec(_rule(body), "board.toml")
    msg = str(err.value)
    assert 'rules["board-list"]' in msg and "browser-only" in msg
    assert body.split(" ")[0] in msg
    ok = parse_spec(_rule(body + '\nrender = "browser"'))
    assert ok.rules[1].render == "browser"


def test_contains_selects_the_same_link_in_follow_and_in_a_field() -> None:
    """`a:contains('다음')` validates in `follow`, picks the next-page link there, and the same element in a field."""
    spec = parse_spec(
        _rule('kind = "list"\nfollow = ["a:contains(\'다음\')", "li a"]\nimages = "img.notice"')
    )
    rule = spec.rules[1]
    links = LinkExtractor(Router(spec.rules), HostScope(["board.example.com"]), LimitsSpec())
    hrefs, _ = links.hrefs(BOARD, rule.follow)
    assert hrefs == ["/list?page=2", "/read/1", "/read/2"]
    assert links.srcs(BOARD, "img.notice") == ["/n.png"]

    page = Selector(text=BOARD)
    assert page.css("a:contains('다음')").xpath("@href").getall() == ["/list?page=2"]


def test_good_selectors_of_every_kind_validate() -> None:
    """Ordinary selectors in every selector key pass (no false alarms)."""
    spec = parse_spec(
        _rule(
            'kind = "list"\nrender = "browser"\nfollow = ["td.subject > a", ".paging a:nth-child(2n+1)",'
            ' "div:has(> a.next) a", "a:is(.x, .y)"]\nimages = "img.notice, figure img"\n'
            'wait_for = "#comments li"\nclick = ["button.more[aria-expanded=false]"]\nscroll = 2'
        )
    )
    assert spec.rules[1].follow is not None and len(spec.rules[1].follow) == 4


def test_unnamed_rules_are_named_by_position_and_pattern() -> None:
    """An unnamed rule's error says which one by its 1-based position and its pattern."""
    text = HEAD + '\n[[rules]]\nglob = "/list*"\nkind = "list"\nfollow = ["a["]\n'
    with pytest.raises(SpecError) as err:
        parse_spec(text, "board.toml")
    assert "rules[#2 glob '/list*'].follow" in str(err.value)
