"""The demo site's pages: what each one says, built from :mod:`shoal.demo.data`, and its HTML.

- ``/``: the home page, linking to every section and to the misbehaving pages;
- ``/blog/`` (``?page=2``, ``?page=3``): the posts newest first, 4 per page,
  and each post ``/blog/posts/N`` (:func:`blog_post`);
- ``/board/free/list?page=1..3``: a UTF-8 board, 30 posts with comments
  (:func:`board_post`);
- ``/euckr/list?page=1..2``: an old board rendered as EUC-KR (really CP949)
  bytes; only the list pages declare the encoding in a ``<meta>``; post 5
  needs CP949 (:func:`euckr_post_body`).

The ``render_*`` functions return a page's HTML (``str``, or CP949 ``bytes``
for the old board); :mod:`shoal.demo.site` serves them. Sentences are picked
from the pools by arithmetic on the post's number, never at random.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from typing import NamedTuple

from shoal.demo.data import (
    BLOG_PAGES,
    BLOG_PER_PAGE,
    BLOG_POSTS,
    BOARD_COMMENTS,
    BOARD_FORMS,
    BOARD_NICKS,
    BOARD_PAGES,
    BOARD_PER_PAGE,
    BOARD_POSTS,
    BOARD_SUBJECTS,
    BROKEN_LINKS,
    CP949_ONLY_POSTS,
    EN_POOL,
    EUCKR_PAGES,
    EUCKR_PER_PAGE,
    EUCKR_POSTS,
    EUCKR_TITLES,
    KO_POOL,
    NOTICE_IMAGE,
    NOTICE_POSTS,
    SPECIAL_PAGES,
    BlogPost,
    blog_list_path,
    board_list_path,
    board_post_path,
    euckr_list_path,
    euckr_post_path,
)

__all__ = [
    "BoardPost",
    "blog_post",
    "board_post",
    "euckr_post_body",
    "render_blog_list",
    "render_blog_post",
    "render_board_list",
    "render_board_post",
    "render_euckr_list",
    "render_euckr_post",
    "render_home",
    "render_simple",
]

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


def _time(day: int) -> str:
    """The ``<time>`` of a blog post published on ``day`` of January 2026, in Korean."""
    return f'<time class="date" datetime="2026-01-{day:02d}">2026년 1월 {day}일</time>'


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
            f"{_time(post.day)}\n"
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
        f"{_time(post.day)} · "
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


def _euckr_writer(no: int) -> str:
    """The nickname that wrote EUC-KR board post ``no``."""
    return BOARD_NICKS[(no * 3) % len(BOARD_NICKS)]


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
            f"<TD>{E(_euckr_writer(no))}</TD><TD>2008.{no % 12 + 1:02d}.{no + 10:02d}</TD></TR>"
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
        f'<P CLASS="writer">글쓴이: {E(_euckr_writer(no))}</P>\n'
        f'<DIV CLASS="body">\n{paras}\n</DIV>\n'
        f'<P><A HREF="{euckr_list_path(page)}">목록으로</A></P>\n</BODY>\n</HTML>\n'
    )
    return text.encode("cp949")


def render_simple(title: str, message: str) -> str:
    """A small page with one message and a link home (error pages, test pages)."""
    return _html(title, f'<h1>{E(title)}</h1>\n<p>{E(message)}</p>\n<p><a href="/">홈으로</a></p>')
