"""A filtering HTTP forward proxy on 127.0.0.1 that every browser request goes through.

Chromium is started with ``--proxy-server=http://127.0.0.1:PORT`` and
``--proxy-bypass-list=<-loopback>``, so nothing it loads (document, script,
image, iframe, XHR, redirect target, WebSocket) reaches the network except
through this proxy. For each request the proxy resolves the host once, checks
every resolved address with :meth:`AddressPolicy.allows` and connects only to
the allowed ones (no second resolution, so no DNS rebinding between check and
connect), exactly as the HTTP fetcher's resolver does. A request whose host has
no allowed address gets ``403`` with ``X-Shoal-Refused: address_policy`` and is
listed in :attr:`FilteringProxy.refused`.

Plain ``http://`` requests are forwarded by the proxy itself, which lets it keep
the exact response of the page being rendered (status line, headers, body after
de-chunking and still content-encoded): the browser fetcher turns that record
into its :class:`~shoal.exchange.FetchResult`. ``CONNECT`` tunnels (https,
wss) are checked the same way and then carry opaque TLS bytes, so for an https
page the fetcher reconstructs the response from Chrome DevTools instead (see
the :mod:`shoal.fetch.browser.devtools` module); the proxy only contributes the peer address.

Each browser gets its own :class:`ProxyChannel` (its own port), so a response is
attributed to the browser that asked for it without guessing. All channels are
served by one event loop on one daemon thread owned by the proxy.

When the page being rendered answers with a redirect, the proxy keeps the 3xx
in the record and hands the browser a small stub page instead of the redirect:
fetchers never follow redirects (the worker follows them, checking each hop
against scope, robots and politeness).

Modules: :mod:`~shoal.fetch.proxy.server` (the proxy and its loop),
:mod:`~shoal.fetch.proxy.relay` (one plain-HTTP exchange relayed and recorded),
:mod:`~shoal.fetch.proxy.channel` (one port per browser),
:mod:`~shoal.fetch.proxy.records` (what it records),
:mod:`~shoal.fetch.proxy.wire` (HTTP/1.1 heads, framing and replies),
:mod:`~shoal.fetch.proxy.reach` (which host:port pairs a page may reach).
"""
