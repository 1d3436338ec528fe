"""The parse stage: archive → tables, with OCR, redaction, dedup, the quality report and every output.

Unit tests run on constructed HTML; the end-to-end tests parse real WARC files
of real crawls: the demo site (crawled once per session) and a small site
whose layout changes half-way (tests/sites/parse.py).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from shoal.demo import data as site
from shoal.demo import pages
from shoal.demo.images import NOTICE_LINES, notice_png
from shoal.errors import SpecError
from shoal.parse import (
    QUALITY_EXIT_CODE,
    OcrUnavailable,
    ParseError,
    ParseResult,
    TableExtractor,
    TableSpec,
    parse_config,
    parse_table,
    read_table,
    redact_text,
    run_parse,
    show_report,
)
from shoal.parse.measure import field_quality
from shoal.parse.pii import Redactor, luhn_ok
from shoal.parse.quality import QualityReport, load_report
from shoal.parse.values import cast_value, element_text
from shoal.spec import parse_spec
from tests.conftest import missing
from tests.parse_helpers import (
    clone,
    copy_frontier,
    crawl,
    demo_parse_section,
    demo_spec,
    page_of,
)

PLACEHOLDER = {
    "email": "[EMAIL]", "phone_mobile": "[PHONE]", "phone_landline": "[PHONE]", "phone_intl": "[PHONE]",
    "rrn": "[RRN]", "card": "[CARD]",
}  # fmt: skip


def need_tesseract() -> None:
    """Fail under CI, skip elsewhere, when Tesseract or its Korean data is missing."""
    from shoal.parse.ocr import check_tesseract

    try:
        check_tesseract("kor+eng")
    except OcrUnavailable as exc:
        missing("Tesseract with kor+eng", str(exc))


def table(**kw: Any) -> TableSpec:
    """A TableSpec from keyword arguments (``from_`` for ``from``), no built-in columns by default."""
    data = {"from": kw.pop("from_", "post"), "builtins": kw.pop("builtins", []), **kw}
    return TableSpec.model_validate(data)


def spec_with(parse: str) -> Any:
    """A minimal crawl spec with one rule named ``post`` and the given ``[parse]`` TOML."""
    return parse_spec(f"""
[crawl]
name = "t"
seeds = ["http://example.test/"]
[[rules]]
name = "post"
glob = "*"
{parse}
""")


# --------------------------------------------------------------------------- redaction


def test_every_planted_personal_datum_of_the_demo_is_redacted() -> None:
    """Each e-mail, phone, RRN and card number planted in the demo blog becomes its typed placeholder."""
    for path, planted in site.PLANTED_PII.items():
        post = next(p for p in site.BLOG_POSTS if p.path == path)
        counts: Counter[str] = Counter()
        out = redact_text(post.pii_sentence, counts=counts)
        for kind, value in planted.items():
            assert value not in out, (path, kind)
            assert PLACEHOLDER[kind] in out, (path, kind, out)
        want = Counter(PLACEHOLDER[k].strip("[]").lower() for k in planted)
        assert counts == want, (path, counts)


def test_ordinary_numbers_of_the_demo_are_not_redacted() -> None:
    """Prices, dates, times, versions, distances and post ids in every demo post stay as they are."""
    for post in site.BLOG_POSTS:
        for text in (post.lead_ko, post.lead_en):
            assert redact_text(text, ["email", "phone", "rrn", "card", "ip"]) == text, post.no
        for number in site.PLANTED_NUMBERS[post.path]:
            assert (
                redact_text(f"값은 {number} 입니다", ["email", "phone", "rrn", "card"])
                == f"값은 {number} 입니다"
            )


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("문의 010-1234-5678 으로", "문의 [PHONE] 으로"),
        ("문의 01012345678", "문의 [PHONE]"),
        ("문의 010.1234.5678", "문의 [PHONE]"),
        ("011-123-4567", "[PHONE]"),
        ("서울 02-312-4567", "서울 [PHONE]"),
        ("경기 (031) 123-4567", "경기 [PHONE]"),
        ("인터넷전화 070-1234-5678", "인터넷전화 [PHONE]"),
        ("Call +1 (555) 123-4567 now", "Call [PHONE] now"),
        ("+44 20 7946 0958", "[PHONE]"),
        ("+82-10-9876-5432", "[PHONE]"),
        ("번호는010-1234-5678입니다", "번호는[PHONE]입니다"),
        ("mail a.b-c+tag@mail.example.co.kr!", "mail [EMAIL]!"),
        ("주민번호 850230-2345678", "주민번호 850230-2345678"),  # Feb 30 is no date
        ("주민번호 850228-2345678", "주민번호 [RRN]"),
        ("외국인 010101 - 5234567", "외국인 [RRN]"),
        ("5555-5555-5555-4444", "[CARD]"),
        ("Amex 3782 822463 10005", "Amex [CARD]"),
        ("card 4111111111111111.", "card [CARD]."),
        ("not a card 4111 1111 1111 1112", "not a card 4111 1111 1111 1112"),
        ("2026-01-05", "2026-01-05"),
        ("2026.01.05 12:30", "2026.01.05 12:30"),
        ("12,000원 1,250,000원 $129.99", "12,000원 1,250,000원 $129.99"),
        ("글번호 12345 조회 678", "글번호 12345 조회 678"),
        ("주문번호 20260105-000123", "주문번호 20260105-000123"),
        ("ISBN 978-89-6626-123-4", "ISBN 978-89-6626-123-4"),
        ("version 3.11.2", "version 3.11.2"),
    ],
)
def test_redaction_patterns(text: str, want: str) -> None:
    """Korean and international phone formats, e-mails, RRNs and Luhn-valid cards go; ordinary numbers stay."""
    assert redact_text(text) == want


def test_ip_addresses_are_in_every_kind_that_redact_true_means() -> None:
    """``redact = true`` means every kind, IPv4 addresses included; a list without ``ip`` keeps them."""
    assert redact_text("from 192.168.0.12 at 12:00") == "from [IP] at 12:00"
    assert redact_text("from 192.168.0.12 at 12:00", ["email"]) == "from 192.168.0.12 at 12:00"
    table = TableSpec.model_validate({"from": "detail", "redact": True})
    assert set(table.redact) == {"email", "rrn", "card", "phone", "ip"}


def test_luhn_check() -> None:
    """The Luhn check accepts test card numbers and rejects a changed digit."""
    assert luhn_ok("4111111111111111")
    assert luhn_ok("378282246310005")
    assert not luhn_ok("4111111111111112")


def test_redactor_counts_per_column_and_skips_url_columns() -> None:
    """A Redactor redacts strings and lists of strings, counts per column and kind, and leaves skipped columns."""
    r = Redactor(("email", "phone"), skip=frozenset({"url"}))
    row = {
        "url": "http://x/?mail=a@b.example",
        "body": "a@b.example 010-1234-5678",
        "tags": ["x@y.example"],
        "n": 5,
    }
    r.row(row)
    assert row == {
        "url": "http://x/?mail=a@b.example",
        "body": "[EMAIL] [PHONE]",
        "tags": ["[EMAIL]"],
        "n": 5,
    }
    assert r.summary() == {"body": {"email": 1, "phone": 1}, "tags": {"email": 1}}


# --------------------------------------------------------------------------- the [parse] section


def test_spec_errors_name_the_key_path_and_value() -> None:
    """A bad selector, regex, type option or key is reported as parse.tables.T.fields.F.key with its value."""
    spec = spec_with("""
[parse.tables.posts]
from = "post"
fields.title = { css = "h1..x" }
fields.n = { xpath = "//a[", type = "int" }
fields.r = { css = "a", regex = "(" }
fields.d = { css = "a", date_format = "%Y" }
fields.x = { css = "a", colour = "red" }
""")
    with pytest.raises(SpecError) as info:
        parse_config(spec)
    msg = str(info.value)
    assert (
        "parse.tables.posts.fields.title.css: not a valid CSS selector" in msg
        and "(got 'h1..x')" in msg
    )
    assert (
        "parse.tables.posts.fields.n.xpath: not a valid XPath expression" in msg
        and "(got '//a[')" in msg
    )
    assert "parse.tables.posts.fields.r.regex: regex does not compile" in msg
    assert (
        "parse.tables.posts.fields.d: date_format is only used with type = 'date' or 'datetime'"
        in msg
    )
    assert "parse.tables.posts.fields.x.colour: unknown key" in msg


def test_spec_rejects_unknown_sources_functions_and_kinds() -> None:
    """``from`` must name a rule or a page kind, functions must import, redaction kinds must be known."""
    spec = spec_with("""
[parse.tables.posts]
from = ["post", "nope"]
function = "tests.parse_funcs:no_such_function"
fields.t = "h1"
""")
    with pytest.raises(SpecError) as info:
        parse_config(spec)
    msg = str(info.value)
    assert (
        "parse.tables.posts.from.1: not a rule name nor a page kind" in msg
        and "(got 'nope')" in msg
    )
    assert (
        "parse.tables.posts.function: module 'tests.parse_funcs' has no 'no_such_function'" in msg
    )
    with pytest.raises(SpecError, match=r"parse\.tables\.posts\.redact\.0: .*\(got 'passport'\)"):
        parse_config(
            spec_with('[parse.tables.posts]\nfrom = "post"\nredact = ["passport"]\nfields.t = "h1"')
        )
    with pytest.raises(
        SpecError, match=r"parse\.tables\.posts: .*fields \['title'\] have the names of built-in"
    ):
        parse_config(spec_with('[parse.tables.posts]\nfrom = "post"\nfields.title = "h1"'))


def test_spec_shorthands() -> None:
    """A field given as a string is a CSS selector; ``redact = true`` and ``from`` as a string expand."""
    ps = parse_config(
        spec_with(
            '[parse.tables.posts]\nfrom = "detail"\nredact = true\ndedup = "content"\nfields.t = "h1"'
        )
    )
    t = ps.tables["posts"]
    assert t.fields["t"].css == "h1" and t.from_ == ["detail"]
    assert t.redact == ["email", "rrn", "card", "phone", "ip"] and t.dedup == ["content"]
    assert t.columns()[:8] == [
        "url",
        "final_url",
        "fetched_at",
        "http_status",
        "title",
        "main_text",
        "language",
        "images",
    ]


# --------------------------------------------------------------------------- extraction

POST_HTML = """<!DOCTYPE html><html lang="ko"><head><meta charset="utf-8"><title> 제목 · 블로그 </title>
<base href="http://example.test/blog/"></head><body>
<article><h1 class="title">  첫 <b>번째</b>   글 </h1>
<p class="meta"><time datetime="2026-01-05">2026년 1월 5일</time> <span class="price">가격 12,000원</span>
<span class="score">4.5점</span> <span class="pub">yes</span> <span class="id">글번호 42</span></p>
<div class="content"><p>첫 문단입니다.</p><p>둘째 <i>문단</i>입니다.<br>줄바꿈</p><script>var x = 1;</script></div>
<ul class="tags"><li>#서울</li><li>#카페</li><li>태그아님</li></ul>
<a class="more" href="../about?x=1#top">더 보기</a><img src="/img/a.png"><img src="data:image/png;base64,AA"><img src="/img/a.png">
<table class="t"><tr><td>a</td><td>b</td></tr></table>
</article></body></html>"""


def test_fields_by_css_and_xpath_with_regex_casts_and_dates() -> None:
    """Text, attributes, HTML, lists, regex groups and int/float/bool/date casts come out as declared."""
    t = table(
        fields={
            "headline": {"css": "h1.title", "required": True},
            "day": {"css": "time", "attr": "datetime", "type": "date"},
            "day_ko": {"css": "time", "type": "date", "date_format": "%Y년 %m월 %d일"},
            "price": {"css": ".price", "type": "int"},
            "score": {"xpath": "//span[@class='score']/text()", "type": "float"},
            "pub": {"css": ".pub", "type": "bool"},
            "post_id": {"css": ".id", "regex": r"글번호 (\d+)", "type": "int"},
            "tags": {"css": "ul.tags li", "all": True, "regex": "#(.+)"},
            "tag_line": {"css": "ul.tags li", "all": True, "regex": "#(.+)", "join": ", "},
            "body": {"css": "div.content"},
            "body_html": {"css": "div.content p", "get": "inner_html"},
            "more": {"css": "a.more", "attr": "href", "absolute": True},
            "hrefs": {"xpath": "//a/@href", "all": True},
            "cells": {"css": "table.t"},
            "nothing": {"css": "div.absent", "default": "없음"},
        }
    )
    res = TableExtractor("t", t).extract(page_of(POST_HTML))
    assert res.error is None and res.missing == [] and not res.cast_errors
    assert res.rows == [
        {
            "headline": "첫 번째 글",
            "day": date(2026, 1, 5),
            "day_ko": date(2026, 1, 5),
            "price": 12000,
            "score": 4.5,
            "pub": True,
            "post_id": 42,
            "tags": ["서울", "카페"],
            "tag_line": "서울, 카페",
            "body": "첫 문단입니다.\n둘째 문단입니다.\n줄바꿈",
            "body_html": "첫 문단입니다.",
            "more": "http://example.test/about?x=1#top",
            "hrefs": ["../about?x=1#top"],
            "cells": "a b",
            "nothing": "없음",
        }
    ]


def test_builtin_columns() -> None:
    """url, title, main text, language and images (absolute, once each, no data: URIs) are filled."""
    t = table(
        builtins=[
            "url",
            "final_url",
            "http_status",
            "title",
            "main_text",
            "language",
            "images",
            "encoding",
            "content_type",
            "rule",
            "html",
        ]
    )
    row = TableExtractor("t", t).extract(page_of(POST_HTML)).rows[0]
    assert row["url"] == row["final_url"] == "http://example.test/posts/1"
    assert row["http_status"] == 200 and row["encoding"] == "utf-8"
    assert (row["content_type"], row["rule"], row["html"]) == ("text/html", "post", POST_HTML)
    assert row["title"] == "제목 · 블로그"
    assert row["images"] == ["http://example.test/img/a.png"]
    assert row["language"] == "ko"
    assert "첫 문단입니다." in row["main_text"] and "var x" not in row["main_text"]


def test_required_field_missing_and_cast_errors_are_reported_not_raised() -> None:
    """A missing required field is listed and a value that does not cast becomes null and is counted."""
    t = table(
        fields={"h": {"css": "h2.none", "required": True}, "n": {"css": "h1.title", "type": "int"}}
    )
    res = TableExtractor("t", t).extract(page_of(POST_HTML))
    assert res.rows == [{"h": None, "n": None}]
    assert res.missing == ["h"]
    assert res.cast_errors == Counter({"n": 1}) and res.cast_samples["n"] == ["첫 번째 글"]


def test_rows_selector_and_python_functions() -> None:
    """A ``rows`` selector gives one row per element; field and table functions get the page (and page.row)."""
    t = table(
        rows="ul.tags li",
        fields={"tag": {"css": "::text"}, "words": {"function": "tests.parse_funcs:word_count"}},
        function="tests.parse_funcs:row_upper",
        builtins=["url"],
    )
    rows = TableExtractor("t", t).extract(page_of(POST_HTML)).rows
    assert [r["tag"] for r in rows] == ["#서울", "#카페", "태그아님"]
    assert {r["words"] for r in rows} == {6}
    assert [r["upper"] for r in rows] == ["#서울", "#카페", "태그아님"]
    assert {r["url"] for r in rows} == {"http://example.test/posts/1"}


def test_a_failing_function_fails_the_page_not_the_parse() -> None:
    """An exception in a user function becomes the page's error; no rows, no raise."""
    res = TableExtractor(
        "t", table(function="tests.parse_funcs:broken", fields={"t": "h1"})
    ).extract(page_of(POST_HTML))
    assert res.rows == [] and res.error == "RuntimeError: this layout is not supported"


@pytest.mark.parametrize(
    ("value", "type_", "fmt", "want"),
    [
        ("12,000원", "int", None, 12000),
        ("-1 234", "int", None, -1234),
        ("1,234.5 km", "float", None, 1234.5),
        ("아니오", "bool", None, False),
        ("2026-01-05", "date", None, date(2026, 1, 5)),
        ("2026.1.5", "date", "%Y.%m.%d", date(2026, 1, 5)),
        ("2026-01-05 09:30", "datetime", "%Y-%m-%d %H:%M", datetime(2026, 1, 5, 9, 30)),
        ("2026-01-05T09:30:00Z", "datetime", None, datetime(2026, 1, 5, 9, 30, tzinfo=UTC)),
    ],
)
def test_casts(value: str, type_: str, fmt: str | None, want: Any) -> None:
    """Numbers lose thousands separators, dates follow their format or ISO 8601."""
    assert cast_value(value, type_, fmt) == want


def test_element_text_keeps_words_whole() -> None:
    """Inline tags add no space, block tags break lines, scripts are dropped."""
    from lxml import html

    el = html.fromstring(
        "<div><p>서울<b>시</b> 강남구</p><div>둘째<script>x()</script></div>셋째</div>"
    )
    assert element_text(el) == "서울시 강남구\n둘째\n셋째"


# --------------------------------------------------------------------------- OCR


def test_notice_image_is_deterministic() -> None:
    """The demo's notice PNG is the same bytes every time."""
    assert notice_png() == notice_png()
    assert notice_png().startswith(b"\x89PNG")


@pytest.mark.tesseract
def test_ocr_reads_korean_and_english() -> None:
    """Tesseract (kor+eng) reads both lines of the notice image exactly."""
    need_tesseract()
    from shoal.parse.ocr import ocr_image

    assert ocr_image(notice_png()) == "\n".join(NOTICE_LINES)


@pytest.mark.tesseract
def test_missing_ocr_language_says_what_to_install() -> None:
    """Asking for language data that is not installed names the Debian packages to install."""
    need_tesseract()
    from shoal.parse.ocr import check_tesseract

    with pytest.raises(
        OcrUnavailable,
        match=r"no language data for xyz.*apt-get install tesseract-ocr tesseract-ocr-kor",
    ):
        check_tesseract("kor+xyz")


def test_missing_tesseract_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the tesseract program, OCR fails at once with the apt-get command."""
    import pytesseract

    from shoal.parse import ocr

    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "/nonexistent/tesseract")
    ocr.check_tesseract.cache_clear()
    try:
        with pytest.raises(
            OcrUnavailable,
            match="apt-get install tesseract-ocr tesseract-ocr-kor tesseract-ocr-eng",
        ):
            ocr.check_tesseract("kor+eng")
    finally:
        ocr.check_tesseract.cache_clear()


# --------------------------------------------------------------------------- the report


def test_field_quality_counts() -> None:
    """Nulls, empties, distinct values and samples are counted over a column."""
    fq = field_quality("x", ["a", None, "", "a", "b", ["l"], []])
    assert (fq.rows, fq.nulls, fq.empties, fq.distinct) == (7, 1, 2, 3)
    assert fq.samples == ["a", "b", '["l"]']
    assert fq.null_rate == pytest.approx(3 / 7)


# --------------------------------------------------------------------------- the demo crawl, end to end


@dataclass
class Demo:
    """The demo site crawled once into a folder, and its default parse."""

    base_url: str
    data: Path
    spec_path: Path
    result: ParseResult

    def url(self, path: str) -> str:
        """The canonical URL of a path of the site."""
        return self.base_url + path


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The demo site crawled once (real HTTP, real WARC files) and parsed with its [parse] section."""
    from shoal.demo.site import start_in_thread

    data = tmp_path_factory.mktemp("demo")
    server = start_in_thread()
    try:
        text = demo_spec(server.base_url, data)
        crawl(text)
    finally:
        server.stop()
    spec_path = data / "demo.toml"
    spec_path.write_text(text, encoding="utf-8")
    result = run_parse(spec_path, processes=2, progress=False)
    yield Demo(server.base_url, data, spec_path, result)


def _rows(df: Any, cols: list[str]) -> list[dict[str, Any]]:
    out = []
    for rec in df[cols].to_dict("records"):
        clean = {}
        for k, v in rec.items():
            if hasattr(v, "tolist"):
                v = v.tolist()
            if hasattr(v, "to_pydatetime"):
                v = v.to_pydatetime()
            clean[k] = v
        out.append(clean)
    return out


def _blog_body(post: site.BlogPost) -> str:
    paragraphs = [
        post.lead_ko,
        " ".join(pages._pick(site.KO_POOL, post.no, 3)),
        post.lead_en + " " + " ".join(pages._pick(site.EN_POOL, post.no, 2, salt=3)),
    ]
    if post.pii_sentence:
        sentence = post.pii_sentence
        for kind, value in post.pii:
            sentence = sentence.replace(value, PLACEHOLDER[kind])
        paragraphs.append(sentence)
    if post.path in site.BROKEN_LINKS:
        paragraphs.append("자세한 사양은 예전 글에 정리해 두었습니다.")
    paragraphs.append(pages._pick(site.KO_POOL, post.no, 1, salt=11)[0])
    return "\n".join(paragraphs)


def test_demo_parse_writes_three_tables_and_passes_quality(demo: Demo) -> None:
    """The demo's parse writes posts, board and euckr_board as Parquet, and the report says quality ok."""
    r = demo.result
    assert r.rows == {
        "posts": len(site.BLOG_POSTS),
        "board": site.BOARD_POSTS,
        "euckr_board": site.EUCKR_POSTS,
    }
    assert r.ok and r.exit_code == 0 and r.failures == []
    for name in r.rows:
        assert Path(r.outputs[name]) == demo.data / "tables" / f"{name}.parquet"
    assert r.report_path == demo.data / "tables" / "quality.json"
    assert (demo.data / "tables" / "quality.html").exists()
    assert not [p for p in (demo.data / "tables").iterdir() if p.name.startswith(".")], (
        "temporary files left"
    )


def test_posts_table_exact_rows(demo: Demo) -> None:
    """Every blog post comes out with its exact fields, redacted body and built-in columns."""
    df = read_table(demo.spec_path, "posts").sort_values("post_id")
    cols = [
        "url",
        "final_url",
        "http_status",
        "title",
        "language",
        "headline",
        "author",
        "published",
        "post_id",
        "tags",
        "body",
    ]
    want = [
        {
            "url": demo.url(p.path),
            "final_url": demo.url(p.path),
            "http_status": 200,
            "title": p.title,
            "language": "ko",
            "headline": p.title,
            "author": p.author,
            "published": date(2026, 1, p.day),
            "post_id": p.no,
            "tags": list(p.tags),
            "body": _blog_body(p),
        }
        for p in site.BLOG_POSTS
    ]
    assert _rows(df, cols) == want
    post3 = df[df.post_id == 3].iloc[0]
    assert post3.body == (
        "항공권 왕복 89,000원, 숙소 3박 285,000원, 렌터카 4일 156,000원으로 총 경비는 약 680,000원이었습니다.\n"
        "다음 글에서는 조금 더 자세한 내용을 다뤄 보겠습니다. 처음에는 조금 헷갈렸지만 두세 번 해 보니 금방 익숙해졌어요. "
        "기록을 남겨 두면 나중에 비교하기 좋아서 매번 정리하고 있습니다.\n"
        "Four days in Jeju cost about 680,000 won in total, flights included. Parking is limited, so public transport "
        "is the easier option. I would recommend going early in the morning to avoid the crowds.\n"
        "게스트하우스 사장님 번호는 [PHONE] 인데, 예약은 문자로 받으신다고 합니다.\n"
        "지하철역에서 걸어서 5분 정도라 찾아가기 어렵지 않습니다."
    )
    assert all(str(df.fetched_at.dt.tz) == "UTC" for _ in [0]) and df.fetched_at.notna().all()
    assert df.main_text.str.contains("항공권 왕복").sum() == 1


def test_board_table_exact_rows(demo: Demo) -> None:
    """Every UTF-8 board post comes out with subject, writer, time, views, body and comments."""
    df = read_table(demo.spec_path, "board")
    df = df.assign(no=df.url.str.extract(r"no=(\d+)$", expand=False).astype(int)).sort_values("no")
    cols = [
        "url",
        "title",
        "subject",
        "writer",
        "posted",
        "views",
        "body",
        "comment_count",
        "comments",
    ]
    want = []
    for no in range(1, site.BOARD_POSTS + 1):
        p = pages.board_post(no)
        want.append(
            {
                "url": demo.url(site.board_post_path(no)),
                "title": p.title,
                "subject": p.title,
                "writer": p.author,
                "posted": datetime.strptime(p.date, "%Y-%m-%d %H:%M"),
                "views": p.views,
                "body": "\n".join(p.body),
                "comment_count": len(p.comments),
                "comments": [c[2] for c in p.comments],
            }
        )
    assert _rows(df, cols) == want


def test_euckr_board_table_exact_rows_in_korean(demo: Demo) -> None:
    """The EUC-KR board (no charset declared on its posts) decodes to the exact Korean text, '똠' included."""
    df = read_table(demo.spec_path, "euckr_board").sort_values("post_no")
    cols = ["url", "title", "subject", "writer", "body", "post_no"]
    want = [
        {
            "url": demo.url(site.euckr_post_path(no)),
            "title": site.EUCKR_TITLES[no - 1],
            "subject": site.EUCKR_TITLES[no - 1],
            "writer": site.BOARD_NICKS[(no * 3) % len(site.BOARD_NICKS)],
            "body": "\n".join(pages.euckr_post_body(no)),
            "post_no": no,
        }
        for no in range(1, site.EUCKR_POSTS + 1)
    ]
    assert _rows(df, cols) == want
    for no in site.CP949_ONLY_POSTS:
        assert "똠양꿍" in df[df.post_no == no].iloc[0].body
    assert "\ufffd" not in "".join(df.body)


def test_no_planted_personal_data_reaches_any_output(demo: Demo) -> None:
    """Zero misses: no planted value is in any table or in the report; the report counts each redaction."""
    planted = [v for kinds in site.PLANTED_PII.values() for v in kinds.values()]
    tables_dir = demo.data / "tables"
    for name in demo.result.rows:
        df = read_table(demo.spec_path, name)
        blob = json.dumps(df.astype(str).to_dict("records"), ensure_ascii=False)
        for value in planted:
            assert value not in blob, (name, value)
    for f in ("quality.json", "quality.html"):
        text = (tables_dir / f).read_text(encoding="utf-8")
        for value in planted:
            assert value not in text, (f, value)
    posts = read_table(demo.spec_path, "posts")
    for post in site.BLOG_POSTS:
        body = posts[posts.post_id == post.no].iloc[0].body
        for number in site.PLANTED_NUMBERS[post.path]:
            assert number in body, (post.no, number)
    want = Counter(
        PLACEHOLDER[k].strip("[]").lower() for kinds in site.PLANTED_PII.values() for k in kinds
    )
    report = load_report(tables_dir)
    assert report.tables["posts"].redacted["body"] == dict(sorted(want.items()))
    assert report.tables["posts"].redacted["main_text"] == dict(sorted(want.items()))
    assert report.tables["board"].redacted == {} and report.tables["euckr_board"].redacted == {}


def test_quality_report_per_field(demo: Demo) -> None:
    """The report has rows, null rates, distinct counts and samples per field, and renders for people."""
    report = load_report(demo.data / "tables")
    posts = report.tables["posts"]
    assert (posts.pages, posts.rows_extracted, posts.rows, posts.errors) == (12, 12, 12, 0)
    by = {f.name: f for f in posts.fields}
    assert by["author"].distinct == 4 and by["author"].null_rate == 0
    assert (
        by["headline"].required and by["headline"].missing == 0 and by["headline"].threshold == 0.0
    )
    assert by["post_id"].type == "int" and by["tags"].type == "list[str]"
    assert len(by["headline"].samples) == 5
    board = {f.name: f for f in report.tables["board"].fields}
    assert board["body"].distinct == 20  # posts n and n+20 share their body on the demo board
    data = json.loads((demo.data / "tables" / "quality.json").read_text(encoding="utf-8"))
    assert data["ok"] is True and data["headline"].startswith(
        "demo: posts 12 rows, board 30 rows, euckr_board 16 rows"
    )
    from rich.console import Console

    console = Console(record=True, width=200)
    shown = show_report(demo.spec_path, console=console)
    assert isinstance(shown, QualityReport)
    text = console.export_text()
    assert "quality ok" in text and "euckr_board" in text and "headline *" in text


def test_processes_give_the_same_rows(demo: Demo, tmp_path: Path) -> None:
    """One process and two processes parse the same rows; parse_table returns them without writing."""
    single = parse_table(demo.spec_path, "board", processes=1)
    written = read_table(demo.spec_path, "board")  # parsed with two processes
    cols = ["url", "fetched_at", "subject", "writer", "posted", "views", "body", "comments"]
    assert _rows(single, cols) == _rows(written, cols)
    assert len(single) == site.BOARD_POSTS


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_csv_and_jsonl_outputs(demo: Demo, tmp_path: Path, fmt: str) -> None:
    """CSV and JSON lines hold the same rows; lists become JSON text in CSV."""
    out = tmp_path / fmt
    r = run_parse(demo.spec_path, tables=["board"], to=fmt, out=out, processes=1, progress=False)
    assert r.outputs == {"board": str(out / f"board.{fmt}")}
    df = read_table(out, "board")
    assert len(df) == site.BOARD_POSTS
    first = df[df.url.str.endswith("no=3")].iloc[0]
    comments = json.loads(first.comments) if fmt == "csv" else list(first.comments)
    assert comments == [c[2] for c in pages.board_post(3).comments]
    assert load_report(out).tables["board"].format == fmt


def test_rerun_replaces_outputs_atomically(demo: Demo, tmp_path: Path) -> None:
    """A second parse replaces each file by rename (new inode, same content) and leaves no temporary file."""
    out = tmp_path / "again"
    run_parse(demo.spec_path, tables=["euckr_board"], out=out, processes=1, progress=False)
    before = (out / "euckr_board.parquet").stat().st_ino
    first = read_table(out, "euckr_board")
    run_parse(demo.spec_path, tables=["euckr_board"], out=out, processes=1, progress=False)
    assert (out / "euckr_board.parquet").stat().st_ino != before
    assert (
        read_table(out, "euckr_board")
        .drop(columns=["fetched_at"])
        .equals(first.drop(columns=["fetched_at"]))
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "euckr_board.parquet",
        "quality.html",
        "quality.json",
    ]


def test_dedup_by_content_keeps_the_newest(demo: Demo, tmp_path: Path) -> None:
    """Board posts with the same body collapse to one row, the most recently fetched; the report counts them."""
    parse = demo_parse_section(tmp_path).replace(
        '[parse.tables.board]\nfrom = "board-post"\nredact = true\ndedup = ["url", "content"]',
        '[parse.tables.board]\nfrom = "board-post"\nredact = true\ndedup = ["url", "content"]\ndedup_fields = ["body"]',
    )
    assert "dedup_fields" in parse
    spec_path = clone(demo.data, tmp_path / "d", demo.base_url, parse=parse)
    r = run_parse(spec_path, tables=["board"], processes=1, progress=False)
    full = read_table(demo.spec_path, "board")
    assert r.rows["board"] == 20
    t = r.report.tables["board"]
    assert (t.rows_extracted, t.rows, t.dedup_content, t.dedup_url) == (30, 20, 10, 0)
    kept = read_table(spec_path, "board")
    for body, group in full.groupby("body"):
        newest = set(group[group.fetched_at == group.fetched_at.max()].url)
        (url,) = kept[kept.body == body].url
        assert url in newest


def test_dedup_by_canonical_url_keeps_the_newest(demo: Demo, tmp_path: Path) -> None:
    """URLs that canonicalise alike at parse time (a query parameter now stripped) keep only the newest capture."""
    spec_path = clone(demo.data, tmp_path / "d", demo.base_url)
    text = spec_path.read_text(encoding="utf-8").replace(
        "[scope]\n", '[scope]\nstrip_query_params = ["no"]\n', 1
    )
    spec_path.write_text(text, encoding="utf-8")
    r = run_parse(spec_path, tables=["board"], processes=1, progress=False)
    t = r.report.tables["board"]
    assert (t.rows, t.dedup_url) == (1, site.BOARD_POSTS - 1)
    full = read_table(demo.spec_path, "board")
    (url,) = read_table(spec_path, "board").url
    assert url in set(full[full.fetched_at == full.fetched_at.max()].url)


def test_all_captures_reads_older_fetches_from_the_archive(demo: Demo, tmp_path: Path) -> None:
    """With all_captures an older capture of a URL is parsed too; an unchanged older capture is dropped as a duplicate."""
    from shoal.archive import WarcWriter
    from shoal.exchange import FetchResult

    spec_path = clone(demo.data, tmp_path / "d", demo.base_url)
    post = site.BLOG_POSTS[1]
    url = demo.url(post.path)
    changed = pages.render_blog_post(post).replace(post.title, "옛날 제목")
    same = pages.render_blog_post(post)
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    with WarcWriter(tmp_path / "d" / "warc", prefix="older", fsync=False) as w:
        for i, html in enumerate((changed, same)):
            res = FetchResult(
                url=url,
                status=200,
                reason="OK",
                http_version="1.1",
                headers=[("Content-Type", "text/html; charset=utf-8")],
                body=html.encode(),
                request_headers=[("User-Agent", "test")],
            )
            w.write_exchange(res, fetched_at=(hour_ago + timedelta(minutes=i)).timestamp())
    latest = run_parse(spec_path, tables=["posts"], processes=1, progress=False)
    assert latest.rows["posts"] == 12
    every = run_parse(spec_path, tables=["posts"], all_captures=True, processes=2, progress=False)
    t = every.report.tables["posts"]
    assert (t.pages, t.rows, t.dedup_content) == (14, 13, 1)
    df = read_table(spec_path, "posts")
    rows = df[df.post_id == 2].sort_values("fetched_at")
    assert list(rows.headline) == ["옛날 제목", post.title]
    assert load_report(spec_path.parent / "tables").captures == "all"


def _demo_notice_asset(demo: Demo) -> bool:
    from sqlalchemy import select

    from shoal.frontier.sql import SqlFrontier
    from shoal.frontier.tables import urls

    f = SqlFrontier(f"sqlite:///{demo.data}/frontier.sqlite", create=False)
    try:
        return bool(
            f.query(
                select(urls.c.id).where(urls.c.kind == "asset", urls.c.url.like("%/img/notice.png"))
            )
        )
    finally:
        f.close()


@pytest.mark.tesseract
def test_demo_notice_image_is_read_into_the_posts_table(demo: Demo) -> None:
    """The notice image of blog post 3, archived during the crawl, is read with Tesseract into notice_text."""
    need_tesseract()
    if not _demo_notice_asset(demo):
        missing(
            "the demo's /img/notice.png",
            "the demo site must serve it in blog post 3 and the rule archive it",
        )
    df = read_table(demo.spec_path, "posts")
    texts = dict(zip(df.post_id, df.notice_text, strict=True))
    assert texts.pop(3) == "\n".join(NOTICE_LINES)
    assert all(pd.isna(v) for v in texts.values())
    assert demo.result.report.tables["posts"].ocr == {"images": 1, "read": 1}


def test_to_sql_on_the_frontier_database(demo: Demo, db_url: str, tmp_path: Path) -> None:
    """``--to sql`` writes each table into the frontier's database, and a rerun replaces it atomically."""
    from sqlalchemy import inspect

    from shoal.frontier.dialects import make_engine

    copy_frontier(f"sqlite:///{demo.data}/frontier.sqlite", db_url)
    spec_path = clone(demo.data, tmp_path / "d", demo.base_url)
    for _ in range(2):
        r = run_parse(spec_path, db_url=db_url, to="sql", processes=2, progress=False)
        assert r.rows == demo.result.rows and r.ok
    engine = make_engine(db_url)
    try:
        names = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"demo_posts", "demo_board", "demo_euckr_board"} <= names
    assert not [n for n in names if "__shoal_" in n]
    files = read_table(demo.spec_path, "board")
    sql = read_table(spec_path, "board", db_url=db_url)
    cols = ["url", "subject", "writer", "views", "body", "comment_count"]
    assert _rows(sql.sort_values("url"), cols) == _rows(files.sort_values("url"), cols)
    assert json.loads(sql.sort_values("url").iloc[0].comments) == list(
        files.sort_values("url").iloc[0].comments
    )
    euckr = read_table(spec_path, "euckr_board", db_url=db_url)
    assert set(euckr.subject) == set(site.EUCKR_TITLES)
    fetched = sql.fetched_at.iloc[0]
    assert abs(
        fetched.replace(tzinfo=None) - files.fetched_at.dt.tz_localize(None).min()
    ) < timedelta(days=1)


def test_to_sql_into_another_database(demo: Demo, tmp_path: Path) -> None:
    """``--out`` with a database URL writes the tables there instead of the frontier's database."""
    spec_path = clone(demo.data, tmp_path / "d", demo.base_url)
    target = f"sqlite:///{tmp_path / 'tables.sqlite'}"
    r = run_parse(spec_path, tables=["posts"], to="sql", out=target, processes=1, progress=False)
    assert r.outputs["posts"].endswith("table demo_posts")
    df = read_table(spec_path, "posts", db_url=target)
    assert sorted(df.post_id) == list(range(1, 13))


def test_parse_errors_are_clear(demo: Demo, tmp_path: Path) -> None:
    """Unknown tables, formats and a missing frontier are refused with what to do."""
    with pytest.raises(
        ParseError, match="no table 'nope' in \\[parse\\]; the spec has posts, board, euckr_board"
    ):
        run_parse(demo.spec_path, tables=["nope"], progress=False)
    with pytest.raises(ParseError, match="unknown output format 'xlsx'"):
        run_parse(demo.spec_path, to="xlsx", progress=False)
    with pytest.raises(ParseError, match="no frontier database at"):
        run_parse(demo.spec_path, db_url=f"sqlite:///{tmp_path}/none.sqlite", progress=False)
    with pytest.raises(ParseError, match="no output of table 'posts'"):
        read_table(tmp_path, "posts")


# --------------------------------------------------------------------------- a layout change, and OCR, on a small site


@dataclass
class Layout:
    """The layout-change site crawled once into a folder."""

    base_url: str
    data: Path

    def spec(self, parse: str, name: str) -> Path:
        """Write a spec with this ``[parse]`` section (tables going to ``out/name``); returns its path."""
        from tests.sites.parse import spec_text

        parse = parse.replace("{out}", (self.data / "out" / name).as_posix())
        path = self.data / f"{name}.toml"
        path.write_text(spec_text(self.base_url, self.data.as_posix(), parse), encoding="utf-8")
        return path


@pytest.fixture(scope="session")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    """The site whose layout changes after post 6, crawled once with its notice image archived."""
    from tests.sites.parse import LayoutSite, spec_text

    data = tmp_path_factory.mktemp("layout")
    server = LayoutSite()
    try:
        crawl(spec_text(server.base_url, data.as_posix(), ""))
    finally:
        server.stop()
    yield Layout(server.base_url, data)


LAYOUT_PARSE = """
[parse]
out = "{out}"
[parse.tables.posts]
from = "post"
max_missing = MAX
[parse.tables.posts.fields]
headline = { css = "h1.title", required = true }
body = { css = "div.content" }
"""


def test_required_field_missing_after_a_layout_change_fails_the_parse(layout: Layout) -> None:
    """4 of 10 pages lost their h1.title: above a 20 % threshold the parse fails, lists them and records an event."""
    from sqlalchemy import select

    from shoal.frontier.sql import SqlFrontier
    from shoal.frontier.tables import events
    from tests.sites.parse import OLD_LAYOUT, POSTS

    r = run_parse(
        layout.spec(LAYOUT_PARSE.replace("MAX", "0.2"), "strict"), processes=1, progress=False
    )
    assert not r.ok and r.exit_code == QUALITY_EXIT_CODE
    assert r.failures == ["posts.headline: required field missing on 4 of 10 rows (40.0% > 20.0%)"]
    fq = next(f for f in r.report.tables["posts"].fields if f.name == "headline")
    assert fq.missing_urls == sorted(
        f"{layout.base_url}/posts/{n}" for n in range(OLD_LAYOUT + 1, POSTS + 1)
    )
    assert r.rows["posts"] == POSTS  # rows are kept; the report says what they miss
    data = json.loads(r.report_path.read_text(encoding="utf-8"))
    assert data["ok"] is False and data["failures"] == r.failures
    assert f"{layout.base_url}/posts/7" in r.html_path.read_text(encoding="utf-8")
    f = SqlFrontier(f"sqlite:///{layout.data}/frontier.sqlite", create=False)
    try:
        evs = f.query(
            select(events.c.kind, events.c.severity, events.c.message).where(
                events.c.kind == "quality"
            )
        )
    finally:
        f.close()
    assert len(evs) == 1 and evs[0].severity == "warning" and "posts.headline" in evs[0].message
    ok = run_parse(
        layout.spec(LAYOUT_PARSE.replace("MAX", "0.5"), "lenient"), processes=1, progress=False
    )
    assert ok.ok and ok.exit_code == 0


@pytest.mark.tesseract
def test_ocr_of_an_archived_image_on_a_crawled_site(layout: Layout) -> None:
    """The image a rule archived during the crawl is found by canonical URL and read into the OCR column."""
    need_tesseract()
    from tests.sites.parse import IMAGE_POST

    parse = """
[parse]
out = "{out}"
[parse.tables.posts]
from = "post"
ocr = "img.notice"
builtins = ["url", "images"]
fields.body = { css = "div.content" }
"""
    r = run_parse(layout.spec(parse, "ocr"), processes=2, progress=False)
    df = read_table(layout.data / "out" / "ocr", "posts")
    texts = {u.rsplit("/", 1)[1]: t for u, t in zip(df.url, df.ocr_text, strict=True)}
    assert texts.pop(str(IMAGE_POST)) == "\n".join(NOTICE_LINES)
    assert all(pd.isna(v) for v in texts.values())
    assert r.report.tables["posts"].ocr == {"images": 1, "read": 1}
    row = df[df.url.str.endswith(f"/posts/{IMAGE_POST}")].iloc[0]
    assert list(row.images) == [f"{layout.base_url}/img/notice.png"]


def test_table_function_rows_from_a_real_archive(demo: Demo, tmp_path: Path) -> None:
    """A table function turns each board post into one row per comment, with the built-in columns."""
    parse = """
[parse]
out = "OUT"
[parse.tables.comments]
from = "board-post"
builtins = ["url"]
function = "tests.parse_funcs:comment_rows"
dedup = "none"
""".replace("OUT", (tmp_path / "out").as_posix())
    spec_path = clone(demo.data, tmp_path / "d", demo.base_url, parse=parse)
    r = run_parse(spec_path, processes=1, progress=False)
    want = sum(len(pages.board_post(n).comments) for n in range(1, site.BOARD_POSTS + 1))
    assert r.rows == {"comments": want}
    df = read_table(spec_path, "comments")
    assert list(df.columns) == ["url", "n", "who", "said"]
    p = pages.board_post(7)
    got = df[df.url == demo.url(site.board_post_path(7))].sort_values("n")
    assert list(zip(got.who, got.said, strict=True)) == [(w, t) for w, _d, t in p.comments]


def test_a_table_without_pages_is_written_empty_and_fails_the_gate(
    demo: Demo, tmp_path: Path
) -> None:
    """A table no capture feeds is written with its columns and no rows, and fails the gate: 0 rows."""
    parse = """
[parse]
out = "OUT"
[parse.tables.nothing]
from = "list"
statuses = [299]
fields.h = { css = "h1", required = true }
""".replace("OUT", (tmp_path / "out").as_posix())
    spec_path = clone(demo.data, tmp_path / "d", demo.base_url, parse=parse)
    r = run_parse(spec_path, processes=2, progress=False)
    assert r.rows == {"nothing": 0} and not r.ok and r.exit_code == QUALITY_EXIT_CODE
    assert r.failures == ["nothing: 0 rows (0 page(s) read)"]
    df = read_table(spec_path, "nothing")
    assert len(df) == 0 and "h" in df.columns and "main_text" in df.columns
    assert "nothing 0 rows" in r.report.headline()


def test_report_as_json_and_html(demo: Demo, tmp_path: Path) -> None:
    """``shoal report --json`` prints the JSON record and ``--html`` writes the page."""
    from rich.console import Console

    console = Console(record=True, width=120)
    page = tmp_path / "report.html"
    show_report(demo.data / "tables", console=console, as_json=True, html=page)
    data = json.loads(console.export_text())
    assert data["crawl"] == "demo" and set(data["tables"]) == {"posts", "board", "euckr_board"}
    posts = {f["name"]: f for f in data["tables"]["posts"]["fields"]}
    assert posts["headline"]["required"] is True and posts["headline"]["null_rate"] == 0
    assert "<h1>Parse report: demo</h1>" in page.read_text(encoding="utf-8")
    assert QualityReport.from_dict(data).as_dict() == {**data, "generated_at": data["generated_at"]}
