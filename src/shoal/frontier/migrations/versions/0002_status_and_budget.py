"""Status truth and crawl-wide limits (worker counters, host counters, status indexes, crawl page budget).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # reserved in the chain; the change that owns this revision fills it


def downgrade() -> None:
    pass
