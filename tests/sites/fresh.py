"""A board whose content changes on a clock the test controls, served on 127.0.0.1 with a request log.

The site has a list page (``/list``, newest post first), posts (``/post/{id}``
with their comments) and a static page (``/about``). Nothing changes by
itself: the test publishes posts, adds comments and moves the clock
(:meth:`FreshSite.advance`), which dates ``Last-Modified`` headers and sitemap
``<lastmod>`` entries. Validators are honest: the list page and posts created
with ``validators=True`` send ``ETag`` and ``Last-Modified`` and answer ``304``
to a matching ``If-None-Match`` / ``If-Modified-Since``; ``/about`` and posts
without validators send the same body with ``200`` each time.

For seeds from sitemaps and feeds it serves ``/robots.txt`` (with a
``Sitemap:`` line), a sitemap index, a gzip sitemap, an RSS feed and an Atom
feed; their URLs name the production host ``blog.example.com`` (which a spec
maps to this server with ``host_map``) and one foreign host, which stays out
of scope. Every request is logged with its path, status and whether it was
conditional, so tests count requests exactly.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime

from aiohttp import web

from shoal.testing import ThreadedSite

__all__ = ["FreshSite", "Hit", "Post"]

PROD_HOST = "blog.example.com"
FOREIGN_HOST = "other.example.org"
SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"


@dataclass
class Post:
    """One post: its comments and the clock times it was published and last changed."""

    id: int
    title: str
    published: float
    modified: float
    validators: bool = True
    comments: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Hit:
    """One request the site answered."""

    path: str
    status: int
    conditional: bool
    user_agent: str


@dataclass
class FreshSite(ThreadedSite):
    """Serves the board in a background thread; the test changes it and reads ``log``."""

    thread_name = "fresh-site"

    host: str = "127.0.0.1"
    now: float = 1_700_000_000.0
    posts: dict[int, Post] = field(default_factory=dict)
    log: list[Hit] = field(default_factory=list)
    port: int = 0
    robots_delay: float | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._list_changed = self.now

    # -- what the test does ---------------------------------------------------------------

    def url(self, path: str = "/list") -> str:
        """An absolute URL on this server."""
        return f"http://{self.host}:{self.port}{path}"

    @property
    def hostport(self) -> str:
        """``host:port`` of this server (the target of a spec's ``host_map``)."""
        return f"{self.host}:{self.port}"

    def advance(self, seconds: float) -> None:
        """Move the site's clock forward."""
        with self._lock:
            self.now += seconds

    def publish(self, title: str, *, validators: bool = True) -> int:
        """Publish a post now; returns its id."""
        with self._lock:
            pid = len(self.posts) + 1
            self.posts[pid] = Post(pid, title, self.now, self.now, validators)
            self._list_changed = self.now
            return pid

    def comment(self, post_id: int, text: str) -> None:
        """Add a comment to a post (its page changes; the list page does not)."""
        with self._lock:
            p = self.posts[post_id]
            p.comments.append(text)
            p.modified = self.now

    def hits(self, path: str | None = None, status: int | None = None) -> int:
        """How many requests were answered (for ``path``, with ``status``)."""
        with self._lock:
            return sum(
                1
                for h in self.log
                if (path is None or h.path == path) and (status is None or h.status == status)
            )

    def pages(self) -> list[str]:
        """Every page path requested at least once, except robots.txt."""
        with self._lock:
            return sorted({h.path for h in self.log if h.path != "/robots.txt"})

    # -- serving --------------------------------------------------------------------------

    async def _open(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self.port = await self._listen(await self._runner(app), self.host, self.port)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path_qs
        conditional = "If-None-Match" in request.headers or "If-Modified-Since" in request.headers
        resp = self._answer(request, path)
        with self._lock:
            self.log.append(
                Hit(path, resp.status, conditional, request.headers.get("User-Agent", ""))
            )
        return resp

    def _answer(self, request: web.Request, path: str) -> web.Response:
        with self._lock:
            if path == "/list":
                return self._validated(request, self._list_html(), self._list_changed, "text/html")
            if path.startswith("/post/") and path[6:].isdigit():
                post = self.posts.get(int(path[6:]))
                if post is None or post.published > self.now:
                    return web.Response(status=404, text="no such post")
                html = self._post_html(post)
                if post.validators:
                    return self._validated(request, html, post.modified, "text/html")
                return web.Response(body=html.encode(), content_type="text/html", charset="utf-8")
            if path == "/about":
                html = "<html><head><title>About</title></head><body><p>A board.</p></body></html>"
                return web.Response(body=html.encode(), content_type="text/html", charset="utf-8")
            if path == "/robots.txt":
                lines = ["User-agent: *", "Allow: /"]
                if self.robots_delay is not None:
                    lines.append(f"Crawl-delay: {self.robots_delay}")
                lines.append(f"Sitemap: https://{PROD_HOST}/sitemap_index.xml")
                return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")
            if path == "/sitemap_index.xml":
                return web.Response(body=self._sitemap_index(), content_type="application/xml")
            if path == "/sitemap-posts.xml.gz":
                return web.Response(
                    body=gzip.compress(self._sitemap()), content_type="application/x-gzip"
                )
            if path == "/sitemap-pages.xml":
                return web.Response(body=self._sitemap_pages(), content_type="application/xml")
            if path == "/feed.rss":
                return web.Response(body=self._rss(), content_type="application/rss+xml")
            if path == "/atom.xml":
                return web.Response(body=self._atom(), content_type="application/atom+xml")
        return web.Response(status=404, text="not found")

    def _validated(
        self, request: web.Request, html: str, modified: float, ctype: str
    ) -> web.Response:
        body = html.encode()
        etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
        last = formatdate(modified, usegmt=True)
        inm = request.headers.get("If-None-Match")
        ims = request.headers.get("If-Modified-Since")
        fresh = False
        if inm is not None:
            fresh = etag in [t.strip() for t in inm.split(",")]
        elif ims is not None:
            try:
                fresh = int(modified) <= int(parsedate_to_datetime(ims).timestamp())
            except (TypeError, ValueError):
                fresh = False
        headers = {"ETag": etag, "Last-Modified": last}
        if fresh:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type=ctype, charset="utf-8", headers=headers)

    def _visible(self) -> list[Post]:
        return sorted(
            (p for p in self.posts.values() if p.published <= self.now),
            key=lambda p: -p.id,
        )

    def _list_html(self) -> str:
        items = "".join(
            f'<li><a class="subject" href="/post/{p.id}">{p.title}</a></li>'
            for p in self._visible()
        )
        return (
            "<html><head><title>Board</title></head><body><h1>Board</h1>"
            f'<ul>{items}</ul><a href="/about">about</a></body></html>'
        )

    @staticmethod
    def _post_html(p: Post) -> str:
        comments = "".join(f'<li class="comment">{c}</li>' for c in p.comments)
        return (
            f"<html><head><title>{p.title}</title></head><body>"
            f'<h1 class="title">{p.title}</h1><p class="body">Post number {p.id}.</p>'
            f'<ul class="comments">{comments}</ul><span class="count">{len(p.comments)}</span>'
            '<a href="/list">back</a></body></html>'
        )

    # -- sitemaps and feeds ---------------------------------------------------------------

    @staticmethod
    def _iso(t: float) -> str:
        from datetime import UTC, datetime

        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _sitemap_index(self) -> bytes:
        base = f"https://{PROD_HOST}"
        return _xml(
            f'<sitemapindex xmlns="{SITEMAP_NS}">'
            f"<sitemap><loc>{base}/sitemap-posts.xml.gz</loc></sitemap>"
            f"<sitemap><loc>{base}/sitemap-pages.xml</loc></sitemap>"
            f"<sitemap><loc>https://{FOREIGN_HOST}/sitemap.xml</loc></sitemap>"
            "</sitemapindex>"
        )

    def _sitemap(self) -> bytes:
        entries = "".join(
            f"<url><loc>https://{PROD_HOST}/post/{p.id}</loc>"
            f"<lastmod>{self._iso(p.modified)}</lastmod></url>"
            for p in self._visible()
        )
        return _urlset(entries + f"<url><loc>https://{FOREIGN_HOST}/elsewhere</loc></url>")

    def _sitemap_pages(self) -> bytes:
        return _urlset(f"<url><loc>https://{PROD_HOST}/about</loc></url>")

    def _rss(self) -> bytes:
        items = "".join(
            f"<item><title>{p.title}</title><link>https://{PROD_HOST}/post/{p.id}</link></item>"
            for p in self._visible()
        )
        return _xml(
            '<rss version="2.0"><channel>'
            f"<title>Board</title><link>https://{PROD_HOST}/list</link>{items}"
            f"<item><title>x</title><link>https://{FOREIGN_HOST}/x</link></item>"
            "</channel></rss>"
        )

    def _atom(self) -> bytes:
        entries = "".join(
            f'<entry><title>{p.title}</title><link rel="alternate" href="https://{PROD_HOST}/post/{p.id}"/>'
            f"<updated>{self._iso(p.modified)}</updated></entry>"
            for p in self._visible()
        )
        return _xml(
            f'<feed xmlns="http://www.w3.org/2005/Atom"><title>Board</title>{entries}</feed>',
            "utf-8",
        )


def _xml(document: str, encoding: str = "UTF-8") -> bytes:
    """``document`` after an XML declaration naming ``encoding``, as UTF-8 bytes."""
    return (f'<?xml version="1.0" encoding="{encoding}"?>\n' + document).encode()


def _urlset(urls: str) -> bytes:
    """A sitemap of these ``<url>`` entries."""
    return _xml(f'<urlset xmlns="{SITEMAP_NS}">{urls}</urlset>')
