"""The warc_files table: every WARC file a worker wrote, where it is and whether it is safe.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # reserved in the chain; the change that owns this revision fills it


def downgrade() -> None:
    pass
