"""Every difference between SQLite, PostgreSQL and MySQL/MariaDB, each branch saying why.

The rest of the frontier is dialect-free SQLAlchemy Core.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Engine, Insert, Table, create_engine, event, text
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

__all__ = [
    "clock_sql",
    "insert_ignore",
    "is_retryable",
    "is_unavailable",
    "make_engine",
    "normalize_url",
    "redact_url",
    "uses_skip_locked",
]


def normalize_url(url: str) -> str:
    """Pick shoal's drivers for bare scheme names (psycopg 3, PyMySQL)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    for scheme in ("mysql://", "mariadb://"):
        if url.startswith(scheme):
            return "mysql+pymysql://" + url[len(scheme) :]
    if url.startswith("mariadb+pymysql://"):
        return "mysql+pymysql://" + url[len("mariadb+pymysql://") :]
    return url


def redact_url(url: str) -> str:
    """The database URL with its password replaced by ``***`` (for logs and status)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)


def make_engine(url: str, *, pool_size: int = 4) -> Engine:
    """An engine set up for the frontier's transactions on this dialect."""
    url = normalize_url(url)
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        if u.database and u.database != ":memory:":
            from pathlib import Path

            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        # One writer at a time: every write transaction starts with BEGIN IMMEDIATE
        # so that a claim never fails half-way on a lock upgrade (SQLITE_BUSY);
        # busy_timeout makes the other processes wait instead of failing.
        engine = create_engine(url, poolclass=NullPool if u.database in (None, "", ":memory:") else None)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            mode = "DEFERRED" if conn.get_execution_options().get("readonly") else "IMMEDIATE"
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    if backend == "postgresql":
        # READ COMMITTED (the default) with row locks from FOR UPDATE SKIP LOCKED.
        return create_engine(
            url,
            pool_size=pool_size,
            pool_pre_ping=True,
            isolation_level="READ COMMITTED",
            connect_args={"connect_timeout": 10},
        )
    if backend in ("mysql", "mariadb"):
        # InnoDB defaults to REPEATABLE READ, whose gap locks make concurrent claims
        # block each other; READ COMMITTED + SKIP LOCKED lets workers pass by.
        return create_engine(
            url,
            pool_size=pool_size,
            pool_pre_ping=True,
            pool_recycle=3600,
            isolation_level="READ COMMITTED",
            connect_args={"connect_timeout": 10, "charset": "utf8mb4"},
        )
    raise ArgumentError(f"unsupported database {backend!r}: use sqlite, postgresql or mysql/mariadb")


def uses_skip_locked(engine: Engine) -> bool:
    """SQLite has no row locks: its single writer already makes claims exclusive."""
    return engine.dialect.name != "sqlite"


def insert_ignore(engine: Engine, table: Table, keys: list[str]) -> Insert:
    """An INSERT that silently skips rows whose unique ``keys`` already exist."""
    name = engine.dialect.name
    if name == "sqlite":
        return sqlite_dialect.insert(table).on_conflict_do_nothing(index_elements=keys)
    if name == "postgresql":
        return pg_dialect.insert(table).on_conflict_do_nothing(index_elements=keys)
    # MySQL/MariaDB have no ON CONFLICT; IGNORE skips duplicate-key rows (the
    # columns are sized so that no other error is turned into a warning).
    return mysql_dialect.insert(table).prefix_with("IGNORE")


def clock_sql(engine: Engine) -> Any:
    """A query for the database's clock in ms, or None when the local clock is the database's."""
    name = engine.dialect.name
    if name == "postgresql":
        return text("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)")
    if name == "mysql":
        return text("SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)")
    return None


_RETRYABLE_PG = {"40001", "40P01", "55P03"}
_RETRYABLE_MYSQL = {1205, 1213}


def is_retryable(exc: BaseException) -> bool:
    """A deadlock or serialization failure: the whole transaction may simply be run again."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code in _RETRYABLE_PG:
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _RETRYABLE_MYSQL:
        return True
    return "database is locked" in str(orig)


def is_unavailable(exc: BaseException) -> bool:
    """The server cannot be reached (refused, gone away, shutting down)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    msg = str(exc.orig).lower()
    needles = (
        "connection refused",
        "could not connect",
        "server closed the connection",
        "terminating connection",
        "connection is closed",
        "can't connect",
        "lost connection",
        "gone away",
        "the database system is starting up",
        "the database system is shutting down",
        "connection timed out",
        "consuming input failed",
        "connection failed",
    )
    return any(n in msg for n in needles)
