"""What the demo site is made of: the tables its pages are generated from, and its URLs.

Everything is in code, so the site is the same on every run and on every
port (all paths are root-relative):

- the blog: 12 posts (:data:`BLOG_POSTS`), :data:`BLOG_PER_PAGE` to a list
  page; post 7 links to ``/blog/posts/999``, which does not exist
  (:data:`BROKEN_LINKS`); some posts carry planted personal data
  (:data:`PLANTED_PII`) and harmless numbers (:data:`PLANTED_NUMBERS`) for the
  redaction tests of the parse stage; post 3 shows :data:`NOTICE_IMAGE`;
- the UTF-8 board: :data:`BOARD_POSTS` posts made from :data:`BOARD_SUBJECTS`,
  :data:`BOARD_FORMS`, :data:`BOARD_NICKS` and :data:`BOARD_COMMENTS`;
- the old EUC-KR board: one post per title of :data:`EUCKR_TITLES`; those in
  :data:`CP949_ONLY_POSTS` need CP949;
- the misbehaving pages linked from home (:data:`SPECIAL_PAGES`,
  :data:`REDIRECTS`) and what ``/robots.txt`` disallows
  (:data:`ROBOTS_DISALLOW`);
- the URL of each list page and post (``*_path``) and the number of list
  pages of each section (``*_PAGES``).

:mod:`shoal.demo.pages` builds the pages from these tables and
:mod:`shoal.demo.expected` derives from them what a crawl must end with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "BLOG_PAGES",
    "BLOG_PER_PAGE",
    "BLOG_POSTS",
    "BOARD_COMMENTS",
    "BOARD_FORMS",
    "BOARD_NICKS",
    "BOARD_PAGES",
    "BOARD_PER_PAGE",
    "BOARD_POSTS",
    "BOARD_SUBJECTS",
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
    "SpecialPage",
    "blog_list_path",
    "board_list_path",
    "board_post_path",
    "euckr_list_path",
    "euckr_post_path",
]

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

NOTICE_IMAGE = "/img/notice.png"
"""A picture of a notice (Korean and English text) that the parse stage reads with OCR."""
NOTICE_POSTS = frozenset({3})
"""Blog posts that show the notice image."""
