"""The test suite's local sites, each served on loopback by :class:`shoal.testing.ThreadedSite`.

- :mod:`~tests.sites.hostile`: misbehaving servers (slow drips, bombs, redirects to refused addresses, canaries);
- :mod:`~tests.sites.graph`: a generated link graph of N pages over several loopback hosts, recording every hit;
- :mod:`~tests.sites.fresh`: pages, sitemaps and feeds that change between crawl cycles;
- :mod:`~tests.sites.browser`: JavaScript-built pages, iframes and Ajax for the Chromium tests;
- :mod:`~tests.sites.parse`: layouts, feeds and JSON APIs for the parse tests.
"""
