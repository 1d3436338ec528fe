"""Pages rendered by headless Chromium driven by Selenium (the ``render = "browser"`` rules).

- :mod:`~shoal.fetch.browser.fetcher`: :class:`BrowserFetcher`, the pool and the fetcher contract.
- :mod:`~shoal.fetch.browser.session`: one browser and how it renders a page.
- :mod:`~shoal.fetch.browser.page`: what a rule does to a loaded page (wait, scroll, click, frames).
- :mod:`~shoal.fetch.browser.devtools`: the exchange rebuilt from DevTools; WebDriver errors.
- :mod:`~shoal.fetch.browser.launch`: finding Chromium and chromedriver, Chromium's flags,
  starting chromedriver under its guard.
- :mod:`~shoal.fetch.browser.guard`: the guard program (a process of its own).
- :mod:`~shoal.fetch.browser.doctor`: ``shoal doctor``'s checks.

Every request of the browser goes through :mod:`shoal.fetch.proxy`. This
package imports nothing on import, so ``shoal doctor`` can report a missing
selenium.
"""
