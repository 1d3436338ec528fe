"""Which crawl ``shoal status`` and ``shoal dashboard`` look at: a spec file, a database URL, or the one local crawl.

Guarantees:

- A spec file gives its frontier, its crawl name and its parse report
  (``quality.json``); a database URL gives the latest crawl in it unless a
  name is given; with nothing, the only ``shoal-data/*/frontier.sqlite`` is
  used, and otherwise the user is told what to give.
- A missing SQLite file is reported as such (the crawl was never started),
  never created: the frontier is opened without creating anything.
"""

from __future__ import annotations

from pathlib import Path

from shoal.errors import FrontierError
from shoal.frontier.contract import CrawlInfo
from shoal.frontier.sql import SqlFrontier
from shoal.spec import load_spec
from shoal.status.collect import report_path

__all__ = ["open_target", "resolve_target"]


def resolve_target(target: str | None) -> tuple[str, str | None, Path | None]:
    """A status target (spec path, DB URL, or nothing) → (database URL, crawl name, parse report path)."""
    if target is None:
        found = sorted(Path("shoal-data").glob("*/frontier.sqlite"))
        if len(found) == 1:
            return f"sqlite:///{found[0]}", None, found[0].parent / "tables" / "quality.json"
        raise FrontierError(
            "give a spec file or a database URL: `shoal status SPEC.toml` or `shoal status --db URL`"
        )
    if "://" in target:
        return target, None, None
    spec = load_spec(target)
    return spec.frontier_url(), spec.name, report_path(spec)


def open_target(
    target: str | None, db: str | None, crawl: str | None
) -> tuple[SqlFrontier, CrawlInfo, Path | None]:
    """The frontier (read-only use), the crawl and the parse report path of a status target.

    ``db`` overrides the target's database, ``crawl`` its crawl name. The
    caller closes the frontier.
    """
    if target is None and db is not None:
        url, name, report = db, None, None
    else:
        url, name, report = resolve_target(target)
        if db is not None:
            url = db
    if url.startswith("sqlite") and not Path(url.split("///", 1)[-1]).exists():
        raise FrontierError(
            f"no frontier database at {url}: has the crawl been started? (`shoal crawl SPEC`)"
        )
    frontier = SqlFrontier(url, create=False)
    try:
        info = frontier.get_crawl(crawl or name)
    except BaseException:
        frontier.close()
        raise
    return frontier, info, report
