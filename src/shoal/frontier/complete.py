"""SQL of completing leased URLs: a sync's outcomes, fenced by their lease, with their links and host changes.

:class:`~shoal.frontier.sql.SqlFrontier` calls :func:`complete` inside its
``sync`` transaction, before it claims; ``lock`` is its ``FOR UPDATE`` wrapper
and ``adder`` its insert of new URLs (:mod:`shoal.frontier.new_urls`).

Guarantees:

- An outcome is applied only while its URL is leased with the outcome's lease
  token (the rows are locked in id order first); one outcome per lease is
  applied, a second one for it is refused. A refused outcome writes nothing:
  no row, no link, no host change.
- An applied outcome ends its lease and records the fetch (error detail cut to
  2,000 characters, content type to 128, the WARC reference, the revisit
  columns of :func:`shoal.frontier.due.outcome_values`); a ``pending`` outcome
  is due at its ``next_attempt_at`` (now when none), and a refunded one gives
  its attempt back.
- Its links are added and its host changes (robots delay, Retry-After,
  pause) applied in the same transaction, hosts in host-key order.
- Every dialect sets the same columns to the same values: MySQL/MariaDB as one
  multi-table UPDATE per 200 outcomes (compiled once per batch size), the
  others as one UPDATE per outcome.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BindParameter,
    Connection,
    Engine,
    bindparam,
    case,
    column,
    select,
    text,
    update,
)
from sqlalchemy.sql.visitors import replacement_traverse

from shoal.frontier import claim as claim_sql
from shoal.frontier import due as revisit_sql
from shoal.frontier import new_urls
from shoal.frontier.contract import HostUpdate, NewURL, Outcome, Status
from shoal.frontier.tables import hosts, urls

__all__ = ["Writer", "complete", "worker_counts"]

_U = urls.c
_H = hosts.c


class Writer:
    """The outcome UPDATE of one engine, and on MySQL/MariaDB its batched forms."""

    def __init__(self, engine: Engine) -> None:
        self._dialect = engine.dialect
        self._values: dict[str, Any] = dict(
            status=bindparam("_status"),
            error_class=bindparam("_error_class"),
            error_detail=bindparam("_error_detail"),
            skip_reason=bindparam("_skip_reason"),
            http_status=bindparam("_http_status"),
            final_url=bindparam("_final_url"),
            content_type=bindparam("_content_type"),
            body_bytes=bindparam("_body_bytes"),
            fetched_at=bindparam("_fetched_at"),
            fetch_ms=bindparam("_fetch_ms"),
            fetched_by=bindparam("_owner"),
            warc_file=bindparam("_warc_file"),
            warc_offset=bindparam("_warc_offset"),
            warc_length=bindparam("_warc_length"),
            warc_record_id=bindparam("_warc_record_id"),
            **revisit_sql.outcome_values(),
            next_attempt_at=bindparam("_next_attempt_at"),
            attempts=_U.attempts - bindparam("_refund"),
            lease_owner=None,
            lease_token=None,
            lease_expires_at=None,
        )
        self._one = update(urls).where(_U.id == bindparam("_id")).values(**self._values)
        self._batches: dict[tuple[tuple[str, ...], int], tuple[str, dict[str, Any]]] = {}

    def write(self, conn: Connection, params: list[dict[str, Any]]) -> None:
        """One UPDATE per outcome, or on MySQL/MariaDB one UPDATE per batch.

        PostgreSQL's driver pipelines the per-row statements of an executemany;
        PyMySQL sends them one by one, a round trip each. There the batch
        becomes one multi-table UPDATE joined to a derived table of the
        outcomes (``SELECT <first row> UNION ALL VALUES (...), ...``; a
        ``UNION`` of one ``SELECT`` per row costs the server more to plan than
        the single-row updates it replaces): the same SET clauses, each
        parameter read from the derived table's column of that name.
        """
        if self._dialect.name != "mysql" or len(params) == 1:
            conn.execute(self._one, params)
            return
        keys = list(params[0])
        for i in range(0, len(params), 200):
            part = params[i : i + 200]
            sql, constants = self._batch(keys, len(part))
            binds = {f"o{j}_{n}": p[k] for j, p in enumerate(part) for n, k in enumerate(keys)}
            conn.exec_driver_sql(sql, {**constants, **binds})

    def _batch(self, keys: list[str], n: int) -> tuple[str, dict[str, Any]]:
        """The batched outcome UPDATE for ``n`` rows, compiled once per size (compiling a
        statement of a thousand parameters on every sync cost the worker more than it saved)."""
        cached = self._batches.get((tuple(keys), n))
        if cached is not None:
            return cached
        first = ", ".join(f":o0_{i} AS {k}" for i, k in enumerate(keys))
        more = ", ".join(
            "(" + ", ".join(f":o{j}_{i}" for i in range(len(keys))) + ")" for j in range(1, n)
        )
        sql = f"SELECT {first}" + (f" UNION ALL VALUES {more}" if more else "")
        rows = text(sql).columns(*[column(k) for k in keys]).subquery("o")
        values = {
            k: v if v is None else replacement_traverse(v, {}, _from_columns(rows.c))
            for k, v in self._values.items()
        }
        compiled = (
            update(urls).where(_U.id == rows.c._id).values(**values).compile(dialect=self._dialect)
        )
        constants = {k: v for k, v in compiled.params.items() if not _ROW_PARAM.match(k)}
        self._batches[(tuple(keys), n)] = (str(compiled), constants)
        return str(compiled), constants


def complete(
    conn: Connection,
    writer: Writer,
    lock: claim_sql.Lock,
    adder: new_urls.Adder,
    crawl_id: int,
    owner: str,
    outcomes: list[Outcome],
    default_delay_ms: int,
    now: int,
) -> tuple[list[bool], int, list[tuple[int, int]], int, dict[int, int]]:
    """Apply the outcomes whose lease still holds, their links and host changes.

    Returns, per outcome, whether it was applied; how many links were new; the
    hosts created; how many first fetches ended ``done``; and for revisits,
    the new URLs each one found (:func:`shoal.frontier.due.count_unknown`).
    """
    if not outcomes:
        return [], 0, [], 0, {}
    ids = sorted({o.url_id for o in outcomes})
    held: dict[int, int] = {}
    for chunk in claim_sql.chunks(ids, 500):
        q = select(_U.id, _U.lease_token).where(_U.id.in_(chunk), _U.status == "leased")
        for row in conn.execute(lock(q, skip=False)):
            held[row.id] = row.lease_token
    accepted: list[bool] = []
    params = []
    links: list[NewURL] = []
    done = 0
    host_updates = []
    for o in outcomes:
        ok = held.get(o.url_id) == o.lease_token
        accepted.append(ok)
        if not ok:
            continue
        del held[o.url_id]  # one outcome per lease: a second one for it is refused
        if o.status is Status.DONE and not o.revisit:  # a refetch is not one more page
            done += 1
        params.append(
            {
                "_id": o.url_id,
                "_status": o.status.value,
                "_error_class": o.error_class,
                "_error_detail": o.error_detail[:2000] if o.error_detail else None,
                "_skip_reason": o.skip_reason,
                "_http_status": o.http_status,
                "_final_url": o.final_url,
                "_content_type": o.content_type[:128] if o.content_type else None,
                "_body_bytes": o.body_bytes,
                "_fetched_at": o.fetched_at,
                "_fetch_ms": o.fetch_ms,
                "_owner": owner,
                "_warc_file": o.warc_file,
                "_warc_offset": o.warc_offset,
                "_warc_length": o.warc_length,
                "_warc_record_id": o.warc_record_id,
                "_next_attempt_at": o.next_attempt_at if o.next_attempt_at is not None else now,
                "_refund": 1 if o.refund_attempt else 0,
                **revisit_sql.outcome_params(o, now),
            }
        )
        links.extend(o.links)
        if o.host_update is not None:
            host_updates.append(o.host_update)
    if params:
        writer.write(conn, params)
    applied = [o for o, ok in zip(outcomes, accepted, strict=True) if ok]
    found = revisit_sql.count_unknown(conn, crawl_id, applied)
    revisit_sql.record_found(conn, found)
    added, fresh = adder.add(conn, crawl_id, links, default_delay_ms, now)
    for hu in sorted(host_updates, key=lambda h: h.host_key):
        _apply_host_update(conn, crawl_id, hu)
    return accepted, added, fresh, done, found


def worker_counts(applied: Sequence[Outcome], done: int, found: dict[int, int]) -> dict[str, int]:
    """What the outcomes applied add to their worker's counters (``done``: first fetches done)."""
    return {
        "pages_done": sum(1 for o in applied if o.status is Status.DONE),
        "pages_new": done,
        "pages_failed": sum(1 for o in applied if o.status is Status.FAILED),
        "bytes_archived": sum(o.warc_length or 0 for o in applied),
        "retries": sum(
            1
            for o in applied
            if o.status is Status.PENDING and o.error_class and not o.refund_attempt
        ),
        **revisit_sql.revisit_counts(applied, found),
    }


def _apply_host_update(conn: Connection, crawl_id: int, hu: HostUpdate) -> None:
    values: dict[str, Any] = {}
    if hu.min_delay_ms is not None:
        values["robots_delay_ms"] = hu.min_delay_ms
        values["min_delay_ms"] = case(
            (_H.min_delay_ms < hu.min_delay_ms, hu.min_delay_ms), else_=_H.min_delay_ms
        )
    if hu.not_before is not None:
        values["next_fetch_at"] = case(
            (_H.next_fetch_at < hu.not_before, hu.not_before), else_=_H.next_fetch_at
        )
    if hu.pause_until is not None:
        values["paused_until"] = hu.pause_until
        values["pause_reason"] = hu.pause_reason
    if values:
        conn.execute(
            update(hosts)
            .where(_H.crawl_id == crawl_id, _H.host_key == hu.host_key)
            .values(**values)
        )


_ROW_PARAM = re.compile(r"o\d+_\d+$")


def _from_columns(cols: Any) -> Any:
    """A replacement for :func:`replacement_traverse`: each named parameter becomes that column."""

    def swap(el: Any, **_: Any) -> Any:
        if isinstance(el, BindParameter) and el.key in cols:
            return cols[el.key]
        return None

    return swap
