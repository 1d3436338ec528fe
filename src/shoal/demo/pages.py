"""What the demo site serves: the data its pages are generated from, and the pages themselves.

Everything is generated in code from the tables below, so the site is the
same on every run and on every port (all links are root-relative):

- ``/``: the home page, linking to every section and to the misbehaving pages
  (:data:`SPECIAL_PAGES`, :data:`REDIRECTS`);
- ``/blog/`` (``?page=2``, ``?page=3``): 12 posts (:data:`BLOG_POSTS`), 4 per
  page, ``/blog/posts/N``; post 7 links to ``/blog/posts/999``, which does not
  exist (:data:`BROKEN_LINKS`); some posts carry planted personal data
  (:data:`PLANTED_PII`) and harmless numbers (:data:`PLANTED_NUMBERS`) for the
  redaction tests of the parse stage; post 3 shows :data:`NOTICE_IMAGE`;
- ``/board/free/list?page=1..3``: a UTF-8 board, 30 posts with comments
  (:func:`board_post`);
- ``/euckr/list?page=1..2``: an old board rendered as EUC-KR (really CP949)
  bytes; only the list pages declare the encoding in a ``<meta>``; post 5
  needs CP949 (:data:`CP949_ONLY_POSTS`).

The ``render_*`` functions return a page's HTML (``str``, or CP949 ``bytes``
for the old board); :mod:`shoal.demo.site` serves them and
:mod:`shoal.demo.expected` derives from the same tables what a crawl must end
with.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "BLOG_PAGES",
    "BLOG_PER_PAGE",
    "BLOG_POSTS",
    "BOARD_NICKS",
    "BOARD_PAGES",
    "BOARD_PER_PAGE",
    "BOARD_POSTS",
    "BROKEN_LINKS",
    "CP949_ONLY_POSTS",
    "EN_POOL",
    "EUCKR_PAGES",
    "EUCKR_PER_PAGE",
    "EUCKR_POSTS",
    "EUCKR_TITLES",
    "KO_POOL",
    "NOTICE_IMAGE",
    "NOTICE_POSTS",
    "PLANTED_NUMBERS",
    "PLANTED_PII",
    "REDIRECTS",
    "ROBOTS_DISALLOW",
    "SPECIAL_PAGES",
    "BlogPost",
    "BoardPost",
    "SpecialPage",
    "blog_list_path",
    "blog_post",
    "board_list_path",
    "board_post",
    "board_post_path",
    "euckr_list_path",
    "euckr_post_body",
    "euckr_post_path",
    "render_blog_list",
    "render_blog_post",
    "render_board_list",
    "render_board_post",
    "render_euckr_list",
    "render_euckr_post",
    "render_home",
    "render_simple",
]

# ---------------------------------------------------------------------------
# The data the site is generated from.
# ---------------------------------------------------------------------------

BLOG_PER_PAGE = 4
BOARD_PER_PAGE = 10
EUCKR_PER_PAGE = 8

ROBOTS_DISALLOW = ("/private/",)
"""Path prefixes that ``/robots.txt`` disallows for every user agent."""

KO_POOL = (
    "요즘 날씨가 많이 추워져서 따뜻한 음료를 자주 찾게 됩니다.",
    "주말에는 사람이 많으니 평일 오전에 가는 것을 추천합니다.",
    "처음에는 조금 헷갈렸지만 두세 번 해 보니 금방 익숙해졌어요.",
    "사진으로 보는 것보다 실제로 보면 훨씬 넓고 깔끔합니다.",
    "가격 대비 만족도가 높아서 다음에도 다시 이용할 생각입니다.",
    "궁금한 점이 있으면 댓글로 남겨 주세요. 아는 범위에서 답변드릴게요.",
    "지하철역에서 걸어서 5분 정도라 찾아가기 어렵지 않습니다.",
    "직원분들이 친절하게 설명해 주셔서 기분 좋게 다녀왔습니다.",
    "다만 주차 공간이 좁아서 대중교통을 이용하는 편이 낫습니다.",
    "기록을 남겨 두면 나중에 비교하기 좋아서 매번 정리하고 있습니다.",
    "같은 조건이라도 시간대에 따라 결과가 꽤 달라지는 것 같아요.",
    "혹시 비슷한 경험이 있으신 분들은 의견을 나눠 주시면 감사하겠습니다.",
    "이번에는 지난번보다 준비를 꼼꼼히 해서 시행착오가 적었습니다.",
    "생각보다 시간이 오래 걸렸지만 결과물은 만족스러웠습니다.",
    "초보자라면 기본 설정 그대로 시작해 보는 것을 권합니다.",
    "다음 글에서는 조금 더 자세한 내용을 다뤄 보겠습니다.",
    "평소보다 일찍 출발했는데도 길이 많이 막혔습니다.",
    "작은 부분이지만 이런 배려가 있으면 다시 찾게 됩니다.",
    "메뉴가 자주 바뀌니 방문 전에 확인해 보시는 것이 좋겠습니다.",
    "전체적으로 보면 기대 이상이었고 주변 사람들에게도 추천했습니다.",
)
"""Korean sentences that fill bodies; all of them are inside KS X 1001 (plain EUC-KR)."""

EN_POOL = (
    "The whole trip took about two hours, including a short coffee break.",
    "I would recommend going early in the morning to avoid the crowds.",
    "Prices have gone up a little since last year, but it is still good value.",
    "The staff were friendly and answered every question patiently.",
    "If you are new to this, start with the default settings and adjust later.",
    "I took notes along the way so that I can compare the results next time.",
    "Parking is limited, so public transport is the easier option.",
    "Overall it was better than I expected, and I will definitely go back.",
    "Let me know in the comments if you have tried something similar.",
    "Next time I will write about the details I skipped in this post.",
    "It is a small thing, but details like this make a big difference.",
    "The menu changes often, so check the notice board before you visit.",
)


@dataclass(frozen=True)
class BlogPost:
    """One blog post: its words and the strings planted in it."""

    no: int
    title: str
    author: str
    tags: tuple[str, ...]
    lead_ko: str
    lead_en: str
    numbers: tuple[str, ...] = ()
    """Harmless numbers in the text (prices, dates, ids) that redaction must keep."""
    pii: tuple[tuple[str, str], ...] = ()
    """``(kind, value)`` pairs of personal data planted in the text."""
    pii_sentence: str = ""

    @property
    def day(self) -> int:
        """Day of January 2026 on which the post was published."""
        return 2 * self.no + 1

    @property
    def path(self) -> str:
        """The post's root-relative URL."""
        return f"/blog/posts/{self.no}"


BLOG_POSTS: tuple[BlogPost, ...] = (
    BlogPost(
        1,
        "성수동 카페 투어 후기",
        "김민수",
        ("카페", "서울"),
        "지난 토요일에 성수동 카페 세 곳을 돌아봤습니다. 아메리카노는 한 잔에 4,500원에서 6,000원 사이였고, "
        "디저트까지 합치면 한 사람당 12,000원 정도 들었습니다.",
        "Three cafés in one afternoon: coffee cost between 4,500 and 6,000 won a cup.",
        numbers=("4,500원", "6,000원", "12,000원"),
    ),
    BlogPost(
        2,
        "파이썬으로 웹 크롤러 만들기 1편",
        "김민수",
        ("파이썬", "크롤러", "python"),
        "파이썬 3.11과 aiohttp로 간단한 크롤러를 만들었습니다. 페이지 100개를 수집하는 데 약 12초가 걸렸고, "
        "실패한 요청은 3건이었습니다.",
        "A first crawler in Python 3.11: 100 pages in about 12 seconds, with 3 failed requests.",
        numbers=("3.11", "100개", "12초"),
        pii=(("email", "kim.minsu@example.com"),),
        pii_sentence="코드에 대한 질문은 kim.minsu@example.com 으로 메일 주세요.",
    ),
    BlogPost(
        3,
        "제주도 3박 4일 여행 경비 정리",
        "이서연",
        ("여행", "제주"),
        "항공권 왕복 89,000원, 숙소 3박 285,000원, 렌터카 4일 156,000원으로 총 경비는 약 680,000원이었습니다.",
        "Four days in Jeju cost about 680,000 won in total, flights included.",
        numbers=("89,000원", "285,000원", "156,000원", "680,000원"),
        pii=(("phone_mobile", "010-1234-5678"),),
        pii_sentence="게스트하우스 사장님 번호는 010-1234-5678 인데, 예약은 문자로 받으신다고 합니다.",
    ),
    BlogPost(
        4,
        "겨울철 자전거 출퇴근 장비",
        "박지훈",
        ("자전거", "출퇴근"),
        "기온이 영하 5도까지 내려가도 8.5km 출퇴근 거리를 자전거로 다니고 있습니다. "
        "장갑은 29,900원, 방풍 재킷은 79,000원에 샀습니다.",
        "Commuting 8.5 km by bike at minus five degrees: gloves for 29,900 won, a jacket for 79,000 won.",
        numbers=("8.5km", "29,900원", "79,000원"),
    ),
    BlogPost(
        5,
        "동네 병원 진료 시간 정리",
        "이서연",
        ("생활정보", "병원"),
        "평일 진료는 오전 9시부터 오후 6시 30분까지, 토요일은 오후 1시까지입니다. 점심시간은 12:30부터 13:30까지입니다.",
        "Opening hours: weekdays 9:00 to 18:30, Saturdays until 13:00, lunch break 12:30 to 13:30.",
        numbers=("12:30", "13:30"),
        pii=(("phone_landline", "02-312-4567"), ("phone_intl", "+82 10 9876 5432")),
        pii_sentence="예약 전화는 02-312-4567 이고, 해외에 계신 분은 +82 10 9876 5432 로 문자 주시면 됩니다.",
    ),
    BlogPost(
        6,
        "집에서 만드는 김치찌개 레시피",
        "최유진",
        ("요리", "레시피"),
        "2인분 기준으로 돼지고기 300g, 김치 반 포기, 두부 한 모가 필요합니다. 재료비는 약 15,000원입니다.",
        "Kimchi stew for two: 300 g of pork, half a cabbage of kimchi and one block of tofu, about 15,000 won.",
        numbers=("300g", "15,000원"),
    ),
    BlogPost(
        7,
        "중고 노트북 구매 체크리스트",
        "박지훈",
        ("중고거래", "노트북"),
        "2023년식 노트북을 650,000원에 샀습니다. 배터리 사이클 수가 120회 이하인지 꼭 확인하세요.",
        "A 2023 laptop for 650,000 won: always check that the battery has fewer than 120 cycles.",
        numbers=("2023년식", "650,000원", "120회"),
    ),
    BlogPost(
        8,
        "연말정산 준비하면서 배운 것들",
        "최유진",
        ("세금", "연말정산"),
        "올해 의료비 공제 대상 금액은 1,250,000원이었고, 환급액은 약 187,000원으로 예상됩니다.",
        "Medical expenses of 1,250,000 won should bring a refund of about 187,000 won.",
        numbers=("1,250,000원", "187,000원"),
        pii=(("rrn", "900101-1234567"),),
        pii_sentence="서류에 주민등록번호 900101-1234567 을 잘못 적어서 다시 제출해야 했습니다.",
    ),
    BlogPost(
        9,
        "한강 러닝 코스 추천",
        "김민수",
        ("러닝", "한강"),
        "반포대교에서 잠수교까지 왕복 5.2km 코스를 평균 6분 10초 페이스로 달렸습니다.",
        "A 5.2 km loop along the Han river at an average pace of 6:10 per kilometre.",
        numbers=("5.2km", "6:10"),
    ),
    BlogPost(
        10,
        "해외 직구 결제 실수담",
        "이서연",
        ("직구", "쇼핑"),
        "해외 쇼핑몰에서 $129.99짜리 신발을 샀는데 카드 수수료까지 약 178,000원이 청구됐습니다.",
        "Shoes for $129.99 ended up costing about 178,000 won with the card fees.",
        numbers=("$129.99", "178,000원"),
        pii=(("card", "4111 1111 1111 1111"),),
        pii_sentence="결제 화면 캡처에 카드번호 4111 1111 1111 1111 이 그대로 보여서 급하게 지웠습니다.",
    ),
    BlogPost(
        11,
        "독서 모임 1월 일정 안내",
        "최유진",
        ("독서모임", "공지"),
        "1월 모임은 2026-01-24 토요일 오후 2시, 참가비는 10,000원입니다. 정원은 12명입니다.",
        "The January meeting is on 2026-01-24 at 2 pm; the fee is 10,000 won and there are 12 seats.",
        numbers=("2026-01-24", "10,000원", "12명"),
        pii=(("email", "kim.minsu@example.com"), ("phone_mobile", "010-1234-5678")),
        pii_sentence="참가 신청은 kim.minsu@example.com 또는 010-1234-5678 로 해 주세요.",
    ),
    BlogPost(
        12,
        "블로그 1주년 회고",
        "김민수",
        ("회고", "블로그"),
        "지난 1년 동안 글 12편을 썼고, 누적 방문자는 34,567명, 가장 많이 읽힌 글은 글번호 2번이었습니다.",
        "One year of blogging: 12 posts, 34,567 visitors, and post No. 2 was read the most.",
        numbers=("12편", "34,567명", "글번호 2번"),
    ),
)

BROKEN_LINKS: dict[str, str] = {"/blog/posts/7": "/blog/posts/999"}
"""Pages that link to a page that does not exist (a 404 for the crawler)."""

PLANTED_PII: dict[str, dict[str, str]] = {p.path: dict(p.pii) for p in BLOG_POSTS if p.pii}
"""Personal data planted in blog posts: path → {kind: exact string in the page}.

Kinds: ``email``, ``phone_mobile``, ``phone_landline``, ``phone_intl``, ``rrn``
(resident registration number), ``card``.
"""

PLANTED_NUMBERS: dict[str, tuple[str, ...]] = {p.path: p.numbers for p in BLOG_POSTS}
"""Harmless numbers (prices, dates, ids, distances) in each post that redaction must leave alone."""

BOARD_SUBJECTS = (
    "노트북",
    "자전거",
    "중고 책상",
    "이사 업체",
    "주말 등산",
    "파이썬 공부",
    "점심 메뉴",
    "강아지 산책",
    "전세 계약",
    "캠핑 장비",
)
BOARD_FORMS = ("{} 추천 부탁드립니다", "{} 후기 남깁니다", "{} 관련 질문 있어요")
BOARD_NICKS = (
    "달빛고양이",
    "코딩하는곰",
    "서울사람",
    "바다소년",
    "초보집사",
    "등산러버",
    "mintchoco",
    "jhpark",
)
BOARD_COMMENTS = (
    "좋은 정보 감사합니다!",
    "저도 같은 고민 중이었어요.",
    "혹시 가격은 얼마 정도 하나요?",
    "다음 후기도 기대할게요.",
    "쪽지 드렸습니다. 확인 부탁드려요.",
    "ㅋㅋ 완전 공감합니다",
)
BOARD_POSTS = len(BOARD_SUBJECTS) * len(BOARD_FORMS)

EUCKR_TITLES = (
    "가입 인사 드립니다",
    "오늘 점심 뭐 드셨어요?",
    "컴퓨터 부팅이 안 됩니다 도와주세요",
    "주말에 영화 보고 왔어요",
    "똠양꿍 잘하는 식당 찾았어요",
    "중고 모니터 팝니다",
    "비 오는 날 듣기 좋은 노래",
    "자격증 시험 합격했습니다",
    "강아지 이름 추천해 주세요",
    "이사 업체 후기",
    "운동 시작한 지 한 달째",
    "동네 도서관 휴관일 안내",
    "휴대폰 액정 수리 비용",
    "첫 월급으로 부모님 선물",
    "겨울 캠핑 준비물 질문",
    "게시판 이용 규칙 안내",
)
EUCKR_POSTS = len(EUCKR_TITLES)
CP949_ONLY_POSTS: frozenset[int] = frozenset(
    i + 1 for i, t in enumerate(EUCKR_TITLES) if t.encode("cp949") != t.encode("euc_kr")
)
"""Numbers of EUC-KR board posts with characters outside KS X 1001 (they need CP949)."""


class SpecialPage(NamedTuple):
    """A page linked from home that exercises one policy of the crawler."""

    path: str
    label: str
    status: int = 200
    """The status of the final answer."""
    delay: float = 0.0
    """Seconds the server waits before answering."""
    first_status: int | None = None
    """Status of the very first answer of an app instance (the flaky page)."""


SPECIAL_PAGES: tuple[SpecialPage, ...] = (
    SpecialPage("/private/secret", "비공개 페이지 (robots.txt 차단)"),
    SpecialPage("/slow", "느린 페이지 (0.5초)", delay=0.5),
    SpecialPage("/too-slow", "아주 느린 페이지 (30초)", delay=30.0),
    SpecialPage("/error500", "서버 오류 (500)", status=500),
    SpecialPage("/flaky", "가끔 실패하는 페이지 (503 후 200)", first_status=503),
    SpecialPage("/redirect/1", "리다이렉트 체인 (302 → 301 → 302)"),
    SpecialPage("/gone", "삭제된 페이지 (410)", status=410),
    SpecialPage("/notice/2019", "옛 공지 (깨진 링크, 404)", status=404),
)

REDIRECTS: dict[str, tuple[int, str]] = {
    "/redirect/1": (302, "/redirect/2"),
    "/redirect/2": (301, "/redirect/3"),
    "/redirect/3": (302, "/blog/posts/1"),
}
"""path → (status, Location) of the redirect chain."""


def _pages(total: int, per_page: int) -> int:
    return (total + per_page - 1) // per_page


def blog_list_path(page: int) -> str:
    """The URL of a blog list page; page 1 is ``/blog/`` itself."""
    return "/blog/" if page == 1 else f"/blog/?page={page}"


def board_list_path(page: int) -> str:
    """The URL of a page of the UTF-8 board."""
    return f"/board/free/list?page={page}"


def board_post_path(no: int) -> str:
    """The URL of a post of the UTF-8 board."""
    return f"/board/free/read?no={no}"


def euckr_list_path(page: int) -> str:
    """The URL of a page of the EUC-KR board."""
    return f"/euckr/list?page={page}"


def euckr_post_path(no: int) -> str:
    """The URL of a post of the EUC-KR board."""
    return f"/euckr/read/{no}"


BLOG_PAGES = _pages(len(BLOG_POSTS), BLOG_PER_PAGE)
BOARD_PAGES = _pages(BOARD_POSTS, BOARD_PER_PAGE)
EUCKR_PAGES = _pages(EUCKR_POSTS, EUCKR_PER_PAGE)

HOME_SECTIONS: tuple[tuple[str, str], ...] = (
    ("/blog/", "블로그"),
    (board_list_path(1), "자유게시판"),
    (euckr_list_path(1), "옛날 게시판 (EUC-KR)"),
)


def _newest_first(total: int, per_page: int, page: int) -> list[int]:
    """Item numbers on a list page when the newest item (the highest number) comes first."""
    top = total - (page - 1) * per_page
    return list(range(top, max(top - per_page, 0), -1))


def _page_of(no: int, total: int, per_page: int) -> int:
    return (total - no) // per_page + 1


def _pick(seq: tuple[str, ...], n: int, k: int, salt: int = 0) -> list[str]:
    """``k`` distinct-ish items of ``seq`` chosen by arithmetic on ``n``: deterministic everywhere."""
    step = next(s for s in (7, 11, 13, 17) if math.gcd(s, len(seq)) == 1)
    return [seq[(n * 5 + i * step + salt) % len(seq)] for i in range(k)]


NOTICE_IMAGE = "/img/notice.png"
"""A picture of a notice (Korean and English text) that the parse stage reads with OCR."""
NOTICE_POSTS = frozenset({3})
"""Blog posts that show the notice image."""


# ---------------------------------------------------------------------------
# Rendering.
# ---------------------------------------------------------------------------

E = html.escape

NAV = (
    '<nav class="gnb"><a href="/">홈</a> | <a href="/blog/">블로그</a> | '
    f'<a href="{board_list_path(1)}">자유게시판</a></nav>'
)


def _html(title: str, body: str, *, head: str = '<meta charset="utf-8">', lang: str = "ko") -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n{head}\n<title>{E(title)}</title>\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n</head>\n'
        f'<body>\n<header><a class="logo" href="/">shoal 동네</a>\n{NAV}\n</header>\n'
        f"<main>\n{body}\n</main>\n"
        "<footer><p>© 2026 shoal 동네 커뮤니티 · 데모 사이트</p></footer>\n</body>\n</html>\n"
    )


def _pagination(page: int, pages: int, path: Callable[[int], str], cls: str = "pagination") -> str:
    parts = [f'<nav class="{cls}">']
    if page > 1:
        parts.append(f'<a class="prev" href="{path(page - 1)}">&laquo; 이전</a>')
    for p in range(1, pages + 1):
        if p == page:
            parts.append(f'<strong class="current">{p}</strong>')
        else:
            parts.append(f'<a class="page" href="{path(p)}">{p}</a>')
    if page < pages:
        parts.append(f'<a class="next" href="{path(page + 1)}">다음 &raquo;</a>')
    parts.append("</nav>")
    return " ".join(parts)


def _date_ko(day: int) -> str:
    return f"2026년 1월 {day}일"


def render_home() -> str:
    """The home page."""
    sections = "\n".join(f'<li><a href="{p}">{E(label)}</a></li>' for p, label in HOME_SECTIONS)
    specials = "\n".join(f'<li><a href="{s.path}">{E(s.label)}</a></li>' for s in SPECIAL_PAGES)
    body = (
        "<h1>shoal 동네 커뮤니티에 오신 것을 환영합니다</h1>\n"
        "<p>Welcome to a small neighbourhood community: a blog, a free board and an old board "
        "that still speaks EUC-KR.</p>\n"
        f'<section class="sections"><h2>게시판</h2>\n<ul>\n{sections}\n</ul></section>\n'
        f'<section class="tests"><h2>크롤러 시험용 페이지</h2>\n<ul>\n{specials}\n</ul></section>'
    )
    return _html("shoal 동네 커뮤니티", body)


def blog_post(no: int) -> BlogPost | None:
    """The blog post ``no``, or None when there is none."""
    return BLOG_POSTS[no - 1] if 1 <= no <= len(BLOG_POSTS) else None


def render_blog_list(page: int) -> str:
    """A page of the blog's post list (newest first)."""
    items = []
    for no in _newest_first(len(BLOG_POSTS), BLOG_PER_PAGE, page):
        post = BLOG_POSTS[no - 1]
        items.append(
            f'<li class="post"><a class="title" href="{post.path}">{E(post.title)}</a>\n'
            f'<span class="author">{E(post.author)}</span> '
            f'<time class="date" datetime="2026-01-{post.day:02d}">{_date_ko(post.day)}</time>\n'
            f'<p class="summary">{E(post.lead_ko[:60])}…</p></li>'
        )
    body = (
        f'<h1>개발·일상 블로그</h1>\n<p class="page-info">{page} / {BLOG_PAGES} 페이지</p>\n'
        '<ul class="post-list">\n'
        + "\n".join(items)
        + "\n</ul>\n"
        + _pagination(page, BLOG_PAGES, blog_list_path)
    )
    return _html(f"블로그 - {page}페이지", body)


def render_blog_post(post: BlogPost) -> str:
    """One blog post."""
    ko = _pick(KO_POOL, post.no, 3)
    en = _pick(EN_POOL, post.no, 2, salt=3)
    paragraphs = [
        post.lead_ko,
        " ".join(ko),
        post.lead_en + " " + " ".join(en),
    ]
    if post.pii_sentence:
        paragraphs.append(post.pii_sentence)
    content = "\n".join(f"<p>{E(p)}</p>" for p in paragraphs)
    broken = BROKEN_LINKS.get(post.path)
    if broken:
        content += f'\n<p>자세한 사양은 <a href="{broken}">예전 글</a>에 정리해 두었습니다.</p>'
    content += f"\n<p>{E(_pick(KO_POOL, post.no, 1, salt=11)[0])}</p>"
    if post.no in NOTICE_POSTS:
        content += f'\n<p><img class="notice" src="{NOTICE_IMAGE}" alt="공지 이미지"></p>'
    tags = "".join(f'<li class="tag">#{E(t)}</li>' for t in post.tags)
    page = _page_of(post.no, len(BLOG_POSTS), BLOG_PER_PAGE)
    body = (
        '<article class="post">\n'
        f'<h1 class="title">{E(post.title)}</h1>\n'
        f'<p class="meta"><span class="author">{E(post.author)}</span> · '
        f'<time class="date" datetime="2026-01-{post.day:02d}">{_date_ko(post.day)}</time> · '
        f'<span class="post-id">글번호 {post.no}</span></p>\n'
        f'<div class="content">\n{content}\n</div>\n'
        f'<ul class="tags">{tags}</ul>\n'
        f'<p class="back"><a href="{blog_list_path(page)}">목록으로</a></p>\n'
        "</article>"
    )
    return _html(post.title, body)


class BoardPost(NamedTuple):
    """One post of the UTF-8 board, derived from its number."""

    no: int
    title: str
    author: str
    date: str
    views: int
    body: list[str]
    comments: list[tuple[str, str, str]]


def board_post(no: int) -> BoardPost:
    """The board post ``no`` (1..30), generated from the tables."""
    subject = BOARD_SUBJECTS[(no - 1) % len(BOARD_SUBJECTS)]
    form = BOARD_FORMS[(no - 1) // len(BOARD_SUBJECTS)]
    day = (no + 1) // 2 + 1
    hour = 9 + (no * 5) % 13
    minute = (no * 17) % 60
    body = [
        f"{subject} 때문에 글 남깁니다. 예산은 {(no % 5 + 1) * 100_000:,}원 정도 생각하고 있습니다.",
        *_pick(KO_POOL, no, 3, salt=1),
    ]
    comments = [
        (
            BOARD_NICKS[(no + c + 3) % len(BOARD_NICKS)],
            f"2026-01-{day + 1:02d} {(hour + c) % 24:02d}:{(minute + 7 * c) % 60:02d}",
            BOARD_COMMENTS[(no + 2 * c) % len(BOARD_COMMENTS)],
        )
        for c in range((no * 5) % 4)
    ]
    return BoardPost(
        no,
        form.format(subject),
        BOARD_NICKS[no % len(BOARD_NICKS)],
        f"2026-01-{day:02d} {hour:02d}:{minute:02d}",
        (no * 37 + 11) % 900 + 15,
        body,
        comments,
    )


def render_board_list(page: int) -> str:
    """A page of the UTF-8 board's table of posts."""
    rows = []
    for no in _newest_first(BOARD_POSTS, BOARD_PER_PAGE, page):
        p = board_post(no)
        cmt = f' <span class="cmt">[{len(p.comments)}]</span>' if p.comments else ""
        rows.append(
            f'<tr><td class="no">{p.no}</td>'
            f'<td class="subject"><a href="{board_post_path(p.no)}">{E(p.title)}</a>{cmt}</td>'
            f'<td class="writer">{E(p.author)}</td><td class="date">{p.date[:10]}</td>'
            f'<td class="hit">{p.views}</td></tr>'
        )
    body = (
        "<h1>자유게시판</h1>\n"
        '<table class="board-list">\n<thead><tr><th>번호</th><th>제목</th><th>글쓴이</th>'
        "<th>날짜</th><th>조회</th></tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody>\n</table>\n"
        + _pagination(page, BOARD_PAGES, board_list_path, cls="paging")
    )
    return _html(f"자유게시판 - {page}페이지", body)


def render_board_post(p: BoardPost) -> str:
    """One post of the UTF-8 board with its comments."""
    comments = "\n".join(
        f'<li class="comment"><span class="writer">{E(w)}</span> <span class="date">{d}</span>'
        f"<p>{E(t)}</p></li>"
        for w, d, t in p.comments
    )
    page = _page_of(p.no, BOARD_POSTS, BOARD_PER_PAGE)
    body = (
        '<div class="view">\n'
        f'<h1 class="subject">{E(p.title)}</h1>\n'
        f'<dl class="info"><dt>글쓴이</dt><dd class="writer">{E(p.author)}</dd>'
        f'<dt>날짜</dt><dd class="date">{p.date}</dd><dt>조회</dt><dd class="hit">{p.views}</dd></dl>\n'
        '<div class="body">\n' + "\n".join(f"<p>{E(s)}</p>" for s in p.body) + "\n</div>\n"
        f'<h2>댓글 <span class="count">{len(p.comments)}</span></h2>\n'
        f'<ul class="comments">\n{comments}\n</ul>\n'
        f'<p><a class="list" href="{board_list_path(page)}">목록</a></p>\n'
        "</div>"
    )
    return _html(p.title, body)


def euckr_post_body(no: int) -> list[str]:
    """The paragraphs of EUC-KR board post ``no``."""
    title = EUCKR_TITLES[no - 1]
    lines = [f"{title}. 오랜만에 게시판에 글을 남깁니다."]
    if no in CP949_ONLY_POSTS:
        lines.append(
            "태국 음식 좋아하시는 분들은 똠양꿍 꼭 드셔 보세요. 똠양꿍 한 그릇에 9,000원입니다."
        )
    lines.extend(_pick(KO_POOL, no, 6, salt=5))
    lines.append(f"글번호 {no}번, 2008년 {no % 12 + 1}월에 처음 올린 글을 옮겨 왔습니다.")
    return lines


def render_euckr_list(page: int) -> bytes:
    """A page of the EUC-KR board, as CP949 bytes, declaring its charset in a meta tag."""
    rows = []
    for no in _newest_first(EUCKR_POSTS, EUCKR_PER_PAGE, page):
        rows.append(
            f'<TR><TD>{no}</TD><TD><A HREF="{euckr_post_path(no)}">{E(EUCKR_TITLES[no - 1])}</A></TD>'
            f"<TD>{E(BOARD_NICKS[(no * 3) % len(BOARD_NICKS)])}</TD><TD>2008.{no % 12 + 1:02d}.{no + 10:02d}</TD></TR>"
        )
    links = " ".join(
        f"<B>[{p}]</B>" if p == page else f'<A HREF="{euckr_list_path(p)}">[{p}]</A>'
        for p in range(1, EUCKR_PAGES + 1)
    )
    text = (
        "<HTML>\n<HEAD>\n"
        '<META HTTP-EQUIV="Content-Type" CONTENT="text/html; charset=euc-kr">\n'
        f"<TITLE>옛날 게시판 - {page}페이지</TITLE>\n</HEAD>\n<BODY>\n"
        '<P><A HREF="/">처음으로</A></P>\n<H1>옛날 게시판</H1>\n'
        '<TABLE CLASS="board" BORDER="1">\n<TR><TH>번호</TH><TH>제목</TH><TH>글쓴이</TH><TH>날짜</TH></TR>\n'
        + "\n".join(rows)
        + f'\n</TABLE>\n<P CLASS="paging">{links}</P>\n</BODY>\n</HTML>\n'
    )
    return text.encode("cp949")


def render_euckr_post(no: int) -> bytes:
    """A post of the EUC-KR board, as CP949 bytes, with no charset declared anywhere."""
    title = EUCKR_TITLES[no - 1]
    page = _page_of(no, EUCKR_POSTS, EUCKR_PER_PAGE)
    paras = "\n".join(f"<P>{E(s)}</P>" for s in euckr_post_body(no))
    text = (
        f"<HTML>\n<HEAD>\n<TITLE>{E(title)}</TITLE>\n</HEAD>\n<BODY>\n"
        f'<H1 CLASS="subject">{E(title)}</H1>\n'
        f'<P CLASS="writer">글쓴이: {E(BOARD_NICKS[(no * 3) % len(BOARD_NICKS)])}</P>\n'
        f'<DIV CLASS="body">\n{paras}\n</DIV>\n'
        f'<P><A HREF="{euckr_list_path(page)}">목록으로</A></P>\n</BODY>\n</HTML>\n'
    )
    return text.encode("cp949")


def render_simple(title: str, message: str) -> str:
    """A small page with one message and a link home (error pages, test pages)."""
    return _html(title, f'<h1>{E(title)}</h1>\n<p>{E(message)}</p>\n<p><a href="/">홈으로</a></p>')
