"""The warc_files table: every WARC file a worker wrote, where it is and whether it is safe.

A row is written when a worker opens a file (``open``), updated when the file
is complete on the worker's disk (``closed``, with size and SHA-256) and once
it is uploaded and verified (``uploaded``, with its ``s3://`` location). A file
whose worker died past its lease before the upload becomes ``lost`` and the
URLs whose captures it held go back to pending.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "warc_files",
        sa.Column("id", _BigId, primary_key=True, autoincrement=True),
        sa.Column("crawl_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("worker_id", sa.String(96), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("opened_at", sa.BigInteger(), nullable=False),
        sa.Column("closed_at", sa.BigInteger(), nullable=True),
        sa.Column("uploaded_at", sa.BigInteger(), nullable=True),
        sa.UniqueConstraint("crawl_id", "name", name="uq_warc_files_name"),
    )
    op.create_index("ix_warc_files_state", "warc_files", ["crawl_id", "state", "worker_id"])


def downgrade() -> None:
    op.drop_index("ix_warc_files_state", table_name="warc_files")
    op.drop_table("warc_files")
