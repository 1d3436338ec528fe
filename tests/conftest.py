"""Shared fixtures: a fresh frontier database on each backend, the demo site, test data paths.

PostgreSQL and MariaDB are the servers on 127.0.0.1 (override with
SHOAL_TEST_PG / SHOAL_TEST_MYSQL). Each test gets a database of its own, dropped
afterwards. When a server is missing the test fails under CI=true and is
skipped elsewhere with a message saying how to start one.

Under pytest-xdist (``make test`` runs ``pytest -n 2``) the tests that share a
module- or session-scoped fixture of their module (a Chromium, a crawled demo,
a moto server) run on one worker, so that fixture is built once; every other
test goes to whichever worker is free, tests marked ``slow`` first, so that no
long test starts last while the other worker sits idle. The workers tell the
controller which tests go together through a JSON file named in
``SHOAL_TEST_GROUPS`` (xdist's own ``--dist loadgroup`` does not group on
pytest 9.2: it renames node ids, which pytest 9.2 no longer reads back).
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.vectors import TESTDATA

PG_ADMIN = os.environ.get("SHOAL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MYSQL_ADMIN = os.environ.get("SHOAL_TEST_MYSQL", "mysql://root@127.0.0.1:3306/")
IN_CI = os.environ.get("CI", "").lower() == "true"

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("mariadb", id="mariadb", marks=pytest.mark.mariadb),
]


def missing(what: str, hint: str) -> None:
    """Fail under CI (a missing service is a broken CI machine), skip elsewhere with a hint."""
    message = f"{what} is not available: {hint}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _pg_create() -> tuple[str, str]:
    import psycopg

    name = f"shoal_t_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(
            PG_ADMIN.replace("postgresql://", "postgresql://", 1),
            autocommit=True,
            connect_timeout=5,
        ) as c:
            c.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        missing(
            "PostgreSQL", f"{exc}; start it with `pg_ctlcluster 15 main start` or set SHOAL_TEST_PG"
        )
    base = PG_ADMIN.rsplit("/", 1)[0]
    return f"{base}/{name}", name


def _pg_drop(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _mysql_params() -> dict[str, object]:
    from sqlalchemy.engine import make_url

    u = make_url(MYSQL_ADMIN.replace("mysql://", "mysql+pymysql://", 1))
    return {
        "host": u.host or "127.0.0.1",
        "port": u.port or 3306,
        "user": u.username or "root",
        "password": u.password or "",
    }


def _mysql_create() -> tuple[str, str]:
    import pymysql

    name = f"shoal_t_{uuid.uuid4().hex[:12]}"
    try:
        conn = pymysql.connect(connect_timeout=5, **_mysql_params())
    except pymysql.err.OperationalError as exc:
        missing(
            "MariaDB/MySQL",
            f"{exc}; start it with `start-stop-daemon --start --background --exec /usr/sbin/mariadbd` or set SHOAL_TEST_MYSQL",
        )
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    conn.close()
    return f"{MYSQL_ADMIN.rstrip('/')}/{name}", name


def _mysql_drop(name: str) -> None:
    import pymysql

    conn = pymysql.connect(connect_timeout=5, **_mysql_params())
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


def make_db(backend: str, tmp_path: Path) -> tuple[str, object]:
    """Create an empty database; returns its URL and a callable that drops it."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'frontier.sqlite'}", lambda: None
    if backend == "postgresql":
        url, name = _pg_create()
        return url, lambda: _pg_drop(name)
    url, name = _mysql_create()
    return url, lambda: _mysql_drop(name)


GROUPS_ENV = "SHOAL_TEST_GROUPS"


def pytest_configure(config: pytest.Config) -> None:
    """The xdist controller names the file where its workers write the test groups."""
    if config.getoption("numprocesses", None) and not os.environ.get("PYTEST_XDIST_WORKER"):
        fd, path = tempfile.mkstemp(prefix="shoal-test-groups-", suffix=".json")
        os.close(fd)
        os.environ[GROUPS_ENV] = path  # inherited by the workers, started after this hook
        config.add_cleanup(lambda: os.unlink(path))


def _shared_fixture_module(item: pytest.Item) -> str | None:
    """The test module whose module- or session-scoped fixture ``item`` uses, if any."""
    info = getattr(item, "_fixtureinfo", None)
    for defs in getattr(info, "name2fixturedefs", {}).values():
        for d in defs:
            if d.scope != "function" and d.baseid.startswith("tests/test_"):
                return str(d.baseid)
    return None


@pytest.hookimpl(tryfirst=True)  # sorted before `-m` deselects: every worker sees one order
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker: slow tests first, and the groups written for the controller."""
    path = os.environ.get(GROUPS_ENV)
    if not os.environ.get("PYTEST_XDIST_WORKER") or not path:
        return
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    groups = {item.nodeid: _shared_fixture_module(item) for item in items}
    part = f"{path}.{os.environ['PYTEST_XDIST_WORKER']}"
    Path(part).write_text(json.dumps({k: v for k, v in groups.items() if v}), "utf-8")
    os.replace(part, path)  # every worker writes the same groups; one complete file stays


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``-n N`` (``--dist load``): xdist's scope scheduling, a scope being a shared-fixture group or one test."""
    if config.getoption("dist") != "load" or not os.environ.get(GROUPS_ENV):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):  # type: ignore[misc]
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            # Called once the workers have collected, so their groups file is complete.
            if self.groups is None:
                text = Path(os.environ[GROUPS_ENV]).read_text("utf-8")
                self.groups = json.loads(text) if text else {}
            return self.groups.get(nodeid, nodeid)

    return SharedFixtureScheduling(config, log)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty frontier database URL on each backend."""
    url, drop = make_db(request.param, tmp_path)
    yield url
    drop()  # type: ignore[operator]


@pytest.fixture
def testdata() -> Path:
    """The third-party test vectors in tests/data/ (sources and licences in its README)."""
    if not TESTDATA.is_dir():
        missing("tests/data", f"expected at {TESTDATA}")
    return TESTDATA


@pytest.fixture
def demo_server() -> Iterator[object]:
    """The bundled demo site served on 127.0.0.1 in a background thread."""
    from shoal.demo.site import start_in_thread

    server = start_in_thread()
    yield server
    server.stop()
