"""Every difference between SQLite, PostgreSQL and MySQL/MariaDB, each branch saying why.

The rest of the frontier is dialect-free SQLAlchemy Core.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Engine, Insert, Select, Table, create_engine, event, text
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.pool import NullPool

from shoal.errors import FrontierError
from shoal.secrets import redact_text, redact_url

__all__ = [
    "IDLE_IN_TRANSACTION_S",
    "LOCK_TIMEOUT_S",
    "clock_sql",
    "has_row",
    "insert_ignore",
    "is_full",
    "is_retryable",
    "is_unavailable",
    "make_engine",
    "snapshot_options",
    "uses_skip_locked",
    "with_driver",
]


def with_driver(url: str) -> str:
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


LOCK_TIMEOUT_S = 10
"""Longest wait for a row lock before the transaction fails and is run again."""
IDLE_IN_TRANSACTION_S = 60
"""A session idle inside a transaction this long is ended by the server (its locks released)."""

_EXPECTED = (
    "expected postgresql://user:password@host:port/database, mysql://... or sqlite:///path/to/file"
)


def make_engine(url: str, *, pool_size: int = 4) -> Engine:
    """An engine set up for the frontier's transactions on this dialect.

    A URL that cannot be parsed, or names another database, raises
    :class:`~shoal.errors.FrontierError` whose message shows the URL without
    its password.
    """
    url = with_driver(url)
    try:
        u = make_url(url)
        backend = u.get_backend_name()
        u.port  # noqa: B018 - parsed lazily by some versions: fail here, not at the first connection
    except (ArgumentError, ValueError) as exc:
        reason = redact_text(str(exc))
        raise FrontierError(
            f"invalid database URL {redact_url(url)} ({reason}): {_EXPECTED}"
        ) from None
    if backend == "sqlite":
        if u.database and u.database != ":memory:":
            from pathlib import Path

            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        # One writer at a time: every write transaction starts with BEGIN IMMEDIATE
        # so that a claim never fails half-way on a lock upgrade (SQLITE_BUSY);
        # busy_timeout makes the other processes wait instead of failing.
        engine = create_engine(
            url, poolclass=NullPool if u.database in (None, "", ":memory:") else None
        )

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
        # A frontier transaction lasts milliseconds. A worker frozen inside one
        # (SIGSTOP, a paused VM) must not hold its row locks for the fleet:
        # ``lock_timeout`` turns a wait of LOCK_TIMEOUT_S into a retried error
        # (55P03) instead of a stall, and ``idle_in_transaction_session_timeout``
        # lets the server end the frozen session, releasing its locks, after
        # IDLE_IN_TRANSACTION_S. Its outcomes are then rolled back and fenced.
        options = (
            f"-c lock_timeout={LOCK_TIMEOUT_S * 1000} "
            f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_S * 1000}"
        )
        return create_engine(
            url,
            pool_size=pool_size,
            pool_pre_ping=True,
            isolation_level="READ COMMITTED",
            connect_args={"connect_timeout": 10, "options": options},
        )
    if backend in ("mysql", "mariadb"):
        # InnoDB defaults to REPEATABLE READ, whose gap locks make concurrent claims
        # block each other; READ COMMITTED + SKIP LOCKED lets workers pass by.
        # The same bounds as on PostgreSQL: a lock wait fails (1205, retried) after
        # LOCK_TIMEOUT_S instead of InnoDB's 50 s, and the server ends a session
        # idle inside a transaction for IDLE_IN_TRANSACTION_S (MariaDB >= 10.3;
        # MySQL has no such variable, so it is only set on MariaDB).
        engine = create_engine(
            url,
            pool_size=pool_size,
            pool_pre_ping=True,
            pool_recycle=3600,
            isolation_level="READ COMMITTED",
            connect_args={"connect_timeout": 10, "charset": "utf8mb4"},
        )

        @event.listens_for(engine, "connect")
        def _on_mysql_connect(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute(f"SET SESSION innodb_lock_wait_timeout = {LOCK_TIMEOUT_S}")
            cur.execute("SELECT VERSION()")
            if "mariadb" in str(cur.fetchone()[0]).lower():
                cur.execute(f"SET SESSION idle_transaction_timeout = {IDLE_IN_TRANSACTION_S}")
            cur.close()

        return engine
    raise FrontierError(f"unsupported database {backend!r} in {redact_url(url)}: {_EXPECTED}")


def snapshot_options(engine: Engine) -> dict[str, Any]:
    """Execution options of a read-only transaction that sees one moment of the database.

    PostgreSQL and MySQL/MariaDB run the writers at READ COMMITTED, where every
    statement sees a newer moment: a status frame of ten queries would mix
    them. REPEATABLE READ takes one snapshot for the whole transaction (on
    InnoDB a consistent, lock-free read). SQLite needs nothing: a read
    transaction in WAL mode already sees one moment.
    """
    if engine.dialect.name == "sqlite":
        return {}
    options: dict[str, Any] = {"isolation_level": "REPEATABLE READ"}
    if engine.dialect.name == "postgresql":
        options["postgresql_readonly"] = True
    return options


def has_row(engine: Engine, q: Select[Any]) -> ColumnElement[bool]:
    """True where the correlated query ``q`` finds a row, probed through an index per outer row.

    MariaDB flattens a correlated ``EXISTS`` into a semi-join and may
    materialize every matching inner row first: the claim's "has this host a
    due URL?" then scanned the whole ``urls`` table (0.75 s per claim at a
    million URLs). A scalar subquery with ``LIMIT 1`` is not flattened and
    stays one index probe per host. PostgreSQL and SQLite plan ``EXISTS`` well.
    """
    if engine.dialect.name == "mysql":
        return q.limit(1).scalar_subquery().is_not(None)
    return q.exists()


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
# SQLSTATEs of a server that is away for now: connection exceptions (class 08), an
# administrator or crash shutdown, a server starting up or in recovery (57P0x), and
# too many connections (53300), which a fleet meets when it outgrows max_connections.
_UNAVAILABLE_PG_CLASSES = ("08",)
_UNAVAILABLE_PG = {"57P01", "57P02", "57P03", "57P05", "53300"}
# MySQL/MariaDB client and server errors of the same kind: too many connections, server
# shutting down, connection killed, can't connect, server gone away, lost connection.
_UNAVAILABLE_MYSQL = {1040, 1053, 1077, 1152, 1159, 1161, 1927, 2002, 2003, 2006, 2013, 2055, 4031}
_UNAVAILABLE_TEXT = (
    "connection refused",
    "could not connect",
    "server closed the connection",
    "terminating connection",
    "connection is closed",
    "the connection is lost",
    "connection is bad",
    "can't connect",
    "lost connection",
    "gone away",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is not yet accepting connections",
    "the database system is in recovery mode",
    "connection timed out",
    "timeout expired",
    "consuming input failed",
    "sending query failed",
    "connection failed",
    "connection reset",
    "broken pipe",
    "ssl syscall error",
    "no route to host",
    "network is unreachable",
    "temporary failure in name resolution",
)


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


# The database cannot write at all: disk full, out of space for a table, read-only (SQLite
# SQLITE_READONLY 8, SQLITE_IOERR 10, SQLITE_FULL 13; PostgreSQL disk_full and
# read_only_sql_transaction; MySQL/MariaDB disk full, table full, read-only table or server).
_FULL_SQLITE = {8, 10, 13}
_FULL_PG = {"53100", "25006"}
_FULL_MYSQL = {1021, 1036, 1114, 1290, 1792, 3}


def is_full(exc: BaseException) -> bool:
    """The database cannot write (its disk is full, or it or its file is read-only): no retry helps."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _FULL_SQLITE
    state = getattr(orig, "sqlstate", None)
    if isinstance(state, str):
        return state in _FULL_PG
    args = getattr(orig, "args", ())
    return bool(args and isinstance(args[0], int) and args[0] in _FULL_MYSQL)


def is_unavailable(exc: BaseException) -> bool:
    """The server cannot be reached for now (refused, gone away, restarting, full): retry later.

    Decided by the driver's SQLSTATE or error number where it has one, by
    SQLAlchemy's own disconnect detection, and by the message otherwise (psycopg
    reports a refused or dropped connection without a SQLSTATE). A refused
    login counts too: a worker waits out its grace period for it, then stops
    with a message naming it.
    """
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    orig = exc.orig
    code = getattr(orig, "sqlstate", None)
    if isinstance(code, str) and (
        code in _UNAVAILABLE_PG or code.startswith(_UNAVAILABLE_PG_CLASSES)
    ):
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _UNAVAILABLE_MYSQL:
        return True
    msg = str(orig).lower()
    return any(n in msg for n in _UNAVAILABLE_TEXT)
