"""A plain Scrapy crawler of the benchmark site, the baseline shoal is compared with.

It follows every link of the site (CrawlSpider + LinkExtractor), obeys
robots.txt, keeps its scheduler in memory and stores no items. Run it through
``bench/run.py``, or by hand with the Scrapy of ``bench/.venv-scrapy``::

    bench/.venv-scrapy/bin/scrapy runspider bench/scrapy_spider.py -a start_url=http://127.0.0.1:PORT/
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from scrapy import Request
from scrapy.linkextractors import LinkExtractor
from scrapy.spiders import CrawlSpider, Rule


class BenchSpider(CrawlSpider):  # type: ignore[misc]  # scrapy lives in its own venv (bench/run.py)
    """Follows every in-site link from ``start_url``; optionally writes Scrapy's stats as JSON."""

    name = "bench"
    custom_settings = {  # noqa: RUF012 - Scrapy reads this class attribute
        "CONCURRENT_REQUESTS": 64,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 64,
        "DOWNLOAD_DELAY": 0,
        "RANDOMIZE_DOWNLOAD_DELAY": False,
        "AUTOTHROTTLE_ENABLED": False,
        "ROBOTSTXT_OBEY": True,
        "DEPTH_LIMIT": 0,
        "LOG_LEVEL": "WARNING",
        "TELNETCONSOLE_ENABLED": False,
        "HTTPCACHE_ENABLED": False,
        "USER_AGENT": "scrapy-bench (+https://scrapy.org)",
    }
    rules = (Rule(LinkExtractor(), follow=True),)

    def __init__(self, start_url: str, stats_out: str = "", *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.start_urls = [start_url]
        self.allowed_domains = [urlsplit(start_url).hostname or "127.0.0.1"]
        self.stats_out = stats_out

    async def start(self) -> AsyncIterator[Request]:
        """The start URL, deduplicated like any link (Scrapy's default would fetch '/' twice)."""
        for url in self.start_urls:
            yield Request(url)

    def closed(self, reason: str) -> None:
        """Write the crawl's stats (request and response counts, reason) when asked to."""
        if not self.stats_out:
            return
        stats = {
            k: v if isinstance(v, int | float | str) else str(v)
            for k, v in self.crawler.stats.get_stats().items()
        }
        stats["finish_reason"] = reason
        with open(self.stats_out, "w", encoding="utf-8") as f:
            json.dump(stats, f, indent=1, sort_keys=True)
