"""Schema versions: migrate a database to this version's schema, or refuse to run.

Migrations are Alembic revisions shipped inside the package. A worker runs
only against the schema revision it was built for; ``shoal db upgrade``
applies newer revisions. A fresh database is created by the same migrations
(never by ``create_all``), so what runs in production is what the tests check.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

from shoal.errors import SchemaVersionError

__all__ = ["alembic_config", "current_revision", "ensure_schema", "head_revision", "upgrade"]

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest schema revision this version of shoal knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (idempotent)."""
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def ensure_schema(engine: Engine, *, create: bool) -> None:
    """Make sure the database is at this version's schema.

    An empty database is migrated when ``create`` is true. A database at an
    older revision, or one unknown to this version, raises
    :class:`SchemaVersionError` saying what to do.
    """
    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return
    if current is None:
        names = set(inspect(engine).get_table_names())
        if names & {"urls", "hosts", "crawls"}:
            raise SchemaVersionError(
                "the database has shoal-like tables but no schema version; "
                "point shoal at an empty database or one made by shoal"
            )
        if not create:
            raise SchemaVersionError(
                "the database has no shoal schema yet: run `shoal db upgrade --db URL` first"
            )
        upgrade(engine)
        return
    known = {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if current in known:
        raise SchemaVersionError(
            f"the database schema is at revision {current}, this shoal needs {head}: "
            "run `shoal db upgrade --db URL` (workers of the older version keep working until then)"
        )
    raise SchemaVersionError(
        f"the database schema revision {current} is newer than this shoal knows ({head}): "
        "upgrade shoal on this machine (pip install -U shoal)"
    )
