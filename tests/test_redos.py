"""Spec regexes run on a linear-time engine (RE2): a catastrophic pattern cannot hang a worker."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select

from shoal.errors import SpecError
from shoal.frontier import SqlFrontier
from shoal.frontier.tables import urls, workers
from shoal.spec import Rule, parse_spec
from shoal.worker.links import Router

EVIL = "(a+)+$"
EVIL_PATH = "/" + "a" * 36 + "!"


def test_catastrophic_regex_gives_its_answer_on_the_redos_url() -> None:
    """`(a+)+$` against `/aaaa…a!` (36 a's) gives no match, and matches where it should."""
    router = Router([Rule(name="evil", regex=EVIL, kind="detail")])
    assert router.match("http://h.example" + EVIL_PATH) is None
    assert router.match("http://h.example" + "/" + "a" * 100_000 + "!") is None
    hit = router.match("http://h.example/" + "a" * 36)
    assert hit is not None and hit.rule == 0


@pytest.mark.parametrize(
    ("regex", "construct"),
    [
        (r"/(\\w+)/\\1", "back-reference"),
        ("/post(?=/)", "lookaround"),
        ("(?<!x)/y", "lookaround"),
        ("/a++", "possessive"),
        ("/a(?>b)", "atomic group"),
    ],
)
def test_unsupported_regex_is_a_validate_error_naming_rule_and_construct(
    regex: str, construct: str
) -> None:
    """A regex RE2 refuses is rejected at validate, naming the rule by name and the construct."""
    text = f"""
[crawl]
name = "x"
seeds = ["https://example.com/"]

[[rules]]
name = "first"
glob = "/a/*"

[[rules]]
name = "posts"
regex = "{regex}"
"""
    with pytest.raises(SpecError) as err:
        parse_spec(text, "spec.toml")
    msg = str(err.value)
    assert 'rules["posts"].regex' in msg
    assert construct in msg and "RE2" in msg
    assert "rules.1" not in msg


def test_validate_command_prints_the_re2_error(tmp_path: Path) -> None:
    """`shoal validate` exits 2 on a back-reference, with the rule's name in the message."""
    p = tmp_path / "s.toml"
    p.write_text(
        '[crawl]\nname = "x"\nseeds = ["https://example.com/"]\n'
        '[[rules]]\nname = "dup"\nregex = "(a)\\\\1"\n'
    )
    res = subprocess.run(
        [sys.executable, "-m", "shoal", "validate", str(p)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert 'rules["dup"].regex' in res.stderr and "back-reference" in res.stderr
    assert "Traceback" not in res.stderr


# --- SIGTERM during a crawl whose pages are all links matched against the evil regex ---

LINKS_PER_PAGE = 3000


class _Handler(BaseHTTPRequestHandler):
    """``/list/N``: LINKS_PER_PAGE long ``/aaa…!`` links (matched against the evil rule) and ``/list/N+1``."""

    def do_GET(self) -> None:
        if self.path == "/robots.txt":
            body = b"User-agent: *\nAllow: /\n"
            ctype = "text/plain"
        elif self.path.startswith("/list/"):
            n = int(self.path.rsplit("/", 1)[1])
            links = "".join(f'<a href="/{"a" * 200}{n}x{i}!">x</a>' for i in range(LINKS_PER_PAGE))
            body = f'<html><body>{links}<a href="/list/{n + 1}">next</a></body></html>'.encode()
            ctype = "text/html; charset=utf-8"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def link_site() -> Iterator[str]:
    """An endless chain of list pages full of ReDoS bait, on 127.0.0.1."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _count_done(db: str) -> tuple[int, list[str]]:
    f = SqlFrontier(db, create=False)
    try:
        done = sum(1 for r in f.query(select(urls.c.status)) if r.status == "done")
        states = [r.state for r in f.query(select(workers.c.state))]
        return done, states
    finally:
        f.close()


def test_sigterm_during_heavy_url_matching_stops_cleanly(link_site: str, tmp_path: Path) -> None:
    """SIGTERM while every link is matched against `(a+)+$`: exit 130, no URL leased, worker row not running."""
    spec_path = tmp_path / "s.toml"
    spec_path.write_text(
        f"""
[crawl]
name = "redos"
seeds = ["{link_site}/list/0"]

[scope]
allow_private = true

[politeness]
delay = 0.0
jitter = 0.0

[[rules]]
name = "lists"
glob = "/list/*"
kind = "list"

[[rules]]
name = "evil"
regex = "{EVIL}"

[storage]
frontier = "sqlite:///{tmp_path}/frontier.sqlite"
archive = "{tmp_path}/warc"
"""
    )
    db = f"sqlite:///{tmp_path}/frontier.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal", "crawl", str(spec_path), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 120
        done = 0
        while time.monotonic() < deadline and proc.poll() is None:
            if (tmp_path / "frontier.sqlite").exists():
                try:
                    done, _ = _count_done(db)
                except Exception:
                    done = 0
                if done >= 3:
                    break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[0]
        assert done >= 3, "the crawl never got through three list pages"
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, output
    f = SqlFrontier(db, create=False)
    try:
        statuses = {r.status for r in f.query(select(urls.c.status))}
        states = [r.state for r in f.query(select(workers.c.state))]
    finally:
        f.close()
    assert "leased" not in statuses
    assert states and "running" not in states, states
