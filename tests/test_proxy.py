"""The browser's filtering proxy on the wire: h11 framing, strictness and records, without a browser.

A raw TCP "site" answers canned bytes per path; a raw socket plays the browser.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from shoal.fetch.address import AddressPolicy
from shoal.fetch.proxy.channel import ProxyChannel
from shoal.fetch.proxy.reach import Reach
from shoal.fetch.proxy.server import FilteringProxy

RESPONSES: dict[str, bytes] = {
    "/chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    ),
    "/short": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this",
    "/bad-status": b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n",
    "/space-colon": b"HTTP/1.1 200 OK\r\nX-Bad : yes\r\nContent-Length: 2\r\n\r\nok",
    "/silent": b"",
    "/huge-head": b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 70_000 + b"\r\n\r\n",
    "/redirect": b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 3\r\n\r\nbye",
    "/eof": b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
    "/utf8-header": (
        b'HTTP/1.1 200 OK\r\nContent-Disposition: attachment; filename="\xed\x95\x9c.txt"\r\n'
        b"Content-Length: 2\r\n\r\nok"
    ),
}


class _Site(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[bytes] = []


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.request.recv(65536)
            if not chunk:
                break
            data += chunk
        site = self.server
        assert isinstance(site, _Site)
        site.requests.append(data)
        path = data.split(b" ", 2)[1].decode() if data.count(b" ") >= 2 else "/"
        self.request.sendall(RESPONSES.get(path, b"HTTP/1.1 404 Not Found\r\n\r\n"))


@pytest.fixture(scope="module")
def site() -> Iterator[_Site]:
    s = _Site()
    t = threading.Thread(target=s.serve_forever, daemon=True)
    t.start()
    yield s
    s.shutdown()
    s.server_close()


@pytest.fixture
def channel(site: _Site) -> Iterator[ProxyChannel]:
    port = site.server_address[1]
    proxy = FilteringProxy(
        Reach(AddressPolicy(allow_cidrs=["127.0.0.1/32"]), [f"127.0.0.1:{port}"]),
        idle_timeout=10,
    )
    yield proxy.open_channel()
    proxy.close()


def _ask(channel: ProxyChannel, raw: bytes) -> bytes:
    """Send ``raw`` to the proxy as the browser would and read the answer to the end."""
    with socket.create_connection(("127.0.0.1", channel.port), timeout=20) as sock:
        sock.sendall(raw)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def _get(channel: ProxyChannel, site: _Site, path: str) -> tuple[bytes, str]:
    url = f"http://127.0.0.1:{site.server_address[1]}{path}"
    channel.expect(url)
    head = f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1:{site.server_address[1]}\r\n\r\n"
    return _ask(channel, head.encode()), url


def test_chunked_response_is_kept_dechunked_and_relayed(channel: ProxyChannel, site: _Site) -> None:
    """A chunked body is recorded de-chunked with its headers as sent, and reaches the browser whole."""
    answer, _ = _get(channel, site, "/chunked")
    record = channel.wait_record(10)
    assert record is not None and record.status == 200 and record.body == b"hello world"
    assert ("Transfer-Encoding", "chunked") in record.headers and record.truncated is None
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"hello" in answer and b" world" in answer


def test_short_body_is_recorded_as_disconnect(channel: ProxyChannel, site: _Site) -> None:
    """A Content-Length longer than what came before the close keeps the part with truncated=disconnect."""
    _get(channel, site, "/short")
    record = channel.wait_record(10)
    assert record is not None and record.status == 200
    assert record.body == b"only this" and record.truncated == "disconnect"


@pytest.mark.parametrize("path", ["/bad-status", "/space-colon", "/huge-head"])
def test_malformed_responses_are_refused(channel: ProxyChannel, site: _Site, path: str) -> None:
    """A bad status line, a space before a header colon or a 70 KB head is malformed (502 to the browser)."""
    answer, _ = _get(channel, site, path)
    record = channel.wait_record(10)
    assert record is not None and record.error == "malformed", record
    assert answer.startswith(b"HTTP/1.1 502") and b"X-Shoal-Error: malformed" in answer


def test_server_closing_without_a_response_is_a_disconnect(
    channel: ProxyChannel, site: _Site
) -> None:
    """A server that closes before answering is a disconnect, not a malformed response."""
    _get(channel, site, "/silent")
    record = channel.wait_record(10)
    assert record is not None and record.error == "disconnect"


def test_close_delimited_body_is_read_to_the_end(channel: ProxyChannel, site: _Site) -> None:
    """An HTTP/1.0 body without a length ends at the close and is complete."""
    _get(channel, site, "/eof")
    record = channel.wait_record(10)
    assert record is not None and record.http_version == "HTTP/1.0"
    assert record.body == b"until the end" and record.truncated is None


def test_redirect_of_the_page_is_held(channel: ProxyChannel, site: _Site) -> None:
    """The page's 3xx is kept in the record and the browser gets a stub page instead."""
    answer, _ = _get(channel, site, "/redirect")
    record = channel.wait_record(10)
    assert record is not None and record.status == 302 and record.redirect_held
    assert record.body == b"bye"
    assert answer.startswith(b"HTTP/1.1 200 OK") and b"X-Shoal-Redirect-Held: 302" in answer


@pytest.mark.parametrize(
    "extra",
    [
        b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
        b"Content-Length: 3\r\nContent-Length: 4\r\n",
        b"Bad Header: x\r\n",
    ],
)
def test_ambiguous_browser_requests_are_refused(
    channel: ProxyChannel, site: _Site, extra: bytes
) -> None:
    """Smuggling-shaped requests (CL with TE, two lengths, a bad name) get 400 and reach no site."""
    before = len(site.requests)
    url = f"http://127.0.0.1:{site.server_address[1]}/chunked"
    raw = f"POST {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode() + extra + b"\r\nabc"
    answer = _ask(channel, raw)
    assert answer.startswith(b"HTTP/1.1 400")
    assert len(site.requests) == before


def test_out_of_scope_port_is_refused_without_a_connection(channel: ProxyChannel) -> None:
    """A loopback port the scope does not name gets 403 out_of_scope, and no socket is opened."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    try:
        answer = _ask(
            channel, f"GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        )
        assert answer.startswith(b"HTTP/1.1 403") and b"X-Shoal-Refused: out_of_scope" in answer
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()


def test_the_proxy_own_port_is_refused(channel: ProxyChannel) -> None:
    """A request through the proxy to its own port is refused as one of shoal's sockets."""
    answer = _ask(
        channel,
        f"GET http://127.0.0.1:{channel.port}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 403") and b"X-Shoal-Refused: own_socket" in answer


def test_scope_entries_name_exact_endpoints() -> None:
    """Seeds name their host:port, bare names 80 and 443, wildcards their suffix, '*' nothing."""
    reach = Reach(
        AddressPolicy(allow_private=True),
        [
            "http://127.0.0.1:8000/start",
            "https://intranet.test/",
            "wiki.test",
            "*.corp.test:8080",
            "*",
            "[::1]:9000",
        ],
    )
    assert reach.endpoints == {
        ("127.0.0.1", 8000),
        ("intranet.test", 443),
        ("wiki.test", 80),
        ("wiki.test", 443),
        ("::1", 9000),
    }
    assert reach.allows("127.0.0.1", 8000, "127.0.0.1")
    assert not reach.allows("127.0.0.1", 8001, "127.0.0.1")
    assert not reach.allows("localhost", 8000, "127.0.0.1")  # the host as the page wrote it
    assert reach.allows("a.corp.test", 8080, "10.0.0.5")
    assert not reach.allows("a.corp.test", 80, "10.0.0.5")
    assert reach.allows("[::1]", 9000, "::1")
    assert reach.why_not("evil.test", 6379, "127.0.0.1") == "out_of_scope"
    assert reach.allows("example.org", 6379, "93.184.216.34")  # public: any port


def test_own_ports_are_refused_whatever_the_scope_says() -> None:
    """A port of shoal's own is refused on loopback and 0.0.0.0 even when the scope names it."""
    reach = Reach(AddressPolicy(allow_private=True), ["127.0.0.1:9515"])
    assert reach.allows("127.0.0.1", 9515, "127.0.0.1")
    reach.add_own_port(9515)
    assert reach.why_not("127.0.0.1", 9515, "127.0.0.1") == "own_socket"
    assert reach.why_not("0.0.0.0", 9515, "0.0.0.0") == "own_socket"
    assert reach.why_not("x", 9515, "::ffff:127.0.0.1") == "own_socket"
    reach.remove_own_port(9515)
    assert reach.allows("127.0.0.1", 9515, "127.0.0.1")


def test_policy_refusal_comes_first() -> None:
    """An address the policy refuses is refused as address_policy even when the scope names it."""
    reach = Reach(AddressPolicy(allow_cidrs=["127.0.0.1/32"]), ["127.0.0.2:80"])
    assert reach.why_not("127.0.0.2", 80, "127.0.0.2") == "address_policy"
    assert reach.why_not("metadata", 80, "169.254.169.254") == "address_policy"


def test_this_machine_public_address_is_private_to_pages() -> None:
    """A public address on one of this machine's interfaces is reachable only at the scope's ports."""
    reach = Reach(
        AddressPolicy(),
        ["http://93.184.216.34:8080/"],
        local_addresses=["127.0.0.1", "93.184.216.34"],
    )
    assert reach.why_not("93.184.216.34", 6379, "93.184.216.34") == "out_of_scope"
    assert reach.allows("93.184.216.34", 8080, "93.184.216.34")
    assert reach.allows("example.org", 6379, "93.184.216.35")  # another public host: any port


def test_a_port_sweep_learns_nothing(channel: ProxyChannel) -> None:
    """Out-of-scope loopback ports answer alike whether something listens there or not."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    open_port = listener.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    try:
        answers = [
            _ask(
                channel, f"GET http://127.0.0.1:{p}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
            ).replace(str(p).encode(), b"PORT")
            for p in (open_port, closed_port)
        ]
    finally:
        listener.close()
    assert answers[0] == answers[1] and answers[0].startswith(b"HTTP/1.1 403")


def test_non_ascii_header_bytes_pass_through_unchanged(channel: ProxyChannel, site: _Site) -> None:
    """A UTF-8 filename in a response header reaches the browser byte for byte and is recorded."""
    answer, _ = _get(channel, site, "/utf8-header")
    record = channel.wait_record(10)
    assert record is not None and record.status == 200 and record.body == b"ok"
    assert b'filename="\xed\x95\x9c.txt"' in answer
    value = dict(record.headers)["Content-Disposition"]
    assert value.encode("latin-1").decode("utf-8") == 'attachment; filename="한.txt"'
