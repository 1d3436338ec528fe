"""Decoding HTML bytes: html5lib sniffing vectors, WHATWG labels, Korean pages, precedence."""

from __future__ import annotations

import codecs
import json

import pytest

from shoal.content.charset import decode_html, prescan, sniff
from shoal.content.encodings import LABELS, lookup_label
from tests.vectors import TESTDATA

HTML5LIB = TESTDATA / "html5lib-encoding"
LABELS_JSON = TESTDATA / "whatwg-encoding-labels" / "encodings.json"

HTML5LIB_FLOOR = 82
"""html5lib encoding cases passed through sniff(data, None): 82 of 82.

75 of them pass on the 1024-byte prescan alone; the other 7 put their
``<meta>`` after 2-8 KB of comments or scripts and pass through the late
``<meta>`` scan up to ``<body`` (64 KiB at most).
"""

KOREAN = (
    "<html><head><title>자유게시판 - 우리 동네 이야기</title></head><body>"
    "<h1>오늘 날씨가 정말 좋네요</h1><p>안녕하세요. 오랜만에 글을 남깁니다. 요즘 날씨가 많이 "
    "따뜻해져서 산책하기 좋은 계절이 되었습니다. 주말에는 가족과 함께 공원에 다녀왔는데, "
    "꽃이 활짝 피어 있어서 사진을 많이 찍었어요. ※ 다음 글 ▶ 등산 후기</p>"
    "<ul><li><a href='/board/view?id=1'>첫 번째 글</a></li>"
    "<li><a href='/board/view?id=2'>두 번째 글입니다</a></li></ul></body></html>"
)


def _html5lib_cases() -> list[tuple[str, bytes, str]]:
    """(id, data, expected encoding) of every ``#data``/``#encoding`` block, read as bytes."""
    cases = []
    for path in sorted(HTML5LIB.glob("*.dat")):
        for i, block in enumerate(path.read_bytes().split(b"#data\n")[1:]):
            data, _, expected = block.partition(b"#encoding\n")
            # html5lib's reader drops the newline that ends each section.
            cases.append(
                (f"{path.stem}-{i}", data.removesuffix(b"\n"), expected.strip().decode("ascii"))
            )
    return cases


def test_html5lib_sniffing_cases() -> None:
    """sniff() without a header agrees with html5lib on at least HTML5LIB_FLOOR of the 82 cases."""
    cases = _html5lib_cases()
    assert len(cases) == 82
    failures = []
    for case_id, data, expected in cases:
        want = lookup_label(expected)
        assert want is not None, expected
        got, _ = sniff(data, None)
        if got != want:
            failures.append(f"{case_id}: expected {want}, got {got}")
    passed = len(cases) - len(failures)
    print(f"html5lib encoding: {passed}/{len(cases)} passed")
    assert passed >= HTML5LIB_FLOOR, "\n".join(failures)


def test_every_whatwg_label_maps_to_a_python_codec() -> None:
    """Each of the 228 WHATWG labels resolves, through lookup_label, to a codec codecs.lookup accepts."""
    table = json.loads(LABELS_JSON.read_text("utf-8"))
    labels = [
        (e["name"], label) for group in table for e in group["encodings"] for label in e["labels"]
    ]
    assert len(labels) == 228
    assert set(LABELS) == {label for _, label in labels}
    for name, label in labels:
        codec = lookup_label(label)
        assert codec is not None, label
        assert codecs.lookup(codec).name == codec, (name, label, codec)
        assert lookup_label(f" \t{label.upper()}\n") == codec


@pytest.mark.parametrize(
    "label", ["euc-kr", "EUC-KR", "ks_c_5601-1987", "windows-949", "cseuckr", "korean", "ksc_5601"]
)
def test_euc_kr_labels_decode_cp949_only_syllables(label: str) -> None:
    """Every EUC-KR label decodes with cp949, so '똠' (b'\\x8c\\x63', not in strict EUC-KR) comes out."""
    assert lookup_label(label) == "cp949"
    body = "<p>똠방각하 뷁</p>".encode("cp949")
    text, codec = decode_html(body, f"text/html; charset={label}")
    assert (text, codec) == ("<p>똠방각하 뷁</p>", "cp949")


def test_unknown_labels_and_look_alikes_are_refused() -> None:
    """Unknown labels, and non-ASCII characters whose lower case is ASCII (KELVIN SIGN), map to nothing."""
    assert lookup_label("bogus") is None
    assert lookup_label("\u212aoi8-r") is None
    assert lookup_label("") is None


def test_euc_kr_page_without_header_or_meta_is_detected() -> None:
    """Korean bytes with no header and no <meta> are detected as cp949 and decoded exactly."""
    body = (KOREAN + "<p>똠방각하</p>").encode("cp949")
    assert sniff(body, None) == ("cp949", "detected")
    assert sniff(body, "text/html") == ("cp949", "detected")
    assert decode_html(body, None) == (KOREAN + "<p>똠방각하</p>", "cp949")


def test_utf8_page_without_declaration_is_detected_as_utf8() -> None:
    """Undeclared non-ASCII bytes that are valid UTF-8 are decoded as UTF-8 without the detector."""
    body = KOREAN.encode("utf-8")
    assert sniff(body, None) == ("utf-8", "detected")


@pytest.mark.parametrize(
    ("text", "encoding", "codec"),
    [
        (
            "<p>今日はとても良い天気ですね。週末は家族と一緒に公園に行きました。桜がきれいに咲いていました。</p>",
            "shift_jis",
            "cp932",
        ),
        (
            "<p>今天天气很好。周末我和家人一起去了公园，花开得很漂亮，我们拍了很多照片。下个星期我打算去爬山。</p>",
            "gb2312",
            "gb18030",
        ),
        (
            "<p>Сегодня очень хорошая погода. В выходные мы с семьёй ходили в парк, там цвели цветы.</p>",
            "koi8_r",
            "koi8-r",
        ),
    ],
)
def test_other_legacy_encodings_are_detected(text: str, encoding: str, codec: str) -> None:
    """Undeclared legacy bytes fall through to charset-normalizer, mapped to the WHATWG codec."""
    body = text.encode(encoding)
    assert sniff(body, None) == (codec, "detected")
    assert decode_html(body, None)[0] == text


def test_ascii_without_declaration_is_windows_1252_by_default() -> None:
    """Plain ASCII with nothing declared takes the WHATWG default and never calls the detector."""
    assert sniff(b"<!doctype html><p>hello</p>", None) == ("cp1252", "default")
    assert sniff(b"", None) == ("cp1252", "default")


def test_bom_beats_header_and_meta() -> None:
    """A byte order mark wins over the Content-Type charset and <meta>, and is not part of the text."""
    body = b"\xef\xbb\xbf<meta charset=euc-kr><p>" + "한글".encode() + b"</p>"
    assert sniff(body, "text/html; charset=iso-8859-2") == ("utf-8", "bom")
    assert decode_html(body, "text/html; charset=iso-8859-2") == (
        "<meta charset=euc-kr><p>한글</p>",
        "utf-8",
    )
    le = "\ufeff<p>한글</p>".encode("utf-16-le")
    assert decode_html(le, "text/html; charset=utf-8") == ("<p>한글</p>", "utf-16-le")
    be = "\ufeff<p>한글</p>".encode("utf-16-be")
    assert decode_html(be, None) == ("<p>한글</p>", "utf-16-be")


def test_header_beats_meta_and_detection() -> None:
    """The Content-Type charset (quoted or not, any case) wins over <meta>; an unknown one is ignored."""
    body = "<meta charset=utf-8><p>한글</p>".encode("cp949")
    assert sniff(body, 'text/html; Charset="EUC-KR"') == ("cp949", "header")
    assert sniff(body, "text/html;charset=euc-kr;foo=bar") == ("cp949", "header")
    assert sniff(body, "text/html; charset=nonsense") == ("utf-8", "meta")
    assert sniff(body, "text/html") == ("utf-8", "meta")


def test_late_meta_is_found_beyond_1024_bytes() -> None:
    """A <meta> after 1024 bytes is missed by prescan() but found by sniff()'s scan of the head."""
    body = b"<!-- " + b"x" * 3000 + b" -->\n<meta charset=euc-kr><p>" + "한글".encode("cp949")
    assert prescan(body) is None
    assert prescan(body, limit=8192) == "cp949"
    assert sniff(body, None) == ("cp949", "meta")


def test_meta_quoted_in_the_body_does_not_count() -> None:
    """Past 1024 bytes only a <meta> before <body> counts; one in a post's content is left to detection."""
    post = "<p>" + "한글 " * 400 + "</p><pre><meta charset=euc-kr></pre>"
    body = ("<html><head><title>t</title></head><body>" + post + "</body></html>").encode()
    assert len(body) > 1024
    assert sniff(body, None) == ("utf-8", "detected")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'<meta http-equiv="Content-Type" content="text/html; charset=utf-16">', "utf-8"),
        (b"<meta charset=x-user-defined>", "cp1252"),
        (b"<meta charset=iso-2022-kr>", "replacement"),
        (b"<\x00?\x00x\x00m\x00l\x00", "utf-16-le"),
        (b'<meta content="text/html; charset=koi8-r">', None),
        (b'<meta charset="bogus"><meta charset="big5">', "big5hkscs"),
        (b'<p title="<meta charset=koi8-r>"><meta charset="gbk">', "gb18030"),
    ],
)
def test_prescan_rules(data: bytes, expected: str | None) -> None:
    """Prescan special cases: UTF-16 and x-user-defined metas, the pragma rule, attribute values."""
    assert prescan(data) == expected


def test_custom_codecs_decode_as_whatwg_says() -> None:
    """x-user-defined maps 0x80-0xFF to U+F780-U+F7FF; replacement decodes anything to one U+FFFD."""
    assert b"a\x80\xff".decode("x-user-defined") == "a\uf780\uf7ff"
    assert "a\uf780".encode("x-user-defined") == b"a\x80"
    assert b"\x1b$)C\x0e!!".decode("replacement", "replace") == "\ufffd"
    assert b"".decode("replacement") == ""
    with pytest.raises(UnicodeDecodeError):
        b"abc".decode("replacement")
    assert decode_html(b"<p>x</p>", "text/html; charset=hz-gb-2312") == ("\ufffd", "replacement")


def test_decode_html_never_raises_on_bad_bytes() -> None:
    """Invalid bytes become U+FFFD in the declared encoding instead of raising."""
    text, codec = decode_html(b"<p>\xff\xfe\xfd ok</p>", "text/html; charset=utf-8")
    assert codec == "utf-8"
    assert text == "<p>\ufffd\ufffd\ufffd ok</p>"
    text, codec = decode_html(b"<p>\x00\xd8</p>", "text/html; charset=utf-16le")
    assert codec == "utf-16-le" and "\ufffd" in text


def test_common_case_never_runs_the_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 20 KB Korean page declared by header or meta decodes without the (slow) statistical detector."""
    import shoal.content.charset as charset

    def no_detector(body: bytes) -> str | None:
        raise AssertionError("the detector ran on a declared page")

    monkeypatch.setattr(charset, "_detect", no_detector)
    row = "<li><a href='/board/view?id={i}'>오늘 날씨가 정말 좋네요 주말에는 가족과 함께 {i}</a></li>\n"
    html = (
        "<!doctype html><html><head><meta charset='utf-8'><title>게시판</title></head><body><ul>\n"
    )
    i = 0
    while len(html.encode()) < 20_000:
        html += row.format(i=i)
        i += 1
    body = html.encode()
    for content_type in ("text/html; charset=utf-8", "text/html"):
        text, codec = decode_html(body, content_type)
        assert codec == "utf-8" and "주말에는" in text
