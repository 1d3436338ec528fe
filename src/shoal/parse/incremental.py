"""``shoal parse --incremental``: parse only the captures made since the last run, merge, write.

A crawl that stays open (revisit rules) keeps adding captures; parsing the
whole archive every hour would re-read every page. An incremental run keeps,
next to the tables, a cache of what each capture gave each table (its rows
and its share of the quality counts), keyed by the capture's record, URL and
fetch time. The next incremental run parses only the captures that are not in
the cache (new pages, changed pages, refetches), takes the others from the
cache, and hands the merged parts to the same dedup, writer and quality report
as a full parse.

Guarantees:

- The merged parts are exactly those a full parse of the same captures would
  build (per-capture parsing is independent of the other captures; capture
  order is re-numbered to this run's), so the written table equals a full
  parse's, and the newest capture of a page wins as in any parse.
- Captures that are no longer current (a page captured again) leave the cache.
- The cache is written atomically after the tables; a run that fails leaves
  the previous cache, and a cache from another shoal version, another spec's
  tables or a damaged file is ignored (everything is parsed again).
- New captures are parsed in this process (one worker): an incremental run
  is meant to be small; a first run without a cache parses everything.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

from shoal import __version__
from shoal.parse.load import Capture
from shoal.parse.pool import ChunkParser, ParseContext, TablePart

__all__ = ["CACHE_PREFIX", "incremental_parts"]

log = logging.getLogger(__name__)

CACHE_PREFIX = ".shoal-incremental-"
"""Cache files are ``{CACHE_PREFIX}{table}.pickle`` in the parse's output folder."""

CaptureKey = tuple[str, int, int]


def capture_key(c: Capture) -> CaptureKey:
    """A capture's identity: its record, its URL row and when it was fetched (a refetch is new)."""
    return (c.record_id, c.url_id, c.fetched_at or 0)


def _fingerprint(ctx: ParseContext, table: str) -> str:
    """What a cache entry depends on besides the capture: the table's definition and shoal's version."""
    spec = ctx.parse.tables[table]
    blob = f"{__version__}\n{table}\n{spec!r}\n{ctx.strip_params!r}\n{ctx.max_body}"
    return hashlib.sha256(blob.encode()).hexdigest()


def _path(folder: Path, table: str) -> Path:
    return folder / f"{CACHE_PREFIX}{table}.pickle"


def _load(folder: Path, table: str, fingerprint: str) -> dict[CaptureKey, TablePart]:
    path = _path(folder, table)
    if not path.exists():
        return {}
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)  # written by shoal into the user's own output folder
        if not isinstance(data, dict) or data.get("fingerprint") != fingerprint:
            log.info("incremental cache of %s is stale: parsing every capture again", table)
            return {}
        parts = data["parts"]
        return parts if isinstance(parts, dict) else {}
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, KeyError, TypeError) as exc:
        log.warning("ignoring the damaged incremental cache %s: %s", path, exc)
        return {}


def _save(folder: Path, table: str, fingerprint: str, parts: dict[CaptureKey, TablePart]) -> None:
    path = _path(folder, table)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    folder.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as f:
        pickle.dump(
            {"fingerprint": fingerprint, "parts": parts}, f, protocol=pickle.HIGHEST_PROTOCOL
        )
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _renumbered(part: TablePart, seq: int) -> TablePart:
    """A copy of one capture's part whose rows carry this run's capture number."""
    return replace(part, meta=[(u, seq, p, ms, k, h) for (u, _s, p, ms, k, h) in part.meta])


def incremental_parts(
    ctx: ParseContext, captures: list[Capture], folder: Path
) -> tuple[dict[str, TablePart], int, Any]:
    """The merged parts of every table, how many captures were parsed now, and a callback saving the cache.

    Call the callback once the tables are written, so that a failed run keeps
    the previous cache.
    """
    prints = {t: _fingerprint(ctx, t) for t in ctx.tables}
    cached = {t: _load(folder, t, prints[t]) for t in ctx.tables}
    fresh: dict[CaptureKey, dict[str, TablePart]] = {}
    parser: ChunkParser | None = None
    for c in captures:
        key = capture_key(c)
        if all(key in cached[t] for t in c.tables if t in cached):
            continue
        parser = parser or ChunkParser(ctx)
        fresh[key] = parser.parse([c])
    merged = {t: TablePart() for t in ctx.tables}
    keep: dict[str, dict[CaptureKey, TablePart]] = {t: {} for t in ctx.tables}
    for c in captures:
        key = capture_key(c)
        for t in ctx.tables:
            if t not in c.tables:
                continue
            part = fresh[key].get(t, TablePart()) if key in fresh else cached[t][key]
            keep[t][key] = part
            merged[t].merge(_renumbered(part, c.seq))

    def save() -> None:
        for t in ctx.tables:
            _save(folder, t, prints[t], keep[t])

    return merged, len(fresh), save
