"""Revisit schedules and conditional requests (due times, validators, payload digests).

Adds to ``urls``: when a fetched page comes due again (``revisit_at``, indexed
for the promotion step of a claim), when it was first fetched (``revisit_for``
counts from there), how often it was fetched again, how many new URLs its last
fetch found, the validators its server sent (``etag``, ``last_modified``) and
where the payload of its last full capture lives (``payload_*``), which a
``revisit`` record refers to and parse reads. Adds to ``workers`` the counters
of the refetches each worker's syncs applied and of the new URLs they found
(the crawl's are their sums: status reads them, not a scan of ``urls``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("revisit_at", sa.BigInteger()),
    ("first_fetched_at", sa.BigInteger()),
    ("etag", sa.String(255)),
    ("last_modified", sa.String(64)),
    ("payload_digest", sa.String(64)),
    ("payload_file", sa.String(255)),
    ("payload_offset", sa.BigInteger()),
    ("payload_length", sa.BigInteger()),
    ("payload_record_id", sa.String(64)),
    ("payload_at", sa.BigInteger()),
)


def upgrade() -> None:
    with op.batch_alter_table("urls") as batch:
        for name, type_ in _COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
        batch.add_column(sa.Column("revisits", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("found_new", sa.Integer(), nullable=True))
    op.create_index("ix_urls_revisit", "urls", ["crawl_id", "revisit_at"])
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("revisits", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("found_new", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("found_new")
        batch.drop_column("revisits")
    op.drop_index("ix_urls_revisit", table_name="urls")
    with op.batch_alter_table("urls") as batch:
        for name in ("found_new", "revisits", *reversed([n for n, _ in _COLUMNS])):
            batch.drop_column(name)
