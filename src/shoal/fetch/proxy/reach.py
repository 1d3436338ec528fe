"""Which host:port pairs a rendered page may connect to: the address policy, narrowed.

A page is hostile code running next to shoal's own sockets. The HTTP fetcher
only fetches in-scope URLs, but a page's script can aim a request at any
host and port, so the browser proxy asks :meth:`Reach.allows` for every
connection (document, subresource, XHR, WebSocket, CONNECT tunnel), with the
host name as the page asked for it and each address it resolved to:

1. The address must pass the :class:`~shoal.fetch.address.AddressPolicy`.
2. Never one of shoal's own sockets, whatever the policy says: a port in
   :meth:`Reach.own_ports` (chromedriver, DevTools, the proxy's own channels)
   on a local address (loopback, unspecified, or an address of one of this
   machine's interfaces) is refused.
3. A globally routable address is allowed at any port, unless it is this
   machine's own (a public address on one of its interfaces): the crawler's
   host is never a public site to its pages.
4. A private or loopback address that the policy allows (``allow_private``,
   ``allow_cidrs``), and any address of this machine, is allowed only at the
   host:port pairs the crawl's scope
   names: each seed's host and port, and each ``allowed_hosts`` entry
   (``name:port`` for that port; ``name`` or ``*.suffix`` without a port for
   80 and 443 only; ``*`` names no private endpoint). The host is compared as
   the page wrote it, so ``localhost:8000`` is not ``127.0.0.1:8000``.

So with ``allow_cidrs = ["127.0.0.1/32"]`` and a seed on ``127.0.0.1:8000``, a
page reaches ``127.0.0.1:8000`` and public sites, and nothing else on the
machine.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import psutil

from shoal.fetch.address import AddressPolicy
from shoal.fetch.proxy.channel import endpoint

__all__ = ["Reach", "endpoint_of"]

_DEFAULT_PORTS = (80, 443)


def _host(name: str) -> str:
    """A host name in the form both sides are compared in: lower case, no brackets or final dot."""
    host = name.strip().strip("[]").rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return host
    return host


def endpoint_of(entry: str) -> tuple[str, tuple[int, ...]] | None:
    """(host, ports) named by a seed URL or an ``allowed_hosts`` entry; None for ``*`` or junk.

    ``http://127.0.0.1:8000/x`` -> ``("127.0.0.1", (8000,))``; ``example.com`` ->
    ``("example.com", (80, 443))``; ``*.example.com:81`` -> ``("*.example.com", (81,))``.
    """
    entry = entry.strip()
    if not entry or entry == "*":
        return None
    try:
        if "://" in entry:
            found = endpoint(entry)
            return None if found is None else (_host(found[0]), (found[1],))
        parts = urlsplit(f"//{entry}")
        if not parts.hostname:
            return None
        host = _host(parts.hostname)
        if entry.startswith("*."):
            host = "*." + _host(entry[2:].rsplit(":", 1)[0] if parts.port else entry[2:])
        return host, ((parts.port,) if parts.port else _DEFAULT_PORTS)
    except ValueError:
        return None


def _unwrap(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class Reach:
    """The address policy, narrowed to the crawl's scope on private addresses, minus shoal's sockets.

    ``scope`` holds seed URLs and ``allowed_hosts`` entries. ``local_addresses``
    are this machine's addresses (read from its interfaces when None). Ports of shoal's own
    sockets come from :meth:`add_own_port` and from the callables given to
    :meth:`add_own_ports_source` (asked at every check of a local address).
    Thread-safe.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        scope: Iterable[str] = (),
        *,
        local_addresses: Iterable[str] | None = None,
    ) -> None:
        self.policy = policy
        self._public = AddressPolicy()
        self._exact: set[tuple[str, int]] = set()
        self._suffixes: list[tuple[str, int]] = []
        for entry in scope:
            found = endpoint_of(entry)
            if found is None:
                continue
            host, ports = found
            for port in ports:
                if host.startswith("*."):
                    self._suffixes.append((host[1:], port))
                else:
                    self._exact.add((host, port))
        self._lock = threading.Lock()
        self._own: dict[int, int] = {}
        self._sources: list[Callable[[], Iterable[int]]] = []
        self._local: frozenset[str] | None = None
        if local_addresses is not None:
            self._local = frozenset(
                str(ip) for ip in (_unwrap(a) for a in local_addresses) if ip is not None
            )

    @property
    def endpoints(self) -> frozenset[tuple[str, int]]:
        """The exact (host, port) pairs a page may reach on a private address."""
        return frozenset(self._exact)

    def add_own_port(self, port: int) -> None:
        """Refuse ``port`` on every local address until :meth:`remove_own_port` (counted)."""
        with self._lock:
            self._own[port] = self._own.get(port, 0) + 1

    def remove_own_port(self, port: int) -> None:
        """Undo one :meth:`add_own_port`."""
        with self._lock:
            left = self._own.get(port, 0) - 1
            if left > 0:
                self._own[port] = left
            else:
                self._own.pop(port, None)

    def add_own_ports_source(self, source: Callable[[], Iterable[int]]) -> None:
        """Also refuse whatever ports ``source()`` returns (e.g. the proxy's open channels)."""
        with self._lock:
            self._sources.append(source)

    def own_ports(self) -> set[int]:
        """Every port of shoal's own sockets known now."""
        with self._lock:
            ports = set(self._own)
            sources = list(self._sources)
        for source in sources:
            ports.update(source())
        return ports

    def is_local(self, address: str) -> bool:
        """Whether ``address`` is this machine: loopback, unspecified, or an interface's address."""
        ip = _unwrap(address)
        if ip is None:
            return False
        if ip.is_loopback or ip.is_unspecified:
            return True
        if self._local is None:
            found: set[str] = set()
            try:
                for addrs in psutil.net_if_addrs().values():
                    for a in addrs:
                        ok = _unwrap(str(a.address))
                        if ok is not None:
                            found.add(str(ok))
            except (OSError, RuntimeError):
                pass
            self._local = frozenset(found)
        return str(ip) in self._local

    def in_scope(self, host: str, port: int) -> bool:
        """Whether the crawl's scope names ``host:port`` (host as written in the request)."""
        name = _host(host)
        if (name, port) in self._exact:
            return True
        return any(
            p == port and (name.endswith(suffix) or name == suffix[1:])
            for suffix, p in self._suffixes
        )

    def why_not(self, host: str, port: int, address: str) -> str | None:
        """None when a connection to ``address`` for ``host:port`` is allowed, else the reason.

        Reasons: ``address_policy`` (the policy refuses the address),
        ``own_socket`` (one of shoal's own sockets), ``out_of_scope`` (a private
        address at a host:port the scope does not name).
        """
        if not self.policy.allows(address):
            return "address_policy"
        local = self.is_local(address)
        if local and port in self.own_ports():
            return "own_socket"
        if self._public.allows(address) and not local:
            return None
        if self.in_scope(host, port):
            return None
        return "out_of_scope"

    def allows(self, host: str, port: int, address: str) -> bool:
        """True when a page may connect to ``address`` for ``host:port``."""
        return self.why_not(host, port, address) is None
