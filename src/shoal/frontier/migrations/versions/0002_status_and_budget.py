"""Status truth and crawl-wide limits (crawl counters and page budget, status indexes).

- ``crawls.max_pages``: the crawl-wide page budget, enforced by the claim.
- ``crawls.fetched`` is dropped: every sync of the fleet wrote that one row, so
  syncs queued behind each other on its lock. Each worker now counts what its
  syncs applied in its own row (``workers.pages_new``: first fetches,
  ``retries``; ``pages_done``, ``pages_failed``, ``bytes_archived`` already
  there) and the crawl's numbers are their sums. ``crawls.leases_reaped`` is
  written only when the reaper returns leases.
- ``hosts.fetches`` / ``hosts.errors`` are dropped: nothing wrote them truthfully,
  and keeping them would make every completion lock its host rows, the rows
  claims lock. Per-host numbers come from the URL rows (``ix_urls_claim``).
- ``ix_urls_fetched`` covers status and error class (throughput per minute from
  the index alone), and ``ix_urls_status`` grows to serve, besides the reaper,
  the counts by status, error class, skip reason, HTTP status and the pending
  due times (one index rather than two: on PostgreSQL every write of a URL row
  adds an entry to each index). ``next_attempt_at`` comes after the outcome
  columns, not right after ``status``: there SQLite's planner would read the
  claim through it, sorting every due URL of the crawl instead of one host's.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_WORKER_COUNTERS = ("pages_new", "retries")
_STATUS_COLUMNS = [
    "crawl_id",
    "status",
    "error_class",
    "skip_reason",
    "http_status",
    "next_attempt_at",
    "lease_expires_at",
]


def upgrade() -> None:
    with op.batch_alter_table("crawls") as batch:
        batch.add_column(sa.Column("max_pages", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("leases_reaped", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.drop_column("fetched")
    with op.batch_alter_table("workers") as batch:
        for name in _WORKER_COUNTERS:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("fetches")
        batch.drop_column("errors")
    op.drop_index("ix_urls_fetched", table_name="urls")
    op.create_index("ix_urls_fetched", "urls", ["crawl_id", "fetched_at", "status", "error_class"])
    op.drop_index("ix_urls_status", table_name="urls")
    op.create_index("ix_urls_status", "urls", _STATUS_COLUMNS)


def downgrade() -> None:
    op.drop_index("ix_urls_status", table_name="urls")
    op.create_index("ix_urls_status", "urls", ["crawl_id", "status", "lease_expires_at"])
    op.drop_index("ix_urls_fetched", table_name="urls")
    op.create_index("ix_urls_fetched", "urls", ["crawl_id", "fetched_at"])
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("errors", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("fetches", sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("workers") as batch:
        for name in reversed(_WORKER_COUNTERS):
            batch.drop_column(name)
    with op.batch_alter_table("crawls") as batch:
        batch.add_column(sa.Column("fetched", sa.BigInteger(), nullable=False, server_default="0"))
        batch.drop_column("leases_reaped")
        batch.drop_column("max_pages")
