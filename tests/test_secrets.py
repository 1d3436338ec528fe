"""Credentials stay out of what is stored: seed passwords and header secrets never reach rows, WARCs or tables."""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from shoal.errors import SpecError
from shoal.frontier import SqlFrontier
from shoal.frontier.tables import crawls, urls
from shoal.spec import parse_spec

USER, PASSWORD = "alice", "s3cr3t-Pa55"
COOKIE = "board_session=tok-9f8e7d"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


class _Site(BaseHTTPRequestHandler):
    """A site whose pages answer only with the right Basic credentials and cookie."""

    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.seen.append({"path": self.path, **headers})  # type: ignore[attr-defined]
        if self.path == "/robots.txt":
            self._send(200, b"User-agent: *\nAllow: /\n", "text/plain")
        elif headers.get("authorization") != BASIC or headers.get("cookie") != COOKIE:
            self._send(401, b"<html><title>no</title></html>", "text/html")
        elif self.path == "/":
            body = '<html><head><title>home</title></head><body><a href="/p/1">1</a> <a href="/p/2">2</a></body></html>'
            self._send(200, body.encode(), "text/html; charset=utf-8")
        elif self.path.startswith("/p/"):
            body = f"<html><head><title>post {self.path[3:]}</title></head><body><h1>post</h1></body></html>"
            self._send(200, body.encode(), "text/html; charset=utf-8")
        else:
            self._send(404, b"", "text/plain")

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def auth_site() -> Iterator[Any]:
    """The credential-checking site on 127.0.0.1; ``.seen`` lists every request's headers."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    server.seen = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _spec_text(port: int, data: Path) -> str:
    return f"""
[crawl]
name = "secret"
seeds = ["http://{USER}:{PASSWORD}@127.0.0.1:{port}/"]

[scope]
allow_private = true

[scope.headers."127.0.0.1:{port}"]
Cookie = {{ env = "SHOAL_TEST_BOARD_COOKIE" }}

[politeness]
delay = 0.0

[storage]
frontier = "sqlite:///{data.as_posix()}/frontier.sqlite"
archive = "{data.as_posix()}/warc"

[parse]
out = "{data.as_posix()}/tables"
to = "jsonl"

[parse.tables.pages]
from = ["list"]

[parse.tables.pages.fields]
heading = {{ css = "title" }}
"""


def _shoal(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def _all_bytes(folder: Path) -> bytes:
    out = b""
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            raw = p.read_bytes()
            out += gzip.decompress(raw) if p.name.endswith(".gz") else raw
    return out


def test_seed_credentials_and_env_cookie_are_sent_but_never_stored(
    auth_site: Any, tmp_path: Path
) -> None:
    """A user:password@ seed and an env-var Cookie reach their host, but no row, WARC or table holds them."""
    import os

    port = auth_site.server_address[1]
    data = tmp_path / "data"
    spec_path = tmp_path / "s.toml"
    spec_path.write_text(_spec_text(port, data))
    env = {**os.environ, "SHOAL_TEST_BOARD_COOKIE": COOKIE}
    res = _shoal("crawl", str(spec_path), "--no-progress", env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    pages = [s for s in auth_site.seen if s["path"] != "/robots.txt"]
    assert {s["path"] for s in pages} == {"/", "/p/1", "/p/2"}
    assert all(s.get("authorization") == BASIC and s.get("cookie") == COOKIE for s in pages)

    f = SqlFrontier(f"sqlite:///{data.as_posix()}/frontier.sqlite", create=False)
    try:
        rows = {r.url: r.status for r in f.query(select(urls.c.url, urls.c.status))}
        stored_spec = next(iter(f.query(select(crawls.c.spec)))).spec
    finally:
        f.close()
    assert rows == {
        f"http://127.0.0.1:{port}/": "done",
        f"http://127.0.0.1:{port}/p/1": "done",
        f"http://127.0.0.1:{port}/p/2": "done",
    }
    assert COOKIE not in stored_spec and "SHOAL_TEST_BOARD_COOKIE" in stored_spec

    warcs = _all_bytes(data / "warc")
    assert b"<h1>post</h1>" in warcs
    for secret in (PASSWORD, COOKIE.split("=")[1], BASIC.split()[1]):
        assert secret.encode() not in warcs, secret
        assert secret not in res.stdout + res.stderr

    parsed = _shoal("parse", str(spec_path), env=env, cwd=tmp_path)
    assert parsed.returncode == 0, parsed.stdout + parsed.stderr
    out = b"".join(p.read_bytes() for p in (data / "tables").rglob("*.jsonl"))
    rows_out = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert {r["url"] for r in rows_out} == set(rows)
    assert all("@" not in r["final_url"] and PASSWORD not in r["final_url"] for r in rows_out)
    assert PASSWORD.encode() not in out and USER.encode() + b":" not in out


def test_missing_env_secret_stops_the_worker_with_key_and_variable(
    auth_site: Any, tmp_path: Path
) -> None:
    """A `{ env = "VAR" }` header whose variable is unset: exit 2, naming the header and the variable."""
    import os

    port = auth_site.server_address[1]
    spec_path = tmp_path / "s.toml"
    spec_path.write_text(_spec_text(port, tmp_path / "data"))
    env = {k: v for k, v in os.environ.items() if k != "SHOAL_TEST_BOARD_COOKIE"}
    res = _shoal("crawl", str(spec_path), "--no-progress", env=env, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "SHOAL_TEST_BOARD_COOKIE" in res.stderr and "Cookie" in res.stderr
    assert "Traceback" not in res.stderr
    assert [s for s in auth_site.seen if s["path"] != "/robots.txt"] == []


def test_resolved_headers_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`resolved_headers()` replaces `{ env = "VAR" }` by the variable; a CRLF in it is refused."""
    spec = parse_spec(
        '[crawl]\nname = "x"\nseeds = ["https://a.example/"]\n'
        '[scope.headers."a.example"]\nCookie = { env = "SHOAL_T_COOKIE" }\nX-Plain = "v"\n'
    )
    monkeypatch.setenv("SHOAL_T_COOKIE", "s=1")
    assert spec.scope.resolved_headers() == {"a.example": {"Cookie": "s=1", "X-Plain": "v"}}
    monkeypatch.setenv("SHOAL_T_COOKIE", "s=1\r\nX-Evil: 1")
    with pytest.raises(SpecError, match="SHOAL_T_COOKIE"):
        spec.scope.resolved_headers()
    monkeypatch.delenv("SHOAL_T_COOKIE")
    with pytest.raises(SpecError, match=r"scope\.headers\.'a\.example'\.Cookie.*SHOAL_T_COOKIE"):
        spec.scope.resolved_headers()


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("postgresql://shoal:p@ss@db.example:5432/x", "postgresql://shoal:***@db.example:5432/x"),
        (
            "postgresql+psycopg://shoal:pw@127.0.0.1/db",
            "postgresql+psycopg://shoal:***@127.0.0.1/db",
        ),
        ("postgresql://u:pw@h:notaport/d", "postgresql://u:***@h:notaport/d"),
        ("mysql+pymysql://root:x:y@127.0.0.1/x", "mysql+pymysql://root:***@127.0.0.1/x"),
        ("sqlite:///shoal-data/x/frontier.sqlite", "sqlite:///shoal-data/x/frontier.sqlite"),
        ("http://h:80/x@y", "http://h:80/x@y"),
        ("http://a:b@h/p?token=x&page=2", "http://a:***@h/p?token=***&page=2"),
    ],
)
def test_one_redact_url_for_crawled_and_database_urls(url: str, want: str) -> None:
    """`shoal.secrets.redact_url` hides passwords of database URLs too, even with "@" in them or a bad port."""
    from shoal.secrets import redact_url

    assert redact_url(url) == want
