"""SQL of adding URLs (seeds, and the links of outcomes): only canonical URLs the crawl does not have yet.

:class:`~shoal.frontier.sql.SqlFrontier` calls :meth:`Adder.add` inside its own
transactions (``add_urls``; ``sync`` through :func:`shoal.frontier.complete.complete`).

Guarantees:

- A URL whose canonical key the crawl already has is left as it is; of several
  given with one key, the first is added. The count returned is of rows really
  inserted (``RETURNING``, or MySQL's exact rowcount).
- Host rows are inserted before their URLs, each table in key order, so two
  transactions adding overlapping URLs wait for each other in the same order
  instead of deadlocking; where rows are locked (PostgreSQL, MySQL/MariaDB)
  keys already present are read first without waiting, so an insert never
  waits on a URL another worker is claiming or completing.
- A new host starts with the spec's delay, due now, not paused. Hosts this
  process created are not inserted again once :meth:`Adder.remember` has
  been told their transaction committed.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Engine, select

from shoal.frontier import claim as claim_sql
from shoal.frontier import dialects
from shoal.frontier.contract import NewURL
from shoal.frontier.tables import hosts, urls

__all__ = ["Adder"]

_U = urls.c


class Adder:
    """The inserts of new URLs and hosts on one engine, and the hosts known to exist."""

    def __init__(self, engine: Engine) -> None:
        self._mysql = engine.dialect.name == "mysql"
        self._read_first = dialects.uses_skip_locked(engine)
        ins_url = dialects.insert_ignore(engine, urls, ["crawl_id", "url_key"])
        # RETURNING tells how many rows were really new (executemany rowcounts are not
        # reliable across drivers); MySQL has no RETURNING but an exact rowcount.
        self._ins_url = ins_url if self._mysql else ins_url.returning(_U.id)
        self._ins_host = dialects.insert_ignore(engine, hosts, ["crawl_id", "host_key"])
        self._known_hosts: set[tuple[int, int]] = set()

    def remember(self, fresh: list[tuple[int, int]]) -> None:
        """The ``(crawl_id, host_key)`` of hosts :meth:`add` created, once their transaction committed."""
        self._known_hosts.update(fresh)

    def add(
        self,
        conn: Connection,
        crawl_id: int,
        new: Sequence[NewURL],
        default_delay_ms: int,
        now: int,
    ) -> tuple[int, list[tuple[int, int]]]:
        """Insert the URLs not in the crawl yet: how many, and the ``(crawl_id, host_key)`` of hosts created."""
        if not new:
            return 0, []
        # Rows are inserted in key order: two transactions inserting overlapping
        # keys then wait for each other in the same order instead of deadlocking.
        unique = {n.url_key: n for n in reversed(new)}
        keys = sorted(unique)
        if self._read_first:
            # On PostgreSQL an INSERT ... ON CONFLICT waits for any uncommitted
            # change to a row with the same key (a claim or an outcome of that
            # URL), which deadlocks against a worker completing it. Rows that
            # already exist are known from a plain (non-waiting) read first.
            existing: set[int] = set()
            for chunk in claim_sql.chunks(keys, 500):
                existing.update(
                    r[0]
                    for r in conn.execute(
                        select(_U.url_key).where(_U.crawl_id == crawl_id, _U.url_key.in_(chunk))
                    )
                )
            keys = [k for k in keys if k not in existing]
            if not keys:
                return 0, []
        new = [unique[k] for k in keys]
        fresh_hosts: dict[int, str] = {}
        for n in new:
            if (crawl_id, n.host_key) not in self._known_hosts:
                fresh_hosts[n.host_key] = n.host
        if fresh_hosts:
            conn.execute(
                self._ins_host,
                [
                    {
                        "crawl_id": crawl_id,
                        "host_key": k,
                        "host": fresh_hosts[k][:255],
                        "min_delay_ms": default_delay_ms,
                        "next_fetch_at": 0,
                        "paused_until": 0,
                    }
                    for k in sorted(fresh_hosts)
                ],
            )
        res = conn.execute(
            self._ins_url,
            [
                {
                    "crawl_id": crawl_id,
                    "url_key": n.url_key,
                    "url": n.url,
                    "host_key": n.host_key,
                    "status": n.status.value,
                    "rule": n.rule,
                    "kind": n.kind,
                    "depth": n.depth,
                    "priority": n.priority,
                    "parent_id": n.parent_id,
                    "redirects": n.redirects,
                    "discovered_at": now,
                    "next_attempt_at": now,
                    "attempts": 0,
                    "skip_reason": n.skip_reason,
                }
                for n in new
            ],
        )
        added = max(res.rowcount or 0, 0) if self._mysql else len(res.all())
        return added, [(crawl_id, k) for k in fresh_hosts]
