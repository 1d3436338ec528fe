"""The address policy: which IP addresses a fetch may connect to (SSRF defence).

By default only globally routable addresses are allowed. The check is made on
the addresses a host name resolves to, which are the only ones the HTTP client
is then allowed to connect to, so a name that resolves to 127.0.0.2 or
169.254.169.254 is refused; an IP literal in a URL is checked before any
connection is opened (see :mod:`shoal.fetch.http`).

IPv6 addresses that carry an IPv4 address are unwrapped first and judged as
that IPv4 address: IPv4-mapped (``::ffff:127.0.0.1``), 6to4
(``2002:7f00:1::``) and the NAT64 well-known prefix (``64:ff9b::a9fe:a9fe``).
The deprecated IPv4-compatible block ``::/96`` (``::127.0.0.1``), which
Python's ``is_global`` lets through, is refused outright.

:class:`PolicyResolver` is the one resolve-and-filter path: the HTTP fetcher's
connector and the browser's proxy both resolve a name through it once and get
only the allowed addresses back (or :class:`~shoal.errors.AddressRefused`), so
a name is judged the same way whichever fetcher meets it, and nothing resolves
it a second time between the check and the connection.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from shoal.errors import AddressRefused

__all__ = ["BLOCKED_NETWORKS", "AddressPolicy", "PolicyResolver"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")

BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/96",
        "::1/128",
        "fe80::/10",
        "fc00::/7",
        "ff00::/8",
    )
)


class AddressPolicy:
    """Allows globally routable addresses, plus the private ones the spec names.

    ``allow_private`` allows every address (loopback included); ``allow_cidrs``
    allows the named networks only (``127.0.0.1/32`` lets tests reach a server
    on loopback while 127.0.0.2 and 169.254.169.254 stay refused). Networks
    are compared with the IPv4-mapped address unwrapped, so ``::ffff:127.0.0.1``
    is allowed by ``127.0.0.1/32`` and refused by default; the 6to4 and NAT64
    forms (``2002:7f00:1::``) are never allowed by an IPv4 network, only refused
    when their IPv4 address is.
    """

    def __init__(self, allow_private: bool = False, allow_cidrs: Iterable[str] = ()) -> None:
        self.allow_private = allow_private
        self.allowed = tuple(ipaddress.ip_network(c, strict=False) for c in allow_cidrs)
        self._cache: dict[str, bool] = {}

    def allows(self, ip: str | IPAddress) -> bool:
        """True when a connection to ``ip`` is allowed."""
        if self.allow_private:
            return True
        key = str(ip)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        ok = self._decide(key)
        if len(self._cache) < 10_000:
            self._cache[key] = ok
        return ok

    def _decide(self, text: str) -> bool:
        try:
            addr: IPAddress = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped  # the same destination: the kernel connects over IPv4
        if any(addr in net for net in self.allowed):
            return True
        # 6to4 and NAT64 reach their IPv4 address through a relay elsewhere: they are refused
        # when it is, but an allowed network never lets them through (allowing 127.0.0.1/32
        # must not open 2002:7f00:1::, a real IPv6 destination).
        if isinstance(addr, ipaddress.IPv6Address):
            if addr.sixtofour is not None:
                addr = addr.sixtofour
            elif addr in _NAT64:
                addr = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if any(addr.version == net.version and addr in net for net in BLOCKED_NETWORKS):
            return False
        return addr.is_global

    def is_ip_literal(self, host: str) -> bool:
        """True when ``host`` (without port, brackets allowed) is an IP address, not a name."""
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return True


class PolicyResolver(AbstractResolver):
    """Resolves names once (``inner``, the system resolver by default), then keeps the allowed addresses.

    Raises :class:`~shoal.errors.AddressRefused` when the policy refuses every
    address. An IP literal resolves to itself.
    """

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The allowed addresses of ``host``; raises :class:`AddressRefused` when none is."""
        if self.inner is None:
            self.inner = DefaultResolver()
        infos = await self.inner.resolve(host, port, family)
        allowed = [i for i in infos if self.policy.allows(i["host"])]
        if not allowed:
            raise AddressRefused(host, [i["host"] for i in infos])
        return allowed

    async def close(self) -> None:
        """Close the inner resolver."""
        if self.inner is not None:
            await self.inner.close()
