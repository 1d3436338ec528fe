"""Notifications: frontier events reach an apprise destination (a JSON webhook on 127.0.0.1) once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from shoal.frontier import SqlFrontier
from shoal.notify import Notifier
from shoal.spec import NotifySpec
from tests.test_crawl import crawl_here, demo_spec


class Hook:
    """A JSON webhook on 127.0.0.1 that keeps every message it receives."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(n)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Hook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    with Hook() as h:
        yield h


def test_finished_crawl_is_announced_once(demo_server: Any, tmp_path: Path, hook: Hook) -> None:
    """A finished crawl sends one 'finished' message with its counts; sending again sends nothing."""
    spec, text = demo_spec(demo_server.base_url, tmp_path, notify__urls=f'["{hook.url}"]')
    _, finished = crawl_here(spec, text)
    assert finished
    titles = [m["title"] for m in hook.received]
    assert titles.count("shoal: crawl demo finished") == 1
    body = next(m["message"] for m in hook.received if m["title"] == "shoal: crawl demo finished")
    assert "73 done" in body and "4 failed" in body
    f = SqlFrontier(spec.frontier_url())
    try:
        assert Notifier(spec.notify).send_pending(f, f.get_crawl("demo").id, "demo") == 0
    finally:
        f.close()


def test_new_error_and_blocked_events_are_sent_and_kinds_filtered(
    tmp_path: Path, hook: Hook
) -> None:
    """Recorded events of the chosen kinds are sent with their details; other kinds are not."""
    f = SqlFrontier(f"sqlite:///{tmp_path}/f.sqlite")
    try:
        cid = f.open_crawl("c", "spec").id
        f.record_event(
            cid,
            "new_error",
            "new kind of error KeyError: 'x'",
            url="http://a.test/p",
            error_class="unknown",
        )
        f.record_event(cid, "blocked", "host a.test answered 5 times 403", host="a.test")
        f.record_event(cid, "quality", "posts.title missing on 40% of pages")
        n = Notifier(NotifySpec(urls=[hook.url], events=["new_error", "blocked"])).send_pending(
            f, cid, "c"
        )
    finally:
        f.close()
    assert n == 2
    assert [m["title"] for m in hook.received] == [
        "shoal: a new kind of error in c",
        "shoal: a host blocks crawl c",
    ]
    assert "url: http://a.test/p" in hook.received[0]["message"]
