"""Schema migrations: a migrated database equals the canonical schema; unknown versions are refused."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from shoal.errors import SchemaVersionError
from shoal.frontier.dialects import make_engine
from shoal.frontier.schema import current_revision, ensure_schema, head_revision, upgrade
from shoal.frontier.tables import metadata


def test_migrated_database_equals_the_canonical_schema(db_url: str) -> None:
    """Running every migration on an empty database yields exactly tables.py (no autogenerate diff)."""
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": False}
        )
        diff = compare_metadata(ctx, metadata)
    engine.dispose()
    assert diff == []


def test_upgrade_is_idempotent_and_reports_head(db_url: str) -> None:
    """Upgrading twice is harmless and leaves the database at the head revision."""
    engine = make_engine(db_url)
    upgrade(engine)
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_worker_refuses_an_empty_or_unknown_schema(db_url: str) -> None:
    """Without create, an empty database is refused with the command to run; a newer revision too."""
    engine = make_engine(db_url)
    with pytest.raises(SchemaVersionError, match="shoal db upgrade"):
        ensure_schema(engine, create=False)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff_future'"))
    with pytest.raises(SchemaVersionError, match="newer than this shoal knows"):
        ensure_schema(engine, create=False)
    engine.dispose()
